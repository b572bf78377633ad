"""The execution as plain, frozen data: what ``plan`` reads and returns.

Task runs live in a persistent hash map (``immutables.Map``): ``plan`` returns a new
execution that shares every untouched task run with the old one, so advancing an execution
with 100,000 task runs costs the same as advancing one with ten. ``changed`` names the task
runs one ``plan`` call wrote, so a store can persist only those (DynamoDB keeps each task
run as its own item).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

import immutables
from msgspec import Struct, field
from msgspec.structs import replace

from control_plane.engine.events import JobFailure
from control_plane.engine.outputs import OutputsIndex, nested_set, outputs_index
from control_plane.engine.states import State
from control_plane.levels import Level

__all__ = [
    "Attempt",
    "Batches",
    "Execution",
    "LogLine",
    "OutputsIndex",
    "Phase",
    "Progress",
    "TaskRun",
    "iso",
    "nested_set",
    "outputs_index",
]


def iso(moment: datetime | None) -> str | None:
    """Kestra renders instants as UTC ISO-8601 with milliseconds and a Z."""
    if moment is None:
        return None
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class Phase(StrEnum):
    """Which of a flowable's lists a child belongs to."""

    TASKS = "tasks"
    ERRORS = "errors"
    FINALLY = "finally"
    AFTER_EXECUTION = "afterExecution"  # the flow's own list only, run once its final state is known


# ``omit_defaults``: stores encode these with msgspec (store/codec.py's taskrun_dumps) and, as
# codec's *_to_json functions do, leave default values out of the stored document.
class Attempt(Struct, frozen=True, gc=False, omit_defaults=True):
    state: State
    started: datetime
    ended: datetime | None = None
    job: str | None = None
    cost: float | None = None  # USD estimated by the runner from its price table
    timed_out: bool = False  # the task's timeout fired: the job's end (cancelled) is a TIMEOUT
    # Where the job ran and why it failed, from its terminal status: what a person needs to
    # find it in the cloud's console (see runners.console) and to tell whose fault it was.
    runner: str | None = None
    job_id: str | None = None
    job_url: str | None = None
    failure: JobFailure | None = None


class Progress(Struct, frozen=True, gc=False, omit_defaults=True):
    """A flowable's position, kept as counters so that advancing it is O(1) in its size.

    ``lanes`` are independent sequences of children: one for Sequential, one per task for
    Parallel and Dag, one per value for ForEach. Lanes start in order, at most ``limit`` at a
    time (0: no limit); a lane is done when its last task ends or one of them fails.
    """

    phase: Phase = Phase.TASKS
    total: int = 0
    started: int = 0
    done: int = 0
    limit: int = 0
    failed: bool = False
    killed: bool = False
    worst: State = State.SUCCESS
    values: tuple[str, ...] = ()
    branch: str | None = None
    dag_started: frozenset[int] = frozenset()
    dag_done: frozenset[int] = frozenset()
    iteration: int = 0
    waiting: bool = False
    first_failure: str | None = None
    main: tuple[int, int, int] | None = None  # (total, started, done) of TASKS while in errors/finally
    final: State | None = None  # the execution's final state, kept while `afterExecution` runs
    deferred: int | None = None  # lanes left to a continuation: its pending timer key's number (ADR 0015)

    @property
    def running(self) -> int:
        return self.started - self.done


