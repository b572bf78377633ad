"""The imperative shell around the pure engine: load, plan, store with a version check, act.

Theory of operation
-------------------
Every change to an execution goes through :meth:`Service.advance`::

    execution = load(id)                      # the copy this process last saw, or the store's
    new, actions = plan(flow, execution, event)
    store.save_execution(new, expected_version=execution.version,
                         logs=..., timers=..., jobs=...)   # one atomic write
    carry out actions                          # submit/cancel jobs, start subflows...

If another writer saved the execution first, the store raises ``ConflictError``; the service
drops its cached copy, reloads and plans the same event again. Events produced while carrying
out actions (a job that failed to submit, a subflow that ended) are queued and applied in
order, never recursively.

No state that can be stale: the cached copy outlives a Lambda invocation in a warm container
while other containers move the execution on, so it is only a guess, checked by version
before anything follows from it. A plan that changes the execution is checked by the save
itself (the version condition). A plan that changes nothing, or that refuses the event, on a
copy not read for this very event proves nothing: the service reads the execution as stored
and plans again. Only a no-op on the stored execution means the event was already applied
(or overtaken: a later attempt, a task that ended). What an event carries with it (a job's
DONE mark and logs, a fired timer's deletion, the runner's cleanup) is done in the same save,
or after that finding, and never otherwise: a job whose event could not be stored stays
active and is heard again. Reading the store for every event would cost a read per event and,
on SQLite, a read of every task run: quadratic for a wide ForEach (2,000 lanes: 39 ms per
event instead of 0.8). This check costs no read while the copy is current.

Exactly-once submission: ``SubmitJob`` becomes a job record in phase SUBMITTING, written in
the same transaction as the task run that asked for it. Only then is the runner called; its
handle is recorded (SUBMITTED). A service that crashed in between finds SUBMITTING records in
:meth:`recover` and asks the runner to ``find`` the job before submitting it again.

Wide steps: with ``submit_budget`` set (the cloud handlers set it), one step submits at most
that many jobs itself. The rest stay SUBMITTING, stamped :data:`HANDED_TO_TICK`, which makes
them look older than any grace, and the next :meth:`tick` submits them (``find`` first, as for
any recovery), at most ``recover_limit`` per tick. Starting a 10,000-value ForEach through the
API then answers within API Gateway's 30 seconds instead of submitting every job (at AWS
Batch's ~50 calls a second) while the client has long been told 504.

Completion: :meth:`step` fires due timers and polls every active job, one batched ``poll``
per runner. A terminal job's logs are read to the end, stored, scanned for the outputs marker,
and turned into a ``JobStatusChanged`` event. The record becomes DONE in the write that stores
the event, or, when the stored execution shows the event already applied, right after that
finding; a crash before either repeats the event.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from msgspec import Struct, field
from msgspec.structs import replace

from control_plane.engine.actions import (
    Action,
    CancelJob,
    Emit,
    Finish,
    RunInline,
    StartSubflow,
    StartTimer,
    SubmitJob,
)
from control_plane.engine.compiled import compile_flow
from control_plane.engine.events import (
    Event,
    JobStatusChanged,
    Kill,
    Restart,
    Resume,
    Started,
    TaskResult,
    TimerFired,
)
from control_plane.engine.model import Execution, LogLine
from control_plane.engine.planner import new_execution, plan, replay
from control_plane.engine.states import State
from control_plane.errors import (
    ConflictError,
    EngineError,
    InputError,
    NotFoundError,
    ServiceError,
    SquallError,
    StoreError,
)
from control_plane.flows.loader import parse_flow
from control_plane.flows.models import Flow, Pause, Schedule
from control_plane.levels import Level
from control_plane.secrets import SecretChain
from control_plane.service.capture import Capture, LogLimits, stream_level
from control_plane.service.clock import Clock, SystemClock, new_execution_id
from control_plane.service.masks import SecretMasks
from control_plane.service.runners import (
    RunnerRegistry,
    RunnerUnavailableError,
    UnknownRunnerError,
    dependencies,
)
from control_plane.service.scripts import ScriptError, build_job_spec, job_outputs, runner_of
from control_plane.service.storage import LocalStorage
from control_plane.store.base import (
    FlowRecord,
    JobPhase,
    JobRecord,
    StateStore,
    TimerRecord,
    TriggerRecord,
)
from control_plane.triggers.schedule import Fire, due
from runners.base import (
    Failure,
    JobHandle,
    JobSpec,
    JobState,
    JobStatus,
    Runner,
    RunnerError,
    TransientRunnerError,
    Waitable,
    validate_options,
)
from runners.markers import parse_line

__all__ = ["LogLimits", "Service", "ServiceError", "TickReport"]

MAX_CONFLICTS = 50
LIVE_LOG_INTERVAL = 0.25  # seconds between looks at a running job's output, when someone watches
FLOW_RETRY_TIMER = "flow-retry:"
DEFAULT_LOG_LIMITS = LogLimits()

_log = logging.getLogger("squall.service")


class TickReport(Struct, frozen=True):
    """What one :meth:`Service.tick` did, for the tick Lambda's log line and the tests."""

    timers_fired: bool
    recovered: int  # jobs left SUBMITTING past the grace: found by name (handle stored) or submitted
    polled: int
    ended: int


HANDED_TO_TICK = datetime(1970, 1, 1, tzinfo=UTC)
"""``updated`` of a job record left SUBMITTING for the tick by a step over its submit budget."""


class _Pending(Struct):
    """Records that ride along with a write of their execution.

    Per execution (``Service._pending``): job handles, written with any save or by ``flush``.
    Per event (queued with it): what only that event's save justifies, a job's DONE mark and
    logs; ``then`` runs once the event is stored or found already applied (cleanup, timer
    deletion), and is dropped with the rest when it is neither.
    """

    logs: list[LogLine] = field(default_factory=list)
    jobs: dict[str, JobRecord] = field(default_factory=dict)
    then: list[Callable[[], None]] = field(default_factory=list)


