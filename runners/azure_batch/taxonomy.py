"""An Azure Batch task document (as ``get_task``/``list_tasks`` return it) -> JobStatus.

Pure: no SDK, no clock, no I/O. The sources (Batch REST reference, ``BatchTask``,
``BatchTaskExecutionInfo``, ``BatchTaskFailureInfo``; the task failure codes of Batch's SDKs'
``TaskFailureInformationCodes``; https://learn.microsoft.com/azure/batch/batch-job-task-error-checking):

- ``state`` ``active`` or ``preparing``: QUEUED; ``running``: RUNNING; ``completed``: terminal.
  A task whose node was taken back (spot or low-priority preemption) is *requeued* by Batch:
  it is ``active`` again with ``executionInfo.requeueCount`` counted, and it is reported as
  QUEUED with the count in the reason, never as a failure: Batch runs it again itself.
- ``executionInfo.result`` ``success`` or ``failure``; ``failureInfo`` has a ``category``
  (``usererror``, ``servererror``), a ``code`` and a ``message``; ``exitCode`` is absent when
  the command never ran.

Failures, in this order:

===================================================  =============================================
``TaskEnded`` with "wall clock" in its message, or   TIMEOUT ("timed out after <maxWallClockTime>")
ran for at least ``constraints.maxWallClockTime``
``TaskEnded`` otherwise (``terminate_task``)          CANCELLED (by Squall or by someone else)
resource file download codes (``Blob*``,              CONFIG: an input it cannot fetch
``ResourceContainer*``), upload codes (``FileUpload*``)  CONFIG: an output it cannot upload
container image codes (``ContainerInvalidImage``,     CONFIG: the spec names what cannot run
``ContainerRegistryAccessDenied``)
wrapper exit codes 96, 97 (runners/wrapper.py)        CONFIG
any other ``servererror``, ``Container*``, ``DiskFull`` START_FAILED: the platform's, may pass
an exit code                                          USER
none of the above (no exit code)                      START_FAILED
===================================================  =============================================
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from runners.base import Failure, JobState, JobStatus
from runners.wrapper import WrapperExit

__all__ = ["CONFIG_CODES", "START_CODES", "requeues", "task_status", "timestamp"]

CONFIG_CODES = frozenset(
    {
        "BlobAccessDenied",
        "BlobDownloadMiscError",
        "BlobDownloadTimedOut",
        "BlobNotFound",
        "ResourceContainerAccessDenied",
        "ResourceContainerNotFound",
        "ResourceContainerListMiscError",
        "FileUploadAccessDenied",
        "FileUploadContainerNotFound",
        "FileUploadMiscError",
        "FileUploadTimedOut",
        "ContainerInvalidImage",
        "ContainerRegistryAccessDenied",
    }
)
"""Codes that say the task's own spec cannot work (its files, its image): never retried."""

START_CODES = frozenset(
    {"ContainerPoolingError", "ContainerDeploymentFailed", "DiskFull", "ApplicationPackageError"}
)
"""Codes that say the node failed to start the task, for reasons of its own."""

_UNLIMITED = "P10675199D"  # Batch's TimeSpan.MaxValue: no limit


def timestamp(value: Any) -> datetime | None:
    """An ISO 8601 timestamp as Batch writes it (``...Z``), or None."""
    if not value:
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _limit(task: Mapping[str, Any]) -> timedelta | None:
    raw = (task.get("constraints") or {}).get("maxWallClockTime")
    if not raw or str(raw).startswith(_UNLIMITED):
        return None
    if isinstance(raw, timedelta):
        return raw
    import isodate  # azure-core's dependency: imported when a limit is read, not with the runner

    value = isodate.parse_duration(str(raw))
    return value if isinstance(value, timedelta) else None


def requeues(task: Mapping[str, Any]) -> int:
    """How often Batch put the task back in the queue (its node preempted or lost)."""
    return int((task.get("executionInfo") or {}).get("requeueCount") or 0)


def task_status(task: Mapping[str, Any]) -> JobStatus:
    """What the task document says (see the module docstring)."""
    info = task.get("executionInfo") or {}
    state = task.get("state")
    started, ended = timestamp(info.get("startTime")), timestamp(info.get("endTime"))
    count = requeues(task)
    requeued = f"requeued {count} time(s) after its node was preempted" if count else None
    if state in ("active", "preparing", None):
        return JobStatus(JobState.QUEUED, reason=requeued)
    if state == "running":
        return JobStatus(JobState.RUNNING, started=started, reason=requeued)
    code = info.get("exitCode")
    exit_code = int(code) if code is not None else None
    failure = info.get("failureInfo") or {}
    if info.get("result") != "failure" and not failure:
        return JobStatus(
            JobState.SUCCEEDED, exit_code=exit_code if exit_code is not None else 0, started=started,
            ended=ended, reason=requeued,
        )  # fmt: skip
    kind, message = str(failure.get("code") or ""), str(failure.get("message") or "")
    shown = f"{kind}: {message}" if kind else message or "the task failed"

    def failed(why: Failure, reason: str, state: JobState = JobState.FAILED) -> JobStatus:
        return JobStatus(state, why, exit_code=exit_code, reason=reason, started=started, ended=ended)

    limit = _limit(task)
    ran = ended - started if started is not None and ended is not None else None
    if kind == "TaskEnded" and (
        "wall clock" in message.lower() or (limit is not None and ran is not None and ran >= limit)
    ):
        return failed(Failure.TIMEOUT, f"timed out after {limit or ran}: {shown}")
    if kind == "TaskEnded":
        return failed(Failure.CANCELLED, f"cancelled: {shown}", JobState.CANCELLED)
    if kind in CONFIG_CODES:
        return failed(Failure.CONFIG, shown)
    if exit_code in (WrapperExit.NOT_FOUND, WrapperExit.STAGING):
        return failed(Failure.CONFIG, f"exit code {exit_code}: the job wrapper could not run the command")
    if failure.get("category") == "servererror" or kind in START_CODES or kind.startswith("Container"):
        return failed(Failure.START_FAILED, shown)
    if exit_code is not None:
        return failed(Failure.USER, f"exit code {exit_code}")
    return failed(Failure.START_FAILED, shown)
