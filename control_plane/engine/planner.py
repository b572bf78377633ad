"""``plan(flow, execution, event) -> (execution', actions)``: the whole engine, with no I/O.

Theory of operation
-------------------
Every flowable task run (and the execution itself, the root) owns *lanes*: independent
sequences of child tasks. Sequential has one lane; Parallel and Dag one per task; ForEach one
per value; Switch and If one, over the chosen branch. A flowable starts lanes in order, at
most ``limit`` at a time, and keeps only counters (:class:`Progress`), so its cost per event
does not grow with its size.

Applying an event ends (or advances) one task run; the transaction then works through a
queue: a child that ends either starts the next task of its lane, or closes its lane, which
lets its parent start more lanes or, when none are left, move to its ``errors`` branch (after
a failure), then its ``finally`` branch, then end in a state folded from its children's
(:mod:`control_plane.engine.states`). A parent that ends is itself a child that ended, and so
on up to the root, whose end is the execution's.

Bounded fan-out (ADR 0015): with a ``lane_budget``, one ``plan`` call starts at most that many
lanes. A flowable that could start more is marked ``deferred`` and asks for a continuation,
a timer ``fanout:<owner>:<started>`` due at once; when it fires (or any later event wakes the
owner) the next lanes start from the counters, so each call is O(budget), never O(lanes).

Inline tasks (:mod:`control_plane.engine.inline`) complete inside the same transaction;
jobs, timers and subflows become actions, and their completion arrives later as events.
Ids are derived from the execution id and the task run's position, and time comes from the
event, so replaying the same events yields the same execution and actions.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol

import immutables
from msgspec.structs import replace

from control_plane.engine import foreach_item, working_directory
from control_plane.engine.actions import (
    WORKSPACE_KEY,
    Action,
    CancelJob,
    Emit,
    Finish,
    RunInline,
    StartSubflow,
    StartTimer,
    SubmitJob,
)
from control_plane.engine.compiled import CompiledFlow, LaneMode, compile_flow
from control_plane.engine.events import (
    INFRA_FAILURES,
    NEVER_RETRIED,
    Event,
    JobFailure,
    JobOutcome,
    JobStatusChanged,
    Kill,
    Recover,
    Restart,
    Resume,
    Started,
    TaskResult,
    TimerFired,
)
from control_plane.engine.ids import job_name, short_hash, taskrun_id
from control_plane.engine.inline import run_inline
from control_plane.engine.labels import child_labels, context_labels, with_correlation
from control_plane.engine.model import (
    Attempt,
    Execution,
    LogLine,
    Phase,
    Progress,
    TaskRun,
    iso,
)
from control_plane.engine.outputs import OutputsLog, outputs_index
from control_plane.engine.states import State, worst
from control_plane.errors import EngineError, ExpressionError, SquallError
from control_plane.expressions import is_truthy, render, render_value, to_display
from control_plane.flows.inputs import mask_secrets, mask_value, resolve_inputs, secret_paths, secret_values
from control_plane.flows.models import (
    AllowFailure,
    Flow,
    FlowableTask,
    ForEachItemExecutable,
    ForEachItemMergeOutputs,
    ForEachItemSplit,
    If,
    InputType,
    Level,
    Pause,
    RetryBehavior,
    Subflow,
    Switch,
    Task,
    TaskKind,
    WaitFor,
)

__all__ = [
    "MAX_INFRA_ATTEMPTS",
    "KvLookup",
    "new_execution",
    "plan",
    "replay",
]

MAX_INFRA_ATTEMPTS = 3
EFFECT_ANSWER_WITHIN = timedelta(minutes=15)
"""A task with I/O and no ``timeout`` that has not answered by then never will: its process
died (no Lambda runs longer), so the attempt fails and the task's ``retry`` decides."""
EFFECT_LOST = (
    "No result: the process running this task stopped before storing it (its effect may have happened)"
)
_NOT_PROPERTIES = {
    "id", "type", "description", "retry", "timeout", "disabled", "allowFailure", "allowWarning",
    "runIf", "logLevel", "logToFile", "workerGroup",
}  # fmt: skip
MAX_ERROR_LOGS = 100
FANOUT = "fanout"
"""Kind of the timer that continues a flowable whose lanes passed a plan's ``lane_budget``."""
_TEMPLATE_CONTEXT = ("flow", "execution", "inputs", "outputs", "vars", "labels", "taskrun", "task", "trigger")


class SecretLookup(Protocol):
    """Where ``secret('NAME')`` reads, given by the shell like the clock (``event.at``).

    ``get`` returns the value or raises a :class:`SquallError` whose message says where the name
    was looked for; ``revealed`` lists the values already handed out, which are masked too.
    """

    def get(self, name: str) -> str: ...

    def revealed(self) -> Iterable[str]: ...


class KvLookup(Protocol):
    """Where ``kv('key', namespace)`` reads: the deployment's KV store, given by the shell.

    The engine does no I/O itself; like secrets, the shell hands it a reader. ``get`` returns
    the value, raises ``KeyError`` when the key is absent, or a :class:`SquallError` saying why
    it could not be read (an expired pair, a store that is unavailable).
    """

    def get(self, namespace: str, key: str) -> Any: ...


def masked_values(compiled: CompiledFlow, execution: Execution, lookup: SecretLookup | None) -> list[str]:
    """What must never show in clear: SECRET inputs, the secrets the flow names, every value revealed.

    The engine masks with it what it records; the service, the job logs it stores.
    """
    flow = compiled.flow
    found = secret_values(flow, execution.inputs) if flow.inputs else []
    if lookup is not None:
        for name in compiled.secret_names():
            try:
                found.append(lookup.get(name))
            except SquallError:
                continue  # the task that reads it fails with the reason; nothing to mask
        found.extend(lookup.revealed())
    return [value for value in dict.fromkeys(found) if value]


def new_execution(
    flow: Flow,
    execution_id: str,
    *,
    at: datetime,
    inputs: Mapping[str, Any] | None = None,
    labels: Mapping[str, str] | None = None,
    trigger: Mapping[str, Any] | None = None,
    original_id: str | None = None,
    parent: Mapping[str, Any] | None = None,
    retry_origin: datetime | None = None,
) -> Execution:
    """A CREATED execution; ``plan(flow, it, Started(at))`` sets it going.

    ``retry_origin``: for an execution a CREATE_NEW_EXECUTION retry started, the creation of
    the chain's first execution.
    """
    return Execution(
        id=execution_id,
        namespace=flow.namespace,
        flow_id=flow.id,
        flow_revision=flow.revision,
        state=State.CREATED,
        created=at,
        inputs=dict(inputs or {}),
        labels=with_correlation({**flow.labels, **(labels or {})}, execution_id),
        trigger=trigger,
        original_id=original_id,
        parent=parent,
        secret_inputs=secret_paths(flow),
        retry_origin=retry_origin,
    )


def plan(
    flow: Flow,
    execution: Execution,
    event: Event,
    *,
    secrets: SecretLookup | None = None,
    kv: KvLookup | None = None,
    lane_budget: int | None = None,
) -> tuple[Execution, list[Action]]:
    """Apply one event; return the next execution (version + 1 when anything changed) and actions.

    ``secrets`` serves ``secret()`` in this event's expressions. Every value it hands out, like
    every SECRET input, is masked (``********``) in what the execution keeps: log lines, errors,
    outputs, labels and flow outputs. ``kv`` serves ``kv()``. ``lane_budget`` bounds the lanes
    this call starts (None: no bound); what it leaves is asked for by a ``fanout:`` timer.
    """
    if lane_budget is not None and lane_budget < 1:
        raise ValueError(f"lane_budget must be at least 1, got {lane_budget}")
    tx = _Transaction(compile_flow(flow), execution, event.at, secrets, kv, lane_budget)
    tx.apply(event)
    return tx.commit()


