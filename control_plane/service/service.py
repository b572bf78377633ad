"""The loops on top of the driver and the supervisor: ``squall run``, the server, each Lambda.

Layers (docs/architecture.md, ADR 0008)::

    Service            the loops: run to the end, one step, one tick, a push event, schedules
      ExecutionDriver  event in -> load -> plan -> versioned save -> outbox (driver.py)
      JobSupervisor    submit, poll, complete, logs, cancel -> events for the driver (supervisor.py)

:class:`Service` is what every runtime holds (one per process, any number of processes per
store): ``squall run`` and ``squall conformance`` call :meth:`Service.run`, ``squall server``
its :meth:`~Service.step` and :meth:`~Service.tick`, each Lambda handler one entry point. It
owns no execution state of its own: the driver holds the verified cache and the queue of
events, the supervisor what it knows of running jobs.

Completion: :meth:`step` fires due timers and polls every active job, one batched ``poll``
per runner; each terminal job becomes an event the driver applies (``supervisor.py``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, cast

from msgspec import Struct

from control_plane.engine.events import Recover
from control_plane.engine.model import Execution, LogLine
from control_plane.engine.states import State
from control_plane.errors import ConflictError, InputError, NotFoundError, ServiceError
from control_plane.flows.models import Flow, Schedule
from control_plane.secrets import SecretChain
from control_plane.service.capture import LogLimits
from control_plane.service.clock import Clock, SystemClock, new_execution_id
from control_plane.service.display import Display
from control_plane.service.driver import HANDED_TO_TICK, ExecutionDriver, Recent
from control_plane.service.masks import SecretMasks
from control_plane.service.ownership import LeaseStore, Ownership
from control_plane.service.runners import RunnerRegistry, implements
from control_plane.service.storage import TaskStorage
from control_plane.service.supervisor import (
    DEFAULT_LOST_AFTER,
    DEFAULT_SUBMIT_LEASE,
    DEFAULT_SUBMIT_TIMEOUT,
    JobSupervisor,
)
from control_plane.store.base import FlowRecord, JobPhase, JobRecord, StateStore, TriggerRecord
from control_plane.triggers.schedule import Fire, due
from runners.base import JobEvent, Waitable

if TYPE_CHECKING:
    from control_plane.expressions.code_cache import TemplateCodeCache

__all__ = ["HANDED_TO_TICK", "LogLimits", "Recent", "Service", "ServiceError", "TickReport"]

LIVE_LOG_INTERVAL = 0.25  # seconds between looks at a running job's output, when someone watches
DEFAULT_LOG_LIMITS = LogLimits()

_log = logging.getLogger("squall.service")


class TickReport(Struct, frozen=True):
    """What one :meth:`Service.tick` did, for the tick Lambda's log line and the tests."""

    timers_fired: bool
    recovered: int  # jobs left SUBMITTING past the grace: found by name (handle stored) or submitted
    polled: int
    ended: int
    cancelling: int = 0  # CANCELLING jobs cancelled again


