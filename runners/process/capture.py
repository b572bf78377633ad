"""Log capture: a job's stdout and stderr as one ordered file of JSON records, and read back.

The job's shim (:mod:`.shim`, stdlib-only, where this writing half lives) feeds each pipe's
bytes to a :class:`LineSplitter` and appends the lines to ``log.jsonl`` as records
``{"stream", "text", "at"}`` in arrival order; memory stays bounded whatever the job prints,
because a line longer than :data:`MAX_LINE_BYTES` is cut into pieces flagged
``"partial": true`` (``LogRecord.partial``), which a reader joins again. ``logs`` reads
records back from a byte offset (the cursor), a bounded chunk at a time, never half a record.
"""

from __future__ import annotations

import json
import os
from datetime import datetime

from runners.base import LogRecord
from runners.process.shim import MAX_LINE_BYTES, LineSplitter, records

__all__ = [
    "LOG_CHUNK_BYTES",
    "LOG_CHUNK_LINES",
    "MAX_LINE_BYTES",
    "LineSplitter",
    "read_records",
    "records",
]

LOG_CHUNK_LINES = 10_000
LOG_CHUNK_BYTES = 8 << 20
"""Bounds of one :meth:`ProcessRunner.logs` chunk (at least one record is always returned)."""


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
