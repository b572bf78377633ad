"""A flow's ``concurrency``: how many of its executions may run at once, and what the others do.

Kestra (``ExecutorService.checkConcurrencyLimit``, ``JdbcExecutor``): when an execution of a flow
with ``concurrency`` is created, the flow's RUNNING and PAUSED executions are counted; at or
above ``limit`` the new one is, by ``behavior``,

- ``QUEUE`` (the default): left QUEUED, logged "Flow is queued due to concurrency limit
  exceeded, N running(s)"; when a running one ends, the oldest queued one starts;
- ``CANCEL``: ended CANCELLED at once;
- ``FAIL``: ended FAILED at once with "Flow is FAILED due to concurrency limit exceeded".

Theory of operation
-------------------
A count read and then acted on is wrong as soon as two processes start executions of the same
flow (two ``squall run`` on one SQLite file, Lambdas on DynamoDB). So the count is one record
per flow, a *slot book*, written only conditionally on the version read (the store's versioned
trigger record: ``put_trigger(expected_version=...)``, an ``UPDATE ... WHERE version=?`` on
SQLite and a ``ConditionExpression`` on DynamoDB). The book holds the ids of the executions
holding a slot (``running``) and the ids waiting for one, oldest first (``queued``). Of two
writers that read the same version one wins; the other reads again and decides again.

- :meth:`Slots.admit` (on creation): a slot if one is free, else the queue or a refusal.
  Idempotent on the execution id: a retried start gets the same answer.
- :meth:`Slots.release` (when an execution ends): frees its slot (or its queue place, for an
  execution killed while queued) and hands free slots to the oldest queued executions, in the
  same write; it returns their ids, which the caller starts. Idempotent: a second release
  of the same id changes nothing and promotes no one.

Repair: a process that dies between freeing a slot and starting the execution it handed it
to, or between an execution's end and freeing its slot, leaves a QUEUED execution holding a
slot, or an ended one. The tick (and a ``squall run`` waiting for a slot) looks at the books
of the flows listed as limited (:data:`LIMITED_KEY`, written at deploy) and finishes the job:
one read per limited flow and one per slot holder, never a scan of executions.

The book is tiny (ids only); a queue of tens of thousands of executions would reach
DynamoDB's 400 KB item size, far beyond any real backlog of one flow.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import Enum

from msgspec import Struct

from control_plane.engine.actions import Action, Emit, Finish
from control_plane.engine.model import Execution, LogLine
from control_plane.engine.states import State
from control_plane.errors import ConflictError, ServiceError
from control_plane.flows.models import Concurrency
from control_plane.levels import Level
from control_plane.service.flow_index import FlowIndex
from control_plane.store.base import StateStore, TriggerRecord

__all__ = ["LIMITED_KEY", "Admission", "SlotBook", "Slots", "book_key", "held_back"]

LIMITED_KEY = "concurrency/index"
"""The store key listing every flow deployed with ``concurrency`` (what :meth:`Slots.limited` reads)."""

MAX_CONFLICTS = 100


class Admission(Enum):
    """What :meth:`Slots.admit` decided for a new execution."""

    RUN = "RUN"
    QUEUE = "QUEUE"
    CANCEL = "CANCEL"
    FAIL = "FAIL"


class SlotBook(Struct, frozen=True):
    """Who holds a slot of one flow, and who waits for one (oldest first)."""

    running: tuple[str, ...] = ()
    queued: tuple[str, ...] = ()

    def admit(self, execution_id: str, concurrency: Concurrency) -> tuple[SlotBook, Admission]:
        """The book after asking a slot for ``execution_id``, and the answer (pure)."""
        if execution_id in self.running:
            return self, Admission.RUN
        if execution_id in self.queued:
            return self, Admission.QUEUE
        if len(self.running) < concurrency.limit:
            return SlotBook((*self.running, execution_id), self.queued), Admission.RUN
        if concurrency.behavior == "QUEUE":
            return SlotBook(self.running, (*self.queued, execution_id)), Admission.QUEUE
        return self, Admission(concurrency.behavior)

    def release(self, execution_id: str, limit: int) -> tuple[SlotBook, tuple[str, ...]]:
        """The book after ``execution_id`` ended, and the queued ids now holding a slot (pure).

        ``limit`` is the flow's limit now: a raised limit lets more than one start.
        """
        running = tuple(i for i in self.running if i != execution_id)
        queued = tuple(i for i in self.queued if i != execution_id)
        free = max(0, limit - len(running))
        promoted = queued[:free]
        return SlotBook((*running, *promoted), queued[free:]), promoted


def book_key(namespace: str, flow_id: str) -> str:
    """The store key of a flow's slot book (beside the flow's trigger records)."""
    return f"concurrency/{namespace}/{flow_id}"


class Slots:
    """The slot books of every flow, kept in ``store`` with conditional writes."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.limited = FlowIndex(store, LIMITED_KEY)

    def book(self, namespace: str, flow_id: str) -> SlotBook:
        record = self.store.get_trigger(book_key(namespace, flow_id))
        return SlotBook() if record is None else _book(record)

    def admit(
        self, namespace: str, flow_id: str, execution_id: str, concurrency: Concurrency
    ) -> tuple[Admission, int]:
        """Ask a slot for a new execution: the answer and how many held one before it asked."""
        key = book_key(namespace, flow_id)
        for _ in range(MAX_CONFLICTS):
            record = self.store.get_trigger(key)
            book = SlotBook() if record is None else _book(record)
            after, admission = book.admit(execution_id, concurrency)
            held = len([i for i in book.running if i != execution_id])
            if after == book:
                return admission, held
            if self._put(key, after, record):
                return admission, held
        raise ServiceError(f"slot book {key}: {MAX_CONFLICTS} conflicting writers in a row")

    def release(self, namespace: str, flow_id: str, execution_id: str, limit: int) -> Sequence[str]:
        """Free what ``execution_id`` held; the ids of the queued executions that now hold a slot."""
        key = book_key(namespace, flow_id)
        for _ in range(MAX_CONFLICTS):
            record = self.store.get_trigger(key)
            if record is None:
                return ()
            book = _book(record)
            after, promoted = book.release(execution_id, limit)
            if after == book:
                return ()
            if self._put(key, after, record):
                return promoted
        raise ServiceError(f"slot book {key}: {MAX_CONFLICTS} conflicting writers in a row")

    def holds(self, namespace: str, flow_id: str, execution_id: str) -> bool:
        """Whether ``execution_id`` holds a slot (a queued one was handed one)."""
        return execution_id in self.book(namespace, flow_id).running

    def _put(self, key: str, book: SlotBook, record: TriggerRecord | None) -> bool:
        data = {"running": list(book.running), "queued": list(book.queued)}
        try:
            self.store.put_trigger(
                TriggerRecord(key, data), expected_version=0 if record is None else record.version
            )
        except ConflictError:
            return False  # another writer got there first: read again, decide again
        return True


def _book(record: TriggerRecord) -> SlotBook:
    return SlotBook(tuple(record.data.get("running", ())), tuple(record.data.get("queued", ())))


def held_back(
    created: Execution, admission: Admission, held: int, now: datetime
) -> tuple[Execution, list[Action]]:
    """A new execution its flow's ``concurrency`` does not let run now, as Kestra leaves it
    (``ExecutorService.checkConcurrencyLimit``): QUEUED, CANCELLED, or FAILED with its message."""
    if admission is Admission.QUEUE:
        line = LogLine(
            now, Level.INFO, f"Flow is queued due to concurrency limit exceeded, {held} running(s)"
        )
        return created.evolve(state=State.QUEUED, version=1), [Emit((line,))]
    if admission is Admission.CANCEL:
        return created.evolve(state=State.CANCELLED, ended=now, version=1), [Finish(State.CANCELLED)]
    line = LogLine(now, Level.ERROR, "Flow is FAILED due to concurrency limit exceeded")
    failed = created.evolve(state=State.FAILED, ended=now, version=1, error_logs=(line,))
    return failed, [Emit((line,)), Finish(State.FAILED)]
