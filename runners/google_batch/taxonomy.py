"""A Google Batch job (its JSON, as ``get_job`` and ``list_jobs`` return it) -> a neutral JobStatus.

Pure: no SDK, no clock, no I/O, so every mapping is tested on documents. The sources:

- Job states: QUEUED, SCHEDULED (VMs being found and booted), RUNNING, SUCCEEDED, FAILED,
  CANCELLATION_IN_PROGRESS, CANCELLED, DELETION_IN_PROGRESS
  (https://cloud.google.com/batch/docs/reference/rest/v1/projects.locations.jobs#State).
  SCHEDULED is QUEUED here: no VM runs the task yet, so a quota wait does not count towards
  the task's timeout (run time only, runners/base.py).
- Reserved exit codes (https://cloud.google.com/batch/docs/troubleshooting#reserved-exit-codes):
  50001 the VM was preempted (Spot) -> PREEMPTED; 50002 the VM stopped reporting, 50003 it
  rebooted, 50004 the task stopped reporting, 50006 the VM was recreated -> LOST (the
  attempt's host is gone: the infrastructure budget pays for another); 50005 the task ran
  past ``maxRunDuration`` -> TIMEOUT.
- The exit code is in the job's status events, in Google's words ("Task state is updated
  from RUNNING to FAILED on zones/.../instances/... with exit code 1."), and in a task
  event's ``taskExecution.exitCode``; both are read.
- Quota: a job waits in SCHEDULED while a status event says
  ``CODE_GCE_QUOTA_EXCEEDED`` (quoted in DataBiosphere/dsub#303 and nextflow#3061); the zone
  out of capacity says ``ZONE_RESOURCE_POOL_EXHAUSTED``. Batch keeps waiting, so the runner
  decides when to stop (``queuedTimeout``): :func:`capacity_problem` says why it waited.
- Squall's job wrapper exits 96 (command not found) or 97 (an input or output it could not
  stage): CONFIG, never retried (runners/wrapper.py).
- UNVERIFIED, modelled as the fake does: an image that cannot be pulled fails the task
  before the wrapper ran with a description naming the image; it is CONFIG.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from runners.base import Failure, JobState, JobStatus
from runners.wrapper import WrapperExit

__all__ = [
    "EXIT_LOST",
    "EXIT_PREEMPTED",
    "EXIT_TIMEOUT",
    "capacity_problem",
    "duration",
    "exit_code",
    "job_status",
    "started_at",
    "timestamp",
]

EXIT_PREEMPTED = 50001
EXIT_TIMEOUT = 50005
EXIT_LOST = frozenset({50002, 50003, 50004, 50006})

_STATES = {
    "QUEUED": JobState.QUEUED,
    "SCHEDULED": JobState.QUEUED,
    "RUNNING": JobState.RUNNING,
    "CANCELLATION_IN_PROGRESS": JobState.RUNNING,  # still stopping: the control plane keeps cancelling
    "SUCCEEDED": JobState.SUCCEEDED,
    "FAILED": JobState.FAILED,
    "CANCELLED": JobState.CANCELLED,
}
_EXIT = re.compile(r"with exit code (-?\d+)")
_CAPACITY = re.compile(
    r"CODE_GCE_QUOTA_EXCEEDED|QUOTA_EXCEEDED|ZONE_RESOURCE_POOL_EXHAUSTED\w*|RESOURCE_EXHAUSTED"
)
_IMAGE = re.compile(r"(?i)(pull|image).{0,80}(not found|denied|unauthorized|manifest unknown|failed)")
_GCE = re.compile(r"CODE_GCE_\w+")


def timestamp(raw: Any) -> datetime | None:
    """An RFC 3339 timestamp of the API (``2026-12-03T22:10:00.123456789Z``) as a datetime."""
    if not isinstance(raw, str) or not raw:
        return None
    text = raw.replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:  # Python's fromisoformat takes at most microseconds
        digits = re.match(r"\d*", rest)
        frac = digits.group(0) if digits else ""
        text = f"{head}.{frac[:6].ljust(6, '0')}{rest[len(frac) :]}"
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def duration(raw: Any) -> timedelta | None:
    """A protobuf Duration in JSON (``"3600s"``, ``"1.5s"``) as a timedelta."""
    if isinstance(raw, str) and raw.endswith("s"):
        try:
            return timedelta(seconds=float(raw[:-1]))
        except ValueError:
            return None
    return None


def _events(job: Mapping[str, Any]) -> Sequence[Mapping[str, Any]]:
    return list((job.get("status") or {}).get("statusEvents") or [])


def exit_code(job: Mapping[str, Any]) -> int | None:
    """The task's exit code, from the last status event that tells one."""
    for event in reversed(_events(job)):
        execution = event.get("taskExecution") or {}
        if "exitCode" in execution:
            return int(execution["exitCode"])
        found = _EXIT.search(str(event.get("description", "")))
        if found:
            return int(found.group(1))
    return None