class Service:
    """Runs executions durably: one instance per process, any number of processes per store."""

    def __init__(
        self,
        store: StateStore,
        *,
        runners: RunnerRegistry,
        storage: TaskStorage,
        clock: Clock | None = None,
        id_factory: Callable[[], str] = new_execution_id,
        log_limits: LogLimits = DEFAULT_LOG_LIMITS,
        poll_interval: float = 1.0,
        on_change: Callable[[Execution], None] | None = None,
        on_logs: Callable[[Execution | None, Sequence[LogLine]], None] | None = None,
        submit_budget: int | None = None,
        lane_budget: int | None = None,
        submit_within: float | None = None,
        secrets: SecretChain | None = None,
        submit_lease: timedelta = DEFAULT_SUBMIT_LEASE,
        submit_timeout: timedelta = DEFAULT_SUBMIT_TIMEOUT,
        lost_after: timedelta = DEFAULT_LOST_AFTER,
        templates: TemplateCodeCache | None = None,
    ) -> None:
        self.store = store
        self.runners = runners
        self.storage = storage
        self.clock = clock or SystemClock()
        self.poll_interval = poll_interval
        self.masks = SecretMasks(secrets)
        self.display = Display(on_change, on_logs)
        self.driver = ExecutionDriver(
            store,
            masks=self.masks,
            clock=self.clock,
            display=self.display,
            new_id=id_factory,
            submit_budget=submit_budget,
            lane_budget=lane_budget,
            submit_within=submit_within,
            timer_scan_interval=poll_interval,
            storage=storage,
            templates=templates,
        )
        self.jobs = JobSupervisor(
            store,
            runners=runners,
            storage=storage,
            clock=self.clock,
            log_limits=log_limits,
            masks=self.masks,
            display=self.display,
            news=self.driver.news,
            executions=self.driver,
            submit_lease=submit_lease,
            submit_timeout=submit_timeout,
            lost_after=lost_after,
            exclusive_claims=not hasattr(store, "claim_lease"),  # see Ownership below
        )
        self.driver.jobs = self.jobs
        # What a caller asks of executions is the driver's (deploy, start, advance, kill, restart,
        # resume, replay, set_labels; flush writes what still rides along: the end of a Lambda call).
        self.new_id = self.driver.new_id
        self.deploy = self.driver.deploy
        self.delete_flow = self.driver.delete_flow
        self.flow = self.driver.flow
        self.start = self.driver.start
        self.advance = self.driver.advance
        self.kill = self.driver.kill
        self.restart = self.driver.restart
        self.resume = self.driver.resume
        self.set_labels = self.driver.set_labels
        self.replay = self.driver.replay
        self.flush = self.driver.flush
        if hasattr(store, "claim_lease"):  # a local store: processes sharing it drive what they own
            self.driver.ownership = Ownership(cast(LeaseStore, store), self.clock, recheck=poll_interval)
        self._jobs_scanned = -math.inf

    def delete(self, execution_id: str, *, files: bool = True) -> None:
        """Delete an ended execution (``ExecutionDriver.delete``); its files too unless ``files`` is False."""
        self.driver.delete(execution_id, storage=self.storage if files else None)

    @property
    def submit_budget(self) -> int | None:
        return self.driver.submit_budget

    @property
    def log_limits(self) -> LogLimits:
        return self.jobs.log_limits

    # ------------------------------------------------------------------ who watches

    @property
    def on_change(self) -> Callable[[Execution], None] | None:
        return self.display.on_change

    @on_change.setter
    def on_change(self, callback: Callable[[Execution], None] | None) -> None:
        self.display.on_change = callback

    @property
    def on_logs(self) -> Callable[[Execution | None, Sequence[LogLine]], None] | None:
        return self.display.on_logs

    @on_logs.setter
    def on_logs(self, callback: Callable[[Execution | None, Sequence[LogLine]], None] | None) -> None:
        self.display.on_logs = callback

    def get(self, execution_id: str) -> Execution:
        return self.store.get_execution(execution_id)

    # ================================================================== the local loop

    def recover(self) -> None:
        """After a crash: submit (or find) every job left SUBMITTING, of the executions this process drives.

        On a local store that includes every execution whose owner is gone: they are taken
        over here (``ownership.py``); their running jobs are polled by the next step.
        """
        steal = self.driver.ownership is not None  # the execution's lease says who submits its jobs
        for job in self.store.active_jobs():
            if job.phase is JobPhase.SUBMITTING and self.driver.owns(job.execution_id):
                self.jobs.submit(job, reattach=True, steal=steal)
        self.driver.drain()

    def catch_up(self) -> None:
        """One pass that waits for nothing: take over orphaned executions and move them on.

        Every ``squall`` command on a local database calls it, so an execution whose process
        was killed goes on (its finished jobs recorded, its next jobs submitted) without
        anyone having to find it; ``squall executions resume`` drives it to the end.
        """
        ownership = self.driver.ownership
        if ownership is not None:
            for execution_id in ownership.orphans():
                ownership.claim(execution_id)  # may lose the race to another process: fine
        self.recover()
        self.step()

    def _recover_taken_over(self) -> None:
        """Executions taken from a dead owner: ask the engine again for what has no outbox record."""
        ownership = self.driver.ownership
        if ownership is not None:
            for execution_id in ownership.taken_over():
                self.driver.news.event(execution_id, Recover(at=self.clock.now()))

    def driver_of(self, execution_id: str) -> str | None:
        """The identity of the live process that drives ``execution_id``, if it is not this one."""
        ownership = self.driver.ownership
        holder = None if ownership is None else ownership.holder(execution_id)
        return None if holder is None else holder.owner

    def take_over(self, execution_id: str) -> bool:
        """Drive ``execution_id`` from this process (False: a live process already does)."""
        ownership = self.driver.ownership
        return ownership is None or ownership.claim(execution_id)

    def step(self, *, flush: bool = True) -> bool:
        """Fire due timers and poll active jobs once; True when anything happened.

        With ``flush``, records still riding along (handles of running jobs) are written
        before returning, so another process can see them; :meth:`run` defers that until
        a wait actually blocks, which saves a write per short job.
        """
        if self.driver.ownership is not None:
            self.driver.ownership.renew()
        fired = self.driver.fire_timers()
        polled = self._poll_jobs()
        self._recover_taken_over()
        self.driver.drain()
        if flush:
            self.flush()
        return fired or polled

    def _poll_jobs(self) -> bool:
        """One batched ``poll`` per runner over every active job whose handle is known."""
        if self.jobs.handles and time.monotonic() - self._jobs_scanned < self.poll_interval:
            active = [self.jobs.mine[name] for name in self.jobs.handles if name in self.jobs.mine]
        else:
            active = self.store.active_jobs()
            self._jobs_scanned = time.monotonic()
            self.jobs.keep_only(job.name for job in active)
            owns = self.driver.owns
            active = [job for job in active if job.name in self.jobs.handles or owns(job.execution_id)]
            cancelling = [job for job in active if job.phase is JobPhase.CANCELLING]
            if cancelling:  # durable cancels: again on each scan until their runner says they ended
                self.jobs.recancel(cancelling)
                active = [job for job in active if job.phase is not JobPhase.CANCELLING]
        return self.jobs.poll(active)[1] > 0

    def run(self, execution_id: str, *, deadline: float | None = None) -> Execution:
        """Drive until the execution ends, or waits for a person.

        A paused execution waits for a person unless a Pause with ``pauseDuration`` (or
        ``delay``) resumes it by itself or its ``timeout`` ends it (by its ``behavior``): that
        pause is waited out like a Sleep (Kestra moves on with no one's help; a person may
        still resume it earlier from another process).

        Follows a flow-level retry to the new execution it creates. ``deadline`` is a
        ``time.monotonic()`` value after which the current state is returned as it is.
        """
        driver = self.driver
        self.recover()
        current = execution_id
        while True:
            self.step(flush=False)
            # Driven by another live process (a kill asked from here), or ended: read it as stored.
            stored = not driver.holds(current)
            execution = driver.reload(current) if stored else driver.load(current)
            if not stored and (execution.state.terminal or execution.state is State.PAUSED):
                del execution  # not two copies in memory at once (100,000 task runs: 95 MB each)
                execution = driver.reload(current)  # it stops on this state: the stored one, not a copy
            if execution.state.terminal:
                retry = driver.retry_target(execution)
                if retry is None:
                    return execution
                if isinstance(retry, str):
                    current = retry
                    continue
            if deadline is not None and time.monotonic() >= deadline:
                return execution
            if execution.state is State.QUEUED:  # its flow's concurrency: wait for a slot
                if not driver.start_queued(current):
                    self._wait_for_slot()
                continue
            if (
                execution.state is State.PAUSED
                and not self.jobs.handles
                and not self.store.active_jobs(limit=1)
                and not driver.resumes_by_itself(execution)
            ):
                if driver.ownership is not None:  # nobody needs to drive it until someone resumes it
                    driver.ownership.release(current)
                return execution  # waits for a person: no timer of its own will move it
            if not self._wait():
                return driver.reload(current)

    def _wait_for_slot(self) -> None:
        """A queued execution waits for another one (maybe in another process) to end.

        Its slot is handed over in the store (``concurrency.py``): it is read every
        ``poll_interval``, while this process still drives what it owns.
        """
        if not self._wait():  # nothing of this process's own to wait on: another one must end
            time.sleep(self.poll_interval)
            self.driver.repair_slots()  # the holder's process may have died before freeing it

    def _wait(self) -> bool:
        """Block until something may have changed; False when nothing ever will (paused or idle)."""
        now = self.clock.now()
        next_at = self.driver.next_timer()
        if next_at is not None and next_at <= now:
            return True
        if self.jobs.handles or self.store.active_jobs(limit=1):  # jobs are running
            timeout = self.poll_interval
            if next_at is not None:
                timeout = max(0.0, min(timeout, (next_at - now).total_seconds()))
            started = self.runners.started()
            waitable = started[0] if len(started) == 1 and implements(started[0], Waitable) else None
            if waitable is not None and waitable.wait(min(timeout, 0.05)):
                return True
            self.flush()  # a job that outlives a short wait: make its handle durable
            end = time.monotonic() + timeout
            while (left := end - time.monotonic()) > 0:
                self.jobs.tail_live()
                if waitable is not None:
                    if waitable.wait(min(left, LIVE_LOG_INTERVAL)):
                        break
                else:
                    time.sleep(min(left, LIVE_LOG_INTERVAL))
            return True
        next_at = self.driver.next_timer(fresh=True)  # about to give up: make sure no timer is pending
        if next_at is not None:
            self.clock.sleep_until(next_at)
            return True
        return False

    # ================================================================== cloud entry points

    def job_event(self, event: JobEvent, *, touch_after: timedelta | None = None) -> bool:
        """A runner's push event about one job; True when it moved an execution.

        Idempotent under duplicate and out-of-order delivery (:meth:`JobSupervisor.pushed`).
        Jobs an earlier step of this process wrote but ran out of time to submit go next
        (:meth:`submit_owed`): an ``events`` container never ticks, and its claim would
        otherwise hold them back until ``submit_grace`` lapsed (two minutes, issue 28).
        """
        moved = self.jobs.pushed(event, touch_after=touch_after)
        if moved:
            self.driver.drain()
        within = self.driver.submit_within  # what one step may spend on submits
        self.submit_owed(None if within is None else time.monotonic() + within)
        self.flush()
        return moved

    def submit_owed(self, until: float | None) -> int:
        """Submit the jobs this process's steps left under its claim, oldest first, until the
        ``time.monotonic()`` deadline ``until`` (None: all of them); how many.

        The claim is re-taken (a job killed meanwhile is not submitted) and the job found by
        name first, as any recovery does; what is left waits for this process's next call, or
        any tick once the claim lapses.
        """
        submitted = 0
        while self.driver.owed and (until is None or time.monotonic() < until):
            self.jobs.submit(self.driver.owed.popleft(), reattach=True)
            submitted += 1
        return submitted

    def tick(
        self,
        *,
        reconcile_after: timedelta,
        submit_grace: timedelta,
        recover_limit: int | None = None,
        within: float | None = None,
    ) -> TickReport:
        """One pass of the cloud's rate rule: timers, forgotten submissions, silent jobs.

        * due timers fire (retry delays, Sleep, Pause and task timeouts), and again while
          firing leaves more due (a wide fan-out's continuations, ADR 0015) for at most a
          third of ``within`` seconds (None: one round);
        * a job left SUBMITTING for longer than ``submit_grace`` (its Lambda died between the
          outbox write and the submit, its handle is written lazily, or a wide step handed it
          over) is found by name, its handle stored, or it is submitted: still one job; at most
          ``recover_limit`` of them per tick, and none once two thirds of ``within`` seconds
          have passed (the last third is for polling and writing handles), so a pass stays
          within its time budget, far under the Lambda's timeout;
        * CANCELLING jobs are cancelled again (a cancel is retried until the job is terminal);
        * jobs with no news for ``reconcile_after`` are polled, in the runner's batches (the
          fallback when a push event was lost), never one call per job, the longest unheard
          first and, past the first batch, only while ``within`` seconds have not run out:
          when every job of a wide fan-out falls silent at once, the next ticks poll the
          rest; one its runner leaves out of every poll ends LOST after the supervisor's
          ``lost_after``.
        """
        began = time.monotonic()
        fired = again = self.driver.fire_timers(fresh=True)
        while again and within is not None and time.monotonic() < began + within / 3:
            again = self.driver.fire_timers(fresh=True)
        # ours, left by a step out of time, in the first two thirds of the budget
        self.submit_owed(None if within is None else began + within * 2 / 3)
        now = self.clock.now()
        self.store.visit(now)  # jobs younger than the store's visit delay need nothing from the tick yet
        active = self.store.active_jobs()
        recovered = 0
        silent: list[JobRecord] = []
        cancelling: list[JobRecord] = []
        for job in active:
            if not self.driver.owns(job.execution_id):  # squall server beside a live squall run
                continue
            age = now - (job.updated or now)
            if job.phase is JobPhase.SUBMITTING:
                late = within is not None and time.monotonic() >= began + within * 2 / 3
                if age >= submit_grace and (recover_limit is None or recovered < recover_limit) and not late:
                    self.jobs.submit(job, reattach=True)  # found by name (its handle is stored), or submitted
                    recovered += 1
                    if job.name in self.jobs.handles:  # its end may be what went unheard: ask now
                        silent.append(self.jobs.mine.get(job.name, job))
            elif job.phase is JobPhase.CANCELLING:
                cancelling.append(job)
            elif age >= reconcile_after:
                silent.append(job)
        self.jobs.recancel(cancelling)
        silent.sort(key=lambda job: job.updated or now)  # the longest unheard first
        polled, ended = self.jobs.poll(silent, until=None if within is None else began + within)
        self.driver.repair_slots()
        self._recover_taken_over()
        self.driver.drain()
        self.flush()
        return TickReport(fired, recovered, polled, ended, len(cancelling))

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
                # Kestra's scheduler skips disabled flows (AbstractScheduler filters !isDisabled):
                # a disabled flow's schedules are treated as disabled triggers, keeping `last`.
                fires = (
                    []
                    if flow.disabled
                    else due(trigger, namespace=flow.namespace, flow_id=flow.id, last=last, now=now)
                )
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

    def poll_http_triggers(
        self, *, namespace: str | None = None, flow_id: str | None = None, trigger_id: str | None = None
    ) -> list[str]:
        """Poll the due Http triggers (all, or the one named); the ids of the executions started.

        service/http_triggers.py says how a poll is claimed once and where its errors go.
        """
        from control_plane.service.http_triggers import HttpTriggers

        listed = self.driver.http_pollers.flows()
        if namespace is not None:
            listed = [e for e in listed if e[0] == namespace and flow_id in (None, e[1])]
        flows = (flow for flow in (self._listed_flow(*entry) for entry in listed) if flow is not None)
        pollers = HttpTriggers(
            self.store, now=self.clock.now, start=self.start, storage=self.storage, secrets=self.masks.chain
        )
        return pollers.poll(flows, trigger_id=trigger_id)

    def _listed_flow(self, namespace: str, flow_id: str, revision: int | None) -> Flow | None:
        """A flow an index lists, or None when it was deleted since (the index outlives it)."""
        try:
            return self.flow(namespace, flow_id, revision)
        except NotFoundError:
            return None

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
        from control_plane.flows.inputs import trigger_inputs

        variables = {"id": trigger.id, "type": trigger.type, **fire.variables}
        try:
            execution = self.start(
                flow.namespace,
                flow.id,
                trigger_inputs(flow, trigger.inputs, variables),
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
