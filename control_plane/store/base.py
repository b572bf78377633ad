"""The ``StateStore`` contract: what the service layer needs from any durable store.

Theory of operation
-------------------
An execution is written as one unit: its meta (state, counters, version) plus the task runs
one ``plan`` call changed (``Execution.changed``), plus the side records that must never get
out of step with it, all in one atomic write:

* ``logs``: the lines the engine emitted while planning;
* ``timers``: ``StartTimer`` actions, so a crash cannot lose a retry or a timeout;
* ``jobs``: the outbox of ``SubmitJob`` actions, written as ``SUBMITTING`` with their
  deterministic job name *before* any runner is called. After a crash the service finds
  every ``SUBMITTING`` job, asks the runner to ``find`` it, and only submits when it is absent:
  one attempt, one job. A record in a later phase (SUBMITTED with its handle, DONE) updates
  the stored job instead, so a job's end is stored in the same write as the event it caused.

Every write of an existing execution names the version it read (``expected_version``); if
another writer got there first the write fails with :class:`ConflictError` and changes
nothing, and the caller reloads and plans again. Task-run ids in ``changed`` that are no
longer in ``taskruns`` are deleted (a restart drops the ``errors``/``finally`` branches).

Implementations: ``sqlite.py`` (embedded default) and ``dynamodb/`` (the cloud). Both run
the contract suite in ``tests/store_contract.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from msgspec import Struct, field

from control_plane.engine.model import Execution, LogLine, TaskRun
from control_plane.engine.states import State
from control_plane.errors import ConflictError, NotFoundError, StoreError

__all__ = [
    "ConflictError",
    "ExecutionSummary",
    "FlowRecord",
    "JobPhase",
    "JobRecord",
    "LeaseRecord",
    "NotFoundError",
    "Page",
    "StateStore",
    "StoreError",
    "SyncDeferring",
    "TimerRecord",
    "TriggerRecord",
    "later_phase",
]

T = TypeVar("T")


class Page(Struct, Generic[T], frozen=True):
    """One page of a listing; pass ``cursor`` back to get the next one (None: no more)."""

    items: list[T]
    cursor: str | None = None


class FlowRecord(Struct, frozen=True):
    """One revision of a flow's YAML source; revisions start at 1 and only grow."""

    namespace: str
    id: str
    revision: int
    source: str
    updated: datetime
    deleted: bool = False


class ExecutionSummary(Struct, frozen=True):
    """What a listing shows, without the task runs."""

    id: str
    namespace: str
    flow_id: str
    flow_revision: int | None
    state: State
    created: datetime
    ended: datetime | None
    labels: Mapping[str, str]
    parent_id: str | None = None


class TimerRecord(Struct, frozen=True):
    """A pending ``TimerFired(key)`` for one execution; unique per (execution, key)."""

    execution_id: str
    key: str
    at: datetime


class JobPhase(StrEnum):
    r"""Where a job is in the submission protocol (not the job's own state: see JobStatus).

    ::

        SUBMITTING --submit/find--> SUBMITTED --terminal event stored--> DONE
             \                          |
              +--- CancelJob / an attempt retired before its job ended ---> CANCELLING --> DONE

    CANCELLING is durable: the tick (and the local loop) cancels the job again until its
    runner reports it terminal, so a cancel that failed once is not forgotten. A later phase
    never goes back (:func:`later_phase`): a handle arriving for a CANCELLING job is stored
    and the job stays CANCELLING; a DONE job stays DONE.
    """

    SUBMITTING = "SUBMITTING"  # written before runner.submit; the job may or may not exist
    SUBMITTED = "SUBMITTED"  # the runner accepted it; ``handle`` is known
    CANCELLING = "CANCELLING"  # to be cancelled until the runner says it is terminal
    DONE = "DONE"  # its terminal status reached the engine


