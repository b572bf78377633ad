"""From a Batch job description (DescribeJobs item or EventBridge event detail) to a JobStatus.

Both shapes are the same document: a "Batch Job State Change" event's ``detail`` is the job as
DescribeJobs returns it. So one pure function classifies both, and an event and a poll of the
same job can never disagree. No I/O here: the unit tests feed it documents from AWS's docs.

Failure taxonomy (first match wins, for a FAILED job)::

    statusReason starts with "Squall: cancelled"          -> CANCELLED   (we asked)
    "Squall: timed out" / "Job attempt duration exceeded" -> TIMEOUT
    "Squall: unschedulable"                               -> UNSCHEDULABLE (RUNNABLE too long)
    an image that does not exist or may not be pulled, a
      command not found in it, a role it may not use       -> CONFIG
    the wrapper's own exit codes (96 command not found, 97
      an input or output it could not stage), a staging
      container's failure (multi-container jobs)           -> CONFIG
    CannotPullContainerError, ResourceInitializationError,
      TaskFailedToStart, CannotStartContainerError, ...    -> START_FAILED (other reasons: may pass)
    "Host EC2 (instance ...) terminated", spot interruption -> PREEMPTED
    a container exit code                                  -> USER
    anything else: START_FAILED if it never started, else LOST

Infrastructure reasons are checked before the exit code because a preempted or killed
container usually has one too (143, 137): the code says how it died, the reason says why.

A staged job is an ECS multi-container job (``ecsProperties``, see ``staging``): its exit code
is its ``main`` container's, and its outcome is read from the containers, not from the job's
own SUCCEEDED/FAILED, which Batch derives from the essential container (the stage-out) in a
way it does not document for this shape: main exiting 0 and every stager 0 is SUCCEEDED,
whatever Batch says.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from runners.base import Failure, JobHandle, JobState, JobStatus
from runners.wrapper import WrapperExit

__all__ = [
    "CANCEL_PREFIX",
    "DETAIL_TYPE",
    "EVENT_SOURCE",
    "TIMEOUT_PREFIX",
    "UNSCHEDULABLE_PREFIX",
    "classify",
    "containers_of",
    "exit_code_of",
    "handle_from_event",
    "job_from_event",
    "log_stream_of",
    "merge",
    "reason_of",
    "staging_failure",
]

EVENT_SOURCE = "aws.batch"
DETAIL_TYPE = "Batch Job State Change"
RUNNER_NAME = "aws-batch"

CANCEL_PREFIX = "Squall: cancelled"
TIMEOUT_PREFIX = "Squall: timed out"
UNSCHEDULABLE_PREFIX = "Squall: unschedulable"
_SQUALL = "Squall: "

PUSHED_STATES = ("SUCCEEDED", "FAILED")
"""The Batch statuses the Terraform module's EventBridge rule passes to the ``events`` function.

The engine acts on a job's end only. Batch publishes every change (SUBMITTED, PENDING,
RUNNABLE, STARTING, RUNNING, then the end): passing them all cost five more ``events``
invocations per job, each a read of the job and a write of its last-news mark. A job still
running is looked at by the tick's batched reconcile poll instead, once it had no news for
``reconcile_after`` (one DescribeJobs per 100 jobs), which is also when a RUNNABLE job that
no compute environment can place is found and stopped.
"""

_BATCH_STATES = {
    "SUBMITTED": JobState.QUEUED,
    "PENDING": JobState.QUEUED,
    "RUNNABLE": JobState.QUEUED,
    "STARTING": JobState.STARTING,
    "RUNNING": JobState.RUNNING,
    "SUCCEEDED": JobState.SUCCEEDED,
    "FAILED": JobState.FAILED,
}

_START_FAILED = re.compile(
    r"CannotPullContainerError|ResourceInitializationError|TaskFailedToStart|Task failed to start"
    r"|CannotStartContainerError|CannotCreateContainerError|CannotInspectContainerError"
    r"|ContainerRuntimeError|ContainerRuntimeTimeoutError|InternalError: failed to start",
    re.IGNORECASE,
)
_CONFIG = re.compile(
    r"CannotPullContainerError.*(not found|manifest unknown|does not exist|access denied|denied:"
    r"|invalid reference format|unauthorized|no basic auth credentials|name unknown)"
    r"|CannotStartContainerError.*(executable file not found|no such file or directory|permission denied)"
    r"|(CannotPullContainerError|ResourceInitializationError).*(AccessDenied|not authorized)",
    re.IGNORECASE,
)
"""The job's spec is wrong (image, command, the role it needs): another try cannot help."""
_PREEMPTED = re.compile(
    r"Host EC2 \(instance [^)]*\) terminated|EC2 instance .* terminated|spot.*(interrupt|reclaim|terminat)"
    r"|(interrupt|reclaim).*spot",
    re.IGNORECASE,
)
_BATCH_TIMEOUT = "Job attempt duration exceeded timeout"