def replay(
    flow: Flow,
    source: Execution,
    execution_id: str,
    *,
    at: datetime,
    taskrun_id: str,
    labels: Mapping[str, str] | None = None,
    secrets: SecretLookup | None = None,
    kv: KvLookup | None = None,
    lane_budget: int | None = None,
) -> tuple[Execution, list[Action]]:
    """Kestra's replay from a task run: a new execution that keeps what ran before it.

    The top-level task containing ``taskrun_id`` runs again from its start, with everything
    after it; every top-level task before it keeps its task runs and outputs (under new ids
    derived from the new execution, as Kestra maps them). Replaying from inside a loop or a
    parallel branch therefore re-runs the whole top-level task that holds it: the counters
    that track a flowable's lanes are only rebuilt at the top level. The engine raises
    :class:`EngineError` for a task of the ``errors`` or ``finally`` branch.
    """
    target = source.taskruns.get(taskrun_id)
    if target is None:
        raise EngineError(f"execution {source.id} has no task run {taskrun_id}")
    top = target
    while top.parent_id is not None:
        top = source.taskruns[top.parent_id]
    if top.phase is not Phase.TASKS:
        raise EngineError(f"task run {taskrun_id} is in the {top.phase} branch: replay starts from a task")
    compiled = compile_flow(flow)
    if top.task_id not in compiled.tasks:
        raise EngineError(f"task {top.task_id} is not in revision {flow.revision} of {flow.uid}")
    kept = [tr for tr in source.ordered_taskruns() if tr.seq < top.seq]
    ids: dict[str, str] = {}
    taskruns: dict[str, TaskRun] = {}
    folded = State.SUCCESS
    for tr in kept:
        parent = None if tr.parent_id is None else ids[tr.parent_id]
        new_id = _derive_taskrun_id(execution_id, parent, tr.phase, tr.lane, tr.task_id, tr.iteration)
        ids[tr.id] = new_id
        taskruns[new_id] = tr.evolve(id=new_id, parent_id=parent)
        if tr.parent_id is None:
            folded = worst(folded, tr.state)
    index = outputs_index(list(taskruns.values()))
    base = new_execution(
        flow,
        execution_id,
        at=at,
        inputs=source.inputs,
        labels={k: v for k, v in source.labels.items() if not k.startswith("system.")} | dict(labels or {}),
        trigger=source.trigger,
        original_id=source.id,
    ).evolve(
        state=State.RUNNING,
        started=at,
        taskruns=immutables.Map(taskruns),
        outputs_index=index,
        next_seq=top.seq,
        progress=Progress(total=1, started=1, done=0, worst=folded),
    )
    tx = _Transaction(compiled, base, at, secrets, kv, lane_budget)
    tx.changed.update(taskruns)
    tx.start_task(None, Phase.TASKS, 0, top.position, compiled.tasks[top.task_id])
    tx.drain()
    return tx.commit()


_derive_taskrun_id = taskrun_id  # ``replay`` has a parameter of that name


class _Revealing(Mapping[str, str]):
    """``@secrets`` for ``secret()``: asks the shell's lookup, and has each value it returns masked."""

    __slots__ = ("_lookup", "_reveal")

    def __init__(self, lookup: SecretLookup, reveal: Callable[[str], None]) -> None:
        self._lookup = lookup
        self._reveal = reveal

    def __getitem__(self, name: str) -> str:
        value = self._lookup.get(name)
        self._reveal(value)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(())  # names are looked up one at a time, never listed

    def __len__(self) -> int:
        return 0


class _Masks:
    """The values one ``plan`` call masks: SECRET inputs, then each ``secret()`` value handed out.

    An object of its own so that ``@secrets`` reports to it and not to the transaction: a
    bound method of the transaction inside its own context made a reference cycle, which kept
    the transaction, and the whole execution it had built, alive until the collector's next
    full pass (a second 100,000-task-run execution in memory while the first was read back).
    """

    __slots__ = ("_compiled", "_execution", "_lookup", "_values")

    def __init__(self, compiled: CompiledFlow, execution: Execution, lookup: SecretLookup | None) -> None:
        self._compiled = compiled
        self._execution = execution
        self._lookup = lookup
        self._values: list[str] | None = None

    def values(self) -> list[str]:
        if self._values is None:
            self._values = masked_values(self._compiled, self._execution, self._lookup)
        return self._values

    def reveal(self, value: str) -> None:
        if value and value not in self.values():
            self.values().append(value)


