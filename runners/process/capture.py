"""Log capture: a job's stdout and stderr as one ordered file of JSON records, and read back.

The pump feeds each pipe's bytes to a :class:`LineSplitter` and appends the lines to
``log.jsonl`` as records ``{"stream", "text", "at"}`` in arrival order; memory stays bounded
whatever the job prints, because a line longer than :data:`MAX_LINE_BYTES` is cut into pieces
flagged ``"partial": true`` (``LogRecord.partial``), which a reader joins again. ``logs``
reads records back from a byte offset (the cursor), a bounded chunk at a time, never half a
record.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from json.encoder import encode_basestring

from runners.base import LogRecord

__all__ = [
    "LOG_CHUNK_BYTES",
    "LOG_CHUNK_LINES",
    "MAX_LINE_BYTES",
    "LineSplitter",
    "read_records",
    "records",
]

MAX_LINE_BYTES = 1 << 20
"""A longer line is cut into pieces of at most this many bytes (at a UTF-8 boundary)."""
LOG_CHUNK_LINES = 10_000
LOG_CHUNK_BYTES = 8 << 20
"""Bounds of one :meth:`ProcessRunner.logs` chunk (at least one record is always returned)."""

_WHOLE: frozenset[int] = frozenset()
"""No line was cut (the usual case): see :class:`LineSplitter`."""


class LineSplitter:
    """Cuts one stream's bytes into lines: split on ``\\n``, a trailing ``\\r`` dropped, and a
    line longer than MAX_LINE_BYTES cut into pieces, so memory stays bounded whatever the job prints.

    ``feed`` and ``close`` return the lines and the indexes of the pieces that do not end their
    line (the next line of this stream continues them): their records say ``partial``, so the
    reader can join them again (an outputs marker longer than MAX_LINE_BYTES is still one marker).
    """

    def __init__(self) -> None:
        self.pending = b""

    def feed(self, data: bytes) -> tuple[list[bytes], frozenset[int] | set[int]]:
        parts = (self.pending + data if self.pending else data).split(b"\n")
        self.pending = parts.pop()
        lines: list[bytes] = []
        cut: frozenset[int] | set[int] = _WHOLE
        for part in parts:
            pieces = _pieces(part[:-1] if part.endswith(b"\r") else part)
            if len(pieces) > 1:
                cut = {*cut, *range(len(lines), len(lines) + len(pieces) - 1)}
            lines.extend(pieces)
        while len(self.pending) > MAX_LINE_BYTES:
            cut = {*cut, len(lines)}
            at = _utf8_cut(self.pending, MAX_LINE_BYTES)
            lines.append(self.pending[:at])
            self.pending = self.pending[at:]
        return lines, cut

    def close(self) -> tuple[list[bytes], frozenset[int]]:
        """The last line, even without a trailing newline."""
        last, self.pending = self.pending, b""
        if not last:
            return [], _WHOLE
        pieces = _pieces(last[:-1] if last.endswith(b"\r") else last)
        return pieces, frozenset(range(len(pieces) - 1))


def _pieces(line: bytes) -> list[bytes]:
    if len(line) <= MAX_LINE_BYTES:
        return [line]
    pieces = []
    while len(line) > MAX_LINE_BYTES:
        cut = _utf8_cut(line, MAX_LINE_BYTES)
        pieces.append(line[:cut])
        line = line[cut:]
    pieces.append(line)
    return pieces


def _utf8_cut(buf: bytes, limit: int) -> int:
    """A cut position <= limit that does not split a UTF-8 sequence (when the data is UTF-8)."""
    cut = limit
    while cut > limit - 3 and (buf[cut] & 0xC0) == 0x80:
        cut -= 1
    return cut


def records(stream: str, lines: list[bytes], cut: frozenset[int] | set[int], at: str) -> bytes:
    """Log records as JSON lines ``{"stream", "text", "at"}`` (plus ``"partial": true`` for the
    indexes in ``cut``), built by hand: json.dumps per line costs twice as much, and 100 MB of
    output is 100,000 lines or more."""
    if not lines:
        return b""
    head = '{"stream":' + encode_basestring(stream) + ',"text":'
    tail = ',"at":' + encode_basestring(at) + "}\n"
    if not cut:
        return "".join(
            head + encode_basestring(line.decode("utf-8", errors="replace")) + tail for line in lines
        ).encode("utf-8")
    partial = ',"partial":true' + tail
    return "".join(
        head + encode_basestring(line.decode("utf-8", errors="replace")) + (partial if i in cut else tail)
        for i, line in enumerate(lines)
    ).encode("utf-8")


def read_records(fd: int, offset: int) -> tuple[tuple[LogRecord, ...], int, bool]:
    """The records of an open log file from byte ``offset``, at most LOG_CHUNK_LINES /
    LOG_CHUNK_BYTES (at least one whole record when there is one): (records, bytes consumed,
    whether that reached the end of what is written)."""
    size = os.fstat(fd).st_size  # read no more than there is: no 8 MiB buffer for one line
    data = os.pread(fd, min(max(size - offset, 0), LOG_CHUNK_BYTES), offset)
    end = data.rfind(b"\n") + 1  # a last record without its newline is still being written
    while not end and len(data) >= LOG_CHUNK_BYTES:  # one record longer than a chunk
        more = os.pread(fd, LOG_CHUNK_BYTES, offset + len(data))
        if not more:
            break
        if (newline := more.find(b"\n")) >= 0:
            end = len(data) + newline + 1
        data += more
    raws = data[:end].split(b"\n")
    raws.pop()  # what follows the last newline
    del raws[LOG_CHUNK_LINES:]
    consumed = end if len(raws) < LOG_CHUNK_LINES else sum(len(r) + 1 for r in raws)
    at_end = offset + consumed >= size  # terminal: the log no longer grows
    return tuple(record for raw in raws if (record := _parse_record(raw)) is not None), consumed, at_end


def _parse_record(raw: bytes) -> LogRecord | None:
    try:
        data = json.loads(raw)
        at = data.get("at")
        return LogRecord(
            stream=str(data["stream"]),
            text=str(data["text"]),
            at=datetime.fromisoformat(at) if at else None,
            partial=data.get("partial") is True,
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
