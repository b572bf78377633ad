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
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from msgspec.structs import replace

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
from control_plane.service.runners import (
    RunnerRegistry,
    RunnerUnavailableError,
    UnknownRunnerError,
    dependencies,
)
from control_plane.service.scripts import ScriptError, build_job_spec, job_outputs
from control_plane.service.storage import TaskStorage
from control_plane.store.base import JobPhase, JobRecord, StateStore
from runners.base import (
    Evented,
    Failure,
    JobEvent,
    JobHandle,
    JobSpec,
    JobState,
    JobStatus,
    LogChunk,
    Runner,
    RunnerError,
    TransientRunnerError,
)
from runners.markers import parse_line

__all__ = ["Executions", "JobSupervisor"]

_log = logging.getLogger("squall.service")


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

    def __init__(self, handle: JobHandle, capture: Capture) -> None:
        self.handle = handle
        self.capture = capture
        self.cursor: str | None = None


def _runner_type(job: JobRecord) -> str:
    """The ``taskRunner.type`` the flow wrote (what its author recognises), else the runner's name."""
    block = job.spec.get("properties", {}).get("taskRunner")
    kind = block.get("type") if isinstance(block, Mapping) else None
    return str(kind) if kind else job.runner


def job_status_changed(
    at: datetime, job: JobRecord, status: JobStatus, outputs: Mapping[str, Any] | None
) -> JobStatusChanged:
    """The one place a runner's ``JobStatus`` becomes the engine's event (its own enums)."""
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
    ) -> None:
        self.store = store
        self.runners = runners
        self.storage = storage
        self.clock = clock
        self.log_limits = log_limits
        self.masks = masks
        self.display = display
        self.news = news
        self.executions = executions
        self.handles: dict[str, JobHandle] = {}  # jobs this process submitted or found, still active
        self.mine: dict[str, JobRecord] = {}
        # Live display of running jobs' output (only when someone watches): where each job's
        # log was read up to and how many records were shown.
        self._live: dict[str, tuple[JobRecord, str | None, int]] = {}
        self._warned: set[str] = set()  # runners found unavailable, already logged
        self.log_wait = log_wait
        self._reading: dict[str, _Reading] = {}  # ended jobs whose log is not complete yet

    # ================================================================== submit

    def spec(self, job: JobRecord) -> tuple[Runner, JobSpec]:
        """The runner and the JobSpec of ``job``, its ``taskRunner`` block parsed once.

        The runner merges its deployment defaults and validates the options, once, in
        ``submit``: a bad option fails the task there (``RunnerOptionsError``, a USER failure
        naming each field).
        """
        execution = self.executions.load(job.execution_id)
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
        return self.runners.get(runner_name), spec

    def submit(self, job: JobRecord, *, reattach: bool) -> None:
        """Submit ``job`` (``reattach``: find it by name first); its handle rides with the next write."""
        try:
            runner, spec = self.spec(job)
            with dependencies(job.runner):  # runners import their SDK on first use
                handle = runner.find(spec) if reattach else None
                if handle is None:
                    handle = runner.submit(spec)
        except RunnerUnavailableError as exc:  # the extra is not installed: this job fails, nothing else
            self._give_up(job, Failure.CONFIG, exc.for_type(_runner_type(job)))
            return
        except TransientRunnerError as exc:
            self._give_up(job, Failure.START_FAILED, f"{job.runner}: {exc}")
            return
        except (RunnerError, ScriptError, UnknownRunnerError) as exc:
            # Refused as specified (options, inputs, the backend's validation): trying again cannot help.
            self._give_up(job, Failure.CONFIG, str(exc))
            return
        self.adopt(job, handle)
        ride = self.news.ride(job.execution_id)
        ride.jobs[job.name] = self._mark(job, JobPhase.SUBMITTED, handle=handle.to_dict())
        if not reattach and self.announces(job.runner):
            ride.lazy.add(job.name)

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
        return isinstance(instance, Evented) and instance.carries_handles

    def _mark(self, job: JobRecord, phase: JobPhase, **changes: Any) -> JobRecord:
        return replace(job, phase=phase, updated=self.clock.now(), **changes)

    def _event(self, job: JobRecord, status: JobStatus, outputs: Mapping[str, Any] | None, own: Ride) -> None:
        self.news.event(job.execution_id, job_status_changed(self.clock.now(), job, status, outputs), own)

    def _give_up(self, job: JobRecord, failure: Failure, reason: str, logs: Sequence[LogLine] = ()) -> None:
        """End the job's task as failed; the job becomes DONE only with that event's save."""
        status = JobStatus(JobState.FAILED, failure=failure, reason=reason)
        self._event(job, status, None, Ride(list(logs), {job.name: self._mark(job, JobPhase.DONE)}))

    # ================================================================== cancel

    def cancel(self, job_name: str) -> None:
        """Cancel a job through its runner; a kill never raises, it says what it could not do."""
        job = self.store.get_job(job_name)
        if job is None or job.phase is JobPhase.DONE:
            return
        try:
            handle = self.handle(job)
            if handle is None:
                try:
                    runner, spec = self.spec(job)
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
            message = (
                f"job {job.name} was not cancelled: {exc.for_type(_runner_type(job))}; if it was"
                " submitted, it may still be running on its backend"
            )
            self._give_up(job, Failure.CANCELLED, message, [self._warning(job, message)])
            return
        except RunnerError as exc:  # still followed by every step: the job ends its task when it stops
            message = (
                f"could not cancel job {job.name} yet: {exc};"
                " it is still followed and ends the task when it stops"
            )
            self.news.ride(job.execution_id).logs.append(self._warning(job, message))
            return
        if status is not None and status.terminal:
            self.complete(job, runner, handle, status)

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

    def poll(self, active: Iterable[JobRecord]) -> int:
        """Ask each runner once about ``active`` jobs; complete the terminal ones; how many ended."""
        by_runner: dict[str, list[tuple[JobRecord, JobHandle]]] = {}
        for job in active:
            handle = self.handle(job)
            if handle is not None:
                by_runner.setdefault(job.runner, []).append((job, handle))
        ended = 0
        for name, pairs in by_runner.items():
            handles = {job.name: handle for job, handle in pairs}
            try:
                runner = self.runners.get(name)
                with dependencies(name):
                    statuses = runner.poll(list(handles.values()))
            except RunnerUnavailableError as exc:  # only this runner's jobs wait; the others go on
                self.unavailable(name, exc)
                continue
            except (RunnerError, UnknownRunnerError):
                continue  # the backend is unwell (retries already spent): ask again on the next step
            for job, handle in pairs:
                status = statuses.get(job.name)
                if status is not None and status.terminal and self.complete(job, runner, handle, status):
                    ended += 1
        return ended

    def complete(self, job: JobRecord, runner: Runner, handle: JobHandle, status: JobStatus) -> bool:
        """Read the ended job's whole log, bounded, and queue its end as an event.

        The log is read until the runner says ``complete``: an empty page only means "nothing
        yet" (a cloud log service still ingesting the last lines, the outputs marker among
        them). Pages are asked again for at most ``log_wait``; if the log is still not
        complete, this returns False and the job stays active: the next poll (or the tick's
        reconciler, after an event) continues from where this one stopped, in this process,
        or from the start in another. A runner ends the wait itself after its own grace,
        with ``truncated``: then the task's log says the end may be missing.
        """
        task_id = str(job.spec.get("task_id", ""))

        def make(level: Level, message: str) -> LogLine:
            return LogLine(self.clock.now(), level, message, task_id, job.taskrun_id, job.attempt)

        reading = self._reading.get(job.name)
        if reading is None or reading.handle != handle:
            _, _, shown = self._live.get(job.name, (None, None, 0))
            reading = _Reading(handle, Capture(self.log_limits, make, shown))
        capture = reading.capture
        deadline = self.clock.now() + self.log_wait
        pause = _FIRST_LOG_PAUSE
        chunk: LogChunk | None = None
        for _ in range(1_000_000):
            chunk = runner.logs(handle, reading.cursor)
            for record in chunk.lines:
                capture.add(record.stream, record.text, record.partial)
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
        self.display.shown |= capture.displayed
        if capture.error is not None:
            status = _outputs_refused(status, capture.error)
        logs = capture.finish()
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
            runner.cleanup(handle)

        own = Ride(logs, {job.name: self._mark(job, JobPhase.DONE, handle=handle.to_dict())})
        own.then.append(ended)
        self._event(job, status, job_outputs(status, capture.outputs), own)
        return True

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
                    touched = replace(touched, phase=JobPhase.SUBMITTED, handle=event.handle.to_dict())
                with contextlib.suppress(ConflictError):  # someone else touched or finished it
                    self.store.update_job(touched, expected_version=job.version)
            return False
        handle = recorded or event.handle
        if handle is None:  # the event beat the write of the handle: the runner knows the job by name
            try:
                _, spec = self.spec(job)
                with dependencies(job.runner):
                    handle = runner.find(spec)
            except (RunnerError, ScriptError, UnknownRunnerError):
                handle = None
            if handle is None or handle.id != event.job_id:
                return False  # the reconciler will see it once the handle is stored
        return self.complete(job, runner, handle, status)

    def tail_live(self) -> None:
        """Show what running jobs printed since the last look (display only; stored at the end)."""
        if not self.display.live:
            return
        for name, handle in list(self.handles.items()):
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
                execution = self.executions.load(job.execution_id)
                flow = self.executions.flow_of(execution)
                self.display.running(execution, self.masks.logs(flow, execution, lines))
