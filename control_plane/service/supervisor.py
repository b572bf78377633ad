"""The job supervisor: submit, poll, complete, read logs, cancel; what it learns becomes events.

The supervisor talks to runners and never to the engine: a job that ended, failed to submit
or could not be cancelled becomes a :class:`~control_plane.engine.events.JobStatusChanged`
queued in the driver's :class:`~control_plane.service.news.News`, with the records only that
event's save may write (the job's DONE mark, its logs) and what waits for the save (the
runner's cleanup). It never plans or saves an execution, so it never re-enters the driver.

Completion: a terminal job's logs are read to the end, bounded (:mod:`.capture`), scanned
for the outputs marker and turned into the event. The job record becomes DONE in the write
that stores the event or, when the stored execution shows the event already applied, right
after that finding; a crash before either repeats the event.

What this process knows without asking the store: the jobs it submitted (``handles``, ``mine``)
so a chain of short jobs costs no read per step; the loops still scan the store every poll
interval for what other processes did.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import quote

from msgspec import Struct
from msgspec.structs import replace

from control_plane.engine.actions import (
    WORKSPACE_CHILDREN,
    WORKSPACE_KEY,
    WORKSPACE_OUTPUT_FILES,
    Action,
    Emit,
    StartTimer,
    SubmitJob,
)
from control_plane.engine.events import JobFailure, JobOutcome, JobStatusChanged
from control_plane.engine.model import Execution, LogLine
from control_plane.errors import ConflictError
from control_plane.flows.models import Flow
from control_plane.levels import Level
from control_plane.service.capture import Capture, LogLimits, stream_level
from control_plane.service.clock import Clock
from control_plane.service.display import Display
from control_plane.service.masks import SecretMasks
from control_plane.service.news import News, Ride
from control_plane.service.one_job import ChildLogs, split_output_files
from control_plane.service.runners import (
    RunnerRegistry,
    RunnerUnavailableError,
    UnknownRunnerError,
    dependencies,
    implements,
)
from control_plane.service.scripts import ScriptError, build_job_spec, job_outputs, runner_of
from control_plane.service.storage import StorageError, TaskStorage
from control_plane.service.workspace import own_output_files, workspace_files
from control_plane.store.base import JobPhase, JobRecord, StateStore, SyncDeferring
from runners.base import (
    Disposable,
    Evented,
    Failure,
    JobEvent,
    JobHandle,
    JobNotFoundError,
    JobSpec,
    JobState,
    JobStatus,
    LogChunk,
    Preparable,
    Runner,
    RunnerError,
    TransientRunnerError,
)
from runners.console import job_link
from runners.markers import parse_line
from runners.storage import path_of

__all__ = [
    "DEFAULT_LOST_AFTER",
    "DEFAULT_SUBMIT_LEASE",
    "DEFAULT_SUBMIT_TIMEOUT",
    "INFRA_FAILURES",
    "Executions",
    "JobSupervisor",
]

_log = logging.getLogger("squall.service")

DEFAULT_SUBMIT_LEASE = timedelta(seconds=120)
"""How long a submit claim holds (the tick's ``submit_grace`` in the cloud): a holder that died
leaves the job to the next tick after this, which ``find``s it before submitting again."""
DEFAULT_SUBMIT_TIMEOUT = timedelta(minutes=15)
"""How long transient backend errors may keep a job SUBMITTING (same name, found or submitted
again by each tick) before its task fails START_FAILED: several ticks' worth of tries, past a
throttling burst or a short regional outage, while a broken backend is still reported within
minutes."""
DEFAULT_LOST_AFTER = timedelta(hours=1)
"""The reconciler's horizon: a job its runner has not reported on (left out of every ``poll``:
no news, not evidence) for this long ends LOST, said by the control plane. Far above any
backend's eventual consistency after a submit (seconds) and the tick's ``reconcile_after``."""
INFRA_FAILURES = frozenset({Failure.PREEMPTED, Failure.START_FAILED, Failure.QUOTA, Failure.LOST})
"""Failures the engine answers with a new attempt under a new name (engine ``INFRA_FAILURES``):
the old attempt's job is cancelled first, it may still run (a LOST said without evidence)."""


def _no_sync() -> None:
    """The step's write was synced as it was made."""


class Step(Struct, frozen=True):
    """What :meth:`JobSupervisor.prepared` tells the step: whether its jobs start before its
    write is synced (``early``), and the call that syncs it (a no-op otherwise)."""

    early: bool
    sync: Callable[[], None]


class Executions(Protocol):
    """What the supervisor reads of executions: ids, namespace, flow (never-changing fields)."""

    def load(self, execution_id: str) -> Execution: ...

    def flow_of(self, execution: Execution) -> Flow: ...


def _outputs_refused(status: JobStatus, error: str) -> JobStatus:
    """A job whose outputs were over the limit: it fails (USER, like its code), saying why."""
    if status.state is JobState.SUCCEEDED:
        return replace(status, state=JobState.FAILED, failure=Failure.USER, reason=error)
    if status.state is JobState.FAILED:
        return replace(status, reason=f"{status.reason or f'exit code {status.exit_code}'}; {error}")
    return status  # cancelled or lost: the engine ends it as such; its outputs are dropped all the same