def _outputs_refused(status: JobStatus, error: str) -> JobStatus:
    """A job whose outputs were over the limit: it fails (USER, like its code), saying why."""
    if status.state is JobState.SUCCEEDED:
        return replace(status, state=JobState.FAILED, failure=Failure.USER, reason=error)
    if status.state is JobState.FAILED:
        return replace(status, reason=f"{status.reason or f'exit code {status.exit_code}'}; {error}")
    return status  # cancelled or lost: the engine ends it as such; its outputs are dropped all the same


def _runner_type(job: JobRecord) -> str:
    """The ``taskRunner.type`` the flow wrote (what its author recognises), else the runner's name."""
    block = job.spec.get("properties", {}).get("taskRunner")
    kind = block.get("type") if isinstance(block, Mapping) else None
    return str(kind) if kind else job.runner


CACHED_EXECUTIONS = 512
CACHED_FLOWS = 256

_K = TypeVar("_K")
_V = TypeVar("_V")


class Recent(OrderedDict[_K, _V]):
    """A dict that keeps its ``size`` most recently stored entries (a bounded, verified cache)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def __setitem__(self, key: _K, value: _V) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


class Service:
    """Runs executions durably: one instance per process, any number of processes per store."""

    def __init__(
        self,
        store: StateStore,
        *,
        runners: RunnerRegistry,
        storage: LocalStorage,
        clock: Clock | None = None,
        id_factory: Callable[[], str] = new_execution_id,
        log_limits: LogLimits = DEFAULT_LOG_LIMITS,
        poll_interval: float = 1.0,
        on_change: Callable[[Execution], None] | None = None,
        on_logs: Callable[[Execution | None, Sequence[LogLine]], None] | None = None,
        submit_budget: int | None = None,
        secrets: SecretChain | None = None,
    ) -> None:
        self.store = store
        self.masks = SecretMasks(secrets)
        self.submit_budget = submit_budget
        self.runners = runners
        self.storage = storage
        self.clock = clock or SystemClock()
        self.new_id = id_factory
        self.log_limits = log_limits
        self.poll_interval = poll_interval
        self.on_change = on_change
        self.on_logs = on_logs
        # The copy of each execution this process last saw: a guess, never the truth (see the
        # module docstring). Only ids, flow and inputs (which never change) are read from it unchecked.
        # Both are guesses a long-lived process must not hoard: at most CACHED_* entries each,
        # the least recently stored ones dropped first (a dropped execution is read again).
        self._cache: Recent[str, Execution] = Recent(CACHED_EXECUTIONS)
        self._flows: Recent[tuple[str, str, int | None], Flow] = Recent(CACHED_FLOWS)
        self._queue: deque[tuple[str, Event, _Pending | None]] = deque()
        self._draining = False
        # Records that ride along with the next write of their execution (one transaction per
        # step instead of several): runner handles of just-submitted jobs, warnings. ``_flush``
        # writes whatever is left on its own. A job's DONE mark and logs travel with its event
        # in ``_queue`` instead: only that event's save may write them.
        self._pending: dict[str, _Pending] = {}
        self._handles: dict[str, JobHandle] = {}
        # What this process knows without asking the store: the jobs it submitted and the
        # earliest timer it wrote. The store is still scanned every ``poll_interval`` for
        # what other processes did, but a chain of short jobs costs no read per step.
        self._mine: dict[str, JobRecord] = {}
        self._lazy: set[str] = set()  # just-submitted jobs whose handle their events will bring
        self._jobs_scanned = -math.inf
        self._timer_hint: datetime | None = None
        self._timers_scanned = -math.inf
        # Live display of running jobs' output (only with ``on_logs``): where each job's log was
        # read up to, how many records were shown, and the lines not to show again when stored.
        self._live: dict[str, tuple[JobRecord, str | None, int]] = {}
        self._displayed: set[int] = set()
        self._warned: set[str] = set()  # runners found unavailable, already logged

    # ================================================================== flows

    def deploy(self, source: str, origin: str = "<string>") -> FlowRecord:
        """Validate and store a flow; a new revision only when the source changed."""
        flow = parse_flow(source, origin)
        return self.store.save_flow(flow.namespace, flow.id, source, at=self.clock.now())

    def flow(self, namespace: str, flow_id: str, revision: int | None = None) -> Flow:
        """A flow revision, parsed once per process (the latest one is looked up every time)."""
        flow = None if revision is None else self._flows.get((namespace, flow_id, revision))
        if flow is None:
            record = self.store.get_flow(namespace, flow_id, revision)
            flow = self._flows.get((namespace, flow_id, record.revision))
            if flow is None:
                flow = parse_flow(record.source, f"{namespace}.{flow_id} revision {record.revision}")
                flow = flow.model_copy(update={"revision": record.revision})
                self._flows[(namespace, flow_id, record.revision)] = flow
        return flow

    def _flow_of(self, execution: Execution) -> Flow:
        return self.flow(execution.namespace, execution.flow_id, execution.flow_revision)

    # ================================================================== executions

    def start(
        self,
        namespace: str,
        flow_id: str,
        inputs: Mapping[str, Any] | None = None,
        *,
        revision: int | None = None,
        labels: Mapping[str, str] | None = None,
        trigger: Mapping[str, Any] | None = None,
        parent: Mapping[str, Any] | None = None,
        execution_id: str | None = None,
        original_id: str | None = None,
        typed: bool = True,
    ) -> Execution:
        """Create an execution, start it and carry out its first actions. InputError if inputs are bad."""
        from control_plane.flows.inputs import resolve_inputs

        flow = self.flow(namespace, flow_id, revision)
        resolved = resolve_inputs(flow, inputs, typed=typed)
        now = self.clock.now()
        created = new_execution(
            flow,
            execution_id or self.new_id(),
            at=now,
            inputs=resolved,
            labels=labels,
            trigger=trigger,
            parent=parent,
            original_id=original_id,
        )
        execution, actions = plan(flow, created, Started(at=now), secrets=self.masks.chain)
        return self._create(execution, actions)

    def _create(self, execution: Execution, actions: list[Action]) -> Execution:
        logs, timers, jobs = self._records(execution, actions)
        self.store.create_execution(execution, logs=logs, timers=timers, jobs=jobs)
        self._stored(execution, logs)
        self._carry_out(execution, actions, jobs)
        self._drain()
        return self._cache.get(execution.id, execution)

    def get(self, execution_id: str) -> Execution:
        return self.store.get_execution(execution_id)

    def advance(self, execution_id: str, event: Event) -> Execution:
        """Apply one event (and everything it leads to); return the execution as stored."""
        self._queue.append((execution_id, event, None))
        self._drain()
        return self._load(execution_id)

    def kill(self, execution_id: str) -> Execution:
        """Cancel every running job of the execution through its runner; it ends KILLED."""
        execution = self._reload(execution_id)
        if execution.state.terminal:
            raise ServiceError(f"execution {execution_id} already ended {execution.state}")
        return self.advance(execution_id, Kill(at=self.clock.now()))

    def restart(self, execution_id: str) -> Execution:
        """Kestra's restart: failed task runs run again, in the same execution."""
        execution = self._reload(execution_id)
        if execution.state not in (State.FAILED, State.KILLED):
            raise ServiceError(
                f"execution {execution_id} is {execution.state}: only FAILED or KILLED executions restart"
            )
        return self.advance(execution_id, Restart(at=self.clock.now()))

    def resume(
        self, execution_id: str, inputs: Mapping[str, Any] | None = None, *, taskrun_id: str | None = None
    ) -> Execution:
        """Resume a paused execution with its Pause task's ``onResume`` inputs (InputError if bad)."""
        execution = self._reload(execution_id)
        if execution.state is not State.PAUSED and not any(
            tr.state is State.PAUSED for tr in execution.taskruns.values()
        ):
            raise ServiceError(f"execution {execution_id} is {execution.state}, not PAUSED")
        return self.advance(
            execution_id, Resume(at=self.clock.now(), inputs=dict(inputs or {}), taskrun_id=taskrun_id)
        )

    def replay(self, execution_id: str, *, taskrun_id: str | None = None) -> Execution:
        """A new execution of the same flow revision and inputs, linked to the original.

        With ``taskrun_id``, what ran before that task's top-level task is kept (Kestra's
        replay from a task); without, everything runs again.
        """
        original = self.store.get_execution(execution_id)
        labels = {k: v for k, v in original.labels.items() if not k.startswith("system.")}
        labels["system.replay"] = "true"
        if taskrun_id is None:
            return self.start(
                original.namespace,
                original.flow_id,
                original.inputs,
                revision=original.flow_revision,
                labels=labels,
                trigger=original.trigger,
                original_id=original.id,
                typed=False,
            )
        if taskrun_id not in original.taskruns:
            raise ServiceError(f"execution {execution_id} has no task run {taskrun_id}")
        try:
            execution, actions = replay(
                self._flow_of(original),
                original,
                self.new_id(),
                at=self.clock.now(),
                taskrun_id=taskrun_id,
                labels={"system.replay": "true"},
                secrets=self.masks.chain,
            )
        except EngineError as exc:
            raise ServiceError(str(exc)) from None
        return self._create(execution, actions)

    # ================================================================== the loop

    def recover(self) -> None:
        """After a crash: submit (or find) every job left SUBMITTING."""
        for job in self.store.active_jobs():
            if job.phase is JobPhase.SUBMITTING:
                self._submit(job, reattach=True)
        self._drain()

    def step(self, *, flush: bool = True) -> bool:
        """Fire due timers and poll active jobs once; True when anything happened.

        With ``flush``, records still riding along (handles of running jobs) are written
        before returning, so another process can see them; :meth:`run` defers that until
        a wait actually blocks, which saves a write per short job.
        """
        fired = self._fire_timers()
        polled = self._poll_jobs()
        self._drain()
        if flush:
            self.flush()
        return fired or polled

    # ================================================================== cloud entry points

    def job_event(
        self,
        name: str,
        status: JobStatus,
        *,
        handle: JobHandle | None = None,
        touch_after: timedelta | None = None,
    ) -> bool:
        """A runner's push event about job ``name``; True when it moved an execution.

        Idempotent under duplicate and out-of-order delivery: a job already DONE ignores every
        later event, and a non-terminal event never goes back in time (it only refreshes the
        job's ``updated`` mark, at most once per ``touch_after``, so the reconciler leaves a
        job that reports regularly alone). An unknown name (another deployment's job sharing
        the event bus) is ignored.
        """
        job = self.store.get_job(name)
        if job is None or job.phase is JobPhase.DONE:
            return False
        try:
            runner = self.runners.get(job.runner)
        except RunnerUnavailableError as exc:
            self._unavailable(job.runner, exc)
            return False
        now = self.clock.now()
        if not status.terminal:
            stale = job.updated is None or touch_after is None or now - job.updated >= touch_after
            if touch_after is not None and stale:
                touched = replace(job, updated=now)
                if job.phase is JobPhase.SUBMITTING and handle is not None:  # a lazy handle arrives
                    touched = replace(touched, phase=JobPhase.SUBMITTED, handle=handle.to_dict())
                with contextlib.suppress(ConflictError):  # someone else touched or finished it
                    self.store.update_job(touched, expected_version=job.version)
            return False
        handle = self._handle(job) or handle
        if handle is None:  # the event beat the write of the handle: the runner knows the job by name
            try:
                _, spec = self._spec(job)
                with dependencies(job.runner):
                    handle = runner.find(spec)
            except (RunnerError, ScriptError, UnknownRunnerError):
                handle = None
            if handle is None:
                return False  # the reconciler will see it once the handle is stored
        self._complete(job, runner, handle, status)
        self.flush()
        return True

    def tick(
        self, *, reconcile_after: timedelta, submit_grace: timedelta, recover_limit: int | None = None
    ) -> TickReport:
        """One pass of the cloud's rate rule: timers, forgotten submissions, silent jobs.

        * due timers fire (retry delays, Sleep, Pause and task timeouts);
        * a job left SUBMITTING for longer than ``submit_grace`` (its Lambda died between the
          outbox write and the submit, its handle is written lazily, or a wide step handed it
          over) is found by name, its handle stored, or it is submitted: still one job; at most
          ``recover_limit`` of them per tick, so a pass stays within the Lambda's timeout;
        * jobs with no news for ``reconcile_after`` are polled, one batched call per runner
          (the fallback when a push event was lost), never one call per job.
        """
        self._timers_scanned = -math.inf
        fired = self._fire_timers()
        now = self.clock.now()
        self.store.visit(now)  # jobs younger than the store's visit delay need nothing from the tick yet
        active = self.store.active_jobs()
        recovered = 0
        silent: list[JobRecord] = []
        for job in active:
            age = now - (job.updated or now)
            if job.phase is JobPhase.SUBMITTING:
                if age >= submit_grace and (recover_limit is None or recovered < recover_limit):
                    self._submit(job, reattach=True)  # found by name (its handle is stored), or submitted
                    recovered += 1
                    if job.name in self._handles:
                        silent.append(job)  # its end may be what went unheard: ask in the same batch
            elif age >= reconcile_after:
                silent.append(job)
        ended = self._poll(silent)
        self._drain()
        self.flush()
        return TickReport(fired, recovered, len(silent), ended)

    def fire_schedules(
        self, *, namespace: str | None = None, flow_id: str | None = None, trigger_id: str | None = None
    ) -> list[str]:
        """Start the due executions of Schedule triggers (all, or the one named); their ids.

        Each schedule date starts exactly one execution: its id is derived from the trigger
        and the date, so a date fired twice (EventBridge Scheduler retries, a tick racing the
        schedule Lambda) is a ConflictError on create, ignored. The trigger's last date is
        stored with a version check afterwards; losing that race only repeats the
        idempotent starts.
        """
        started: list[str] = []
        now = self.clock.now()
        for record in self._flow_records(namespace, flow_id):
            flow = self.flow(record.namespace, record.id, record.revision)
            for trigger in flow.triggers or []:
                if not isinstance(trigger, Schedule) or (trigger_id is not None and trigger.id != trigger_id):
                    continue
                key = f"schedule/{flow.namespace}/{flow.id}/{trigger.id}"
                state = self.store.get_trigger(key)
                last = datetime.fromisoformat(state.data["last"]) if state and "last" in state.data else None
                fires = due(trigger, namespace=flow.namespace, flow_id=flow.id, last=last, now=now)
                for fire in fires:
                    started += self._fire(flow, trigger, fire)
                newest = max((f.date for f in fires), default=None)
                if last is None and newest is None:
                    newest = now  # a new trigger starts counting from its deployment
                if newest is not None:
                    data = {**(state.data if state else {}), "last": newest.isoformat()}
                    with contextlib.suppress(ConflictError):
                        self.store.put_trigger(
                            TriggerRecord(key, data), expected_version=state.version if state else 0
                        )
        return started

    def _flow_records(self, namespace: str | None, flow_id: str | None) -> Iterable[FlowRecord]:
        if namespace is not None and flow_id is not None:
            try:
                yield self.store.get_flow(namespace, flow_id)
            except NotFoundError:
                return
            return
        cursor: str | None = None
        while True:
            page = self.store.list_flows(namespace, cursor=cursor)
            yield from page.items
            if page.cursor is None:
                return
            cursor = page.cursor

    def _fire(self, flow: Flow, trigger: Schedule, fire: Fire) -> list[str]:
        variables = {"id": trigger.id, "type": trigger.type, **fire.variables}
        try:
            execution = self.start(
                flow.namespace,
                flow.id,
                trigger.inputs,
                revision=flow.revision,
                labels=fire.labels,
                trigger=variables,
                execution_id=fire.key,
            )
        except ConflictError:
            return []  # this date already started its execution
        except InputError as exc:  # the flow's inputs changed under the trigger: say so, skip the date
            _log.error("%s.%s: schedule %s at %s: %s", flow.namespace, flow.id, trigger.id, fire.date, exc)
            return []
        return [execution.id]

    def run(self, execution_id: str, *, deadline: float | None = None) -> Execution:
        """Drive until the execution ends, or waits for a person.

        A paused execution waits for a person unless a Pause with ``pauseDuration`` (or
        ``delay``) resumes it by itself: that pause is waited out like a Sleep (Kestra resumes
        it with no one's help). A pause ``timeout`` is a deadline for the person, not a
        reason to wait here: it fires on a later run, or on ``squall server``'s tick.

        Follows a flow-level retry to the new execution it creates. ``deadline`` is a
        ``time.monotonic()`` value after which the current state is returned as it is.
        """
        self.recover()
        current = execution_id
        while True:
            self.step(flush=False)
            execution = self._load(current)
            if execution.state.terminal or execution.state is State.PAUSED:
                execution = self._reload(current)  # it stops on this state: the stored one, not a copy
            if execution.state.terminal:
                retry = self._retry_target(execution)
                if retry is None:
                    return execution
                if isinstance(retry, str):
                    current = retry
                    continue
            if deadline is not None and time.monotonic() >= deadline:
                return execution
            if (
                execution.state is State.PAUSED
                and not self._handles
                and not self.store.active_jobs(limit=1)
                and not self._resumes_by_itself(execution)
            ):
                return execution  # waits for a person; a pause timeout fires on a later run
            if not self._wait():
                return self._reload(current)

    def _resumes_by_itself(self, execution: Execution) -> bool:
        """Whether a paused task run of ``execution`` is a Pause that ends on its own timer."""
        tasks = compile_flow(self._flow_of(execution)).tasks
        return any(
            isinstance(task := tasks.get(tr.task_id), Pause) and task.auto_resume_after is not None
            for tr in execution.taskruns.values()
            if tr.state is State.PAUSED
        )

    def _retry_target(self, execution: Execution) -> str | bool | None:
        """For a terminal execution: the id of its flow-retry execution, True if one is pending."""
        if execution.state is not State.FAILED:
            return None
        target = self._retry_id(execution)
        try:
            self.store.get_execution(target)
        except NotFoundError:
            return True if self._has_retry_timer(execution) else None
        return target

    def _has_retry_timer(self, execution: Execution) -> bool:
        nxt = self.store.next_timer()
        if nxt is None:
            return False
        return any(
            t.execution_id == execution.id and t.key == FLOW_RETRY_TIMER
            for t in self.store.due_timers(datetime.max.replace(tzinfo=nxt.tzinfo), limit=1000)
        )

    def _wait(self) -> bool:
        """Block until something may have changed; False when nothing ever will (paused or idle)."""
        now = self.clock.now()
        next_at = self._next_timer()
        if next_at is not None and next_at <= now:
            return True
        if self._handles or self.store.active_jobs(limit=1):  # jobs this process submitted are active
            timeout = self.poll_interval
            if next_at is not None:
                timeout = max(0.0, min(timeout, (next_at - now).total_seconds()))
            waitables = [r for r in self.runners.started() if isinstance(r, Waitable)]
            waitable = waitables[0] if len(waitables) == 1 and len(self.runners.started()) == 1 else None
            if waitable is not None and waitable.wait(min(timeout, 0.05)):
                return True
            self.flush()  # a job that outlives a short wait: make its handle durable
            end = time.monotonic() + timeout
            while (left := end - time.monotonic()) > 0:
                self._tail_live()
                if waitable is not None:
                    if waitable.wait(min(left, LIVE_LOG_INTERVAL)):
                        break
                else:
                    time.sleep(min(left, LIVE_LOG_INTERVAL))
            return True
        next_at = self._next_timer(fresh=True)  # about to give up: make sure no timer is pending
        if next_at is not None:
            self.clock.sleep_until(next_at)
            return True
        return False

    def _hint_timer(self, at: datetime) -> None:
        if self._timer_hint is None or at < self._timer_hint:
            self._timer_hint = at

    def _next_timer(self, *, fresh: bool = False) -> datetime | None:
        """The earliest pending timer: from the store at most every ``poll_interval``."""
        if fresh or time.monotonic() - self._timers_scanned >= self.poll_interval:
            self._timer_hint = self.store.next_timer()
            self._timers_scanned = time.monotonic()
        return self._timer_hint

    # ================================================================== plan and save

    def _drain(self) -> None:
        if self._draining:
            return
        self._draining = True
        try:
            while self._queue:
                execution_id, event, own = self._queue.popleft()
                self._apply(execution_id, event, own or _Pending())
        finally:
            self._draining = False

    def _load(self, execution_id: str) -> Execution:
        execution = self._cache.get(execution_id)
        if execution is None:
            execution = self.store.get_execution(execution_id)
            self._cache[execution_id] = execution
        return execution

    def _reload(self, execution_id: str) -> Execution:
        self._cache.pop(execution_id, None)
        return self._load(execution_id)

    def _apply(self, execution_id: str, event: Event, own: _Pending) -> None:
        """Plan ``event`` on the execution as stored, save it, carry out its actions.

        ``own`` holds what only this event's save justifies; the execution's ride-along
        records (``_pending``) go with any save. The cached copy is a guess (module
        docstring): whatever it yields is checked by the save's version condition, or by
        planning again on a copy read for this event.
        """
        extra = self._pending.pop(execution_id, None) or _Pending()
        for _ in range(MAX_CONFLICTS):
            checked = execution_id not in self._cache  # read from the store for this event
            execution = self._load(execution_id)
            flow = self._flow_of(execution)
            try:
                new, actions = plan(flow, execution, event, secrets=self.masks.chain)
            except SquallError:
                if not checked:  # refused on an old copy (a resume of what it thinks is RUNNING)
                    self._cache.pop(execution_id, None)
                    continue
                self._keep(execution_id, extra)
                raise
            if new.version == execution.version:
                if not checked:  # stale only on an old copy, perhaps: look at the stored one
                    self._cache.pop(execution_id, None)
                    continue
                self._keep(execution_id, extra)
                self._write_aside(execution_id, own)  # already applied or overtaken, as stored now
                self._settle(own)
                return
            written = self.masks.logs(flow, new, [*extra.logs, *own.logs])  # job output: not masked yet
            logs, timers, jobs = self._records(new, actions)
            try:
                self.store.save_execution(
                    new,
                    expected_version=execution.version,
                    logs=[*written, *logs],
                    timers=timers,
                    jobs=[*jobs, *{**extra.jobs, **own.jobs}.values()],  # a DONE mark beats a handle
                )
            except ConflictError:
                self._cache.pop(execution_id, None)
                continue
            self._stored(new, [*written, *logs])
            self._settle(own)
            self._carry_out(new, actions, jobs)
            return
        self._keep(execution_id, extra)  # ``own`` is dropped: its job stays active and is heard again
        raise StoreError(f"execution {execution_id}: gave up after {MAX_CONFLICTS} conflicting writes")

    @staticmethod
    def _settle(own: _Pending) -> None:
        """The event is stored, or found applied: do what waited for that."""
        for then in own.then:
            then()

    def _keep(self, execution_id: str, extra: _Pending) -> None:
        """Put back what did not get written, ahead of anything queued since."""
        if not extra.logs and not extra.jobs:
            return
        later = self._pending.get(execution_id)
        if later is not None:
            extra.logs += later.logs
            extra.jobs.update(later.jobs)
        self._pending[execution_id] = extra

    def _show(self, execution: Execution | None, logs: Sequence[LogLine]) -> None:
        if self.on_logs is not None:
            fresh = [line for line in logs if id(line) not in self._displayed] if self._displayed else logs
            if fresh:
                self.on_logs(execution, fresh)
        self._displayed.clear()

    def _tail_live(self) -> None:
        """Show what running jobs printed since the last look (display only; stored at the end)."""
        if self.on_logs is None:
            return
        for name, handle in list(self._handles.items()):
            job, cursor, shown = self._live.get(name) or (None, None, 0)
            if job is None:
                continue
            chunk = self.runners.get(job.runner).logs(handle, cursor)
            task_id = str(job.spec.get("task_id", ""))
            cut = self.log_limits.max_line_chars  # a runner's record may be 1 MiB: not for a terminal
            lines = [
                LogLine(
                    self.clock.now(),
                    stream_level(r.stream),
                    r.text if len(r.text) <= cut else r.text[:cut] + " ...",
                    task_id,
                    job.taskrun_id,
                    job.attempt,
                )
                for r in chunk.lines
                if parse_line(r.text) is None
            ]
            self._live[name] = (job, chunk.cursor, shown + len(chunk.lines))
            if lines:
                execution = self._load(job.execution_id)
                self.on_logs(execution, self.masks.logs(self._flow_of(execution), execution, lines))

    def flush(self) -> None:
        """Write what is still riding along (handles of just-submitted jobs): end of a Lambda call."""
        for execution_id in list(self._pending):
            self._flush(execution_id)

    def _flush(self, execution_id: str) -> None:
        """Write the pending records of one execution without an execution change."""
        extra = self._pending.pop(execution_id, None)
        if extra is not None:
            self._write_aside(execution_id, extra)

    def _write_aside(self, execution_id: str, extra: _Pending) -> None:
        """Write job records and logs without an execution change, each job with a version check.

        A job another process already marked DONE keeps that process's logs: they are not
        stored twice.
        """
        if not extra.logs and not extra.jobs:
            return
        logs = list(extra.logs)
        for job in extra.jobs.values():
            if job.phase is JobPhase.SUBMITTED and job.name in self._lazy:
                self._lazy.discard(job.name)
                continue  # lazy handle: the job's events carry it (see ``_announces``)
            stored = self.store.get_job(job.name)
            if stored is None:
                continue
            if stored.phase is JobPhase.DONE:
                logs = [x for x in logs if x.taskrun_id != job.taskrun_id or x.attempt != job.attempt]
                continue
            with contextlib.suppress(ConflictError):
                self.store.update_job(
                    replace(stored, phase=job.phase, handle=job.handle or stored.handle, updated=job.updated),
                    expected_version=stored.version,
                )
        if logs:
            execution = self._load(execution_id)
            logs = self.masks.logs(self._flow_of(execution), execution, logs)
        self.store.append_logs(execution_id, logs)
        self._show(self._cache.get(execution_id), logs)

    def _announces(self, runner: str) -> bool:
        """Whether the runner's push events carry job handles (``handle_from_event``).

        For those runners a just-submitted job's handle is not written on its own: its
        terminal event brings it, and a job that outlives the submit grace has it found by
        name once, by the tick. A short task then costs one write less.
        """
        try:
            cls = type(self.runners.get(runner))
        except (UnknownRunnerError, RunnerUnavailableError):
            return False
        return bool(getattr(cls, "event_sources", ())) and hasattr(cls, "handle_from_event")

    def _stored(self, execution: Execution, logs: Sequence[LogLine]) -> None:
        self._cache[execution.id] = execution
        self._show(execution, logs)
        if self.on_change is not None:
            self.on_change(execution)

    def _records(
        self, execution: Execution, actions: Iterable[Action]
    ) -> tuple[list[LogLine], list[TimerRecord], list[JobRecord]]:
        """What must be stored with the execution, in the same write, before anything is done."""
        logs: list[LogLine] = []
        timers: list[TimerRecord] = []
        jobs: list[JobRecord] = []
        for action in actions:
            match action:
                case Emit():
                    logs.extend(action.logs)
                case StartTimer():
                    timers.append(TimerRecord(execution.id, action.key, action.at))
                    self._hint_timer(action.at)
                case SubmitJob():
                    runner, _ = runner_of(action.properties)
                    over_budget = self.submit_budget is not None and len(jobs) >= self.submit_budget
                    tr = execution.taskruns[action.taskrun_id]
                    spec = {
                        "task_type": action.task_type,
                        "task_id": tr.task_id,
                        "properties": action.properties,
                        "timeout": None if action.timeout is None else action.timeout.total_seconds(),
                    }
                    jobs.append(
                        JobRecord(
                            action.job_name,
                            execution.id,
                            action.taskrun_id,
                            action.attempt,
                            runner,
                            JobPhase.SUBMITTING,
                            spec,
                            updated=HANDED_TO_TICK if over_budget else self.clock.now(),
                        )
                    )
                case Finish() if action.retry_at is not None:
                    timers.append(TimerRecord(execution.id, FLOW_RETRY_TIMER, action.retry_at))
                    self._hint_timer(action.retry_at)
                case _:
                    pass
        return logs, timers, jobs

    def _carry_out(self, execution: Execution, actions: Iterable[Action], jobs: Iterable[JobRecord]) -> None:
        """Do what the stored actions ask; ``jobs`` are their outbox records, as stored."""
        records = {job.name: job for job in jobs}
        for action in actions:
            match action:
                case SubmitJob():
                    job = records[action.job_name]
                    if job.updated != HANDED_TO_TICK:
                        self._submit(job, reattach=False)
                case CancelJob():
                    self._cancel(action)
                case RunInline():
                    error = f"no inline handler for {action.task_type}"
                    self._queue.append(
                        (
                            execution.id,
                            TaskResult(
                                self.clock.now(), action.taskrun_id, action.attempt, State.FAILED, None, error
                            ),
                            None,
                        )
                    )
                case StartSubflow():
                    self._start_subflow(execution, action)
                case Finish():
                    self._finished(execution, action)
                case _:
                    pass

    # ================================================================== jobs

    def _event(
        self,
        job: JobRecord,
        status: JobStatus,
        outputs: Mapping[str, Any] | None = None,
        own: _Pending | None = None,
    ) -> None:
        self._queue.append(
            (
                job.execution_id,
                JobStatusChanged(
                    self.clock.now(),
                    job.taskrun_id,
                    job.attempt,
                    status.state.value,
                    None if status.failure is None else status.failure.value,
                    status.exit_code,
                    status.reason,
                    outputs,
                    status.cost,
                ),
                own,
            )
        )

    def _spec(self, job: JobRecord) -> tuple[Runner, JobSpec]:
        execution = self._load(job.execution_id)
        raw = job.spec
        timeout = raw.get("timeout")
        runner_name, spec = build_job_spec(
            name=job.name,
            task_type=raw["task_type"],
            properties=raw["properties"],
            timeout=None if timeout is None else timedelta(seconds=timeout),
            output_prefix=self.storage.prefix(
                execution.namespace, execution.flow_id, execution.id, job.taskrun_id, job.attempt
            ),
            labels={
                "squall.io/namespace": execution.namespace,
                "squall.io/flow": execution.flow_id,
                "squall.io/task": str(raw.get("task_id", "")),
                "squall.io/execution": execution.id,
                "squall.io/taskrun": job.taskrun_id,
                "squall.io/attempt": str(job.attempt),
            },
            storage=self.storage,
        )
        runner = self.runners.get(runner_name)
        validate_options(type(runner), {**getattr(runner, "option_defaults", {}), **spec.options})
        return runner, spec

    def _submit(self, job: JobRecord, *, reattach: bool) -> None:
        try:
            runner, spec = self._spec(job)
            with dependencies(job.runner):  # runners import their SDK on first use
                handle = runner.find(spec) if reattach else None
                if handle is None:
                    handle = runner.submit(spec)
        except RunnerUnavailableError as exc:  # the extra is not installed: this job fails, nothing else
            self._give_up(job, Failure.USER, exc.for_type(_runner_type(job)))
            return
        except TransientRunnerError as exc:
            self._give_up(job, Failure.START_FAILED, f"{job.runner}: {exc}")
            return
        except (RunnerError, ScriptError, UnknownRunnerError) as exc:
            self._give_up(job, Failure.USER, str(exc))
            return
        self._handles[job.name] = handle
        self._mine[job.name] = job
        if not reattach and self._announces(job.runner):
            self._lazy.add(job.name)
        if self.on_logs is not None:
            self._live[job.name] = (job, None, 0)
        self._pend(job, JobPhase.SUBMITTED, handle=handle.to_dict())

    def _mark(self, job: JobRecord, phase: JobPhase, **changes: Any) -> JobRecord:
        return replace(job, phase=phase, updated=self.clock.now(), **changes)

    def _pend(self, job: JobRecord, phase: JobPhase, **changes: Any) -> None:
        pending = self._pending.setdefault(job.execution_id, _Pending())
        pending.jobs[job.name] = self._mark(job, phase, **changes)

    def _give_up(self, job: JobRecord, failure: Failure, reason: str, logs: Sequence[LogLine] = ()) -> None:
        """End the job's task as failed; the job becomes DONE only with that event (``_apply``)."""
        status = JobStatus(JobState.FAILED, failure=failure, reason=reason)
        self._event(job, status, None, _Pending(list(logs), {job.name: self._mark(job, JobPhase.DONE)}))
        self._drain()

    def _cancel(self, action: CancelJob) -> None:
        job = self.store.get_job(action.job_name)
        if job is None or job.phase is JobPhase.DONE:
            return
        try:
            handle = self._handle(job)
            if handle is None:
                try:
                    runner, spec = self._spec(job)
                    with dependencies(job.runner):
                        handle = runner.find(spec)
                except RunnerUnavailableError:
                    raise  # it may have been submitted (by a process that had the extra): not "before"
                except (RunnerError, ScriptError, UnknownRunnerError):
                    handle = None
                if handle is None:
                    self._give_up(job, Failure.CANCELLED, "cancelled before it was submitted")
                    return
            runner = self.runners.get(job.runner)
            with dependencies(job.runner):
                runner.cancel(handle)
                status = runner.poll([handle]).get(handle.name)
        except RunnerUnavailableError as exc:
            self._not_cancellable(job, exc)
            return
        except RunnerError as exc:  # a kill never crashes: the job stays active, polled by every step
            self._cancel_failed(job, exc)
            return
        if status is not None and status.terminal:
            self._complete(job, runner, handle, status)

    def _cancel_failed(self, job: JobRecord, exc: RunnerError) -> None:
        """The backend refused or failed the cancel (retries spent): say so in the execution's log."""
        message = (
            f"could not cancel job {job.name} yet: {exc};"
            " it is still followed and ends the task when it stops"
        )
        self._pending.setdefault(job.execution_id, _Pending()).logs.append(self._warning(job, message))

    def _not_cancellable(self, job: JobRecord, exc: RunnerUnavailableError) -> None:
        """A kill must end even when a job's runner cannot work here: the job is given up, loudly."""
        message = (
            f"job {job.name} was not cancelled: {exc.for_type(_runner_type(job))}; if it was"
            " submitted, it may still be running on its backend"
        )
        self._give_up(job, Failure.CANCELLED, message, [self._warning(job, message)])

    def _warning(self, job: JobRecord, message: str) -> LogLine:
        """A WARN line about ``job`` for its execution's log (and the process's)."""
        _log.warning("execution %s: %s", job.execution_id, message)
        task_id = str(job.spec.get("task_id", ""))
        return LogLine(self.clock.now(), Level.WARN, message, task_id, job.taskrun_id, job.attempt)

    def _unavailable(self, runner: str, exc: RunnerUnavailableError) -> None:
        """Jobs of a runner that cannot work here are left alone; say so once per process."""
        if runner not in self._warned:
            self._warned.add(runner)
            _log.warning("jobs of task runner %s are not followed by this process: %s", runner, exc)

    def _handle(self, job: JobRecord) -> JobHandle | None:
        if job.handle:
            return JobHandle.from_dict(job.handle)
        return self._handles.get(job.name)

    def _poll_jobs(self) -> bool:
        """One batched ``poll`` per runner over every active job whose handle is known."""
        if self._handles and time.monotonic() - self._jobs_scanned < self.poll_interval:
            active = [self._mine[name] for name in self._handles if name in self._mine]
        else:
            active = self.store.active_jobs()
            self._jobs_scanned = time.monotonic()
            names = {job.name for job in active}
            if any(name not in names for name in self._handles):  # ended through another process
                self._handles = {n: h for n, h in self._handles.items() if n in names}
                self._mine = {n: j for n, j in self._mine.items() if n in names}
        return self._poll(active) > 0

    def _poll(self, active: Iterable[JobRecord]) -> int:
        """Ask each runner once about ``active`` jobs; complete the terminal ones; how many ended."""
        by_runner: dict[str, list[tuple[JobRecord, JobHandle]]] = {}
        for job in active:
            handle = self._handle(job)
            if handle is not None:
                by_runner.setdefault(job.runner, []).append((job, handle))
        ended = 0
        for name, pairs in by_runner.items():
            jobs = [job for job, _ in pairs]
            handles = {job.name: handle for job, handle in pairs}
            try:
                runner = self.runners.get(name)
                with dependencies(name):
                    statuses = runner.poll(list(handles.values()))
            except RunnerUnavailableError as exc:  # only this runner's jobs wait; the others go on
                self._unavailable(name, exc)
                continue
            except (RunnerError, UnknownRunnerError):
                continue  # the backend is unwell (retries already spent): ask again on the next step
            for job in jobs:
                status = statuses.get(job.name)
                if status is not None and status.terminal:
                    self._complete(job, runner, handles[job.name], status)
                    ended += 1
        return ended

    def _complete(self, job: JobRecord, runner: Runner, handle: JobHandle, status: JobStatus) -> None:
        task_id = str(job.spec.get("task_id", ""))

        def make(level: Level, message: str) -> LogLine:
            return LogLine(self.clock.now(), level, message, task_id, job.taskrun_id, job.attempt)

        _, _, shown = self._live.pop(job.name, (None, None, 0))
        capture = Capture(self.log_limits, make, shown)
        cursor: str | None = None
        for _ in range(1_000_000):
            chunk = runner.logs(handle, cursor)
            for record in chunk.lines:
                capture.add(record.stream, record.text, record.partial)
            cursor = chunk.cursor
            if chunk.complete or not chunk.lines:
                break
        self._displayed |= capture.displayed
        if capture.error is not None:
            status = _outputs_refused(status, capture.error)

        def ended() -> None:  # once the job's end is stored (or found stored): forget it, clean up
            self._handles.pop(job.name, None)
            self._mine.pop(job.name, None)
            runner.cleanup(handle)

        own = _Pending(capture.finish(), {job.name: self._mark(job, JobPhase.DONE, handle=handle.to_dict())})
        own.then.append(ended)
        self._event(job, status, job_outputs(status, capture.outputs), own)
        self._drain()

    # ================================================================== timers, subflows, finish

    def _fire_timers(self) -> bool:
        hint = self._next_timer()
        if hint is None or hint > self.clock.now():
            return False
        due = self.store.due_timers(self.clock.now())
        for timer in due:
            delete = partial(self.store.delete_timer, timer.execution_id, timer.key)
            if timer.key == FLOW_RETRY_TIMER:
                self._retry_flow(timer.execution_id)
                delete()
            else:  # deleted once its event is stored or found applied, never on a guess (``_apply``)
                fired = TimerFired(at=self.clock.now(), key=timer.key)
                self._queue.append((timer.execution_id, fired, _Pending(then=[delete])))
                self._drain()
        self._next_timer(fresh=True)
        return bool(due)

    def _retry_id(self, execution: Execution) -> str:
        return hashlib.blake2b(f"{execution.id}/retry".encode(), digest_size=11).hexdigest()

    def _retry_flow(self, execution_id: str) -> None:
        """Flow-level retry (CREATE_NEW_EXECUTION): same inputs, ``system.retryAttempt`` + 1."""
        execution = self._reload(execution_id)  # its final labels, not the ones a copy had
        attempt = int(execution.labels.get("system.retryAttempt", "1")) + 1
        with contextlib.suppress(ConflictError):  # already created by an earlier, interrupted firing
            self.start(
                execution.namespace,
                execution.flow_id,
                execution.inputs,
                revision=execution.flow_revision,
                labels={**execution.labels, "system.retryAttempt": str(attempt)},
                trigger=execution.trigger,
                execution_id=self._retry_id(execution),
                typed=False,
            )

    def _start_subflow(self, parent: Execution, action: StartSubflow) -> None:
        link = {
            "id": parent.id,
            "namespace": parent.namespace,
            "flowId": parent.flow_id,
            "taskRunId": action.taskrun_id,
            "attempt": action.attempt,
            "wait": action.wait,
        }

        def fail(message: str) -> None:
            event = TaskResult(
                self.clock.now(), action.taskrun_id, action.attempt, State.FAILED, None, message
            )
            self._queue.append((parent.id, event, None))

        try:
            self.start(
                action.namespace,
                action.flow_id,
                action.inputs,
                revision=action.revision,
                labels=action.labels,
                parent=link,
                execution_id=action.execution_id,
            )
        except NotFoundError:
            fail(f"Unable to find flow '{action.namespace}'.'{action.flow_id}'")
        except InputError as exc:
            fail(str(exc))
        except ConflictError:
            pass  # created before a crash; it reports when it ends

    def _finished(self, execution: Execution, action: Finish) -> None:
        parent = execution.parent
        if not parent or not parent.get("wait"):
            return
        outputs = {
            "executionId": execution.id,
            "state": execution.state.value,
            "outputs": dict(execution.outputs or {}),
        }
        event = TaskResult(
            self.clock.now(), parent["taskRunId"], int(parent.get("attempt", 1)), execution.state, outputs
        )
        self._queue.append((parent["id"], event, None))
