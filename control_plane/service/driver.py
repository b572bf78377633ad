"""The execution driver: event in, load, plan, versioned save, outbox; the only code acting on plans.

Theory of operation
-------------------
Every change to an execution goes through :meth:`ExecutionDriver.advance` (or an event queued
in :class:`~control_plane.service.news.News` by the job supervisor)::

    execution = load(id)                      # the copy this process last saw, or the store's
    new, actions = plan(flow, execution, event)
    store.save_execution(new, expected_version=execution.version,
                         logs=..., timers=..., jobs=...)   # one atomic write
    carry out actions                          # submit/cancel jobs, start subflows...

If another writer saved the execution first, the store raises ``ConflictError``; the driver
drops its cached copy, reloads and plans the same event again. Events produced while carrying
out actions (a job that failed to submit, a subflow that ended) are queued and applied in
order, never recursively.

No state that can be stale: the cached copy outlives a Lambda invocation in a warm container
while other containers move the execution on, so it is only a guess, checked by version
before anything follows from it. A plan that changes the execution is checked by the save
itself (the version condition). A plan that changes nothing, or that refuses the event, on a
copy not read for this very event proves nothing: the driver reads the execution as stored
and plans again. Only a no-op on the stored execution means the event was already applied
(or overtaken: a later attempt, a task that ended). What an event carries with it (a job's
DONE mark and logs, a fired timer's deletion, the runner's cleanup) is done in the same save,
or after that finding, and never otherwise: a job whose event could not be stored stays
active and is heard again. Reading the store for every event would cost a read per event and,
on SQLite, a read of every task run: quadratic for a wide ForEach (2,000 lanes: 39 ms per
event instead of 0.8). This check costs no read while the copy is current.

Group commit: job status events of one execution queued together (one poll heard those jobs
end) are planned one after the other and stored in one write (:meth:`ExecutionDriver._apply_group`),
with every event's DONE marks and logs, then their actions are carried out; a group that
cannot be applied whole falls back to one event at a time before anything is written.

Exactly-once submission: ``SubmitJob`` becomes a job record in phase SUBMITTING, written in
the same transaction as the task run that asked for it (the outbox), holding this process's
submit claim. Only then is the job supervisor asked to submit it; a process that crashed in
between leaves the record for recovery, which takes the claim (a conditional write: one
process at a time) and asks the runner to ``find`` the job before submitting it again.

Durable cancel: ``CancelJob`` writes the job CANCELLING in the same transaction; the
supervisor then cancels it, and the tick (or the local loop) again until it is terminal.

Bounded fan-out (ADR 0015): with ``lane_budget`` set (the cloud handlers set it), every plan
starts at most that many lanes; a wider ForEach or Parallel gets a ``fanout:`` timer, saved
with the step like any timer (the outbox), and the tick (or any later event of the
execution) starts the next chunk from the counters. A start therefore writes at most
``lane_budget`` task runs, whatever the loop's size. With ``submit_within`` set, a step also
stops submitting its jobs once it has spent that many seconds on them: the rest stay in the
outbox under this process's claim (listed in ``owed``): this process's next tick submits
them first (``squall server``, a warm container), and any tick does after its grace
(``find`` first), exactly as after a crash, so no backend's latency can stretch an invocation.

Wide steps: with ``submit_budget`` set (the cloud handlers set it), one step submits at most
that many jobs itself. The rest stay SUBMITTING, stamped :data:`HANDED_TO_TICK`, which makes
them look older than any grace, and the next tick submits them (``find`` first, as for any
recovery). Starting a 10,000-value ForEach through the API then answers within API Gateway's
30 seconds instead of submitting every job while the client has long been told 504.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from msgspec.structs import replace

from control_plane.collector import planning
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
from control_plane.engine.ids import job_name
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
from control_plane.flows.aliases import canonical_type
from control_plane.flows.loader import parse_flow
from control_plane.flows.models import Flow, HttpTrigger, Pause
from control_plane.flows.template_checks import templates_in
from control_plane.service.clock import Clock
from control_plane.service.concurrency import Admission, Slots, held_back
from control_plane.service.display import Display
from control_plane.service.flow_index import FlowIndex
from control_plane.service.flow_triggers import FlowTriggers
from control_plane.service.http_triggers import INDEX_KEY as HTTP_INDEX_KEY
from control_plane.service.kv import KvStore
from control_plane.service.masks import SecretMasks
from control_plane.service.news import News, Ride
from control_plane.service.scripts import runner_of
from control_plane.store.base import FlowRecord, JobPhase, JobRecord, StateStore, TimerRecord, later_phase
from control_plane.store.codec import dumps
from control_plane.tasks import EffectContext, EffectOutcome, deadline_for, run_effect

if TYPE_CHECKING:
    from control_plane.expressions.code_cache import TemplateCodeCache
    from control_plane.service.ownership import Ownership
    from control_plane.service.storage import TaskStorage
    from control_plane.service.supervisor import JobSupervisor

__all__ = ["FLOW_RETRY_TIMER", "FLOW_TRIGGER_TIMER", "HANDED_TO_TICK", "ExecutionDriver", "Recent"]

MAX_CONFLICTS = 50
FLOW_RETRY_TIMER = "flow-retry:"
FLOW_TRIGGER_TIMER = "flow-triggers:"
"""Outbox of an ended execution's Flow triggers: written with its end, deleted once they fired."""