DEFAULT_LOG_WAIT = timedelta(seconds=10)
"""How long one completion asks again for an ended job's missing last lines before leaving it
to a later poll: cloud log services usually ingest within seconds, and an events function must
not spend its invocation waiting."""
_FIRST_LOG_PAUSE = timedelta(milliseconds=250)
_LAST_LOG_PAUSE = timedelta(seconds=2)


class _Reading:
    """How far an ended job's log was read, kept while its runner has not said ``complete``."""

    def __init__(self, handle: JobHandle, capture: Capture, split: ChildLogs | None = None) -> None:
        self.handle = handle
        self.capture = capture
        self.split = split  # a one-job WorkingDirectory's log, cut into its children's (ADR 0016)
        self.cursor: str | None = None


def _runner_type(job: JobRecord) -> str:
    """The ``taskRunner.type`` the flow wrote (what its author recognises), else the runner's name."""
    block = job.spec.get("properties", {}).get("taskRunner")
    kind = block.get("type") if isinstance(block, Mapping) else None
    return str(kind) if kind else job.runner


def job_status_changed(
    at: datetime, job: JobRecord, status: JobStatus, outputs: Mapping[str, Any] | None
) -> JobStatusChanged:
    """The one place a runner's ``JobStatus`` becomes the engine's event (its own enums).

    The job's id and console link ride along (from its handle; none for a job never
    submitted) so the attempt keeps where it ran.
    """
    link = job_link(JobHandle.from_dict(job.handle)) if job.handle else None
    return JobStatusChanged(
        at,
        job.taskrun_id,
        job.attempt,
        JobOutcome(status.state.value),
        None if status.failure is None else JobFailure(status.failure.value),
        status.exit_code,
        status.reason,
        outputs,
        status.cost,
        runner=job.runner,
        job_id=None if link is None else link.job_id,
        job_url=None if link is None else link.url,
    )