class _Transaction:
    """One ``plan`` call: a working copy of the execution and the actions it produces."""

    def __init__(
        self,
        compiled: CompiledFlow,
        execution: Execution,
        now: datetime,
        secrets: SecretLookup | None = None,
        kv: KvLookup | None = None,
        lane_budget: int | None = None,
    ) -> None:
        self.c = compiled
        self.lane_budget = lane_budget  # lanes this call may still start (None: no bound)
        self._kv = kv
        self.flow = compiled.flow
        self.ex = execution
        self.now = now
        self.trs = execution.taskruns.mutate()
        self.outputs = OutputsLog(execution.outputs_index)  # written in order, built when read
        self.root = execution.progress
        self.state = execution.state
        self.labels: Mapping[str, str] = execution.labels
        self.seq = execution.next_seq
        self.error_logs = list(execution.error_logs)
        self.logs: list[LogLine] = []
        self.actions: list[Action] = []
        self.changed: set[str] = set()
        self.queue: deque[tuple[bool, str | None]] = deque()  # (ended?, task run id)
        self.finished: Finish | None = None
        self.started = execution.started
        self.ended = execution.ended
        self.flow_outputs = execution.outputs
        self.variables = execution.variables
        self.retry_at: datetime | None = None  # when a CREATE_NEW_EXECUTION retry is due
        self._masks = _Masks(compiled, execution, secrets)
        self._lookup = secrets
        self._vault: _Revealing | None = None
        self._static: dict[str, Any] | None = None
        self._execution_ctx: dict[State, dict[str, Any]] = {}
        self._labels_ctx: tuple[Mapping[str, str], dict[str, Any]] | None = None
        self._now_iso = iso(now)  # what every task run created in this call starts at
        # A one-job WorkingDirectory whose job ended in this call: its later children end as
        # they start (same transaction), from their part of the job (ADR 0016).
        self.one_job_ends: dict[str, working_directory.JobEnd] = {}
        self.one_job_refusals: dict[str, str | None] = {}  # WorkingDirectory task id -> refusal

    # ------------------------------------------------------------------ plumbing

    def commit(self) -> tuple[Execution, list[Action]]:
        if self.logs:
            self.actions.insert(0, Emit(tuple(self.logs)))
        if self.finished is not None:
            self.actions.append(self.finished)
        dirty = bool(self.changed) or self.state is not self.ex.state or self.root is not self.ex.progress
        new = replace(
            self.ex,
            state=self.state,
            taskruns=self.trs.finish(),
            outputs_index=self.outputs.snapshot(),
            progress=self.root,
            labels=self.labels,
            next_seq=self.seq,
            error_logs=tuple(self.error_logs),
            started=self.started,
            ended=self.ended,
            outputs=self.flow_outputs,
            variables=self.variables,
            version=self.ex.version + (1 if dirty or self.actions else 0),
            changed=frozenset(self.changed),
        )
        return new, self.actions

    def get(self, tr_id: str) -> TaskRun:
        tr = self.trs.get(tr_id)
        if tr is None:
            raise EngineError(f"execution {self.ex.id} has no task run {tr_id}")
        return tr

    def put(self, tr: TaskRun) -> TaskRun:
        self.trs[tr.id] = tr
        self.changed.add(tr.id)
        return tr

    def progress(self, owner: TaskRun | None) -> Progress:
        if owner is None:
            return self.root
        assert owner.progress is not None
        return owner.progress

    def set_progress(self, owner_id: str | None, progress: Progress) -> None:
        if owner_id is None:
            self.root = progress
        else:
            self.put(replace(self.get(owner_id), progress=progress))

    def wake(self, owner_id: str | None) -> None:
        """Ask the owner to start what it can, or to end."""
        self.queue.append((False, owner_id))

    def notify_ended(self, tr: TaskRun) -> None:
        """Tell the task run's parent that it ended (exactly once per end)."""
        self.queue.append((True, tr.id))

    def owner(self, owner_id: str | None) -> TaskRun | None:
        """The owner's current task run (never a stale copy), or None for the root."""
        return None if owner_id is None else self.get(owner_id)

    def log(self, tr: TaskRun | None, level: Level, message: str, task: Task | None) -> None:
        if task is not None and task.logLevel is not None and level.rank < task.logLevel.rank:
            return
        line = LogLine(
            at=self.now,
            level=level,
            message=self.mask(message),
            task_id=tr.task_id if tr else None,
            taskrun_id=tr.id if tr else None,
            attempt=max(tr.attempt, 1) if tr else 1,
        )
        self.logs.append(line)
        if level is Level.ERROR and len(self.error_logs) < MAX_ERROR_LOGS:
            self.error_logs.append(line)

    def secrets(self) -> list[str]:
        return self._masks.values()

    def mask(self, text: str) -> str:
        """SECRET inputs and ``secret()`` values never reach a log line in clear."""
        secrets = self.secrets()
        return mask_secrets(text, secrets) if secrets else text

    def mask_data(self, value: Any) -> Any:
        """``value`` with every string in it masked (outputs, labels): nothing stored shows a secret."""
        secrets = self.secrets()
        return mask_value(value, secrets) if secrets and value is not None else value

    def reveal(self, value: str) -> None:
        self._masks.reveal(value)

    # ------------------------------------------------------------------ context

    def context(self, tr: TaskRun | None, task: Task | None) -> dict[str, Any]:
        if self._static is None:
            flow = self.flow
            self._static = {
                "flow": {"id": flow.id, "namespace": flow.namespace, "revision": flow.revision},
                "execution": {
                    "id": self.ex.id,
                    "startDate": iso(self.ex.started or self.ex.created),
                    "originalId": self.ex.original_id or self.ex.id,
                },
            }
        ctx = dict(self._static)
        ctx["vars"] = self.variables if self.variables is not None else self.flow.variables or {}
        # Kestra's RunVariables puts the execution's current state in `execution.state` when a
        # task's context is built: RUNNING in `errors` and `finally` too, since an execution only
        # takes its final state once they have ended.
        # `afterExecution` tasks run once the final state is known, and see it.
        state = self.root.final if self.root.final is not None else self.state
        execution = self._execution_ctx.get(state)
        if execution is None:  # one per state seen in this call, shared as the flow's is
            execution = self._execution_ctx[state] = {**self._static["execution"], "state": str(state)}
        ctx["execution"] = execution
        ctx["inputs"] = self.ex.inputs
        ctx["outputs"] = self.outputs.snapshot()  # what is written later is not in it
        if self._labels_ctx is None or self._labels_ctx[0] is not self.labels:  # once per labels value
            self._labels_ctx = (self.labels, context_labels(self.labels))
        ctx["labels"] = self._labels_ctx[1]
        ctx["@now"] = self.now
        if self._lookup is not None:
            if self._vault is None:
                self._vault = _Revealing(self._lookup, self._masks.reveal)  # not self.reveal: a cycle
            ctx["@secrets"] = self._vault
        if self._kv is not None:
            ctx["@kv"] = self._kv
        if self.ex.trigger is not None:
            ctx["trigger"] = self.ex.trigger
        if self.error_logs:
            ctx["@error_logs"] = [line.as_context() for line in self.error_logs]
        if task is not None:
            ctx["task"] = {"id": task.id, "type": task.type}
        if tr is not None:
            taskrun: dict[str, Any] = {
                "id": tr.id,
                "startDate": self._now_iso if tr.created is self.now else iso(tr.created),
                "attemptsCount": max(len(tr.attempts) - 1, 0),
                "parentId": tr.parent_id,
                "iteration": tr.iteration,
            }
            if tr.values:
                taskrun["value"] = tr.values[-1]
            ctx["taskrun"] = taskrun
            ctx["@loop_values"] = tr.values
            if tr.parent_id is not None:
                parents = self._parents(tr)
                ctx["parents"] = parents
                ctx["parent"] = parents[0]
        return ctx

    def _parents(self, tr: TaskRun) -> list[dict[str, Any]]:
        chain: list[dict[str, Any]] = []
        pid = tr.parent_id
        while pid is not None:
            parent = self.get(pid)
            entry: dict[str, Any] = {"taskrun": {"id": parent.id, "value": parent.value}}
            if parent.outputs is not None:
                entry["outputs"] = parent.outputs
            chain.append(entry)
            pid = parent.parent_id
        return chain

    # ------------------------------------------------------------------ events

    def apply(self, event: Event) -> None:
        match event:
            case Started():
                self.on_started()
            case TaskResult():
                self.on_result(event)
            case JobStatusChanged():
                self.on_job_status(event)
            case TimerFired():
                self.on_timer(event.key)
            case Resume():
                self.on_resume(event)
            case Kill():
                self.on_kill()
            case Restart():
                self.on_restart()
            case Recover():
                self.on_recover()
        self.drain()

    def on_recover(self) -> None:
        if self.state.terminal:
            if self.ex.parent:
                self.finished = Finish(self.state, self.flow_outputs)
            return
        for tr in self.ex.ordered_taskruns():
            task = self.c.tasks.get(tr.task_id)
            if isinstance(task, Subflow) and (tr.state is State.RUNNING or not task.wait):
                with contextlib.suppress(ExpressionError):  # it rendered when it started; now it may not
                    self.subflow_action(tr, task)
            elif isinstance(task, ForEachItemExecutable):
                foreach_item.recover(self, tr, task)
            elif task is not None and task.kind is TaskKind.EFFECT and tr.state is State.RUNNING:
                self.run_effect(tr, task)  # at-least-once: its answer may have died with the driver

    def on_started(self) -> None:
        if self.state not in (State.CREATED, State.QUEUED):  # QUEUED: a concurrency slot freed
            return
        self.state = State.RUNNING
        self.started = self.now
        tasks = self.c.list_of(None, "tasks")
        self.root = Progress(total=1 if tasks else 0)
        self.wake(None)

    def current(self, tr_id: str, attempt: int) -> TaskRun | None:
        """The task run the event is about, or None when the event is stale or a duplicate."""
        tr = self.trs.get(tr_id)
        if tr is None or tr.state.terminal or tr.attempt != attempt:
            return None
        return tr

    def on_result(self, event: TaskResult) -> None:
        tr = self.current(event.taskrun_id, event.attempt)
        if tr is None or tr.state not in (State.RUNNING, State.KILLING):
            return
        task = self.c.tasks[tr.task_id]
        if isinstance(task, ForEachItemExecutable) and event.iteration is not None:
            foreach_item.on_result(self, tr, task, event)  # one batch's subflow ended
            return
        state = State.KILLED if tr.state is State.KILLING else event.state
        error = event.error
        outputs = event.outputs
        if isinstance(task, ForEachItemSplit):
            outputs, batches = foreach_item.split_result(outputs)
            tr = tr.evolve(batches=batches)
        if isinstance(task, Subflow) and state in (State.FAILED, State.KILLED, State.CANCELLED):
            # transmitFailed: the subflow's failure is this task's failure (Kestra's default)
            state = State.FAILED if task.transmitFailed else State.SUCCESS
            error = error or (f"Subflow execution ended {event.state}" if task.transmitFailed else None)
        for level, message in event.logs:
            self.log(tr, Level(level), self.mask(message), task)
        self.end_attempt(tr, task, state, outputs, error)

    def on_job_status(self, event: JobStatusChanged) -> None:
        tr = self.current(event.taskrun_id, event.attempt)
        if tr is None or tr.state not in (State.RUNNING, State.KILLING):
            return
        task = self.c.tasks[tr.task_id]
        status = JobOutcome(event.status)
        if not status.terminal:
            return
        # kept on the attempt the job ran, whatever happens next: its cost and where it ran
        tr = self.with_last_attempt(
            tr,
            cost=tr.attempts[-1].cost if event.cost is None else event.cost,
            runner=event.runner or tr.attempts[-1].runner,
            job_id=event.job_id or tr.attempts[-1].job_id,
            job_url=event.job_url or tr.attempts[-1].job_url,
        )
        ok = status is JobOutcome.SUCCEEDED and tr.state is not State.KILLING
        outputs, results = working_directory.children_results(event.outputs)
        outputs = working_directory.collected(self, tr, outputs, ok)
        if results is not None and working_directory.job_ended(self, tr, task, event, results):
            return
        if tr.state is State.KILLING:
            self.end_attempt(tr, task, State.KILLED, outputs, "killed", retry=False)
            return
        if status is JobOutcome.SUCCEEDED:
            self.end_attempt(tr, task, State.SUCCESS, outputs, None)
            return
        default = JobFailure.LOST if status is JobOutcome.LOST else JobFailure.USER
        failure = JobFailure(event.failure or default)
        reason = event.reason or (
            f"exit code {event.exit_code}" if event.exit_code is not None else status.lower()
        )
        if tr.attempts and tr.attempts[-1].timed_out:  # we cancelled it at its timeout
            reason, failure = tr.error or reason, JobFailure.TIMEOUT
        tr = self.with_last_attempt(tr, failure=failure)
        if failure in INFRA_FAILURES and tr.infra_attempts < MAX_INFRA_ATTEMPTS:
            self.log(tr, Level.WARN, f"{failure.lower()}: {reason}; submitting the job again", task)
            tr = self.close_attempt(tr, State.FAILED)
            self.run_attempt(tr.evolve(infra_attempts=tr.infra_attempts + 1), task)
            return
        retry = failure not in NEVER_RETRIED
        if failure is JobFailure.CONFIG and self.c.retries.get(task.id) is not None:
            self.log(tr, Level.WARN, "not retried: the job cannot run as configured", task)
        self.end_attempt(tr, task, State.FAILED, outputs, reason, retry=retry)

    def on_timer(self, key: str) -> None:
        kind, _, rest = key.partition(":")
        tr_id, _, number = rest.partition(":")
        if kind == FANOUT:
            self.on_continue(tr_id or None, int(number))
            return
        tr = self.trs.get(tr_id)
        if tr is None or tr.state.terminal:
            return
        task = self.c.tasks[tr.task_id]
        n = int(number) if number else 0
        if kind == "retry" and tr.state is State.RETRYING and tr.attempt == n:
            self.run_attempt(tr, task)
        elif kind == "sleep" and tr.state is State.RUNNING and tr.attempt == n:
            self.end_attempt(tr, task, State.SUCCESS, None, None)
        elif kind == "timeout" and tr.state is State.RUNNING and tr.attempt == n:
            self.on_timeout(tr, task)
        elif kind == "effect-lost" and tr.state is State.RUNNING and tr.attempt == n:
            self.end_attempt(tr, task, State.FAILED, None, EFFECT_LOST)
        elif kind == foreach_item.TIMER and isinstance(task, ForEachItemExecutable):
            foreach_item.on_timer(self, tr, task, n)
        elif (
            kind == "waitfor"
            and tr.progress is not None
            and tr.progress.waiting
            and tr.progress.iteration == n
        ):
            self.drop_children(tr.id)
            self.set_progress(tr.id, replace(tr.progress, waiting=False, started=0, done=0))
            self.wake(tr.id)
        elif kind == "pause-resume" and tr.state is State.PAUSED:
            self.resume(tr, task, {}, behavior=getattr(task, "behavior", "RESUME"))
        elif kind == "pause-timeout" and tr.state is State.PAUSED:
            self.resume(tr, task, {}, behavior="FAIL")

    def on_continue(self, owner_id: str | None, number: int) -> None:
        """The continuation of a deferred flowable: start its next lanes.

        Only the pending timer counts: a redelivered or older one (another number) changes nothing.
        """
        if owner_id is None and self.state.terminal:
            return
        if owner_id is not None and ((tr := self.trs.get(owner_id)) is None or tr.state.terminal):
            return
        p = self.progress(self.owner(owner_id))
        if p.deferred != number:
            return
        self.set_progress(owner_id, replace(p, deferred=None))
        self.wake(owner_id)

    def on_timeout(self, tr: TaskRun, task: Task) -> None:
        message = f"Timeout after {_hms(task.timeout)}" if task.timeout else "Timeout"
        if task.kind is TaskKind.JOB:  # logged once, when the cancelled job's attempt ends with it
            timed_out = replace(tr.attempts[-1], timed_out=True)
            self.put(tr.evolve(error=message, attempts=(*tr.attempts[:-1], timed_out)))
            self.actions.append(CancelJob(tr.id, tr.attempt, self.job_name(tr)))
        else:
            self.end_attempt(tr, task, State.FAILED, None, message)

    def on_resume(self, event: Resume) -> None:
        paused = [
            tr
            for tr in self.ex.taskruns.values()
            if tr.state is State.PAUSED and (event.taskrun_id is None or tr.id == event.taskrun_id)
        ]
        if not paused:
            raise EngineError(f"execution {self.ex.id} has no paused task run to resume")
        resolved = [(tr, self.resume_inputs(self.c.tasks[tr.task_id], event.inputs)) for tr in paused]
        for tr, inputs in resolved:
            self.resume(tr, self.c.tasks[tr.task_id], inputs, behavior="RESUME")

    def resume_inputs(self, task: Task, provided: Mapping[str, Any]) -> dict[str, Any]:
        """onResume inputs are validated like execution inputs; bad ones raise InputError."""
        declared = getattr(task, "onResume", None)
        if not declared:
            return dict(provided)
        return resolve_inputs(Flow.model_construct(inputs=declared), provided, typed=True)

    def resume(self, tr: TaskRun, task: Task, inputs: Mapping[str, Any], *, behavior: str) -> None:
        if self.state is State.PAUSED:
            self.state = State.RUNNING
        outputs = {"onResume": dict(inputs)} if inputs else None
        if behavior in ("WARN", "FAIL", "CANCEL"):
            state = {"WARN": State.WARNING, "FAIL": State.FAILED, "CANCEL": State.CANCELLED}[behavior]
            error = "Pause timed out" if state is State.FAILED else None
            self.end_attempt(tr, task, state, outputs, error, retry=False)
            return
        self.put(tr.evolve(state=State.RUNNING, outputs=outputs))
        self.wake(tr.id)

    def on_kill(self) -> None:
        if self.state.terminal or self.state is State.KILLING:
            return
        self.state = State.KILLING
        for tr in sorted(self.taskruns(), key=lambda t: -t.seq):
            if tr.state.terminal:
                continue
            task = self.c.tasks[tr.task_id]
            if task.kind is TaskKind.JOB and tr.state is State.RUNNING:
                self.put(tr.evolve(state=State.KILLING))
                self.actions.append(CancelJob(tr.id, tr.attempt, self.job_name(tr)))
            elif task.kind is not TaskKind.FLOWABLE or tr.state in (State.PAUSED, State.RETRYING):
                self.end_attempt(tr, task, State.KILLED, None, None, retry=False)
            else:
                self.wake(tr.id)
        self.wake(None)

    def on_restart(self) -> None:
        """Kestra's restart: failed task runs run again (a new attempt) in the same execution.

        Task runs of ``errors`` and ``finally`` branches are dropped (they run again if
        needed); each failed task run's parent reopens the lane it was in; failed leaves get
        a new attempt; everything that succeeded is kept.
        """
        if self.state not in (State.FAILED, State.KILLED):
            raise EngineError(
                f"execution {self.ex.id} is {self.state}: only FAILED or KILLED executions restart"
            )
        runs = self.ex.taskruns
        dropped = {tr.id for tr in runs.values() if _in_branch(runs, tr)}
        for tr_id in dropped:
            del self.trs[tr_id]
            self.changed.add(tr_id)
        if dropped:
            self.outputs = OutputsLog(outputs_index([tr for tr in runs.values() if tr.id not in dropped]))
        failed = [
            tr
            for tr in sorted(runs.values(), key=lambda t: t.seq)
            if tr.id not in dropped and tr.state in (State.FAILED, State.KILLED)
        ]
        # A one-job WorkingDirectory's directory went with its job: it runs again from its first
        # child, as one new job, rather than a failed child alone in an empty directory.
        whole = {tr.id for tr in failed if working_directory.ran_as_one_job(self, tr)}
        failed = [tr for tr in failed if tr.parent_id not in whole]
        owners = (
            {tr.parent_id for tr in failed} | {tr.id for tr in failed if tr.progress is not None} | {None}
        )
        for owner_id in owners:
            p = self.progress(self.owner(owner_id))
            if p.main is not None:
                p = replace(p, total=p.main[0], started=p.main[1], done=p.main[2], main=None)
            reopened = sum(1 for tr in failed if tr.parent_id == owner_id)
            p = replace(
                p,
                phase=Phase.TASKS,
                failed=False,
                killed=False,
                first_failure=None,
                done=p.done - reopened,
                final=None,  # the restarted execution has no final state yet
            )
            self.set_progress(owner_id, p)
        self.state = State.RUNNING
        self.ended = None
        self.flow_outputs = None
        self.error_logs = []
        for wd_id in whole:  # a new round: its children get new ids, so new job names
            before = self.progress(self.get(wd_id)).iteration
            self.drop_children(wd_id)
            self.set_progress(wd_id, Progress(total=1, iteration=before + 1))
        for tr in failed:
            fresh = self.get(tr.id).evolve(ended=None, error=None)
            if fresh.progress is not None:
                self.put(fresh.evolve(state=State.RUNNING))
                self.wake(fresh.id)
            else:
                self.run_attempt(fresh, self.c.tasks[tr.task_id])
        self.wake(None)

    # ------------------------------------------------------------------ work queue

    def drain(self) -> None:
        while self.queue:
            is_end, tr_id = self.queue.popleft()
            if is_end:
                assert tr_id is not None
                self.child_ended(self.get(tr_id))
            else:
                self.advance(tr_id)

    def start_lane(self, owner_id: str | None, phase: Phase, lane: int) -> None:
        tasks = self.lane_tasks(owner_id, phase, lane)
        if not tasks:
            self.lane_ended(owner_id, phase, lane, ok=True, state=State.SUCCESS)
            return
        self.start_task(owner_id, phase, lane, 0, tasks[0])

    def lane_tasks(self, owner_id: str | None, phase: Phase, lane: int) -> tuple[Task, ...]:
        owner = self.owner(owner_id)
        task_id = owner.task_id if owner is not None else None
        if phase is not Phase.TASKS:
            return self.c.list_of(task_id, phase.value)
        if task_id is None:
            return self.c.list_of(None, "tasks")
        mode = self.c.modes[task_id]
        if mode is LaneMode.EACH_TASK:
            return self.c.list_of(task_id, "tasks")[lane : lane + 1]
        if mode is LaneMode.BRANCH:
            branch = self.progress(owner).branch
            return self.c.list_of(task_id, branch) if branch else ()
        return self.c.list_of(task_id, "tasks")

    def start_task(self, owner_id: str | None, phase: Phase, lane: int, position: int, task: Task) -> None:
        if self.state.terminal:  # ended by an Exit or a new-execution retry: nothing more starts
            return
        values: tuple[str, ...] = ()
        iteration = 0
        owner = self.owner(owner_id)
        if owner is not None:
            values = owner.values
            progress = self.progress(owner)
            if phase is Phase.TASKS:
                if self.c.modes[owner.task_id] is LaneMode.LOOP:
                    values = (*values, progress.values[lane])
                iteration = progress.iteration
        tr = TaskRun(
            id=taskrun_id(self.ex.id, owner_id, phase, lane, task.id, iteration),
            seq=self.seq,
            task_id=task.id,
            task_type=task.type,
            parent_id=owner_id,
            phase=phase,
            lane=lane,
            position=position,
            values=values,
            iteration=iteration,
            state=State.CREATED,
            created=self.now,
        )
        self.seq += 1
        if task.runIf is not None:
            try:
                condition = (
                    task.runIf if isinstance(task.runIf, bool) else render(task.runIf, self.context(tr, task))
                )
            except ExpressionError as exc:
                tr = tr.evolve(attempts=(Attempt(State.RUNNING, self.now),))
                self.end_attempt(tr, task, State.FAILED, None, str(exc), retry=False)
                return
            if not is_truthy(condition):
                self.notify_ended(self.put(tr.evolve(state=State.SKIPPED, ended=self.now)))
                return
        self.run_attempt(tr, task)

    def run_attempt(self, tr: TaskRun, task: Task) -> None:
        """Start attempt n+1 of a task run: evaluate it, or ask the shell to run it."""
        tr = tr.evolve(state=State.RUNNING, attempts=(*tr.attempts, Attempt(State.RUNNING, self.now)))
        kind = task.kind
        if kind is TaskKind.INLINE:
            result = run_inline(task, self.context(tr, task))
            for level, message in result.logs:
                self.log(tr, level, message, task)
            if result.labels:
                self.labels = {**self.labels, **self.mask_data(dict(result.labels))}
            if result.variables is not None:
                self.variables = result.variables
            if result.exit is not None:
                self.exit_now(tr, result.exit)
                return
            self.end_attempt(tr, task, result.state, result.outputs, result.error)
        elif kind is TaskKind.TIMER:
            self.put(tr)
            duration = getattr(task, "duration")  # noqa: B009 - Sleep is the only timer task
            self.actions.append(StartTimer(f"sleep:{tr.id}:{tr.attempt}", self.now + duration))
            # Kestra's Sleep is a RunnableTask, and WorkerTaskCallable bounds every RunnableTask
            # by task.timeout: a Sleep longer than its timeout fails with "Timeout after ...".
            if task.timeout is not None and task.timeout < duration:
                key = f"timeout:{tr.id}:{tr.attempt}"
                self.actions.append(StartTimer(key, self.now + task.timeout))
        elif kind is TaskKind.JOB:
            self.submit(tr, task)
        elif kind is TaskKind.EFFECT:
            self.run_effect(tr, task)
        elif kind is TaskKind.SUBFLOW:
            self.start_subflow(tr, task)
        else:
            if len(tr.attempts) > 1:  # RETRY_FLOWABLE: the new round starts without the last one's children
                self.drop_children(tr.id)
            self.start_flowable(tr, task)

    def exit_now(self, tr: TaskRun, state: State) -> None:
        """Kestra's Exit: the execution ends in ``state`` now, its own task run too.

        KILLED kills what still runs, as a kill request does. Any other state ends the Exit's
        ancestors in that state and the execution with them; tasks still running elsewhere (a
        parallel branch) are left to end, and their ends change nothing (Exit.update).
        """
        tr = self.put(self.close_attempt(tr, state).evolve(state=state, ended=self.now))
        if state is State.KILLED:
            self.notify_ended(tr)
            self.on_kill()
            return
        self.end_ancestors(tr, state)
        self.end_root(self.root, state)

    def end_ancestors(self, tr: TaskRun, state: State) -> None:
        parent_id = tr.parent_id
        while parent_id is not None:
            parent = self.get(parent_id)
            self.put(parent.evolve(state=state, ended=self.now))
            parent_id = parent.parent_id

    def submit(self, tr: TaskRun, task: Task) -> None:
        if tr.parent_id is not None and (ended := self.one_job_ends.get(tr.parent_id)) is not None:
            working_directory.end_from_job(self, tr, task, ended)
            return
        try:
            properties = self.job_properties(tr, task)
            workspace = working_directory.hint(self, tr)
        except ExpressionError as exc:
            self.end_attempt(tr, task, State.FAILED, None, str(exc))
            return
        if workspace is not None:
            first = workspace["previous"] is None
            if first and (children := working_directory.one_job(self, tr, properties)):
                workspace = {**workspace, "children": children}
            properties = {**properties, WORKSPACE_KEY: workspace}
        name = self.job_name(tr)
        tr = self.put(replace(tr, attempts=(*tr.attempts[:-1], replace(tr.attempts[-1], job=name))))
        self.actions.append(SubmitJob(tr.id, tr.attempt, name, task.type, properties, task.timeout))
        if task.timeout is not None:
            self.actions.append(StartTimer(f"timeout:{tr.id}:{tr.attempt}", self.now + task.timeout))

    def job_properties(self, tr: TaskRun, task: Task) -> dict[str, Any]:
        """A job task's properties rendered in its task run's context (raises ExpressionError)."""
        raw = task.model_dump(by_alias=True, exclude_none=True, exclude={"id", "type", "retry", "timeout"})
        rendered: dict[str, Any] = render_value(raw, self.context(tr, task))
        return rendered

    def run_effect(self, tr: TaskRun, task: Task) -> None:
        """Ask the shell to do a task's I/O (KV, HTTP, storage): rendered here, done there.

        Its timeout is a timer like any task's: an answer that comes after it is stale.
        """
        ctx = self.context(tr, task)
        kept: frozenset[str] = getattr(task, "unrendered", frozenset())  # rendered per item by the handler
        raw = task.model_dump(by_alias=True, exclude_none=True, exclude=_NOT_PROPERTIES | kept)
        try:
            properties = render_value(raw, ctx)
        except ExpressionError as exc:
            self.end_attempt(tr, task, State.FAILED, None, str(exc))
            return
        properties.update({name: getattr(task, name) for name in kept if getattr(task, name) is not None})
        if isinstance(task, ForEachItemMergeOutputs):
            properties.update(foreach_item.merge_properties(self, tr))
        if kept:  # what those templates may read besides each item, as Kestra's run context gives it
            properties["@context"] = {k: ctx[k] for k in _TEMPLATE_CONTEXT if k in ctx}
        self.put(tr)
        self.actions.append(RunInline(tr.id, tr.attempt, task.type, properties, task.timeout))
        if task.timeout is not None:
            self.actions.append(StartTimer(f"timeout:{tr.id}:{tr.attempt}", self.now + task.timeout))
        else:  # the process doing it may die before storing its answer: do not wait forever
            self.actions.append(
                StartTimer(f"effect-lost:{tr.id}:{tr.attempt}", self.now + EFFECT_ANSWER_WITHIN)
            )

    def job_name(self, tr: TaskRun) -> str:
        return job_name(self.ex.namespace, self.ex.flow_id, tr.task_id, self.ex.id, tr.id, tr.attempt)

    def start_subflow(self, tr: TaskRun, task: Task) -> None:
        if isinstance(task, ForEachItemExecutable):
            foreach_item.start(self, tr, task)
            return
        assert isinstance(task, Subflow)
        try:
            child_id = self.subflow_action(tr, task)
        except ExpressionError as exc:
            self.end_attempt(tr, task, State.FAILED, None, str(exc))
            return
        self.put(tr)
        if not task.wait:
            self.end_attempt(tr, task, State.SUCCESS, {"executionId": child_id}, None)

    def subflow_action(self, tr: TaskRun, task: Subflow) -> str:
        """Ask for the child execution of ``tr`` (its id derived from the attempt); its id."""
        ctx = self.context(tr, task)
        inputs = render_value(dict(task.inputs or {}), ctx)
        labels = render_value(dict(task.labels or {}), ctx)
        namespace = render(task.namespace, ctx)
        flow_id = render(task.flowId, ctx)
        labels = self.mask_data(child_labels(self.labels, self.ex.id, labels, inherit=task.inheritLabels))
        child_id = short_hash(self.ex.id, tr.id, tr.attempt, size=15)
        self.actions.append(
            StartSubflow(
                tr.id, tr.attempt, namespace, flow_id, task.revision, inputs, labels, task.wait, child_id
            )
        )
        return child_id

    # ------------------------------------------------------------------ flowables

    def start_flowable(self, tr: TaskRun, task: Task) -> None:
        assert isinstance(task, FlowableTask)
        mode = self.c.modes[task.id]
        outputs: dict[str, Any] | None = None
        if isinstance(task, Pause):
            self.pause(tr, task)
            return
        try:
            if mode is LaneMode.LOOP:
                values = self.loop_values(task, self.context(tr, task))
                progress = Progress(total=len(values), values=values, limit=getattr(task, "limit", 1))
            elif isinstance(task, Switch):
                progress, outputs = self.switch_branch(task, self.context(tr, task))
            elif isinstance(task, If):
                condition = task.condition
                if not isinstance(condition, bool):
                    condition = render(str(condition), self.context(tr, task))
                branch = "then" if is_truthy(condition) else "else"
                progress = Progress(total=1 if self.c.list_of(task.id, branch) else 0, branch=branch)
            elif mode is LaneMode.EACH_TASK:
                count = len(self.c.list_of(task.id, "tasks"))
                progress = Progress(total=count, limit=getattr(task, "concurrent", 0))
            else:
                progress = Progress(total=1 if self.c.list_of(task.id, "tasks") else 0)
                if isinstance(task, WaitFor):  # Kestra's WaitFor.outputs(RunContext): 1 before any iteration
                    outputs = {"iterationCount": 1}
        except _SwitchMiss as exc:
            self.end_attempt(tr, task, State.FAILED, exc.outputs, str(exc), retry=False)
            return
        except (ExpressionError, ValueError) as exc:
            self.end_attempt(tr, task, State.FAILED, None, str(exc), retry=False)
            return
        if len(tr.attempts) > 1 and not isinstance(task, WaitFor):
            # a RETRY_FLOWABLE round: its children get new ids (and job names), not the last round's
            progress = replace(progress, iteration=len(tr.attempts) - 1)
        self.put(tr.evolve(progress=progress, outputs=outputs))
        if outputs is not None:
            self.index_outputs(tr, outputs)
        self.wake(tr.id)

    def pause(self, tr: TaskRun, task: Pause) -> None:
        tasks = self.c.list_of(task.id, "tasks")
        tr = self.put(tr.evolve(state=State.PAUSED, progress=Progress(total=1 if tasks else 0)))
        self.state = State.PAUSED
        if task.auto_resume_after is not None:
            self.actions.append(StartTimer(f"pause-resume:{tr.id}:", self.now + task.auto_resume_after))
        if task.timeout is not None:
            self.actions.append(StartTimer(f"pause-timeout:{tr.id}:", self.now + task.timeout))

    def loop_values(self, task: Task, ctx: Mapping[str, Any]) -> tuple[str, ...]:
        raw = getattr(task, "loop_values")  # noqa: B009 - every LOOP task has it
        if isinstance(raw, str):
            text = render(raw, ctx)
            try:
                items = json.loads(text)
            except json.JSONDecodeError:
                raise ValueError(f"Unable to parse the loop values as a JSON array: {text}") from None
            if not isinstance(items, list):
                raise ValueError(f"The loop values must be a JSON array, got: {text}")
        else:
            items = [render_value(item, ctx) for item in raw]
        nulls = sum(1 for item in items if item is None)
        if nulls:
            raise ValueError(f"Found '{nulls}' null values on Each, with values={to_display(items)}")
        return tuple(item if isinstance(item, str) else to_display(item) for item in items)

    def switch_branch(self, task: Switch, ctx: Mapping[str, Any]) -> tuple[Progress, dict[str, Any]]:
        value = render(task.value, ctx) if isinstance(task.value, str) else task.value
        key = value if isinstance(value, str) else to_display(value)
        if key in (task.cases or {}):
            branch = f"cases.{key}"
            return Progress(total=1 if self.c.list_of(task.id, branch) else 0, branch=branch), {
                "value": key,
                "defaults": False,
            }
        outputs = {"value": key, "defaults": True}
        if task.defaults:
            return Progress(total=1 if self.c.list_of(task.id, "defaults") else 0, branch="defaults"), outputs
        raise _SwitchMiss(
            f"Switch '{task.id}': no case matches the value '{key}' and there are no defaults", outputs
        )

    def advance(self, owner_id: str | None) -> None:
        """Start what can start under the owner; end it when nothing runs or remains."""
        owner = self.owner(owner_id)
        if owner is not None and owner.state is not State.RUNNING:
            return
        if owner is None and self.state.terminal:
            return
        p = self.progress(owner)
        if p.waiting:
            return
        killing = self.state is State.KILLING
        stopped = p.failed or p.killed or killing
        if p.phase is Phase.TASKS and not stopped and p.started < p.total:
            self.fill_lanes(owner_id, p)
            p = self.progress(self.owner(owner_id))
        if p.done < p.started or (p.phase is Phase.TASKS and not stopped and p.started < p.total):
            return
        task_id = owner.task_id if owner is not None else None
        if p.phase is Phase.AFTER_EXECUTION:
            self.end_flowable(owner_id, p)
        elif killing:
            self.end_flowable(owner_id, replace(p, killed=True))
        elif p.phase is Phase.TASKS and not p.failed and not p.killed and self.wait_again(owner_id, p):
            return
        elif p.phase is Phase.TASKS and p.failed and not p.killed and self.c.list_of(task_id, "errors"):
            self.enter(owner_id, replace(p, phase=Phase.ERRORS, total=1, started=1, done=0, main=_main(p)))
        elif p.phase is not Phase.FINALLY and not p.killed and self.c.list_of(task_id, "finally"):
            self.enter(owner_id, replace(p, phase=Phase.FINALLY, total=1, started=1, done=0, main=_main(p)))
        else:
            self.end_flowable(owner_id, self.progress(self.owner(owner_id)))

    def fill_lanes(self, owner_id: str | None, p: Progress) -> None:
        was_deferred = p.deferred
        budget = self.lane_budget if owner_id is not None else None  # the root has one lane: free
        if owner_id is not None and (deps := self.c.dag_deps.get(self.get(owner_id).task_id)) is not None:
            ready = [
                lane
                for lane in range(p.total)
                if lane not in p.dag_started and all(d in p.dag_done for d in deps[lane])
            ]
            if p.limit:
                ready = ready[: max(p.limit - p.running, 0)]
            over = budget is not None and len(ready) > budget
            if over:
                ready = ready[:budget]
            p = replace(p, started=p.started + len(ready), dag_started=p.dag_started | frozenset(ready))
            lanes: range | list[int] = ready
        else:
            stop = p.total if p.limit == 0 else min(p.total, p.done + p.limit)
            over = budget is not None and stop - p.started > budget
            if over:
                stop = p.started + (budget or 0)
            lanes = range(p.started, stop)
            p = replace(p, started=max(stop, p.started))
        if budget is not None:
            self.lane_budget = budget - len(lanes)
        if over:
            p = self.defer(owner_id, p)
        if not lanes and p.deferred == was_deferred:  # nothing started, no timer asked for
            return
        self.set_progress(owner_id, p)
        for lane in lanes:
            self.start_lane(owner_id, Phase.TASKS, lane)

    def defer(self, owner_id: str | None, p: Progress) -> Progress:
        """Leave the lanes past this call's budget to a continuation: one pending timer per owner.

        The key carries ``p.started`` (as it will be stored), so it differs from the timer
        being fired, whose deletion after this save must not remove the new one.
        """
        if p.deferred is not None:  # its timer is pending: it continues the owner from its counters
            return p
        self.actions.append(StartTimer(f"{FANOUT}:{owner_id or ''}:{p.started}", self.now))
        return replace(p, deferred=p.started)

    def enter(self, owner_id: str | None, p: Progress) -> None:
        self.set_progress(owner_id, p)
        self.start_lane(owner_id, p.phase, 0)

    def wait_again(self, owner_id: str | None, p: Progress) -> bool:
        """WaitFor (LoopUntil): after a successful iteration, schedule another until the condition holds.

        As Kestra's ExecutorService and WaitFor do: ``iterationCount`` is 1 during the first
        iteration and grows by one when an iteration succeeds, so the condition and the
        maximums see ``iterations done + 1``; ``maxIterations`` is reached when that exceeds it,
        ``maxDuration`` when the task run is older than it; both are checked before the
        condition, and a truthy condition ends the loop.
        """
        if owner_id is None:
            return False
        owner = self.get(owner_id)
        task = self.c.tasks[owner.task_id]
        if not isinstance(task, WaitFor):
            return False
        done = p.iteration + 1
        owner = self.put(owner.evolve(outputs={"iterationCount": done + 1}))
        self.index_outputs(owner, {"iterationCount": done + 1})
        bounds = task.bounds
        reached = None
        if bounds.maxIterations is not None and done + 1 > bounds.maxIterations:
            reached = "Max iterations reached"
        elif bounds.maxDuration is not None and owner.created + bounds.maxDuration < self.now:
            reached = "Max duration reached"
        if reached is not None:
            self.log(owner, Level.WARN, reached, task)
            if task.failOnMaxReached:
                self.set_progress(owner_id, replace(p, failed=True, first_failure=reached))
            return False
        try:
            condition = task.condition
            if not isinstance(condition, bool):
                condition = render(condition, self.context(owner, task))
        except ExpressionError as exc:
            self.log(owner, Level.ERROR, str(exc), task)
            self.set_progress(owner_id, replace(p, failed=True, first_failure=str(exc)))
            return False
        if is_truthy(condition):
            return False
        self.set_progress(owner_id, replace(p, iteration=done, waiting=True))
        self.actions.append(StartTimer(f"waitfor:{owner_id}:{done}", self.now + bounds.interval))
        return True

    def drop_children(self, owner_id: str) -> None:
        """Forget a WaitFor's previous iteration before the next: Kestra's retryWaitFor removes
        the children's task runs ("to avoid having large history"), and with them their outputs
        (``outputs.<child>`` is undefined until the new iteration sets it), as a reload would
        find them. Descendants of flowable children go too."""
        gone = {owner_id}
        for tr in sorted(self.taskruns(), key=lambda t: t.seq):
            if tr.parent_id in gone:
                gone.add(tr.id)
                del self.trs[tr.id]
                self.changed.add(tr.id)
        if len(gone) > 1:
            self.outputs = OutputsLog(outputs_index(self.taskruns()))

    def taskruns(self) -> list[TaskRun]:
        """Every task run as this transaction sees it, those it started included."""
        known = set(self.ex.taskruns.keys()) | self.changed
        return [tr for tr_id in known if (tr := self.trs.get(tr_id)) is not None]

    def end_flowable(self, owner_id: str | None, p: Progress) -> None:
        if p.deferred is not None:  # its pending continuation will find nothing to do
            p = replace(p, deferred=None)
        if p.killed:
            state = State.KILLED
        elif p.failed:
            state = State.FAILED
        else:
            state = State.WARNING if p.worst is State.WARNING else State.SUCCESS
        if owner_id is None:
            self.end_root(p, state)
            return
        self.set_progress(owner_id, p)
        owner = self.get(owner_id)
        task = self.c.tasks[owner.task_id]
        # AllowFailure turns FAILED into WARNING in end_attempt, after a RETRY_FLOWABLE retry
        self.end_attempt(owner, task, state, owner.outputs, None, retry=state is State.FAILED)

    def end_root(self, p: Progress, state: State) -> None:
        """End the execution, or first run the flow's ``afterExecution`` tasks.

        Kestra runs them once the execution has its final state (after ``errors`` and
        ``finally``, flow outputs included), shows that state to them as ``execution.state``,
        and does not let them change it: a failing one is logged, nothing more
        (kestra.io/docs/workflow-components/afterexecution).
        """
        if p.phase is Phase.AFTER_EXECUTION:
            self.root = p
            self.finish(p.final or state, self.flow_outputs, rendered=True)
            return
        state, outputs = self.closing(state)
        if not self.c.list_of(None, Phase.AFTER_EXECUTION.value):
            self.root = p
            self.finish(state, outputs, rendered=True)
            return
        self.flow_outputs = self.mask_data(outputs)
        if self.state is State.KILLING:  # a killed execution still runs its afterExecution tasks
            self.state = State.RUNNING
        after = replace(
            p, phase=Phase.AFTER_EXECUTION, total=1, started=1, done=0, main=_main(p), final=state
        )
        self.enter(None, replace(after, failed=False, killed=False))

    def child_ended(self, child: TaskRun) -> None:
        owner = self.owner(child.parent_id)
        if owner is not None and owner.state.terminal:
            return
        if owner is None and self.state.terminal:
            return
        p = self.progress(owner)
        if child.phase is not p.phase:
            return
        state = child.state
        if p.phase is not Phase.ERRORS and state.ok:
            p = replace(p, worst=worst(p.worst, state))
        if state.ok:
            tasks = self.lane_tasks(child.parent_id, child.phase, child.lane)
            following = tasks[child.position + 1] if child.position + 1 < len(tasks) else None
            if following is not None and (
                self.state is not State.KILLING or working_directory.ran_in_job(self, child, following)
            ):
                self.set_progress(child.parent_id, p)
                self.start_task(
                    child.parent_id, child.phase, child.lane, child.position + 1, tasks[child.position + 1]
                )
                return
        # lane_ended writes the owner's progress once, this change included (one task-run write
        # per child of a ForEach instead of two)
        self.lane_ended(
            child.parent_id, child.phase, child.lane, ok=state.ok, state=state, error=child.error, progress=p
        )

    def lane_ended(
        self,
        owner_id: str | None,
        phase: Phase,
        lane: int,
        *,
        ok: bool,
        state: State,
        error: str | None = None,
        progress: Progress | None = None,
    ) -> None:
        """Count the lane done; ``progress``: the owner's, when the caller holds a newer one."""
        p = progress if progress is not None else self.progress(self.owner(owner_id))
        p = replace(p, done=p.done + 1)
        if not ok:
            if state in (State.KILLED, State.CANCELLED):
                p = replace(p, killed=True)
            elif phase is not Phase.ERRORS:
                p = replace(p, failed=True, first_failure=p.first_failure or error)
        elif owner_id is not None and phase is Phase.TASKS and p.dag_started:
            p = replace(p, dag_done=p.dag_done | {lane})
        self.set_progress(owner_id, p)
        self.wake(owner_id)

    # ------------------------------------------------------------------ ending

    @staticmethod
    def with_last_attempt(tr: TaskRun, **changes: Any) -> TaskRun:
        return tr.evolve(attempts=(*tr.attempts[:-1], replace(tr.attempts[-1], **changes)))

    def close_attempt(self, tr: TaskRun, state: State) -> TaskRun:
        last = tr.attempts[-1] if tr.attempts else Attempt(State.RUNNING, self.now)
        return tr.evolve(attempts=(*tr.attempts[:-1], replace(last, state=state, ended=self.now)))

    def end_attempt(
        self,
        tr: TaskRun,
        task: Task,
        state: State,
        outputs: Mapping[str, Any] | None,
        error: str | None,
        *,
        retry: bool = True,
    ) -> None:
        """Close the current attempt; retry it, or end the task run and wake its parent."""
        tr = self.close_attempt(tr, state)
        if state is State.FAILED:
            if error:
                self.log(tr, Level.ERROR, error, None)
            if retry and self.retry_later(tr, task):
                return
        final = state
        if final is State.FAILED and (task.allowFailure or isinstance(task, AllowFailure)):
            final = State.WARNING
        policy = self.c.retries.get(task.id)
        if (
            final is State.SUCCESS
            and len(tr.attempts) - tr.infra_attempts > 1
            and getattr(policy, "warningOnRetry", False)
        ):
            final = State.WARNING
        if final is State.WARNING and task.allowWarning:
            final = State.SUCCESS
        outputs = self.mask_data(outputs)
        error = self.mask(error) if error else error
        tr = tr.evolve(
            state=final, ended=self.now, outputs=outputs, error=error if state is State.FAILED else None
        )
        self.put(tr)
        if outputs is not None:
            self.index_outputs(tr, outputs)
        self.notify_ended(tr)

    def retry_later(self, tr: TaskRun, task: Task) -> bool:
        policy: Any = self.c.retries.get(task.id)
        if policy is None or self.state is State.KILLING:
            return False
        if task.kind is TaskKind.FLOWABLE and policy.behavior is not RetryBehavior.RETRY_FLOWABLE:
            return False
        if policy.behavior is RetryBehavior.CREATE_NEW_EXECUTION:
            return self.retry_in_new_execution(tr, policy)
        done = len(tr.attempts) - tr.infra_attempts
        limit = policy.max_attempts
        if limit is not None and done >= limit:
            return False
        delay = policy.delay(done, self._draw(tr))
        # Kestra's TaskRun.nextRetryDate: no retry once (end of this attempt + delay) is after the
        # first attempt's start + maxDuration. Kestra's clock always moves between attempts, so a
        # next date landing exactly on the limit is past it there (RetryCaseTest's PT2S/PT6S flow
        # gets 3 attempts); with time from events it can be equal, hence ">=".
        if (
            policy.maxDuration is not None
            and (self.now + delay) - tr.attempts[0].started >= policy.maxDuration
        ):
            return False
        tr = self.put(tr.evolve(state=State.RETRYING))
        self.actions.append(StartTimer(f"retry:{tr.id}:{tr.attempt}", self.now + delay))
        return True

    def retry_in_new_execution(self, tr: TaskRun, policy: Any) -> bool:
        """Kestra's CREATE_NEW_EXECUTION retry (ExecutorService, TaskRun.nextRetryDate(retry,
        execution)): the failed task run, its parents and the execution end RETRIED at once, and
        the shell starts a new execution of the flow at the next date. Attempts are counted per
        execution (``system.retryAttempt``, 1 for the first); once ``maxAttempt`` executions were
        made, the task fails as without a retry. ``maxDuration`` counts from the creation of the
        chain's first execution.
        """
        attempt = int(self.labels.get("system.retryAttempt", "1"))
        if policy.max_attempts is not None and attempt >= policy.max_attempts:
            return False
        due = self.now + policy.delay(attempt, self._draw(tr))
        origin = self.ex.retry_origin or self.ex.created
        if policy.maxDuration is not None and due - origin >= policy.maxDuration:  # see retry_later
            return False
        self.retry_at = due
        tr = self.put(tr.evolve(state=State.RETRIED, ended=self.now))
        self.end_ancestors(tr, State.RETRIED)
        self.finish(State.RETRIED)
        return True

    def _draw(self, tr: TaskRun) -> float:
        """A deterministic jitter in [0, 1) for random retries, derived from the attempt."""
        return (
            int.from_bytes(hashlib.blake2b(f"{tr.id}:{tr.attempt}".encode(), digest_size=4).digest()) / 2**32
        )

    def index_outputs(self, tr: TaskRun, outputs: Mapping[str, Any]) -> None:
        """``outputs.<task>`` (value-keyed inside loops) is now ``outputs``: logged, and built
        into the map only when something reads it (control_plane.engine.outputs)."""
        self.outputs.write(tr.task_id, tr.values, outputs)

    def closing(self, state: State) -> tuple[State, dict[str, Any] | None]:
        """The execution's final state and flow outputs: outputs that fail to render fail it."""
        outputs: dict[str, Any] | None = None
        if state in (State.SUCCESS, State.WARNING) and self.flow.outputs:
            try:
                outputs = self.render_flow_outputs()
            except (ExpressionError, ValueError) as exc:
                self.log(None, Level.ERROR, f"Failed to render the flow outputs: {exc}", None)
                state, outputs = State.FAILED, None
        return state, outputs

    def finish(
        self, state: State, outputs: Mapping[str, Any] | None = None, *, rendered: bool = False
    ) -> None:
        if self.finished is not None or self.state.terminal:
            return
        if not rendered:
            state, outputs = self.closing(state)
        self.state = state
        self.ended = self.now
        self.flow_outputs = self.mask_data(outputs)
        self.finished = Finish(state, outputs, self.retry_at if state is State.RETRIED else None)

    def render_flow_outputs(self) -> dict[str, Any]:
        ctx = self.context(None, None)
        typed: dict[str, Any] = {}
        for o in self.flow.outputs or ():
            value = render_value(o.value, ctx)
            try:
                typed[o.id] = _typed_output(o.type, value)
            except (ValueError, TypeError):  # Python's words ("invalid literal for int()") would say nothing
                shown = value if isinstance(value, str) else to_display(value)
                message = f"Invalid output for `{o.id}`, Expected `{o.type}` but received `{shown}`"
                raise ValueError(message) from None
        return typed


