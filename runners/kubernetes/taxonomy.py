"""A Job and its pods, as the API server returns them -> JobStatus. Pure: no SDK, no I/O, no clock.

The documents are the API's own JSON (camelCase), so this module is tested on payloads taken
from the API reference (https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/job-v1/,
.../pod-v1/) without a server. Sources of each judgement:

- A Job is finished when its ``Complete`` or ``Failed`` condition is ``True``. Its ``reason`` says
  why it failed: ``DeadlineExceeded`` (``activeDeadlineSeconds``: TIMEOUT), ``PodFailurePolicy``
  (a rule of the runner's ``podFailurePolicy`` matched: the message names the container and exit
  code, or the pod's ``DisruptionTarget`` condition: PREEMPTED), ``BackoffLimitExceeded`` (no
  rule matched: the pods say the rest). The message of a ``PodFailurePolicy`` failure carries
  the exit code, so a Job whose pods are gone still has it.
- Squall's wrapper exits 96 (command not found) or 97 (a file it could not stage): CONFIG; so
  does a staging container (init or sidecar) that failed; its termination message names the file.
- ``OOMKilled`` is the container's own doing (its memory limit): USER, the exit code 137.
- Kubernetes never fails a pod whose image cannot be pulled (``ErrImagePull``,
  ``ImagePullBackOff``, ``InvalidImageName``) or whose config is broken
  (``CreateContainerConfigError``): after ``configErrorTimeout`` the verdict asks the runner to
  stop the Job as CONFIG. A pod the scheduler cannot place (``PodScheduled=False``,
  ``Unschedulable``), or a Job that cannot create its pod for a ResourceQuota, waits
  ``pendingTimeout``, then UNSCHEDULABLE or QUOTA, the same way.
- The runner stops a Job by suspending it (``spec.suspend``: Kubernetes deletes its pods and
  keeps the Job) with an annotation as the tombstone: ``squall.dev/cancelled`` (CANCELLED) or
  ``squall.dev/stopped`` (``FAILURE|reason``). Either is final once the Job is ``Suspended``
  and no pod of it still runs; until then it is still RUNNING (stopping takes a grace period).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from runners.base import Failure, JobState, JobStatus
from runners.wrapper import WrapperExit

__all__ = [
    "CANCELLED",
    "CONFIG_WAITING",
    "MAIN",
    "STAGE_IN",
    "STAGE_OUT",
    "STOPPED",
    "Verdict",
    "classify",
    "needs_pods",
    "overdue",
    "quota_stop",
    "stopped_value",
    "timestamp",
]

MAIN = "main"
"""The task's container."""
STAGE_IN = "squall-stage-in"
"""The init container that fetches inputs from the object store (tools image)."""
STAGE_OUT = "squall-stage-out"
"""The sidecar that copies the log, then the outputs, to the object store (tools image)."""
CANCELLED = "squall.dev/cancelled"
STOPPED = "squall.dev/stopped"
TIMEOUT = "squall.dev/timeout"
PENDING_TIMEOUT = "squall.dev/pending-timeout"
CONFIG_ERROR_TIMEOUT = "squall.dev/config-error-timeout"

CONFIG_WAITING = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
    }
)
"""Waiting reasons Kubernetes retries forever and a new attempt cannot fix."""