def later_phase(stored: JobPhase, new: JobPhase) -> JobPhase:
    """The phase a job has after ``new`` is written over ``stored``: DONE and CANCELLING stick.

    Two writers may move one job concurrently (a submitter storing a handle, a kill writing
    CANCELLING); whatever order their writes land in, the cancel is not lost and an ended job
    does not come back.
    """
    if stored is JobPhase.DONE:
        return stored
    if stored is JobPhase.CANCELLING and new is not JobPhase.DONE:
        return stored
    return new


class JobRecord(Struct, frozen=True):
    """The outbox row of one job: enough to submit it again, find it, poll it and cancel it.

    ``spec`` and ``handle`` are JSON-compatible dicts (the runner's JobSpec and JobHandle as
    the service serialises them); ``version`` guards concurrent updates like an execution's.

    The submit claim (``claim``, ``claim_until``) serializes submitters of one job name across
    processes: only the holder of an unexpired claim calls ``runner.submit``, and a claim is
    taken with a conditional write on ``version`` (``update_job``), so two processes cannot
    both take it. The process that writes the outbox record holds it from the start (no
    extra write on the common path). ``since`` is when the first submit was tried: a job a
    transient backend error keeps SUBMITTING fails its task only after the service's
    ``submit_timeout`` counted from there.
    """

    name: str
    execution_id: str
    taskrun_id: str
    attempt: int
    runner: str
    phase: JobPhase
    spec: Mapping[str, Any] = field(default_factory=dict)
    handle: Mapping[str, Any] | None = None
    version: int = 0
    updated: datetime | None = None
    claim: str | None = None
    claim_until: datetime | None = None
    since: datetime | None = None


class LeaseRecord(Struct, frozen=True):
    """Which process drives an execution (local stores only: see ``service/ownership.py``)."""

    execution_id: str
    owner: str
    renewed: datetime


class TriggerRecord(Struct, frozen=True):
    """A trigger's durable state (last schedule date, webhook replay keys...)."""

    key: str
    data: Mapping[str, Any]
    version: int = 0


@runtime_checkable
class SyncDeferring(Protocol):
    """Optional: a store whose writes are made durable by a sync of their own (SQLite's fsync).

    ``deferred_sync()`` is a context in which this thread's writes commit at once, visible to
    every reader and safe from a crash of the process, but not yet from a power loss; the
    call it yields makes them durable (at the latest on exit). The caller lets out nothing a
    power loss would make untrue before that call. Example::

        with store.deferred_sync() as sync:
            store.save_execution(...)
            start_the_job()  # found again under its deterministic name if the write is lost
            sync()
            acknowledge()
    """

    def deferred_sync(self) -> AbstractContextManager[Callable[[], None]]: ...