def capacity_problem(job: Mapping[str, Any]) -> str | None:
    """The last status event saying a quota or the zone's capacity holds the job back, if any."""
    for event in reversed(_events(job)):
        description = str(event.get("description", ""))
        if _CAPACITY.search(description):
            return description
    return None


def started_at(job: Mapping[str, Any]) -> datetime | None:
    """When the job went RUNNING, from its status events."""
    for event in _events(job):
        description = str(event.get("description", ""))
        if "to RUNNING" in description:
            return timestamp(event.get("eventTime"))
    return None


def _ended_at(job: Mapping[str, Any]) -> datetime | None:
    events = _events(job)
    return timestamp(events[-1].get("eventTime")) if events else timestamp(job.get("updateTime"))


def _max_run(job: Mapping[str, Any]) -> timedelta | None:
    groups = job.get("taskGroups") or [{}]
    return duration(((groups[0] or {}).get("taskSpec") or {}).get("maxRunDuration"))


def _failed(job: Mapping[str, Any]) -> tuple[Failure, int | None, str]:
    code = exit_code(job)
    last = str(_events(job)[-1].get("description", "")) if _events(job) else "the job failed"
    if code == EXIT_PREEMPTED:
        return Failure.PREEMPTED, code, "the VM was preempted (exit code 50001)"
    if code == EXIT_TIMEOUT:
        limit = _max_run(job)
        return Failure.TIMEOUT, code, f"timed out after {limit}" if limit else "timed out (maxRunDuration)"
    if code in EXIT_LOST:
        return Failure.LOST, code, f"Batch lost the task's VM (exit code {code}): {last}"
    if code in (WrapperExit.NOT_FOUND, WrapperExit.STAGING):
        return Failure.CONFIG, code, last
    if _IMAGE.search(last):
        return Failure.CONFIG, code, last
    if started_at(job) is None and _GCE.search(last):
        return Failure.START_FAILED, code, last
    if code is None:
        return Failure.START_FAILED, None, last
    return Failure.USER, code, f"exit code {code}"


def job_status(job: Mapping[str, Any]) -> JobStatus:
    """What the job document says, without the outputs, cost and runner policies (the runner's)."""
    raw = str((job.get("status") or {}).get("state") or "QUEUED")
    started = started_at(job)
    if raw == "DELETION_IN_PROGRESS":
        return JobStatus(
            JobState.LOST, Failure.LOST, reason="the Batch job is being deleted", started=started
        )
    state = _STATES.get(raw, JobState.QUEUED)
    if not state.terminal:
        return JobStatus(state, started=started)
    ended = _ended_at(job)
    if state is JobState.SUCCEEDED:
        return JobStatus(state, exit_code=0, started=started, ended=ended)
    if state is JobState.CANCELLED:
        return JobStatus(state, Failure.CANCELLED, exit_code(job), "cancelled", started=started, ended=ended)
    failure, code, reason = _failed(job)
    return JobStatus(state, failure, code, reason, started=started, ended=ended)
