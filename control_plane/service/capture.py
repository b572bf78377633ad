"""One job attempt's log as the control plane stores it: bounded, with its outputs markers parsed.

A runner hands over the complete log, record by record (:class:`runners.base.LogRecord`);
:class:`Capture` turns it into what is stored with the task run::

    capture = Capture(LogLimits(), make_line)
    for record in records:
        capture.add(record.stream, record.text, record.partial)
    lines = capture.finish()        # the log lines to store
    capture.outputs, capture.error  # the markers' merged outputs; why the task must fail, or None

* log lines: the first ``head_lines`` and the last ``tail_lines``, with one line saying how
  many were left out between; each line cut at ``max_line_chars``, saying by how much;
* outputs: every ``::{"outputs":...}::`` line merged in order (``runners/markers.py``).

No limit loses outputs silently. A line the runner cut into ``partial`` pieces is joined
again first, so a marker longer than the runner's record is still one marker. A line shaped
like a marker (``::{`` ... ``}::``) longer than ``max_outputs_bytes`` (UTF-8) is not parsed,
and markers whose merged outputs grow past it are not kept: :attr:`Capture.error` says so,
naming the limit and its setting (``SQUALL_MAX_OUTPUTS_BYTES``), and the service fails the
task with it. Such a line is still stored like any other, cut at ``max_line_chars``.

Memory is bounded by the limits, whatever the job printed: a line being joined keeps its
pieces only while it may still be a marker under the limit (else its first
``max_line_chars``), and the merged outputs are measured again each time the marker bytes
added since the last measure exceed the limit (linear in the log, not quadratic).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from msgspec import Struct

from control_plane.engine.model import LogLine
from control_plane.levels import Level
from runners.markers import MARKER_END, MARKER_START, Marker, looks_like_marker, parse_line

__all__ = ["DEFAULT_MAX_OUTPUTS_BYTES", "MAX_OUTPUTS_SETTING", "Capture", "LogLimits", "stream_level"]

MAX_OUTPUTS_SETTING = "SQUALL_MAX_OUTPUTS_BYTES"
DEFAULT_MAX_OUTPUTS_BYTES = 1 << 20
"""1 MiB: far above what outputs meant for expressions hold, well below what would strain the
store (large outputs go to the object store) or every later task's expression context."""


class LogLimits(Struct, frozen=True):
    """How much of one job attempt's output is stored: the head and the tail, never the middle.

    A script printing 100 MB must not fill the store; the outputs marker is still searched in
    every line, and a line says how much was left out. ``max_outputs_bytes`` bounds what one
    task may report through markers (one marker line, and all its outputs together); over it,
    the task fails (``SQUALL_MAX_OUTPUTS_BYTES``).
    """

    head_lines: int = 10_000
    tail_lines: int = 1_000
    max_line_chars: int = 65_536
    max_outputs_bytes: int = DEFAULT_MAX_OUTPUTS_BYTES


def stream_level(stream: str) -> Level:
    """stdout at INFO, stderr at ERROR, as Kestra logs script output since 0.21."""
    return Level.ERROR if stream == "stderr" else Level.INFO


def _level(raw: Any) -> Level:
    try:
        return Level(str(raw).upper())
    except ValueError:
        return Level.INFO


def _cut(text: str, chars: int, limit: int) -> str:
    """``text``, the start of a line of ``chars`` characters, cut at ``limit`` saying by how much."""
    if chars <= limit:
        return text
    return text[:limit] + f" ... [{chars - limit} characters truncated]"


def _json_size(outputs: Mapping[str, Any]) -> int:
    return len(json.dumps(outputs, ensure_ascii=False, separators=(",", ":")).encode())


class _Joining:
    """A line a runner delivers in ``partial`` pieces, being joined within the limits."""

    __slots__ = ("chars", "end", "kept", "marker", "parts", "size")

    def __init__(self, first: str) -> None:
        self.marker = first.lstrip().startswith(MARKER_START)  # may still be a marker
        self.parts: list[str] = []
        self.kept = 0  # characters in parts
        self.chars = 0  # characters in the whole line
        self.size = 0  # UTF-8 bytes of the whole line (measured only while it may be a marker)
        self.end = ""  # its last characters, trailing whitespace left out

    def add(self, text: str, limits: LogLimits) -> None:
        self.chars += len(text)
        if last := text.rstrip():
            self.end = (self.end + last)[-len(MARKER_END) :]
        if self.marker:
            self.size += len(text.encode())
        self.parts.append(text)
        self.kept += len(text)
        whole = self.marker and self.size <= limits.max_outputs_bytes
        if not whole and self.kept > limits.max_line_chars:
            head = "".join(self.parts)[: limits.max_line_chars]
            self.parts, self.kept = [head], len(head)


