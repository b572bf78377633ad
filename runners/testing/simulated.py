"""A backend whose jobs end when the test says so, and report it as push events.

The cloud control plane is event-first: a job's end arrives as an EventBridge event (AWS
Batch's "Batch Job State Change"), the ``events`` Lambda turns it into progress, and the
``tick`` reconciles with one batched status call when an event is lost. Testing that path,
and counting its cost, needs a backend whose job ends are under the test's control and
whose events look like the real ones. This is that backend: an in-memory job table with the
full runner protocol, call counters for every API a real backend would bill or throttle, and
:meth:`SimulatedRunner.event` to build the push event of a job's current state::

    runner = SimulatedRunner()
    ... the service submits jobs ...
    runner.finish(name, exit_code=0, lines=["::{\\"outputs\\":{\\"x\\":1}}::"])
    events.handler(runner.event(name), None)

It is a stand-in for the *compute*, never for the control plane under test.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from msgspec import Struct, field
from pydantic import ConfigDict

from runners.base import (
    Failure,
    JobEvent,
    JobHandle,
    JobNotFoundError,
    JobSpec,
    JobState,
    JobStatus,
    LogChunk,
    LogRecord,
    PushEvent,
    RunnerOptions,
)

__all__ = ["EVENT_SOURCE", "SimulatedRunner"]

EVENT_SOURCE = "squall.simulated"
DETAIL_TYPE = "Simulated Job State Change"


class _Options(RunnerOptions):
    model_config = ConfigDict(extra="allow", frozen=True)


class _Job(Struct):
    spec: JobSpec
    id: str
    state: JobState = JobState.QUEUED
    exit_code: int | None = None
    failure: Failure | None = None
    reason: str | None = None
    cost: float | None = None
    lines: list[LogRecord] = field(default_factory=list)
    log_complete: bool = True
    truncated: bool = False


class SimulatedRunner:
    """Jobs that stay QUEUED until :meth:`start`/:meth:`finish`; thread-safe; counts every call."""

    name: ClassVar[str] = "simulated"
    Options: ClassVar[type[RunnerOptions]] = _Options
    failures: ClassVar[frozenset[Failure]] = frozenset(Failure)
    storage_schemes: ClassVar[frozenset[str]] = frozenset()  # it stages nothing: files come inline
    poll_batch: ClassVar[int] = 1_000_000
    event_keys: ClassVar[frozenset[str]] = frozenset({EVENT_SOURCE})
    carries_handles: ClassVar[bool] = True

    def __init__(self, *, runner_name: str = "simulated") -> None:
        self.runner_name = runner_name
        self.calls: Counter[str] = Counter()
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()

    # -- what the test does

    def names(self) -> list[str]:
        with self._lock:
            return list(self._jobs)

    def spec(self, name: str) -> JobSpec:
        with self._lock:
            return self._jobs[name].spec

    def start(self, name: str) -> None:
        with self._lock:
            self._jobs[name].state = JobState.RUNNING

    def finish(
        self,
        name: str,
        *,
        exit_code: int = 0,
        lines: Sequence[str] = (),
        failure: Failure | None = None,
        reason: str | None = None,
        cost: float | None = None,
        log_complete: bool = True,
    ) -> None:
        """End a job: SUCCEEDED on exit 0 without ``failure``, FAILED otherwise; ``cost`` as billed.

        ``log_complete=False`` plays a cloud log service still ingesting: the log pages come
        back empty and not ``complete`` until :meth:`ingest` delivers the rest.
        """
        with self._lock:
            job = self._jobs[name]
            job.lines += [LogRecord("stdout", text) for text in lines]
            job.log_complete = log_complete
            job.exit_code = exit_code
            ok = exit_code == 0 and failure is None
            job.state = JobState.SUCCEEDED if ok else JobState.FAILED
            job.failure = None if ok else (failure or Failure.USER)
            job.reason = reason
            job.cost = cost

    def ingest(self, name: str, lines: Sequence[str] = (), *, truncated: bool = False) -> None:
        """The late lines of an ended job arrive, and its log is complete (``truncated``: given up)."""
        with self._lock:
            job = self._jobs[name]
            job.lines += [LogRecord("stdout", text) for text in lines]
            job.log_complete, job.truncated = True, truncated

    def event(self, name: str, state: JobState | None = None) -> dict[str, Any]:
        """The EventBridge event a backend would send for ``name`` (its current state by default)."""
        with self._lock:
            job = self._jobs[name]
            return {
                "version": "0",
                "id": f"evt-{job.id}-{(state or job.state).value}",
                "source": EVENT_SOURCE,
                "detail-type": DETAIL_TYPE,
                "time": datetime.now(UTC).isoformat(),
                "detail": {
                    "jobName": name,
                    "jobId": job.id,
                    "status": (state or job.state).value,
                    "exitCode": job.exit_code,
                    "failure": None if job.failure is None else job.failure.value,
                    "statusReason": job.reason,
                    "cost": job.cost,
                },
            }

    # -- the runner protocol

    def submit(self, spec: JobSpec) -> JobHandle:
        with self._lock:
            self.calls["submit"] += 1
            job = self._jobs.get(spec.name)
            if job is None:
                job = self._jobs[spec.name] = _Job(spec, f"sim-{len(self._jobs) + 1}")
            return self._handle(job)

    def find(self, spec: JobSpec) -> JobHandle | None:
        with self._lock:
            self.calls["find"] += 1
            job = self._jobs.get(spec.name)
            return None if job is None else self._handle(job)

    def poll(self, handles: Sequence[JobHandle]) -> Mapping[str, JobStatus]:
        with self._lock:
            self.calls["poll"] += 1
            return {h.name: self._status(self._jobs[h.name]) for h in handles if h.name in self._jobs}

    def cancel(self, handle: JobHandle) -> None:
        with self._lock:
            self.calls["cancel"] += 1
            job = self._jobs.get(handle.name)
            if job is None:
                raise JobNotFoundError(f"no job {handle.name}", runner=self.runner_name)
            if not job.state.terminal:
                job.state, job.failure, job.reason = JobState.CANCELLED, Failure.CANCELLED, "cancelled"

    def logs(self, handle: JobHandle, cursor: str | None) -> LogChunk:
        with self._lock:
            self.calls["logs"] += 1
            job = self._jobs[handle.name]
            start = int(cursor or 0)
            lines = tuple(job.lines[start:])
            complete = job.state.terminal and job.log_complete
            return LogChunk(lines, str(start + len(lines)), complete, complete and job.truncated)

    def cleanup(self, handle: JobHandle) -> None:
        self.calls["cleanup"] += 1

    @property
    def option_defaults(self) -> Mapping[str, Any]:
        return {}

    def parse_event(self, event: PushEvent) -> JobEvent | None:
        """Like AWS Batch's events, these carry the backend's job id: no handle write is needed."""
        body = event.body
        if body.get("source") != EVENT_SOURCE or body.get("detail-type") != DETAIL_TYPE:
            return None
        detail = body.get("detail") or {}
        name, job_id = detail.get("jobName"), detail.get("jobId")
        try:
            state = JobState(detail["status"])
        except (KeyError, ValueError):
            return None
        if not isinstance(name, str) or not isinstance(job_id, str):
            return None
        failure = detail.get("failure")
        status = JobStatus(
            state,
            failure=Failure(failure) if failure else None,
            exit_code=detail.get("exitCode"),
            reason=detail.get("statusReason"),
            cost=detail.get("cost"),
        )
        return JobEvent(name, job_id, status, JobHandle(name, self.runner_name, job_id))

    def _handle(self, job: _Job) -> JobHandle:
        return JobHandle(job.spec.name, self.runner_name, job.id)

    def _status(self, job: _Job) -> JobStatus:
        return JobStatus(
            job.state, failure=job.failure, exit_code=job.exit_code, reason=job.reason, cost=job.cost
        )