_EXIT = re.compile(r"Container (?P<container>\S+) for pod \S+ failed with exit code (?P<code>\d+)")
_CONDITION = re.compile(r"Pod \S+ has condition (?P<condition>\S+) matching")


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a Job says now, and whether the runner should stop it (``stop``: failure and reason)."""

    status: JobStatus
    stop: tuple[Failure, str] | None = None


def timestamp(raw: Any) -> datetime | None:
    """An RFC 3339 time of the API (``2026-01-01T00:00:00Z``), or None."""
    if not isinstance(raw, str) or not raw:
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None


def stopped_value(failure: Failure, reason: str) -> str:
    """The ``squall.dev/stopped`` annotation for a Job the runner stops as ``failure``."""
    return f"{failure.value}|{reason}"


def _conditions(job: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {
        str(c.get("type")): c
        for c in ((job.get("status") or {}).get("conditions") or [])
        if c.get("status") == "True"
    }


def _seconds(raw: Any) -> float | None:
    try:
        return float(raw) if raw not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _statuses(pod: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    status = pod.get("status") or {}
    return {
        str(c.get("name")): c
        for c in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
    }


def _terminated(pods: Sequence[Mapping[str, Any]], container: str) -> Mapping[str, Any] | None:
    for pod in reversed(pods):  # the newest pod last
        found = ((_statuses(pod).get(container) or {}).get("state") or {}).get("terminated")
        if found:
            return dict(found)
    return None


def _live(pods: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [p for p in pods if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]


def _container_failure(
    container: str, code: int, pods: Sequence[Mapping[str, Any]] | None, base: JobStatus
) -> JobStatus:
    terminated = _terminated(pods or [], container) or {}
    message = str(terminated.get("message") or "").strip()
    if container in (STAGE_IN, STAGE_OUT):
        what = "fetching inputs" if container == STAGE_IN else "keeping the log and outputs"
        reason = message or f"the {container} container ({what}) failed with exit code {code}"
        return JobStatus(
            JobState.FAILED, Failure.CONFIG, code, reason, started=base.started, ended=base.ended
        )
    if code in (WrapperExit.NOT_FOUND, WrapperExit.STAGING):
        said = {WrapperExit.NOT_FOUND: "command not found", WrapperExit.STAGING: "a file could not be staged"}
        reason = f"exit code {code}: {said[WrapperExit(code)]} (the job's log says which)"
        return JobStatus(
            JobState.FAILED, Failure.CONFIG, code, reason, started=base.started, ended=base.ended
        )
    reason = f"exit code {code}"
    if terminated.get("reason") == "OOMKilled":
        reason += " (OOMKilled: the container passed its memory limit)"
    return JobStatus(JobState.FAILED, Failure.USER, code, reason, started=base.started, ended=base.ended)


def _failed(
    job: Mapping[str, Any],
    condition: Mapping[str, Any],
    pods: Sequence[Mapping[str, Any]] | None,
    base: JobStatus,
) -> JobStatus:
    why, message = str(condition.get("reason") or ""), str(condition.get("message") or "")
    if why == "DeadlineExceeded":
        annotations = (job.get("metadata") or {}).get("annotations") or {}
        limit = _seconds(annotations.get(TIMEOUT)) or _seconds(
            (job.get("spec") or {}).get("activeDeadlineSeconds")
        )
        shown = timedelta(seconds=limit) if limit is not None else "its deadline"
        return JobStatus(
            JobState.FAILED,
            Failure.TIMEOUT,
            reason=f"timed out after {shown}",
            started=base.started,
            ended=base.ended,
        )
    exited = _EXIT.search(message)
    if exited:
        return _container_failure(exited.group("container"), int(exited.group("code")), pods, base)
    disrupted = _CONDITION.search(message)
    if disrupted and disrupted.group("condition") == "DisruptionTarget":
        detail = ""
        for pod in pods or []:
            for c in (pod.get("status") or {}).get("conditions") or []:
                if c.get("type") == "DisruptionTarget":
                    detail = f": {c.get('reason')} {c.get('message') or ''}".rstrip()
        return JobStatus(
            JobState.FAILED,
            Failure.PREEMPTED,
            reason=f"the pod was disrupted (evicted, preempted or its node lost){detail}",
            started=base.started,
            ended=base.ended,
        )
    for container in (STAGE_IN, MAIN, STAGE_OUT):  # BackoffLimitExceeded: the pods say which
        terminated = _terminated(pods or [], container)
        code = int(terminated.get("exitCode", 0)) if terminated else 0
        if code:
            return _container_failure(container, code, pods, base)
    return JobStatus(
        JobState.FAILED,
        Failure.LOST,
        reason=f"the Job failed ({why}: {message}) and no container exit code is left to say why",
        started=base.started,
        ended=base.ended,
    )


def classify(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]] | None, now: datetime) -> Verdict:
    """The Job's status. ``pods``: this Job's pods, or None when they were not listed (then a
    running Job's details, waiting reasons and dwell, are not judged)."""
    status = job.get("status") or {}
    meta = job.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    conditions = _conditions(job)
    started = timestamp(status.get("startTime"))
    if "Complete" in conditions:
        ended = timestamp(status.get("completionTime")) or timestamp(
            conditions["Complete"].get("lastTransitionTime")
        )
        return Verdict(JobStatus(JobState.SUCCEEDED, exit_code=0, started=started, ended=ended))
    if "Failed" in conditions:
        ended = timestamp(conditions["Failed"].get("lastTransitionTime"))
        base = JobStatus(JobState.FAILED, started=started, ended=ended)
        return Verdict(_failed(job, conditions["Failed"], pods, base))
    suspended = "Suspended" in conditions
    stopping = int(status.get("active") or 0) + int(status.get("terminating") or 0)
    alive = bool(_live(pods)) if pods is not None else False
    if (CANCELLED in annotations or STOPPED in annotations) and suspended and not stopping and not alive:
        ended = timestamp(conditions["Suspended"].get("lastTransitionTime"))
        if STOPPED in annotations:
            failure_name, _, reason = str(annotations[STOPPED]).partition("|")
            failure = Failure(failure_name) if failure_name in Failure.__members__ else Failure.LOST
            return Verdict(JobStatus(JobState.FAILED, failure, reason=reason, started=started, ended=ended))
        return Verdict(
            JobStatus(JobState.CANCELLED, Failure.CANCELLED, reason="cancelled", started=started, ended=ended)
        )
    if CANCELLED in annotations or STOPPED in annotations:
        return Verdict(JobStatus(JobState.RUNNING, started=started))  # stopping: the pods are going
    if pods is None:
        if int(status.get("ready") or 0) > 0:
            return Verdict(JobStatus(JobState.RUNNING, started=started))
        return Verdict(JobStatus(JobState.STARTING if started else JobState.QUEUED, started=started))
    return _pending_or_running(annotations, _live(pods), started, now)


def overdue(job: Mapping[str, Any], now: datetime) -> bool:
    """Whether the Job is older than its ``pendingTimeout``: only then is a pod-less Job's
    reason (a quota) worth a call."""
    meta = job.get("metadata") or {}
    created = timestamp(meta.get("creationTimestamp")) or now
    dwell = _seconds((meta.get("annotations") or {}).get(PENDING_TIMEOUT)) or 900.0
    return (now - created).total_seconds() > dwell


def quota_stop(
    job: Mapping[str, Any], events: Sequence[Mapping[str, Any]], now: datetime
) -> tuple[Failure, str] | None:
    """QUOTA when the Job has had no pod for ``pendingTimeout`` and the job controller's
    ``FailedCreate`` events about it say a ResourceQuota refused the pod ("exceeded quota")."""
    meta = job.get("metadata") or {}
    uid = meta.get("uid")
    refused = [
        e
        for e in events
        if (e.get("involvedObject") or {}).get("uid") in (None, uid)
        and (e.get("involvedObject") or {}).get("name") == meta.get("name")
        and e.get("reason") == "FailedCreate"
        and "exceeded quota" in str(e.get("message") or "")
    ]
    if not refused:
        return None
    if not overdue(job, now):
        return None
    waited = (now - (timestamp(meta.get("creationTimestamp")) or now)).total_seconds()
    message = str(refused[-1].get("message") or "exceeded quota")
    return Failure.QUOTA, f"{message} (no pod for {timedelta(seconds=round(waited))})"


def needs_pods(job: Mapping[str, Any], verdict: Verdict) -> bool:
    """Whether the Job's pods would tell more than ``verdict`` (judged without them): a Job not
    yet running a ready pod (waiting reasons, dwell), one stopping (are its pods gone?), or a
    failure whose detail only a pod keeps (a staging container's message, OOMKilled). A running
    Job with a ready pod, and most ended ones, need no pod list: the poll stays one call."""
    status = verdict.status
    if not status.terminal:
        ready = int(((job.get("status") or {}).get("ready")) or 0) > 0
        annotations = (job.get("metadata") or {}).get("annotations") or {}
        return not ready or CANCELLED in annotations or STOPPED in annotations
    if status.failure in (Failure.CONFIG, Failure.LOST):
        return True
    return status.failure is Failure.USER and status.exit_code == 137


def _pending_or_running(
    annotations: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], started: datetime | None, now: datetime
) -> Verdict:
    if not pods:
        return Verdict(JobStatus(JobState.QUEUED))
    pod = pods[-1]
    created = timestamp((pod.get("metadata") or {}).get("creationTimestamp")) or now
    waited = (now - created).total_seconds()
    for name, container in _statuses(pod).items():
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in CONFIG_WAITING:
            dwell = _seconds(annotations.get(CONFIG_ERROR_TIMEOUT)) or 120.0
            reason = f"container {name}: {waiting['reason']}: {waiting.get('message') or ''}".rstrip(": ")
            stop = (Failure.CONFIG, reason) if waited > dwell else None
            return Verdict(JobStatus(JobState.STARTING, reason=reason), stop)
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            dwell = _seconds(annotations.get(PENDING_TIMEOUT)) or 900.0
            reason = f"{condition.get('reason') or 'Unschedulable'}: {condition.get('message') or ''}".rstrip(
                ": "
            )
            stop = (
                (Failure.UNSCHEDULABLE, f"{reason} (pending {timedelta(seconds=round(waited))})")
                if waited > dwell
                else None
            )
            return Verdict(JobStatus(JobState.QUEUED, reason=reason), stop)
    scheduled = any(
        c.get("type") == "PodScheduled" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )
    if not scheduled:
        return Verdict(JobStatus(JobState.QUEUED))
    main = (_statuses(pod).get(MAIN) or {}).get("state") or {}
    if "running" in main or "terminated" in main:
        return Verdict(
            JobStatus(
                JobState.RUNNING,
                started=timestamp((main.get("running") or main.get("terminated") or {}).get("startedAt"))
                or started,
            )
        )
    return Verdict(JobStatus(JobState.STARTING, started=started))
