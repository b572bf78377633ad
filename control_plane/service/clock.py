"""What the runtime injects into the service: the time, and fresh execution ids.

``plan`` never reads a clock or draws an id (STYLE point 2): the service asks its
:class:`Clock` for ``now`` and for waiting, and its id factory for new executions. With
:class:`VirtualClock` a retry with a 15-minute interval or a one-hour Sleep completes at once
and deterministically (tests, ``squall conformance``, ``squall run --virtual-time``); with
:class:`SystemClock` the service really waits::

    service = Service(store, runners=..., storage=..., clock=VirtualClock(T0))
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Protocol

__all__ = ["Clock", "SystemClock", "VirtualClock", "new_execution_id"]


class Clock(Protocol):
    def now(self) -> datetime: ...

    def sleep_until(self, moment: datetime) -> None: ...


def new_execution_id() -> str:
    """A random 22-character id, the length of Kestra's execution ids."""
    return uuid.uuid4().hex[:22]


class VirtualClock:
    """Time that only moves when someone waits for a moment: instant and reproducible."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime.now(UTC)

    def now(self) -> datetime:
        return self._now

    def sleep_until(self, moment: datetime) -> None:
        self._now = max(self._now, moment)


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep_until(self, moment: datetime) -> None:
        delay = (moment - self.now()).total_seconds()
        if delay > 0:
            time.sleep(delay)
