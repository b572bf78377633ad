"""Kestra's stdout protocol: outputs, metrics and logs sent by a script as marker lines.

A script reports values to the orchestrator by printing one line of the form::

    ::{"outputs": {"rows": 42}, "metrics": [{"name": "rows", "type": "counter", "value": 42}]}::

(the line's text, stripped, matches ``^::(\\{.*\\})::$``; the JSON object may also carry
``"logs": [{"level": "INFO", "message": "..."}]``). Every runner only has to deliver the
complete log, the last line included; the control plane runs :func:`collect` over it::

    marker = collect(record.text for record in all_log_records)
    task_outputs = marker.outputs

Parsing never raises: a line that looks like a marker but is not valid JSON, or whose JSON
is not an object, is an ordinary log line (the script's author sees it in the logs). Fields
of the wrong type are ignored one by one, so a bad ``metrics`` does not lose the ``outputs``.

Size: this module parses whatever it is given. Bounding it is the caller's job, before
parsing: the control plane measures every line :func:`looks_like_marker` accepts (joining a
line a runner delivered in ``partial`` pieces first) and fails the task when a marker, or
the outputs of all its markers together, is over its limit, rather than dropping them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from msgspec import Struct, field

__all__ = [
    "MARKER_END",
    "MARKER_PATTERN",
    "MARKER_START",
    "Marker",
    "collect",
    "looks_like_marker",
    "parse_line",
]

MARKER_PATTERN = re.compile(r"^::(\{.*\})::$", re.DOTALL)
"""Kestra's pattern, applied to the stripped text of one line."""
MARKER_START = "::{"
MARKER_END = "}::"
"""How the stripped text of a marker line begins and ends (the cheap test before the pattern)."""


def looks_like_marker(text: str) -> bool:
    """Whether ``text`` has a marker's shape (``::{`` ... ``}::``, stripped), valid JSON or not."""
    stripped = text.strip()
    return stripped.startswith(MARKER_START) and stripped.endswith(MARKER_END)


class Marker(Struct, frozen=True):
    """What one or several marker lines carried, in order.

    ``metrics`` and ``logs`` keep only JSON objects (dicts); ``outputs`` is a JSON object.
    The containers are plain ``dict``/``list`` (JSON values, easy to compare and serialise);
    treat them as read-only.
    """

    outputs: dict[str, Any] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    logs: list[dict[str, Any]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.outputs or self.metrics or self.logs)

    def merge(self, later: Marker) -> Marker:
        """This marker followed by ``later``: later output keys win, metrics and logs are appended."""
        return Marker(
            outputs={**self.outputs, **later.outputs},
            metrics=[*self.metrics, *later.metrics],
            logs=[*self.logs, *later.logs],
        )


def parse_line(text: str) -> Marker | None:
    """The marker carried by one log line, or ``None`` when the line is not a valid marker."""
    if not looks_like_marker(text):  # cheap filter for plain lines
        return None
    match = MARKER_PATTERN.fullmatch(text.strip())
    if match is None:
        return None
    try:
        payload = json.loads(match.group(1))
    except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON
        return None
    if not isinstance(payload, dict):
        return None
    outputs = payload.get("outputs")
    metrics = payload.get("metrics")
    logs = payload.get("logs")
    return Marker(
        outputs=dict(outputs) if isinstance(outputs, dict) else {},
        metrics=[m for m in metrics if isinstance(m, dict)] if isinstance(metrics, list) else [],
        logs=[entry for entry in logs if isinstance(entry, dict)] if isinstance(logs, list) else [],
    )


def collect(texts: Iterable[str]) -> Marker:
    """Merge every marker found in ``texts`` in order (see :meth:`Marker.merge`).

    Streams: it consumes ``texts`` one line at a time, so a generator over a large log is fine.
    """
    outputs: dict[str, Any] = {}
    metrics: list[dict[str, Any]] = []
    logs: list[dict[str, Any]] = []
    for text in texts:
        marker = parse_line(text)
        if marker is not None:
            outputs.update(marker.outputs)
            metrics.extend(marker.metrics)
            logs.extend(marker.logs)
    return Marker(outputs=outputs, metrics=metrics, logs=logs)
