"""What moves between the job supervisor and the execution driver: events and riding records.

The supervisor (:mod:`.supervisor`) never plans or saves an execution: what it learns about a
job becomes an event queued here, with the records only that event's save may write (a
job's DONE mark and logs: a :class:`Ride`), or a record that rides along with the next write
of its execution (a just-submitted job's handle, a warning). The driver (:mod:`.driver`)
drains the queue in order, one event at a time, never recursively.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from msgspec import Struct, field

from control_plane.engine.events import Event
from control_plane.engine.model import LogLine
from control_plane.store.base import JobRecord

__all__ = ["News", "Ride"]


class Ride(Struct):
    """Records that ride along with a write of their execution.

    Per execution (``News.riding``): job handles and warnings, written with any save of it or
    by ``flush``; a name in ``lazy`` rides only with a save (its runner's events bring the
    handle anyway: ``JobSupervisor.announces``). Per event (queued with it): what only that
    event's save justifies, a job's DONE mark and logs; ``then`` runs once the event is
    stored or found already applied (cleanup, timer deletion), and is dropped with the rest
    when it is neither.
    """

    logs: list[LogLine] = field(default_factory=list)
    jobs: dict[str, JobRecord] = field(default_factory=dict)
    then: list[Callable[[], None]] = field(default_factory=list)
    lazy: set[str] = field(default_factory=set)

    def empty(self) -> bool:
        return not self.logs and not self.jobs

    def merge(self, later: Ride) -> None:
        """Add what was queued after this ride (later records win)."""
        self.logs += later.logs
        self.jobs.update(later.jobs)
        self.lazy = (self.lazy - set(later.jobs)) | later.lazy


class News:
    """The driver's inbox: events to apply in order, and records riding with each execution."""

    def __init__(self) -> None:
        self.queue: deque[tuple[str, Event, Ride | None]] = deque()
        self.riding: dict[str, Ride] = {}

    def event(self, execution_id: str, event: Event, ride: Ride | None = None) -> None:
        """Queue ``event`` for ``execution_id``; ``ride`` is written only with its save."""
        self.queue.append((execution_id, event, ride))

    def ride(self, execution_id: str) -> Ride:
        """The records riding with the next write of ``execution_id`` (to add to)."""
        return self.riding.setdefault(execution_id, Ride())