def _in_branch(runs: immutables.Map[str, TaskRun], tr: TaskRun) -> bool:
    """Whether the task run belongs to an ``errors`` or ``finally`` branch, at any depth."""
    node: TaskRun | None = tr
    while node is not None:
        if node.phase is not Phase.TASKS:
            return True
        node = runs.get(node.parent_id) if node.parent_id else None
    return False


def _main(p: Progress) -> tuple[int, int, int]:
    return p.main or (p.total, p.started, p.done)


class _SwitchMiss(ValueError):
    def __init__(self, message: str, outputs: dict[str, Any]) -> None:
        super().__init__(message)
        self.outputs = outputs


def _hms(value: timedelta) -> str:
    """Kestra's rendering of a timeout in its message (``00:00:01.000``), not Python's ``0:00:01``."""
    millis = value // timedelta(milliseconds=1)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}.{rest % 1000:03d}"


def _typed_output(kind: InputType, value: Any) -> Any:
    if kind in (InputType.STRING, InputType.SECRET, InputType.URI, InputType.EMAIL):
        return value if isinstance(value, str) else to_display(value)
    if kind is InputType.INT:
        return int(value)
    if kind is InputType.FLOAT:
        return float(value)
    if kind in (InputType.BOOLEAN, InputType.BOOL):
        return value if isinstance(value, bool) else str(value).strip().lower() == "true"
    if kind is InputType.JSON and isinstance(value, str):
        return json.loads(value)
    return value