class StateStore(Protocol):
    """Durable state of flows, executions, task runs, logs, timers, jobs and triggers."""

    # ---------------------------------------------------------------- flows
    def save_flow(self, namespace: str, flow_id: str, source: str, *, at: datetime) -> FlowRecord:
        """Store ``source`` as the next revision, unless it equals the latest one (then return that)."""
        ...

    def get_flow(self, namespace: str, flow_id: str, revision: int | None = None) -> FlowRecord:
        """The latest (or the given) revision; NotFoundError when absent or deleted."""
        ...

    def list_flows(
        self, namespace: str | None = None, *, limit: int = 100, cursor: str | None = None
    ) -> Page[FlowRecord]:
        """Latest revision of each live flow, ordered by (namespace, id)."""
        ...

    def flow_revisions(self, namespace: str, flow_id: str) -> list[int]: ...

    def delete_flow(self, namespace: str, flow_id: str, *, at: datetime) -> None:
        """Hide the flow; its revisions stay readable for the executions that used them."""
        ...

    # ---------------------------------------------------------------- executions
    def create_execution(
        self,
        execution: Execution,
        *,
        logs: Sequence[LogLine] = (),
        timers: Sequence[TimerRecord] = (),
        jobs: Sequence[JobRecord] = (),
    ) -> None:
        """Insert a new execution with all its task runs; ConflictError if the id exists."""
        ...

    def save_execution(
        self,
        execution: Execution,
        *,
        expected_version: int,
        logs: Sequence[LogLine] = (),
        timers: Sequence[TimerRecord] = (),
        jobs: Sequence[JobRecord] = (),
    ) -> None:
        """Write meta + changed task runs + side records atomically, if the stored version matches."""
        ...

    def get_execution(self, execution_id: str) -> Execution:
        """The whole execution, ``changed`` empty; NotFoundError when absent."""
        ...

    def get_execution_meta(self, execution_id: str) -> Execution:
        """The execution without its task runs (``taskruns`` and ``outputs_index`` empty).

        What a view of a big execution starts from, read without loading every task run;
        never save it. NotFoundError when absent.
        """
        ...

    def delete_execution(self, execution_id: str) -> None:
        """Delete an ended execution with its task runs, logs, timers and lease.

        NotFoundError when absent; ConflictError, with nothing deleted, when it has not
        ended (checked in the same write, so a running execution is never removed under its
        driver). Its job records go too where the store keeps them per execution (SQLite);
        DynamoDB's are DONE and expire by TTL. Files in the deployment storage are the
        caller's (``Service.delete``): a store does not know the storage seam.
        """
        ...

    def list_taskruns(
        self, execution_id: str, *, after: str | None = None, limit: int = 100
    ) -> list[TaskRun]:
        """At most ``limit`` task runs whose id sorts after ``after`` (UTF-8 byte order), in that order.

        Passing the last id of each list as the next ``after`` visits every task run of an
        execution that does not change meanwhile exactly once; each call reads one consistent
        state, but calls made while the execution moves may see different ones. An unknown
        execution has none.
        """
        ...

    def list_executions(
        self,
        *,
        namespace: str | None = None,
        flow_id: str | None = None,
        states: Sequence[State] | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[ExecutionSummary]:
        """Newest first."""
        ...

    # ---------------------------------------------------------------- logs
    def append_logs(self, execution_id: str, logs: Sequence[LogLine]) -> None: ...

    def read_logs(
        self,
        execution_id: str,
        *,
        taskrun_id: str | None = None,
        limit: int = 1000,
        cursor: str | None = None,
    ) -> Page[LogLine]:
        """In the order they were appended."""
        ...

    # ---------------------------------------------------------------- timers
    def due_timers(self, now: datetime, *, limit: int = 100) -> list[TimerRecord]:
        """Timers with ``at <= now``, earliest first."""
        ...

    def next_timer(self) -> datetime | None: ...

    def delete_timer(self, execution_id: str, key: str) -> None: ...

    # ---------------------------------------------------------------- jobs
    def get_job(self, name: str) -> JobRecord | None: ...

    def update_job(self, job: JobRecord, *, expected_version: int) -> JobRecord:
        """Write ``job`` with version + 1 if the stored version matches, else ConflictError."""
        ...

    def active_jobs(self, *, runner: str | None = None, limit: int = 1000) -> list[JobRecord]:
        """Jobs not DONE (SUBMITTING first), for crash recovery and reconcile polls."""
        ...

    def visit(self, now: datetime) -> None:
        """Make the jobs of executions created before ``now - delay`` visible to ``active_jobs``.

        The tick calls it before ``active_jobs``. A store may leave a young execution out of
        ``active_jobs`` for a delay no longer than the tick's ``submit_grace`` and
        ``reconcile_after`` (the tick does nothing with a job younger than that), so a task
        that ends sooner costs no index writes (DynamoDB, ADR 0005 point 5). SQLite does
        nothing here: its ``active_jobs`` reads the jobs table itself and always sees every job.
        """
        ...

    # ---------------------------------------------------------------- triggers
    def get_trigger(self, key: str) -> TriggerRecord | None: ...

    def put_trigger(self, trigger: TriggerRecord, *, expected_version: int) -> TriggerRecord:
        """Create (expected_version 0) or update; ConflictError when someone else wrote it."""
        ...

    def close(self) -> None: ...
