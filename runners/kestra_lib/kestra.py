"""Squall's implementation of the ``kestra`` Python library's script API.

The API and the line format are those of Kestra's own library (PyPI ``kestra``, source at
github.com/kestra-io/libs, python/src/kestra.py, Apache-2.0, credit to Kestra Technologies):
each call prints one line ``::{json}::`` on stdout, which the orchestrator reads from the
task's log. Squall's control plane reads the same lines (runners/markers.py): ``outputs`` end
up under ``outputs.<task>.vars``, ``metrics`` as the task's metrics, ``logs`` as log lines of
their level. Only the standard library is used: this file is copied into the user's job.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

__all__ = ["Kestra"]


class Kestra:
    """Outputs, metrics and logs for the orchestrator, as ``Kestra.outputs({"rows": 42})``."""

    _logger: logging.Logger | None = None

    @staticmethod
    def format(map_: Mapping[str, Any]) -> str:
        """One marker line: ``::`` + compact JSON + ``::`` (no newline inside: JSON escapes them)."""
        return "::" + json.dumps(map_, default=str) + "::"

    @staticmethod
    def _send(map_: Mapping[str, Any]) -> None:
        print(Kestra.format(map_), flush=True)

    @staticmethod
    def _metrics(name: str, type_: str, value: float, tags: Mapping[str, Any] | None = None) -> None:
        Kestra._send({"metrics": [{"name": name, "type": type_, "value": value, "tags": dict(tags or {})}]})

    @staticmethod
    def outputs(map_: Mapping[str, Any]) -> None:
        """Send outputs; Kestra keeps them under ``outputs.<task id>.vars``."""
        Kestra._send({"outputs": dict(map_)})

    @staticmethod
    def counter(name: str, value: float, tags: Mapping[str, Any] | None = None) -> None:
        Kestra._metrics(name, "counter", value, tags)

    @staticmethod
    def timer(name: str, duration: float | Callable[[], Any], tags: Mapping[str, Any] | None = None) -> None:
        """A timer in seconds; given a callable, times its call (as Kestra's library does)."""
        if callable(duration):
            start = time.perf_counter()
            duration()
            duration = time.perf_counter() - start
        Kestra._metrics(name, "timer", duration, tags)

    @staticmethod
    def logger() -> logging.Logger:
        """A logger whose records are sent as ``logs`` markers with their level."""
        if Kestra._logger is not None:
            return Kestra._logger
        logger = logging.getLogger("Kestra")
        logger.setLevel(logging.DEBUG)
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(_LogFormatter())
        logger.addHandler(handler)
        logger.propagate = False
        Kestra._logger = logger
        return logger


class _LogFormatter(logging.Formatter):
    """Formats a record as Kestra's library does: one ``logs`` marker with level and message."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        level = {"WARNING": "WARN", "CRITICAL": "ERROR"}.get(record.levelname, record.levelname)
        stamp = datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat()  # noqa: UP017 (old Pythons)
        return Kestra.format({"logs": [{"level": level, "message": message, "timestamp": stamp}]})
