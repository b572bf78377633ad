"""A Cloud Run execution (and its task), as ``get_execution``/``list_tasks`` return them -> JobStatus.

Pure: no SDK, no clock, no I/O. The sources (Cloud Run Admin API v2 reference,
https://cloud.google.com/run/docs/reference/rest/v2/projects.locations.jobs.executions and
.../executions.tasks):

- An execution is done when its ``Completed`` condition is CONDITION_SUCCEEDED or
  CONDITION_FAILED; ``executionReason`` CANCELLED (or a cancelled count) says it was cancelled.
  Before that it is RUNNING once ``startTime`` is set or a task runs, else QUEUED.
- A failed task's ``lastAttemptResult`` has the container's ``exitCode`` (or ``termSignal``,
  reported here as 128 + the signal, as a shell does) and a ``status`` (google.rpc.Status):
  DEADLINE_EXCEEDED (4), or a message saying the task timed out, is Cloud Run's timeout.
- Squall's job wrapper exits 96 (command not found) or 97 (a file it could not stage): CONFIG.
- A job Cloud Run could not make ready (its ``terminalCondition`` FAILED: an image that does not
  exist or cannot be read, a missing VPC network) never gets an execution: CONFIG, with
  Cloud Run's message ("Image '...' not found.").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from msgspec.structs import replace

from runners.base import Failure, JobState, JobStatus
from runners.google_batch.taxonomy import timestamp
from runners.wrapper import WrapperExit

__all__ = ["env_of", "execution_status", "job_failure", "task_failure"]

_DEADLINE_EXCEEDED = 4


def env_of(job: Mapping[str, Any]) -> dict[str, str]:
    """The job's container environment (``template.template.containers[0].env``) as a dict."""
    containers = (((job.get("template") or {}).get("template") or {}).get("containers")) or [{}]
    return {str(e.get("name")): str(e.get("value", "")) for e in containers[0].get("env") or []}


def job_failure(job: Mapping[str, Any]) -> JobStatus | None:
    """CONFIG when the job itself failed to become ready (it will never run), else None."""
    condition = job.get("terminalCondition") or {}
    if condition.get("state") != "CONDITION_FAILED":
        return None
    why = str(condition.get("message") or condition.get("reason") or "the job could not be created")
    return JobStatus(JobState.FAILED, Failure.CONFIG, reason=f"Cloud Run could not create the job: {why}")


def _completed(execution: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for condition in execution.get("conditions") or []:
        if condition.get("type") == "Completed":
            return dict(condition)
    return None


def execution_status(execution: Mapping[str, Any]) -> JobStatus:
    """What the execution says, before its task is read (a failure is USER until then)."""
    started, ended = timestamp(execution.get("startTime")), timestamp(execution.get("completionTime"))
    completed = _completed(execution) or {}
    state = completed.get("state")
    if state not in ("CONDITION_SUCCEEDED", "CONDITION_FAILED"):
        running = started is not None or int(execution.get("runningCount") or 0) > 0
        return JobStatus(JobState.RUNNING if running else JobState.QUEUED, started=started)
    if state == "CONDITION_SUCCEEDED":
        return JobStatus(JobState.SUCCEEDED, exit_code=0, started=started, ended=ended)
    cancelled = (
        completed.get("executionReason") == "CANCELLED" or int(execution.get("cancelledCount") or 0) > 0
    )
    if cancelled:
        return JobStatus(
            JobState.CANCELLED, Failure.CANCELLED, reason="cancelled", started=started, ended=ended
        )
    reason = str(completed.get("message") or "the execution failed")
    return JobStatus(JobState.FAILED, Failure.USER, reason=reason, started=started, ended=ended)


def task_failure(status: JobStatus, task: Mapping[str, Any] | None) -> JobStatus:
    """``status`` (a failed execution) judged by its task's last attempt."""
    result = (task or {}).get("lastAttemptResult") or {}
    rpc = result.get("status") or {}
    message = str(rpc.get("message") or status.reason or "")
    code: int | None = None
    if "exitCode" in result:
        code = int(result["exitCode"])
    if result.get("termSignal"):
        code = 128 + int(result["termSignal"])
    if int(rpc.get("code") or 0) == _DEADLINE_EXCEEDED or "timed out" in message.lower():
        return replace(status, failure=Failure.TIMEOUT, exit_code=code, reason=f"timed out: {message}")
    if code in (WrapperExit.NOT_FOUND, WrapperExit.STAGING):
        return replace(status, failure=Failure.CONFIG, exit_code=code, reason=message)
    if code is None:
        return replace(status, failure=Failure.LOST, reason=f"the task ended without an exit code: {message}")
    return replace(status, failure=Failure.USER, exit_code=code, reason=f"exit code {code}")