def _ms(value: Any) -> datetime | None:
    if isinstance(value, int | float) and value > 0:
        return datetime.fromtimestamp(value / 1000, UTC)
    return None


def _last_attempt(job: Mapping[str, Any]) -> Mapping[str, Any]:
    attempts = job.get("attempts") or []
    return attempts[-1] if attempts and isinstance(attempts[-1], Mapping) else {}


MAIN = "main"
STAGE_OUT = "squall-stage-out"
STAGE_IN = "squall-stage-in-"


def containers_of(job: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The containers of an ECS multi-container job by name (the job's, else its last attempt's), or {}."""
    found: dict[str, Mapping[str, Any]] = {}
    sources = [
        ((job.get("ecsProperties") or {}).get("taskProperties") or [{}])[0],
        ((_last_attempt(job).get("taskProperties") or [{}])[0]),
    ]
    for task in sources:
        for container in (task or {}).get("containers") or []:
            name = container.get("name")
            if isinstance(name, str):
                merged = dict(found.get(name) or {})
                merged.update({k: v for k, v in container.items() if v is not None and k not in merged})
                found[name] = merged
    return found


def staging_failure(job: Mapping[str, Any]) -> str | None:
    """Why the outputs of a multi-container job were not uploaded, None when they were (or none were due)."""
    out = containers_of(job).get(STAGE_OUT)
    if out is None:
        return None
    code = out.get("exitCode")
    if code == 0:
        return None
    if code is None and job.get("status") == "SUCCEEDED":
        return None
    detail = out.get("reason") or (f"exit code {code}" if code is not None else "it did not run")
    return f"the outputs could not be uploaded by {STAGE_OUT}: {detail}"


def exit_code_of(job: Mapping[str, Any]) -> int | None:
    """The container's exit code: ``container.exitCode``, else the last attempt's (staged: ``main``'s)."""
    staged = containers_of(job)
    if staged:
        code = (staged.get(MAIN) or {}).get("exitCode")
        return code if isinstance(code, int) else None
    for container in (job.get("container") or {}, _last_attempt(job).get("container") or {}):
        code = container.get("exitCode")
        if isinstance(code, int):
            return code
    return None


def reason_of(job: Mapping[str, Any]) -> str | None:
    """Every reason Batch gives, most specific last ("Essential container..." alone says nothing)."""
    parts: list[str] = []
    attempt = _last_attempt(job)
    for text in (
        job.get("statusReason"),
        (job.get("container") or {}).get("reason"),
        attempt.get("statusReason"),
        (attempt.get("container") or {}).get("reason"),
    ):
        if isinstance(text, str) and text and text not in parts:
            parts.append(text)
    return "; ".join(parts) or None


def log_stream_of(job: Mapping[str, Any]) -> str | None:
    """The CloudWatch stream of the job's (latest) container, once it has one (``main``'s in a staged job)."""
    staged = containers_of(job)
    if staged:
        stream = (staged.get(MAIN) or {}).get("logStreamName")
        return stream if isinstance(stream, str) and stream else None
    for container in ((job.get("container") or {}), (_last_attempt(job).get("container") or {})):
        stream = container.get("logStreamName")
        if isinstance(stream, str) and stream:
            return stream
    return None


def classify(job: Mapping[str, Any]) -> JobStatus:
    """The neutral status of one Batch job document (no output files or resources: the runner adds them)."""
    raw_state = str(job.get("status") or "")
    state = _BATCH_STATES.get(raw_state)
    started, ended = _ms(job.get("startedAt")), _ms(job.get("stoppedAt"))
    code = exit_code_of(job)
    reason = reason_of(job)
    if state is None:
        return JobStatus(JobState.LOST, failure=Failure.LOST, reason=f"unknown Batch status {raw_state!r}")
    staged = containers_of(job)
    if staged and state in (JobState.SUCCEEDED, JobState.FAILED) and not (reason or "").startswith(_SQUALL):
        # The containers say how it went (see the module docstring), not Batch's verdict.
        stagers_ok = staging_failure(job) is None
        state = JobState.SUCCEEDED if code == 0 and stagers_ok else JobState.FAILED
        if state is JobState.FAILED and code == 0 and not stagers_ok:
            reason = "; ".join(filter(None, [staging_failure(job), reason]))
    if state is not JobState.FAILED:
        own = reason if reason and reason.startswith(_SQUALL) else None  # e.g. a cancel on its way
        return JobStatus(
            state,
            exit_code=code if state.terminal else None,
            reason=own.removeprefix(_SQUALL) if own else None,
            started=started,
            ended=ended if state.terminal else None,
        )
    failure, shown = _failure(reason or "", code, started)
    final_state = JobState.CANCELLED if failure is Failure.CANCELLED else JobState.FAILED
    return JobStatus(final_state, failure=failure, exit_code=code, reason=shown, started=started, ended=ended)


def _failure(reason: str, code: int | None, started: datetime | None) -> tuple[Failure, str | None]:
    if reason.startswith(CANCEL_PREFIX):
        return Failure.CANCELLED, "cancelled"
    if reason.startswith(TIMEOUT_PREFIX):
        return Failure.TIMEOUT, reason.split(";")[0].removeprefix(_SQUALL)
    if _BATCH_TIMEOUT in reason:
        return Failure.TIMEOUT, f"timed out: {reason}"
    if reason.startswith(UNSCHEDULABLE_PREFIX):
        return Failure.UNSCHEDULABLE, reason.split(";")[0].removeprefix(_SQUALL)
    if _CONFIG.search(reason):
        return Failure.CONFIG, reason
    if _START_FAILED.search(reason):
        return Failure.START_FAILED, reason
    if _PREEMPTED.search(reason):
        return Failure.PREEMPTED, reason
    if code == WrapperExit.NOT_FOUND:
        return Failure.CONFIG, f"command not found in the image (exit {code}; the log names it)"
    if code == WrapperExit.STAGING:
        return Failure.CONFIG, f"an input or output could not be staged (exit {code}; the log names it)"
    if reason.startswith("the outputs could not be uploaded"):
        return Failure.CONFIG, reason
    if code is not None:
        return Failure.USER, reason or f"exit code {code}"
    if started is None:
        return Failure.START_FAILED, reason or "failed before starting"
    return Failure.LOST, reason or "failed without an exit code"


_RANK = {
    JobState.QUEUED: 0,
    JobState.STARTING: 1,
    JobState.RUNNING: 2,
}


def merge(previous: JobStatus | None, new: JobStatus) -> JobStatus:
    """The status to keep when ``new`` arrives after ``previous`` (events come late, twice, out of order).

    A terminal status is final: nothing replaces it (a RUNNING event delivered after the
    SUCCEEDED one is stale). Among live states the more advanced one wins.
    """
    if previous is None:
        return new
    if previous.terminal:
        return previous
    if new.terminal:
        return new
    return new if _RANK.get(new.state, 0) >= _RANK.get(previous.state, 0) else previous


def job_from_event(event: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The job document of a "Batch Job State Change" event, None for any other event."""
    if event.get("source") != EVENT_SOURCE or event.get("detail-type") != DETAIL_TYPE:
        return None
    detail = event.get("detail")
    if not isinstance(detail, Mapping):
        return None
    if not isinstance(detail.get("jobName"), str) or not isinstance(detail.get("jobId"), str):
        return None
    return detail


def handle_from_event(event: Mapping[str, Any], runner: str = RUNNER_NAME) -> JobHandle | None:
    """The handle of the event's job: its id, queue and region are all in the event."""
    job = job_from_event(event)
    if job is None:
        return None
    data: dict[str, Any] = {}
    if isinstance(event.get("region"), str):
        data["region"] = event["region"]
    if isinstance(job.get("jobQueue"), str):
        data["queue"] = job["jobQueue"]
    return JobHandle(str(job["jobName"]), runner, str(job["jobId"]), data)