class JobSupervisor:
    """Follows jobs through their runners; reports what happens to them as events."""

    def __init__(
        self,
        store: StateStore,
        *,
        runners: RunnerRegistry,
        storage: TaskStorage,
        clock: Clock,
        log_limits: LogLimits,
        masks: SecretMasks,
        display: Display,
        news: News,
        executions: Executions,
        log_wait: timedelta = DEFAULT_LOG_WAIT,
        submit_lease: timedelta = DEFAULT_SUBMIT_LEASE,
        submit_timeout: timedelta = DEFAULT_SUBMIT_TIMEOUT,
        lost_after: timedelta = DEFAULT_LOST_AFTER,
        exclusive_claims: bool = True,
    ) -> None:
        self.store = store
        self.runners = runners
        # Whether a submit claim's holder cannot outlive it (the cloud: ``submit_lease`` exceeds
        # every function's timeout): then the runner is told so (``JobSpec.claimed``) and may
        # skip guards of its own (AWS Batch: a lock in its bucket, $5 per 1M submits). Not for
        # local processes, whose claims are stolen with a 30-second execution lease from a
        # process that may only be stalled and wake mid-submit.
        self.exclusive_claims = exclusive_claims
        self.storage = storage
        self.clock = clock
        self.log_limits = log_limits
        self.masks = masks
        self.display = display
        self.news = news
        self.executions = executions
        self.submit_lease = submit_lease
        self.submit_timeout = submit_timeout
        self.lost_after = lost_after
        # Who holds a submit claim: unique per supervisor (one per process, per Lambda container).
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.handles: dict[str, JobHandle] = {}  # jobs this process submitted or found, still active
        self.mine: dict[str, JobRecord] = {}
        # Live display of running jobs' output (only when someone watches): where each job's
        # log was read up to and how many records were shown.
        self._live: dict[str, tuple[JobRecord, str | None, int]] = {}
        self._warned: set[str] = set()  # runners found unavailable, already logged
        self.log_wait = log_wait
        self._reading: dict[str, _Reading] = {}  # ended jobs whose log is not complete yet
        self._live_split: dict[str, ChildLogs | None] = {}  # whose line is shown, per job
        self._specs: dict[str, tuple[Runner, JobSpec]] = {}  # readied by prepared(), for submit
        self._meanwhile: Callable[[], None] | None = None  # an early step's sync, for the go

    # ================================================================== submit

    def _spec(self, job: JobRecord) -> tuple[Runner, JobSpec]:
        """:meth:`spec`, as this process submits it (claimed: see ``exclusive_claims``)."""
        runner, spec = self.spec(job)
        if self.exclusive_claims:  # held since the outbox write, or taken by the submitter
            spec = replace(spec, claimed=True)
        return runner, spec

    def spec(self, job: JobRecord) -> tuple[Runner, JobSpec]:
        """The runner and the JobSpec of ``job``, its ``taskRunner`` block parsed once.

        The runner merges its deployment defaults and validates the options, once, in
        ``submit``: a bad option fails the task there (``RunnerOptionsError``, a USER failure
        naming each field).
        """
        execution = self.executions.load(job.execution_id)
        raw = job.spec
        timeout = raw.get("timeout")
        runner = self.runners.get(runner_of(raw["properties"])[0])
        _, spec = build_job_spec(
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
            storage_schemes=type(runner).storage_schemes,
            namespace=execution.namespace,
            workspace=workspace_files(
                raw["properties"], self.storage, execution.namespace, execution.flow_id, execution.id
            ),
        )
        return runner, spec

    @contextlib.contextmanager
    def prepared(self, actions: Sequence[Action], jobs: Sequence[JobRecord]) -> Iterator[Step]:
        """Ready the starts of ``jobs`` (the outbox records of ``actions`` that this process
        submits right after the write that stores them) with the runners that can
        (:class:`~runners.base.Preparable`), for the time of that write and the submits; on
        exit, whatever no submit took is called off. The spec is built once, here, and used
        by the submit.

        Nothing starts before the write, and each start's preparation (a local job's
        directory and supervisor) overlaps it. When the step does nothing but submit jobs
        that were all readied, and the store can defer its sync (:class:`SyncDeferring`),
        :attr:`Step.early` says so: the write commits without its fsync, the jobs start
        once it is written (a crash of this process keeps it; a power loss that loses it
        also stops them, and the step planned again starts them under the same names), and
        :meth:`Step.sync` makes it durable before anything else is let out.
        """
        readied: list[Preparable] = []
        try:
            all_readied = bool(jobs)
            for job in jobs:
                if job.phase is not JobPhase.SUBMITTING:
                    all_readied = False
                    continue
                try:
                    runner, spec = self._spec(job)
                except (RunnerUnavailableError, RunnerError, ScriptError, UnknownRunnerError):
                    all_readied = False
                    continue  # the submit reports it
                self._specs[job.name] = (runner, spec)
                if not implements(runner, Preparable):
                    all_readied = False
                    continue
                if not any(one is runner for one in readied):
                    readied.append(runner)  # before prepare: whatever it readied is called off
                with dependencies(job.runner):
                    runner.prepare(spec)
            early = (
                all_readied
                and len(jobs) == sum(isinstance(action, SubmitJob) for action in actions)
                and all(isinstance(action, SubmitJob | Emit | StartTimer) for action in actions)
                and implements(self.store, SyncDeferring)
            )
            if early:
                assert isinstance(self.store, SyncDeferring)
                with self.store.deferred_sync() as sync:
                    self._meanwhile = sync  # the first go syncs while its job starts
                    yield Step(True, sync)
            else:
                yield Step(False, _no_sync)
        finally:
            self._meanwhile = None
            self._specs.clear()
            for one in readied:
                one.unprepare()

    def outbox_claim(self) -> dict[str, Any]:
        """The claim fields of an outbox record this process submits right after writing it.

        The writer holds the claim from the start, so the common path costs no extra write;
        anyone else (the tick, a recovering process) must take it with :meth:`_claim`.
        """
        now = self.clock.now()
        return {"claim": self.owner, "claim_until": now + self.submit_lease, "since": now}

    def _claim(self, job: JobRecord, *, steal: bool = False) -> JobRecord | None:
        """Take ``job``'s submit claim with a conditional write; None when another holds it.

        Free when nobody holds it, when it expired (its holder died or overran), or when it
        is this process's; ``steal`` takes it anyway (a local process that took the
        execution's lease over from a dead owner: that lease already says who submits). A job
        no longer SUBMITTING (submitted, cancelled, done) is not submitted again. Losing the
        write to another process means that one submits.
        """
        now = self.clock.now()
        for _ in range(3):
            if job.phase is not JobPhase.SUBMITTING:
                return None
            until = job.claim_until
            if not steal and job.claim not in (None, self.owner) and until is not None and until > now:
                return None
            until = now + self.submit_lease
            claimed = replace(job, claim=self.owner, claim_until=until, since=job.since or now, updated=now)
            try:
                return self.store.update_job(claimed, expected_version=job.version)
            except ConflictError:
                fresh = self.store.get_job(job.name)
                if fresh is None:
                    return None
                job = fresh
        return None

    def submit(self, job: JobRecord, *, reattach: bool, steal: bool = False) -> None:
        """Submit ``job`` (``reattach``: find it by name first); its handle rides with the next write.

        ``reattach=False`` is the outbox writer, which holds the claim since the write
        (:meth:`outbox_claim`); every other submitter takes the claim first and ``find``s
        before submitting, so across processes one holder at a time calls ``runner.submit``.
        """
        if reattach:
            claimed = self._claim(job, steal=steal)
            if claimed is None:
                return  # another process holds the claim, or the job moved on
            job = claimed
        try:
            readied = self._specs.pop(job.name, None)
            runner, spec = readied if readied is not None else self._spec(job)
            with dependencies(job.runner):  # runners import their SDK on first use
                handle = runner.find(spec) if reattach else None
                found = handle is not None
                if handle is None and self._meanwhile is not None and implements(runner, Preparable):
                    handle = runner.go(spec, self._meanwhile)
                elif handle is None:
                    handle = runner.submit(spec)
        except RunnerUnavailableError as exc:  # the extra is not installed: this job fails, nothing else
            self._give_up(job, Failure.CONFIG, exc.for_type(_runner_type(job)))
            return
        except TransientRunnerError as exc:
            self._submit_later(job, exc)
            return
        except (RunnerError, ScriptError, UnknownRunnerError) as exc:
            # Refused as specified (options, inputs, the backend's validation): trying again cannot help.
            self._give_up(job, Failure.CONFIG, str(exc))
            return
        self.adopt(job, handle)
        ride = self.news.ride(job.execution_id)
        ride.jobs[job.name] = self._mark(job, JobPhase.SUBMITTED, handle=handle.to_dict())
        # Submitted here, by the outbox writer or by a claim's holder (the tick, for the jobs a
        # step left it): the events bring the handle, as for any lazy handle. A job found by
        # name (a recovery) is written SUBMITTED, or every later tick would look for it again.
        if not found and self.announces(job.runner):
            ride.lazy.add(job.name)

    def _submit_later(self, job: JobRecord, exc: TransientRunnerError) -> None:
        """A transient error on submit: the same attempt stays SUBMITTING, under the same name.

        The submit may have created the job (a lost response), so nothing is submitted under
        another name: the claim is given back and the tick, after its ``submit_grace``,
        ``find``s the job or submits it. Only after ``submit_timeout`` since the first try does
        the task fail START_FAILED, and then the job is left CANCELLING, so a job the lost
        response did create is still found and cancelled before the engine's next attempt.
        """
        now = self.clock.now()
        since = job.since or now
        if now - since >= self.submit_timeout:
            reason = f"{job.runner}: {exc}; still failing after {self.submit_timeout} (submit_timeout)"
            self._give_up(job, Failure.START_FAILED, reason, phase=JobPhase.CANCELLING)
            return
        message = (
            f"could not submit job {job.name} yet: {exc}; it is found or submitted again under the"
            f" same name until {since + self.submit_timeout:%Y-%m-%d %H:%M:%S} (submit_timeout)"
        )
        stored = self.store.get_job(job.name)  # the outbox writer's copy predates the insert's version
        if stored is not None and stored.phase is JobPhase.SUBMITTING and stored.claim in (None, self.owner):
            released = replace(stored, claim=None, claim_until=None, since=since, updated=now)
            with contextlib.suppress(ConflictError):  # someone else moved it on: theirs stands
                self.store.update_job(released, expected_version=stored.version)
        self.news.ride(job.execution_id).logs.append(self._warning(job, message))

    def adopt(self, job: JobRecord, handle: JobHandle) -> None:
        """Follow ``job`` from this process (submitted here, or found after its owner died)."""
        self.handles[job.name] = handle
        self.mine[job.name] = job
        if self.display.live:
            self._live.setdefault(job.name, (job, None, 0))

    def announces(self, runner: str) -> bool:
        """Whether the runner's push events carry job handles (:attr:`Evented.carries_handles`).

        For those runners a just-submitted job's handle is not written on its own: its
        terminal event brings it, and a job that outlives the submit grace has it found by
        name once, by the tick. A short task then costs one write less.
        """
        try:
            instance = self.runners.get(runner)
        except (UnknownRunnerError, RunnerUnavailableError):
            return False
        return implements(instance, Evented) and instance.carries_handles

    def _mark(self, job: JobRecord, phase: JobPhase, **changes: Any) -> JobRecord:
        return replace(job, phase=phase, updated=self.clock.now(), **changes)

    def _event(self, job: JobRecord, status: JobStatus, outputs: Mapping[str, Any] | None, own: Ride) -> None:
        self.news.event(job.execution_id, job_status_changed(self.clock.now(), job, status, outputs), own)

    def _give_up(
        self,
        job: JobRecord,
        failure: Failure,
        reason: str,
        logs: Sequence[LogLine] = (),
        *,
        phase: JobPhase = JobPhase.DONE,
    ) -> None:
        """End the job's task as failed; the job becomes ``phase`` only with that event's save.

        CANCELLING when a job may exist that nobody could reach: the tick finds and cancels it.
        """
        state = JobState.CANCELLED if failure is Failure.CANCELLED else JobState.FAILED
        status = JobStatus(state, failure=failure, reason=reason)
        self._event(job, status, None, Ride(list(logs), {job.name: self._mark(job, phase)}))

    # ================================================================== cancel

    def cancel(self, job_name: str) -> None:
        """The engine asked to cancel (its save wrote the job CANCELLING): cancel it now."""
        job = self.store.get_job(job_name)
        if job is None or job.phase is JobPhase.DONE:
            return
        self.cancel_job(job, first=True)

    def recancel(self, jobs: Iterable[JobRecord]) -> None:
        """Cancel CANCELLING jobs again (the tick, the local loop, a second kill) until they end."""
        for job in jobs:
            if job.phase is JobPhase.CANCELLING:
                self.cancel_job(job, first=False)

    def cancel_job(self, job: JobRecord, *, first: bool) -> None:
        """Cancel ``job`` through its runner; its end becomes an event once the runner says so.

        Never raises: what could not be done yet is said (once, on the ``first`` try) and the
        job stays CANCELLING for the next try. A job its runner no longer knows, or reports
        LOST, ends CANCELLED (the contract's tombstone rule: once asked, cancelled).
        """
        try:
            status: JobStatus | None
            handle = self.handle(job)
            if handle is None:
                runner, spec = self.spec(job)
                with dependencies(job.runner):
                    handle = runner.find(spec)
                until = job.claim_until
                held = job.claim not in (None, self.owner) and until is not None and until > self.clock.now()
                if handle is None and held:
                    return  # a live submitter may be creating it right now: ask again after its claim
                if handle is None:
                    before = "cancelled before it was submitted"
                    status = JobStatus(JobState.CANCELLED, failure=Failure.CANCELLED, reason=before)
                    self._event(job, status, None, Ride(jobs={job.name: self._mark(job, JobPhase.DONE)}))
                    return
            runner = self.runners.get(job.runner)
            with dependencies(job.runner):
                try:
                    runner.cancel(handle)
                except JobNotFoundError:
                    status = JobStatus(JobState.CANCELLED, failure=Failure.CANCELLED, reason="cancelled")
                else:
                    status = runner.poll([handle]).get(handle.name)
        except RunnerUnavailableError as exc:
            message = (
                f"job {job.name} was not cancelled: {exc.for_type(_runner_type(job))}; if it was"
                " submitted, it may still be running on its backend"
            )
            self._give_up(job, Failure.CANCELLED, message, [self._warning(job, message)])
            return
        except (RunnerError, ScriptError, UnknownRunnerError) as exc:
            # Still CANCELLING: the tick cancels it again until it stops, and it ends the task then.
            message = f"could not cancel job {job.name} yet: {exc}; it is cancelled again until it stops"
            if first:
                self.news.ride(job.execution_id).logs.append(self._warning(job, message))
            else:
                _log.warning("execution %s: %s", job.execution_id, message)
            return
        if status is not None and status.terminal:
            self.complete(replace(job, phase=JobPhase.CANCELLING), runner, handle, status)

    def _warning(self, job: JobRecord, message: str) -> LogLine:
        """A WARN line about ``job`` for its execution's log (and the process's)."""
        _log.warning("execution %s: %s", job.execution_id, message)
        task_id = str(job.spec.get("task_id", ""))
        return LogLine(self.clock.now(), Level.WARN, message, task_id, job.taskrun_id, job.attempt)

    def unavailable(self, runner: str, exc: RunnerUnavailableError) -> None:
        """Jobs of a runner that cannot work here are left alone; say so once per process."""
        if runner not in self._warned:
            self._warned.add(runner)
            _log.warning("jobs of task runner %s are not followed by this process: %s", runner, exc)

    # ================================================================== poll and complete

    def handle(self, job: JobRecord) -> JobHandle | None:
        if job.handle:
            return JobHandle.from_dict(job.handle)
        return self.handles.get(job.name)

    def keep_only(self, active: Iterable[str]) -> None:
        """Forget jobs that are no longer active (ended through another process)."""
        names = set(active)
        if any(name not in names for name in self.handles):
            self.handles = {n: h for n, h in self.handles.items() if n in names}
            self.mine = {n: j for n, j in self.mine.items() if n in names}
        if any(name not in names for name in self._reading):
            self._reading = {n: r for n, r in self._reading.items() if n in names}

    def poll(self, active: Iterable[JobRecord], *, until: float | None = None) -> tuple[int, int]:
        """Ask each runner about ``active`` jobs, in its batches; complete the terminal ones.

        ``until`` (a ``time.monotonic()`` deadline) bounds the work: after each batch, once it
        has passed, the jobs not asked about yet are left for the next call. Why: when events
        stop arriving for a wide fan-out, every job of it falls silent at once, and asking
        about (and completing) 100,000 of them in one tick would outlast the Lambda. At least
        one batch is always asked about, so successive calls get through them all.
        Returns (jobs asked about, jobs ended).
        """
        by_runner: dict[str, list[tuple[JobRecord, JobHandle]]] = {}
        for job in active:
            handle = self.handle(job)
            if handle is not None:
                by_runner.setdefault(job.runner, []).append((job, handle))
        asked = ended = 0
        for name, everyone in by_runner.items():
            if until is not None and asked and time.monotonic() >= until:
                break
            try:
                runner = self.runners.get(name)
            except RunnerUnavailableError as exc:  # only this runner's jobs wait; the others go on
                self.unavailable(name, exc)
                continue
            except (RunnerError, UnknownRunnerError):
                continue  # ask again on the next step
            size = max(1, runner.poll_batch)  # the Runner protocol declares it
            for start in range(0, len(everyone), size):
                if until is not None and asked and time.monotonic() >= until:
                    return asked, ended
                pairs = everyone[start : start + size]
                asked += len(pairs)
                outcome = self._poll_batch(name, runner, pairs)
                if outcome is None:  # the runner is unwell: its other jobs wait for the next call
                    break
                ended += outcome
        return asked, ended

    def _poll_batch(self, name: str, runner: Runner, pairs: list[tuple[JobRecord, JobHandle]]) -> int | None:
        """One batch of one runner's jobs asked about; how many ended (None: the runner failed)."""
        try:
            with dependencies(name):
                statuses = runner.poll([handle for _, handle in pairs])
        except RunnerUnavailableError as exc:  # only this runner's jobs wait; the others go on
            self.unavailable(name, exc)
            return None
        except (RunnerError, UnknownRunnerError):
            return None  # the backend is unwell (retries already spent): ask again on the next step
        ended = 0
        for job, handle in pairs:
            status = statuses.get(job.name)
            if status is None:  # no news (not evidence): lost only past the reconciler's horizon
                status = self._unheard(job)
            elif not status.terminal:
                self._heard(job)
            if status is not None and status.terminal and self.complete(job, runner, handle, status):
                ended += 1
        return ended

    def _heard(self, job: JobRecord) -> None:
        """Its runner reported the job: refresh ``updated`` (at most every half ``lost_after``),
        the mark the reconciler's horizon counts from, and the age the tick polls after."""
        now = self.clock.now()
        if job.updated is not None and now - job.updated < self.lost_after / 2:
            return
        with contextlib.suppress(ConflictError):  # someone else moved it: their mark is as fresh
            touched = self.store.update_job(replace(job, updated=now), expected_version=job.version)
            if job.name in self.mine:
                self.mine[job.name] = touched

    def _unheard(self, job: JobRecord) -> JobStatus | None:
        """A job its runner left out of ``poll``: LOST once unheard of for ``lost_after``, else None.

        The runner says LOST only on evidence; this is the control plane's own bound, so a job
        nobody can find does not wait forever. The reason names the horizon.
        """
        now = self.clock.now()
        if job.updated is None or now - job.updated < self.lost_after:
            return None
        reason = (
            f"job {job.name}: its runner has not reported it since {job.updated:%Y-%m-%d %H:%M:%S}"
            f" (lost_after {self.lost_after}): the control plane ends it LOST"
        )
        return JobStatus(JobState.LOST, failure=Failure.LOST, reason=reason)

    def complete(self, job: JobRecord, runner: Runner, handle: JobHandle, status: JobStatus) -> bool:
        """Read the ended job's whole log, bounded, and queue its end as an event.

        The log is read until the runner says ``complete``: an empty page only means "nothing
        yet" (a cloud log service still ingesting the last lines, the outputs marker among
        them). Pages are asked again for at most ``log_wait``; if the log is still not
        complete, this returns False and the job stays active: the next poll (or the tick's
        reconciler, after an event) continues from where this one stopped, in this process,
        or from the start in another. A runner ends the wait itself after its own grace,
        with ``truncated``: then the task's log says the end may be missing.

        A CANCELLING job its runner reports LOST ends CANCELLED (it was asked to stop). An
        infrastructure failure (:data:`INFRA_FAILURES`) makes the engine submit a new attempt
        under a new name: the old job is cancelled first, as it may still run (LOST said by
        the reconciler's horizon); when that cancel fails, the job stays CANCELLING and the
        tick cancels it again.
        """
        task_id = str(job.spec.get("task_id", ""))
        phase = JobPhase.DONE
        if job.phase is JobPhase.CANCELLING and status.state is JobState.LOST:
            status = replace(status, state=JobState.CANCELLED, failure=Failure.CANCELLED)
        if status.failure in INFRA_FAILURES:
            try:
                runner.cancel(handle)
            except JobNotFoundError:
                pass
            except RunnerError as exc:
                _log.warning("job %s: could not cancel it before its next attempt yet: %s", job.name, exc)
                phase = JobPhase.CANCELLING

        def make(level: Level, message: str) -> LogLine:
            return LogLine(self.clock.now(), level, message, task_id, job.taskrun_id, job.attempt)

        reading = self._reading.get(job.name)
        if reading is None or reading.handle != handle:
            _, _, shown = self._live.get(job.name, (None, None, 0))
            reading = _Reading(handle, Capture(self.log_limits, make, shown), self._split(job, shown))
        capture = reading.capture
        sink: Capture | ChildLogs = reading.split or capture
        deadline = self.clock.now() + self.log_wait
        pause = _FIRST_LOG_PAUSE
        chunk: LogChunk | None = None
        for _ in range(1_000_000):
            try:
                chunk = runner.logs(handle, reading.cursor)
            except JobNotFoundError:
                break  # gone with its job (LOST, cancelled before it ran): no more lines to read
            for record in chunk.lines:
                sink.add(record.stream, record.text, record.partial)
            reading.cursor = chunk.cursor
            if chunk.complete:
                break
            if chunk.lines:
                continue
            now = self.clock.now()
            if now >= deadline:
                self._reading[job.name] = reading  # a later poll goes on from here
                return False
            self.clock.sleep_until(min(now + pause, deadline))
            pause = min(pause * 2, _LAST_LOG_PAUSE)
        self._reading.pop(job.name, None)
        self._live.pop(job.name, None)
        self._live_split.pop(job.name, None)
        self.display.shown |= sink.displayed
        if capture.error is not None:
            status = _outputs_refused(status, capture.error)
        logs = capture.finish() if reading.split is None else []
        if chunk is not None and chunk.truncated:
            logs.append(
                make(
                    Level.WARN,
                    f"the log may be incomplete: {job.runner} stopped waiting for its last lines"
                    " (the job's end-of-log mark never arrived); outputs printed at the end may be missing",
                )
            )

        def ended() -> None:  # once the job's end is stored (or found stored): forget it, clean up
            self.handles.pop(job.name, None)
            self.mine.pop(job.name, None)
            if phase is JobPhase.DONE:
                with contextlib.suppress(JobNotFoundError):  # nothing left to clean up
                    runner.cleanup(handle)
                    if implements(runner, Disposable):  # its end, log and outputs are stored now
                        runner.dispose(handle)

        status = self._into_storage(job, status)
        if reading.split is None:
            outputs = self._outputs(job, status, capture.outputs)
        else:
            results, parts_logs, _ = reading.split.finish(status.output_files)
            if status.failure in INFRA_FAILURES:
                # the whole job runs again under the first child's next attempt: what this one
                # printed stays with the first child's attempt, not with children to come
                parts_logs = [
                    replace(line, taskrun_id=job.taskrun_id, attempt=job.attempt, task_id=task_id)
                    for line in parts_logs
                ]
            logs = parts_logs + logs
            outputs = self._one_job_outputs(job, status, results)
        own = Ride(logs, {job.name: self._mark(job, phase, handle=handle.to_dict())})
        own.then.append(ended)
        self._event(job, status, outputs, own)
        return True

    def _split(self, job: JobRecord, shown: int) -> ChildLogs | None:
        """For a one-job WorkingDirectory, its log's splitter; None for any other job."""
        hint = (job.spec.get("properties") or {}).get(WORKSPACE_KEY)
        if not isinstance(hint, Mapping) or not hint.get("children"):
            return None
        parts = [(str(c["taskrun"]), int(c["attempt"]), str(c["task_id"])) for c in hint["children"]]

        def make(taskrun: str, attempt: int, task_id: str, level: Level, message: str) -> LogLine:
            return LogLine(self.clock.now(), level, message, task_id, taskrun, attempt)

        allow = [bool(c.get("allowFailure")) for c in hint["children"]]
        return ChildLogs(job.name, parts, make, self.log_limits, shown, allow)

    @staticmethod
    def _one_job_outputs(job: JobRecord, status: JobStatus, results: Mapping[str, Any]) -> dict[str, Any]:
        """The event's outputs of a one-job WorkingDirectory: each child's part, and the collected files."""
        hint = job.spec["properties"][WORKSPACE_KEY]
        outputs: dict[str, Any] = {WORKSPACE_CHILDREN: dict(results)}
        if hint.get("outputFiles"):
            _, rest = split_output_files(status.output_files)
            outputs[WORKSPACE_OUTPUT_FILES] = own_output_files(rest, hint["outputFiles"])
        return outputs

    @staticmethod
    def _outputs(job: JobRecord, status: JobStatus, marker_outputs: Mapping[str, Any]) -> dict[str, Any]:
        """The task's outputs; for a WorkingDirectory's child, also the files its parent collects."""
        properties = job.spec.get("properties") or {}
        hint = properties.get(WORKSPACE_KEY)
        if not isinstance(hint, Mapping):
            return job_outputs(status, marker_outputs)
        outputs = job_outputs(status, marker_outputs, properties.get("outputFiles") or ())
        if hint.get("outputFiles"):
            outputs[WORKSPACE_OUTPUT_FILES] = own_output_files(status.output_files, hint["outputFiles"])
        return outputs

    def _into_storage(self, job: JobRecord, status: JobStatus) -> JobStatus:
        """Output files a runner kept on this machine, copied into the deployment's storage.

        A runner that cannot write the storage's scheme (the process runner of a server whose
        storage is S3) keeps outputs in its own place; copied here, their URIs are valid
        inputs for any later task on any runner. A file that cannot be copied fails the job
        as a staging error (CONFIG) naming it, never a silent loss.
        """
        local = {
            n: u for n, u in status.output_files.items() if u.startswith("file:") and not self.storage.owns(u)
        }
        if not local:
            return status
        execution = self.executions.load(job.execution_id)
        prefix = self.storage.prefix(
            execution.namespace, execution.flow_id, execution.id, job.taskrun_id, job.attempt
        )
        copied = dict(status.output_files)
        for name, uri in local.items():
            target = f"{prefix}{quote(name)}"
            try:
                self.storage.write(target, path_of(uri).read_bytes())
            except (OSError, StorageError) as exc:
                problem = f"could not copy output file {name} into the storage: {exc}"
                if status.state is JobState.SUCCEEDED:
                    return replace(status, state=JobState.FAILED, failure=Failure.CONFIG, reason=problem)
                return replace(status, reason=f"{status.reason or status.state.value.lower()}; {problem}")
            copied[name] = self.storage.canonical(target)
        return replace(status, output_files=copied)

    def pushed(self, event: JobEvent, *, touch_after: timedelta | None = None) -> bool:
        """A runner's push event about one job; True when it ended a job (an event is queued).

        Idempotent under duplicate and out-of-order delivery: a job already DONE ignores every
        later event, and a non-terminal event never goes back in time (it only refreshes the
        job's ``updated`` mark, at most once per ``touch_after``, so the reconciler leaves a
        job that reports regularly alone). An unknown name (another deployment's job sharing
        the event bus) is ignored, and so is an event about another job id than the one
        recorded for the attempt: a duplicate job's end must not end the task.
        """
        name, status = event.name, event.status
        job = self.store.get_job(name)
        if job is None or job.phase is JobPhase.DONE:
            return False
        try:
            runner = self.runners.get(job.runner)
        except RunnerUnavailableError as exc:
            self.unavailable(job.runner, exc)
            return False
        recorded = self.handle(job)
        if recorded is not None and recorded.id != event.job_id:
            _log.warning(
                "job %s: ignored a %s event for job id %s; the attempt's job is %s",
                name,
                status.state.value,
                event.job_id,
                recorded.id,
            )
            return False
        now = self.clock.now()
        if not status.terminal:
            stale = job.updated is None or touch_after is None or now - job.updated >= touch_after
            if touch_after is not None and stale:
                touched = replace(job, updated=now)
                if job.phase is JobPhase.SUBMITTING and event.handle is not None:  # a lazy handle arrives
                    kept = self._kept(job, runner, event)
                    if kept is not None:  # only the attempt's own job, never a duplicate's
                        touched = replace(touched, phase=JobPhase.SUBMITTED, handle=kept.to_dict())
                with contextlib.suppress(ConflictError):  # someone else touched or finished it
                    self.store.update_job(touched, expected_version=job.version)
            return False
        handle = recorded or self._kept(job, runner, event)
        if handle is None:
            return False  # the reconciler will see it once the handle is stored
        return self.complete(job, runner, handle, status)

    def _kept(self, job: JobRecord, runner: Runner, event: JobEvent) -> JobHandle | None:
        """The handle of the event's job if it is the attempt's own job, found by name; else None.

        With no handle recorded (a lazy handle, or an event beating its write), the event's
        own handle proves nothing: racing submitters may have made a duplicate that the runner
        terminated, and its end must not end the task. The runner's ``find`` names the job
        that runs (AWS Batch: the oldest of the name), and only its events count.
        """
        try:
            _, spec = self.spec(job)
            with dependencies(job.runner):
                found = runner.find(spec)
        except (RunnerError, ScriptError, UnknownRunnerError):
            return None
        if found is None or found.id != event.job_id:
            if found is not None:
                _log.warning(
                    "job %s: ignored a %s event for job id %s; the attempt's job is %s",
                    job.name,
                    event.status.state.value,
                    event.job_id,
                    found.id,
                )
            return None
        return event.handle or found

    def tail_live(self) -> None:
        """Show what running jobs printed since the last look (display only; stored at the end)."""
        if not self.display.live:
            return
        for name, handle in list(self.handles.items()):
            job, cursor, shown = self._live.get(name) or (None, None, 0)
            if job is None:
                continue
            chunk = self.runners.get(job.runner).logs(handle, cursor)
            own = (job.taskrun_id, job.attempt, str(job.spec.get("task_id", "")))
            split = self._live_split.setdefault(name, self._split(job, 0))
            cut = self.log_limits.max_line_chars  # a runner's record may be 1 MiB: not for a terminal
            lines = []
            for r in chunk.lines:
                # a one-job WorkingDirectory's line belongs to the child that printed it
                whose = own if split is None else split.whose(r.stream, r.text)
                if whose is None or parse_line(r.text) is not None:
                    continue
                text = r.text if len(r.text) <= cut else r.text[:cut] + " ..."
                taskrun, attempt, task_id = whose
                lines.append(
                    LogLine(self.clock.now(), stream_level(r.stream), text, task_id, taskrun, attempt)
                )
            self._live[name] = (job, chunk.cursor, shown + len(chunk.lines))
            if lines:
                execution = self.executions.load(job.execution_id)
                flow = self.executions.flow_of(execution)
                self.display.running(execution, self.masks.logs(flow, execution, lines))