class Capture:
    """Collects one job's log lines with :class:`LogLimits` and parses markers on every line."""

    def __init__(self, limits: LogLimits, make: Callable[[Level, str], LogLine], shown: int = 0) -> None:
        self.limits = limits
        self.make = make
        self.head: list[LogLine] = []
        self.tail: deque[LogLine] = deque(maxlen=limits.tail_lines)
        self.omitted = 0
        self.outputs: dict[str, Any] = {}
        self.error: str | None = None
        """Why the task must fail: its outputs are over ``max_outputs_bytes`` (and were dropped)."""
        self.records = 0
        self.shown = shown
        self.displayed: set[int] = set()  # ids of lines already shown live, from the first ``shown`` records
        self._joining: dict[str, _Joining] = {}  # per stream: a line whose pieces are still arriving
        self._unmeasured = 0  # marker bytes merged since the outputs were last measured

    def add(self, stream: str, text: str, partial: bool = False) -> None:
        """One record; ``partial``: the next record of ``stream`` continues this line."""
        self.records += 1
        joining = self._joining.get(stream)
        if joining is None and not partial:
            self._line(stream, text)
            return
        if joining is None:
            joining = self._joining[stream] = _Joining(text)
        joining.add(text, self.limits)
        if not partial:
            del self._joining[stream]
            self._joined(stream, joining)

    def finish(self) -> list[LogLine]:
        """The lines to store, once every record was added; checks the outputs' total size."""
        for stream, joining in list(self._joining.items()):  # a log that ended inside a line
            del self._joining[stream]
            self._joined(stream, joining)
        if self.error is None and self.outputs:
            self._measure()
        middle = []
        if self.omitted:
            middle = [
                self.make(Level.WARN, f"... {self.omitted} log lines omitted (only head and tail kept) ...")
            ]
        return [*self.head, *middle, *self.tail]

    def _joined(self, stream: str, line: _Joining) -> None:
        if line.marker and line.size <= self.limits.max_outputs_bytes:
            self._line(stream, "".join(line.parts))
            return
        if line.marker and line.end == MARKER_END:
            self._over(f"an outputs marker line of {line.size:,} bytes")
        text = _cut("".join(line.parts), line.chars, self.limits.max_line_chars)
        self._keep(self.make(stream_level(stream), text))

    def _line(self, stream: str, text: str) -> None:
        if looks_like_marker(text):
            size = len(text.encode())
            if size > self.limits.max_outputs_bytes:
                self._over(f"an outputs marker line of {size:,} bytes")
            elif (marker := parse_line(text)) is not None:
                self._merge(marker, size)
                return
        self._keep(self.make(stream_level(stream), _cut(text, len(text), self.limits.max_line_chars)))

    def _merge(self, marker: Marker, size: int) -> None:
        if self.error is None:
            self.outputs.update(marker.outputs)
            self._unmeasured += size
            if self._unmeasured > self.limits.max_outputs_bytes:
                self._measure()
        for entry in marker.logs:
            message = str(entry.get("message"))
            message = _cut(message, len(message), self.limits.max_line_chars)
            self._keep(self.make(_level(entry.get("level")), message))

    def _measure(self) -> None:
        size = _json_size(self.outputs)
        if size > self.limits.max_outputs_bytes:
            self._over(f"the merged outputs of its markers ({size:,} bytes)")
        else:
            self._unmeasured = size

    def _over(self, what: str) -> None:
        if self.error is None:
            self.error = (
                f"{what} is over the limit of {self.limits.max_outputs_bytes:,} bytes on a task's outputs"
                f" ({MAX_OUTPUTS_SETTING}): none of its outputs were kept; write large results to a"
                " file listed in outputFiles"
            )
        self.outputs = {}

    def _keep(self, line: LogLine) -> None:
        if self.records <= self.shown:
            self.displayed.add(id(line))
        if len(self.head) < self.limits.head_lines:
            self.head.append(line)
            return
        if len(self.tail) == self.tail.maxlen:
            self.omitted += 1
        self.tail.append(line)