HANDED_TO_TICK = datetime(1970, 1, 1, tzinfo=UTC)
"""``updated`` of a job record left SUBMITTING for the tick by a step over its submit budget."""

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


def _merged(planned: Sequence[JobRecord], riding: Iterable[JobRecord]) -> list[JobRecord]:
    """One record per job for a save: a riding handle joins the plan's CANCELLING mark of the
    same job (a store may apply only the last record of a name), and phases never go back."""
    merged = {job.name: job for job in planned}
    for job in riding:
        first = merged.get(job.name)
        if first is None:
            merged[job.name] = job
        else:
            phase = later_phase(first.phase, job.phase)
            merged[job.name] = replace(job, phase=phase, handle=job.handle or first.handle)
    return list(merged.values())


class ExecutionDriver:
    """Plans and stores every change to an execution, and carries out what the plan asks."""

    def __init__(
        self,
        store: StateStore,
        *,
        masks: SecretMasks,
        clock: Clock,
        display: Display,
        new_id: Callable[[], str],
        submit_budget: int | None = None,
        lane_budget: int | None = None,
        submit_within: float | None = None,
        timer_scan_interval: float = 1.0,
        storage: TaskStorage | None = None,
        templates: TemplateCodeCache | None = None,
    ) -> None:
        self.store = store
        self.storage = storage
        # Compiled templates other processes left (local runtimes): loaded with each flow, so
        # the engine renders from memory without compiling them again.
        self.templates = templates
        # ``kv()`` in expressions reads the deployment's KV store through this (the engine does no I/O)
        self.kv = KvStore(storage, clock.now) if storage is not None else None
        self.masks = masks
        self.clock = clock
        self.display = display
        self.new_id = new_id
        self.submit_budget = submit_budget
        self.lane_budget = lane_budget
        self.submit_within = submit_within
        # Jobs a step wrote under this process's claim but ran out of time to submit (oldest first).
        self.owed: deque[JobRecord] = deque(maxlen=100_000)
        self.timer_scan_interval = timer_scan_interval
        self.news = News()
        self.slots = Slots(store)
        self.flow_triggers = FlowTriggers(store)
        self.http_pollers = FlowIndex(store, HTTP_INDEX_KEY)  # flows with an Http trigger: polled each tick
        # Executions this process's Flow triggers started, newest last: ``squall run`` drives them
        # too. Bounded: a long-lived server never reads it.
        self.triggered: deque[str] = deque(maxlen=1000)
        # The Flow-trigger index read when an ending save wrote its outbox timer, by execution.
        self._trigger_outbox: dict[str, list[tuple[str, str, int | None]]] = {}
        self.jobs: JobSupervisor  # set by the wiring (the supervisor reads executions through the driver)
        self.ownership: Ownership | None = None  # local stores: who drives which execution
        # The copy of each execution this process last saw: a guess, never the truth (see the
        # module docstring). Only ids, flow and inputs (which never change) are read from it unchecked.
        # Both are guesses a long-lived process must not hoard: at most CACHED_* entries each,
        # the least recently stored ones dropped first (a dropped execution is read again).
        self.cache: Recent[str, Execution] = Recent(CACHED_EXECUTIONS)
        self.flows: Recent[tuple[str, str, int | None], Flow] = Recent(CACHED_FLOWS)
        self._draining = False
        # The earliest timer this process wrote: the store is still scanned every
        # ``timer_scan_interval`` for what other processes did.
        self._timer_hint: datetime | None = None
        self._timers_scanned = -float("inf")

    # ================================================================== flows

    def deploy(self, source: str, origin: str = "<string>") -> FlowRecord:
        """Validate and store a flow; a new revision only when the source changed."""
        flow = parse_flow(source, origin)
        record = self.store.save_flow(flow.namespace, flow.id, source, at=self.clock.now())
        self.flow_triggers.index(flow, record.revision)  # after the save: indexed flows exist
        self.slots.limited.mark(flow.namespace, flow.id, flow.concurrency is not None)
        polls = any(isinstance(t, HttpTrigger) for t in flow.triggers or ())
        self.http_pollers.mark(flow.namespace, flow.id, polls, record.revision)
        return record

    def delete_flow(self, namespace: str, flow_id: str) -> None:
        """Delete a flow (NotFoundError if unknown): its Flow triggers stop listening at once.

        Old revisions stay readable (executions need them), so the indexes must forget it.
        """
        self.store.delete_flow(namespace, flow_id, at=self.clock.now())
        self.flow_triggers.forget(namespace, flow_id)
        self.slots.limited.mark(namespace, flow_id, False)
        self.http_pollers.mark(namespace, flow_id, False)

    def flow(self, namespace: str, flow_id: str, revision: int | None = None) -> Flow:
        """A flow revision, parsed once per process (the latest one is looked up every time)."""
        flow = None if revision is None else self.flows.get((namespace, flow_id, revision))
        if flow is None:
            record = self.store.get_flow(namespace, flow_id, revision)
            flow = self.flows.get((namespace, flow_id, record.revision))
            if flow is None:
                flow = parse_flow(record.source, f"{namespace}.{flow_id} revision {record.revision}")
                flow = flow.model_copy(update={"revision": record.revision})
                self.flows[(namespace, flow_id, record.revision)] = flow
                if self.templates is not None:
                    self.templates.load(templates_in(flow))
        return flow

    def flow_of(self, execution: Execution) -> Flow:
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
        retry_origin: datetime | None = None,
    ) -> Execution:
        """Create an execution, start it and carry out its first actions. InputError if inputs are bad."""
        from control_plane.flows.inputs import resolve_inputs
        from control_plane.service.file_scope import file_scope

        flow = self.flow(namespace, flow_id, revision)
        execution_id = execution_id or self.new_id()
        scope = None
        if self.storage is not None:
            scope = file_scope(
                self.storage,
                namespace=namespace,
                flow_id=flow.id,
                execution_id=execution_id,
                parent=parent,
                trigger=trigger,
                original_id=original_id,
            )
        resolved = resolve_inputs(flow, inputs, typed=typed, file_scope=scope)
        now = self.clock.now()
        created = new_execution(
            flow,
            execution_id,
            at=now,
            inputs=resolved,
            labels=labels,
            trigger=trigger,
            parent=parent,
            original_id=original_id,
            retry_origin=retry_origin,
        )
        if flow.concurrency is not None:
            admission, held = self.slots.admit(namespace, flow.id, created.id, flow.concurrency)
            if admission is not Admission.RUN:
                return self._create(*held_back(created, admission, held, now))
        with planning():
            execution, actions = plan(
                flow,
                created,
                Started(at=now),
                secrets=self.masks.chain,
                kv=self.kv,
                lane_budget=self.lane_budget,
            )
        return self._create(execution, actions)

    def start_queued(self, execution_id: str) -> bool:
        """Start a QUEUED execution that was handed a slot; False if it has none (yet) or is not QUEUED."""
        execution = self.reload(execution_id)
        if execution.state is not State.QUEUED:
            return False
        if not self.slots.holds(execution.namespace, execution.flow_id, execution_id):
            return False
        self._claim(execution_id)
        self.advance(execution_id, Started(at=self.clock.now()))
        return True

    def _create(self, execution: Execution, actions: list[Action]) -> Execution:
        logs, timers, jobs = self._records(execution, actions)
        if self.ownership is not None:  # before its jobs exist: no other process may take them
            self.ownership.claim(execution.id)
        self.store.create_execution(execution, logs=logs, timers=timers, jobs=jobs)
        self._stored(execution, logs)
        self._carry_out(execution, actions, jobs)
        self._release_if_ended(execution)
        self.drain()
        return self.cache.get(execution.id, execution)

    def advance(self, execution_id: str, event: Event) -> Execution:
        """Apply one event (and everything it leads to); return the execution as stored."""
        self.news.event(execution_id, event)
        self.drain()
        return self.load(execution_id)

    def kill(self, execution_id: str) -> Execution:
        """Cancel every running job of the execution through its runner; it ends KILLED."""
        execution = self.reload(execution_id)
        if execution.state.terminal:
            raise ServiceError(f"execution {execution_id} already ended {execution.state}")
        if execution.state is State.KILLING:  # killed before: cancel its jobs again, now
            names = [
                job_name(execution.namespace, execution.flow_id, tr.task_id, execution.id, tr.id, tr.attempt)
                for tr in execution.taskruns.values()
                if tr.state is State.KILLING
            ]
            self.jobs.recancel(job for name in names if (job := self.store.get_job(name)) is not None)
            self.drain()
            return self.load(execution_id)
        return self.advance(execution_id, Kill(at=self.clock.now()))

    def delete(self, execution_id: str, *, storage: TaskStorage | None = None) -> None:
        """Delete an ended execution, and its files under ``storage`` when given.

        Refused (ServiceError, nothing deleted) while it runs, and while one of its jobs is
        still being cancelled: the job record is what keeps the tick cancelling it, and
        deleting it would leave the remote job running. Subflow executions it started are
        their own and stay, as in Kestra.
        """
        execution = self.reload(execution_id)
        if not execution.state.terminal:
            raise ServiceError(f"execution {execution_id} is {execution.state}: kill it, then delete it")
        names = {a.job for tr in execution.taskruns.values() for a in tr.attempts if a.job}
        for name in sorted(names):
            job = self.store.get_job(name)
            if job is not None and job.phase is not JobPhase.DONE:
                raise ServiceError(
                    f"execution {execution_id}: its job {name} is still {job.phase.value}; try once it ended"
                )
        self.store.delete_execution(execution_id)
        self.cache.pop(execution_id, None)
        if storage is not None:
            prefix = storage.execution_prefix(execution.namespace, execution.flow_id, execution_id)
            storage.delete_prefix(prefix)

    def restart(self, execution_id: str) -> Execution:
        """Kestra's restart: failed task runs run again, in the same execution."""
        execution = self.reload(execution_id)
        if execution.state not in (State.FAILED, State.KILLED):
            raise ServiceError(
                f"execution {execution_id} is {execution.state}: only FAILED or KILLED executions restart"
            )
        self._claim(execution_id)
        return self.advance(execution_id, Restart(at=self.clock.now()))

    def _claim(self, execution_id: str) -> None:
        """Who resumes or restarts an execution drives it on, unless a live process already does."""
        if self.ownership is not None:
            self.ownership.claim(execution_id)

    def resume(
        self, execution_id: str, inputs: Mapping[str, Any] | None = None, *, taskrun_id: str | None = None
    ) -> Execution:
        """Resume a paused execution with its Pause task's ``onResume`` inputs (InputError if bad)."""
        execution = self.reload(execution_id)
        if execution.state is not State.PAUSED and not any(
            tr.state is State.PAUSED for tr in execution.taskruns.values()
        ):
            raise ServiceError(f"execution {execution_id} is {execution.state}, not PAUSED")
        self._claim(execution_id)
        return self.advance(
            execution_id, Resume(at=self.clock.now(), inputs=dict(inputs or {}), taskrun_id=taskrun_id)
        )

    def set_labels(self, execution_id: str, labels: Mapping[str, str]) -> Execution:
        """Kestra's labels on an ended execution: ``labels`` replace its own; ``system.`` ones stay.

        Only an ended execution: a running one may still change its labels itself (the Labels
        task), and the two writes would race. A write that loses to another is a ConflictError.
        """
        execution = self.reload(execution_id)
        if not execution.state.terminal:
            raise ServiceError(f"execution {execution_id} is {execution.state}: labels are set once it ended")
        kept = {k: v for k, v in execution.labels.items() if k.startswith("system.")}
        new = execution.evolve(labels={**kept, **labels}, version=execution.version + 1)
        self.store.save_execution(new, expected_version=execution.version)
        return new

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
                self.flow_of(original),
                original,
                self.new_id(),
                at=self.clock.now(),
                taskrun_id=taskrun_id,
                labels={"system.replay": "true"},
                secrets=self.masks.chain,
                kv=self.kv,
                lane_budget=self.lane_budget,
            )
        except EngineError as exc:
            raise ServiceError(str(exc)) from None
        return self._create(execution, actions)

    def resumes_by_itself(self, execution: Execution) -> bool:
        """Whether a paused task run of ``execution`` is a Pause that ends on its own timer.

        ``pauseDuration``/``delay`` resume it and ``timeout`` ends it by its ``behavior``:
        either way Kestra moves on with no one's help ("If no delay and no timeout are
        configured, the execution will never end until it's manually resumed", Pause docs).
        """
        tasks = compile_flow(self.flow_of(execution)).tasks
        return any(
            isinstance(task := tasks.get(tr.task_id), Pause)
            and (task.auto_resume_after is not None or task.timeout is not None)
            for tr in execution.taskruns.values()
            if tr.state is State.PAUSED
        )

    def retry_target(self, execution: Execution) -> str | bool | None:
        """For a terminal execution: the id of its flow-retry execution, True if one is pending.

        A CREATE_NEW_EXECUTION retry ends the execution RETRIED (Kestra's state for it).
        """
        if execution.state is not State.RETRIED:
            return None
        target = self.retry_id(execution)
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

    # ================================================================== plan and save

    def drain(self) -> None:
        """Apply every queued event in order (re-entrant calls return: the outer loop goes on)."""
        if self._draining:
            return
        self._draining = True
        try:
            queue = self.news.queue
            while queue:
                execution_id, event, own = queue.popleft()
                group = [(event, own or Ride())]
                while (
                    isinstance(event, JobStatusChanged)
                    and queue
                    and queue[0][0] == execution_id
                    and isinstance(queue[0][1], JobStatusChanged)
                ):
                    _, later, ride = queue.popleft()
                    group.append((later, ride or Ride()))
                if len(group) == 1 or not self._apply_group(execution_id, group):
                    for one, ride in group:
                        self._apply(execution_id, one, ride)
        finally:
            self._draining = False

    def _apply_group(self, execution_id: str, group: list[tuple[Event, Ride]]) -> bool:
        """Group commit: jobs of one execution that ended together (one poll heard them) are
        planned one after the other on the cached copy and stored in one write, instead of
        one write (one fsync, locally) each. What each event's save justifies (DONE marks,
        logs, ``then``) goes with that one write, and actions are carried out only after it.

        False, with nothing written or done, when the group cannot be applied as a whole: an
        event refused or already applied, a copy that is not current (a conflict): the caller
        then applies the events one by one, which handles each of those cases on its own.
        """
        execution = self.cache.get(execution_id)
        if execution is None:
            return False
        flow = self.flow_of(execution)
        steps: list[tuple[Execution, list[Action]]] = []
        current = execution
        for event, _ in group:
            try:
                new, actions = plan(
                    flow, current, event, secrets=self.masks.chain, kv=self.kv, lane_budget=self.lane_budget
                )
            except SquallError:
                return False
            if new.version == current.version:
                return False
            steps.append((new, actions))
            current = new
        final = replace(current, changed=frozenset().union(*(new.changed for new, _ in steps)))
        extra = self.news.riding.pop(execution_id, None) or Ride()
        owns = [own for _, own in group]
        records = [self._records(new, actions) for new, actions in steps]
        written = self.masks.logs(flow, final, [*extra.logs, *(line for own in owns for line in own.logs)])
        logs = [line for step_logs, _, _ in records for line in step_logs]
        planned = [job for _, _, step_jobs in records for job in step_jobs]
        riding: dict[str, JobRecord] = dict(extra.jobs)
        for own in owns:
            riding.update(own.jobs)
        try:
            self.store.save_execution(
                final,
                expected_version=execution.version,
                logs=[*written, *logs],
                timers=[timer for _, step_timers, _ in records for timer in step_timers],
                jobs=_merged(planned, riding.values()),
            )
        except ConflictError:
            self.cache.pop(execution_id, None)
            self._keep(execution_id, extra)
            return False
        self._stored(final, [*written, *logs])
        for own in owns:
            self._settle(own)
        for (_, actions), (_, _, step_jobs) in zip(steps, records, strict=True):
            self._carry_out(final, actions, step_jobs)
        self._release_if_ended(final)
        return True

    def load(self, execution_id: str) -> Execution:
        """The cached copy (a guess: see the module docstring), else the stored one."""
        execution = self.cache.get(execution_id)
        if execution is None:
            execution = self.store.get_execution(execution_id)
            self.cache[execution_id] = execution
        return execution

    def reload(self, execution_id: str) -> Execution:
        """The execution as stored now."""
        self.cache.pop(execution_id, None)
        return self.load(execution_id)

    def _apply(self, execution_id: str, event: Event, own: Ride) -> None:
        """Plan ``event`` on the execution as stored, save it, carry out its actions.

        ``own`` holds what only this event's save justifies; the execution's riding records
        go with any save. The cached copy is a guess (module docstring): whatever it yields
        is checked by the save's version condition, or by planning again on a copy read for
        this event.
        """
        extra = self.news.riding.pop(execution_id, None) or Ride()
        for _ in range(MAX_CONFLICTS):
            checked = execution_id not in self.cache  # read from the store for this event
            execution = self.load(execution_id)
            flow = self.flow_of(execution)
            try:
                with planning():
                    new, actions = plan(
                        flow,
                        execution,
                        event,
                        secrets=self.masks.chain,
                        kv=self.kv,
                        lane_budget=self.lane_budget,
                    )
            except SquallError:
                if not checked:  # refused on an old copy (a resume of what it thinks is RUNNING)
                    self.cache.pop(execution_id, None)
                    continue
                self._keep(execution_id, extra)
                raise
            if new.version == execution.version:
                if not checked:  # stale only on an old copy, perhaps: look at the stored one
                    self.cache.pop(execution_id, None)
                    continue
                self._keep(execution_id, extra)
                self._write_aside(execution_id, own)  # already applied or overtaken, as stored now
                self._settle(own)
                return
            written = self.masks.logs(flow, new, [*extra.logs, *own.logs])  # job output: not masked yet
            logs, timers, jobs = self._records(new, actions)
            # The next jobs' starts are readied before the save (JobSupervisor.prepared); when
            # the step only submits them, they start once it is written, while it is synced.
            with self.jobs.prepared(actions, [job for job in jobs if job.updated != HANDED_TO_TICK]) as step:
                try:
                    self.store.save_execution(
                        new,
                        expected_version=execution.version,
                        logs=[*written, *logs],
                        timers=timers,
                        jobs=_merged(jobs, {**extra.jobs, **own.jobs}.values()),  # a DONE mark beats a handle
                    )
                except ConflictError:
                    self.cache.pop(execution_id, None)
                    continue
                if step.early:
                    try:
                        self._carry_out(new, actions, jobs)
                    finally:
                        step.sync()  # nothing below is let out before the save is durable
                        self._stored(new, [*written, *logs])
                        self._settle(own)
                else:
                    self._stored(new, [*written, *logs])
                    try:
                        self._carry_out(new, actions, jobs)
                    finally:
                        self._settle(own)
            self._release_if_ended(new)
            return
        self._keep(execution_id, extra)  # ``own`` is dropped: its job stays active and is heard again
        raise StoreError(f"execution {execution_id}: gave up after {MAX_CONFLICTS} conflicting writes")

    @staticmethod
    def _settle(own: Ride) -> None:
        """The event is stored, or found applied: do what waited for that."""
        for then in own.then:
            then()

    def _keep(self, execution_id: str, extra: Ride) -> None:
        """Put back what did not get written, ahead of anything queued since."""
        if extra.empty():
            return
        later = self.news.riding.get(execution_id)
        if later is not None:
            extra.merge(later)
        self.news.riding[execution_id] = extra

    def flush(self) -> None:
        """Write what is still riding along (handles of just-submitted jobs): end of a Lambda call."""
        for execution_id in list(self.news.riding):
            extra = self.news.riding.pop(execution_id, None)
            if extra is not None:
                self._write_aside(execution_id, extra)

    def _write_aside(self, execution_id: str, extra: Ride) -> None:
        """Write job records and logs without an execution change, each job with a version check.

        A job another process already marked DONE keeps that process's logs: they are not
        stored twice.
        """
        if extra.empty():
            return
        logs = list(extra.logs)
        for job in extra.jobs.values():
            if job.phase is JobPhase.SUBMITTED and job.name in extra.lazy:
                continue  # lazy handle: the job's events carry it (``JobSupervisor.announces``)
            stored = self.store.get_job(job.name)
            if stored is None:
                continue
            if stored.phase is JobPhase.DONE:
                logs = [x for x in logs if x.taskrun_id != job.taskrun_id or x.attempt != job.attempt]
                continue
            phase = later_phase(stored.phase, job.phase)  # a handle arriving after a kill keeps the cancel
            with contextlib.suppress(ConflictError):
                self.store.update_job(
                    replace(stored, phase=phase, handle=job.handle or stored.handle, updated=job.updated),
                    expected_version=stored.version,
                )
        if logs:
            execution = self.load(execution_id)
            logs = self.masks.logs(self.flow_of(execution), execution, logs)
        self.store.append_logs(execution_id, logs)
        self.display.logs(self.cache.get(execution_id), logs)

    def owns(self, execution_id: str) -> bool:
        """Whether this process drives ``execution_id``, taking it over if its owner is gone.

        Always, without leases (the cloud plane).
        """
        return self.ownership is None or self.ownership.owns(execution_id)

    def _release_if_ended(self, execution: Execution) -> None:
        """An ended execution needs no driver, once what its end asked for is done (not before:
        a crash in between leaves the lease to a dead owner, and whoever takes it over
        finishes the job, see ``Recover``)."""
        if execution.state.terminal and self.ownership is not None:
            self.ownership.release(execution.id)

    def holds(self, execution_id: str) -> bool:
        """Whether this process drives ``execution_id`` now, without claiming anything."""
        return self.ownership is None or self.ownership.holds(execution_id)

    def _stored(self, execution: Execution, logs: Sequence[LogLine]) -> None:
        self.cache[execution.id] = execution
        self.display.logs(execution, logs)
        self.display.changed(execution)

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
                            **({} if over_budget else self.jobs.outbox_claim()),
                        )
                    )
                case CancelJob():
                    # Durable: CANCELLING in the same write as the plan that asked for it.
                    stored = self.store.get_job(action.job_name)
                    if stored is not None and stored.phase is not JobPhase.DONE:
                        jobs.append(replace(stored, phase=JobPhase.CANCELLING, updated=self.clock.now()))
                case Finish():
                    if action.retry_at is not None:
                        timers.append(TimerRecord(execution.id, FLOW_RETRY_TIMER, action.retry_at))
                        self._hint_timer(action.retry_at)
                    listeners = self.flow_triggers.listeners()
                    if listeners:  # fired after this save; by the tick if this process dies first
                        timers.append(TimerRecord(execution.id, FLOW_TRIGGER_TIMER, self.clock.now()))
                        self._trigger_outbox[execution.id] = listeners
                case _:
                    pass
        return logs, timers, jobs

    def _carry_out(self, execution: Execution, actions: Iterable[Action], jobs: Iterable[JobRecord]) -> None:
        """Do what the stored actions ask; ``jobs`` are their outbox records, as stored."""
        records = {job.name: job for job in jobs}
        until = None if self.submit_within is None else time.monotonic() + self.submit_within
        for action in actions:
            match action:
                case SubmitJob():
                    job = records[action.job_name]
                    if job.updated == HANDED_TO_TICK:
                        continue
                    if until is not None and time.monotonic() > until:
                        # out of time: our next call submits it, or any tick after its grace; as
                        # stored (a new record is version 1), so re-taking its claim is one write
                        self.owed.append(replace(job, version=1))
                        continue
                    self.jobs.submit(job, reattach=False)
                case CancelJob():
                    self.jobs.cancel(action.job_name)
                case RunInline():
                    self.news.event(execution.id, self._run_effect(execution, action))
                case StartSubflow():
                    self._start_subflow(execution, action)
                case Finish():
                    self._finished(execution, action)
                case _:
                    pass

    # ================================================================== timers, subflows, finish

    def _hint_timer(self, at: datetime) -> None:
        if self._timer_hint is None or at < self._timer_hint:
            self._timer_hint = at

    def next_timer(self, *, fresh: bool = False) -> datetime | None:
        """The earliest pending timer: from the store at most every ``timer_scan_interval``."""
        if fresh or time.monotonic() - self._timers_scanned >= self.timer_scan_interval:
            self._timer_hint = self.store.next_timer()
            self._timers_scanned = time.monotonic()
        return self._timer_hint

    def fire_timers(self, *, fresh: bool = False) -> bool:
        """Fire every due timer (retry delays, Sleep, Pause and task timeouts); True if any was due."""
        hint = self.next_timer(fresh=fresh)
        if hint is None or hint > self.clock.now():
            return False
        due = [t for t in self.store.due_timers(self.clock.now()) if self.owns(t.execution_id)]
        for timer in due:
            delete = partial(self.store.delete_timer, timer.execution_id, timer.key)
            if timer.key == FLOW_RETRY_TIMER:
                self._retry_flow(timer.execution_id)
                delete()
                if self.ownership is not None:
                    self.ownership.release(timer.execution_id)  # ended before: only its retry needed it
            elif timer.key == FLOW_TRIGGER_TIMER:  # its process died between the end and the firing
                self.triggered.extend(
                    self.flow_triggers.fire(
                        self.reload(timer.execution_id), self.flow, self.start, now=self.clock.now
                    )
                )
                delete()
                self.drain()
            else:  # deleted once its event is stored or found applied, never on a guess (``_apply``)
                fired = TimerFired(at=self.clock.now(), key=timer.key)
                self.news.event(timer.execution_id, fired, Ride(then=[delete]))
                self.drain()
        self.next_timer(fresh=True)
        return bool(due)

    @staticmethod
    def retry_id(execution: Execution) -> str:
        return hashlib.blake2b(f"{execution.id}/retry".encode(), digest_size=11).hexdigest()

    def _retry_flow(self, execution_id: str) -> None:
        """Flow-level retry (CREATE_NEW_EXECUTION): same inputs, ``system.retryAttempt`` + 1."""
        execution = self.reload(execution_id)  # its final labels, not the ones a copy had
        attempt = int(execution.labels.get("system.retryAttempt", "1")) + 1
        with contextlib.suppress(ConflictError):  # already created by an earlier, interrupted firing
            self.start(
                execution.namespace,
                execution.flow_id,
                execution.inputs,
                revision=execution.flow_revision,
                labels={**execution.labels, "system.retryAttempt": str(attempt)},
                trigger=execution.trigger,
                execution_id=self.retry_id(execution),
                typed=False,
                retry_origin=execution.retry_origin or execution.created,
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
        if action.iteration is not None:  # a ForEachItem batch: its number comes back with the end
            link["iteration"] = action.iteration
        if action.outputs_uri is not None:
            link["outputsUri"] = action.outputs_uri

        def fail(message: str) -> None:
            event = TaskResult(
                self.clock.now(),
                action.taskrun_id,
                action.attempt,
                State.FAILED,
                None,
                message,
                iteration=action.iteration,
            )
            self.news.event(parent.id, event)

        try:
            if self.flow(action.namespace, action.flow_id, action.revision).disabled:
                # Kestra's Subflow refuses a disabled flow: the calling task run fails, no child.
                fail("Cannot execute a flow which is disabled")
                return
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

    def _run_effect(self, execution: Execution, action: RunInline) -> TaskResult:
        """Do a task's I/O here, in this process (control_plane/tasks: bounded, at-least-once)."""
        canonical = canonical_type(action.task_type) or action.task_type
        if self.storage is None:
            outcome = EffectOutcome(None, f"{action.task_type} needs the deployment storage", ())
        else:
            ctx = EffectContext(
                storage=self.storage,
                store=self.store,
                now=self.clock.now,
                namespace=execution.namespace,
                flow_id=execution.flow_id,
                execution_id=execution.id,
                taskrun_id=action.taskrun_id,
                attempt=action.attempt,
                deadline=deadline_for(action.timeout),
                resume=self._resume_from_task,
            )
            outcome = run_effect(canonical, action.properties, ctx)
        state = State.FAILED if outcome.error is not None else State.SUCCESS
        return TaskResult(
            self.clock.now(),
            action.taskrun_id,
            action.attempt,
            state,
            outcome.outputs,
            outcome.error,
            outcome.logs,
        )

    def _resume_from_task(self, execution_id: str, inputs: Mapping[str, Any]) -> None:
        """``core.execution.Resume``: the paused execution goes on (applied after this step)."""
        self.resume(execution_id, inputs)

    def _finished(self, execution: Execution, action: Finish) -> None:
        self._free_slot(execution)
        listeners = self._trigger_outbox.pop(execution.id, None)
        if listeners is not None:  # the save wrote the outbox timer: fire, then delete it
            self.triggered.extend(
                self.flow_triggers.fire(execution, self.flow, self.start, listeners, now=self.clock.now)
            )
            self.store.delete_timer(execution.id, FLOW_TRIGGER_TIMER)
        parent = execution.parent
        if not parent or not parent.get("wait"):
            return
        outputs = {
            "executionId": execution.id,
            "state": execution.state.value,
            "outputs": dict(execution.outputs or {}),
        }
        iteration = parent.get("iteration")
        error = self._write_batch_outputs(execution, parent.get("outputsUri"))
        event = TaskResult(
            self.clock.now(),
            parent["taskRunId"],
            int(parent.get("attempt", 1)),
            State.FAILED if error else execution.state,
            outputs,
            error,
            iteration=None if iteration is None else int(iteration),
        )
        self.news.event(parent["id"], event)

    def _write_batch_outputs(self, execution: Execution, uri: Any) -> str | None:
        """A ForEachItem batch's child ended: its outputs, one JSON line, where the parent's
        ``_merge`` gathers them (Kestra writes them in ``createSubflowExecutionResult``). Written
        again if the notice is sent again (recovery): same bytes. The error, when it fails."""
        if not isinstance(uri, str) or execution.outputs is None:
            return None
        from control_plane.service.storage import StorageError

        if self.storage is None:
            return "Failed to extract outputs: the deployment has no storage"
        try:
            self.storage.write(uri, (dumps(dict(execution.outputs)) + "\n").encode())
        except StorageError as exc:
            return f"Failed to extract outputs with the error: '{exc}'"
        return None

    def repair_slots(self) -> int:
        """Finish what a dead process left half-done with concurrency slots (``concurrency.py``).

        A QUEUED execution holding a slot is started; a slot held by an ended execution is
        freed (and handed on). Only executions this process drives; the number repaired.
        """
        repaired = 0
        for namespace, flow_id, _ in self.slots.limited.flows():
            for execution_id in self.slots.book(namespace, flow_id).running:
                try:
                    held = self.store.get_execution_meta(execution_id)
                except NotFoundError:
                    continue  # admitted a moment ago, being created (or never: see the docstring)
                if held.state is State.QUEUED and self.owns(execution_id):
                    self.news.event(execution_id, Started(at=self.clock.now()))
                    repaired += 1
                elif held.state.terminal:
                    self._free_slot(held)
                    repaired += 1
        self.drain()
        return repaired

    def _free_slot(self, execution: Execution) -> None:
        """An ended execution of a flow with ``concurrency`` frees its slot; queued ones it hands
        a slot to start here, if this process drives them (else their own process starts them,
        :meth:`start_queued`): Kestra pops the queue when an execution ends (``JdbcExecutor``)."""
        own = self.flow_of(execution).concurrency  # cached: no read for an unlimited flow
        if own is None:
            return  # admitted without a book: holds no slot
        concurrency = self.flow(execution.namespace, execution.flow_id).concurrency or own  # the limit now
        promoted = self.slots.release(execution.namespace, execution.flow_id, execution.id, concurrency.limit)
        for execution_id in promoted:
            if self.owns(execution_id):
                self.news.event(execution_id, Started(at=self.clock.now()))