class Batches(Struct, frozen=True, gc=False, omit_defaults=True):
    """A ForEachItem's batches, kept on its ``_split`` and ``_items`` task runs.

    Batch ``n`` (1-based) is the file ``{prefix}{n}{extension}``; its subflow's outputs go to
    ``{prefix}outputs/{n}.ion``. The ``_items`` task run counts the subflows it ``started``
    and remembers each one whose end it counted, so a result heard twice is counted once:
    every batch up to ``low`` has ended, and bit ``n - low - 1`` of ``ended`` says whether
    batch ``n`` above it has. Ends come roughly in start order, so ``low`` follows them and
    the bitmap stays a few bytes wide instead of ``total / 8`` (12.5 KB for 100,000 batches,
    written with every end into the task run's item).
    """

    total: int
    prefix: str
    extension: str
    started: int = 0
    done: int = 0
    low: int = 0
    ended: bytes = b""

    def batch_uri(self, n: int) -> str:
        return f"{self.prefix}{n}{self.extension}"

    def outputs_uri(self, n: int) -> str:
        return f"{self.prefix}outputs/{n}.ion"

    def has_ended(self, n: int) -> bool:
        index = n - self.low - 1
        if index < 0:
            return True
        return index // 8 < len(self.ended) and bool(self.ended[index // 8] & (1 << (index % 8)))

    def mark_ended(self, n: int) -> Batches:
        index = n - self.low - 1
        bits = bytearray(self.ended.ljust(index // 8 + 1, b"\0"))
        bits[index // 8] |= 1 << (index % 8)
        full = 0
        while full < len(bits) and bits[full] == 0xFF:  # eight more batches below the watermark
            full += 1
        return replace(self, ended=bytes(bits[full:]), low=self.low + 8 * full, done=self.done + 1)


class TaskRun(Struct, frozen=True, gc=False):
    id: str
    seq: int
    task_id: str
    task_type: str
    parent_id: str | None
    phase: Phase
    lane: int
    position: int
    values: tuple[str, ...]
    iteration: int
    state: State
    created: datetime
    ended: datetime | None = None
    attempts: tuple[Attempt, ...] = ()
    outputs: Mapping[str, Any] | None = None
    error: str | None = None
    progress: Progress | None = None
    infra_attempts: int = 0
    batches: Batches | None = None

    @property
    def value(self) -> str | None:
        """Kestra's ``taskrun.value``: the innermost loop value, inherited by descendants."""
        return self.values[-1] if self.values else None

    @property
    def attempt(self) -> int:
        """1-based number of the current attempt."""
        return len(self.attempts)

    def evolve(self, **changes: Any) -> TaskRun:
        return replace(self, **changes)


class LogLine(Struct, frozen=True, gc=False):
    at: datetime
    level: Level
    message: str
    task_id: str | None = None
    taskrun_id: str | None = None
    attempt: int = 1

    def as_context(self) -> dict[str, Any]:
        """What ``errorLogs()`` gives a template, with Kestra's field names."""
        return {
            "taskId": self.task_id,
            "taskRunId": self.taskrun_id,
            "level": str(self.level),
            "message": self.message,
            "timestamp": iso(self.at),
        }


class Execution(Struct, frozen=True, gc=False):
    id: str
    namespace: str
    flow_id: str
    flow_revision: int | None
    state: State
    created: datetime
    inputs: Mapping[str, Any] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    trigger: Mapping[str, Any] | None = None
    version: int = 0
    started: datetime | None = None
    ended: datetime | None = None
    taskruns: immutables.Map[str, TaskRun] = field(default_factory=immutables.Map)
    outputs_index: Mapping[str, Any] = field(default_factory=OutputsIndex)
    """``outputs.<task>`` (control_plane.engine.outputs): an :class:`OutputsIndex` built when
    read; an ``immutables.Map`` given here is taken as already built."""
    progress: Progress = field(default_factory=Progress)
    outputs: Mapping[str, Any] | None = None
    error_logs: tuple[LogLine, ...] = ()
    next_seq: int = 0
    original_id: str | None = None
    parent: Mapping[str, Any] | None = None
    secret_inputs: tuple[str, ...] = ()
    """Ids of the SECRET inputs: every display masks them (the API reads without the flow)."""
    retry_origin: datetime | None = None
    """Creation of the first execution of a CREATE_NEW_EXECUTION retry chain (Kestra's
    ``metadata.originalCreatedDate``): a retry's ``maxDuration`` counts from it."""
    variables: Mapping[str, Any] | None = None
    """``{{ vars }}`` once a SetVariables task changed it (the flow's ``variables`` until then)."""
    changed: frozenset[str] = frozenset()

    def evolve(self, **changes: Any) -> Execution:
        return replace(self, **changes)

    def ordered_taskruns(self) -> list[TaskRun]:
        """Task runs in creation order, as Kestra lists them."""
        return sorted(self.taskruns.values(), key=lambda tr: tr.seq)
