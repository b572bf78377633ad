"""What can happen to an execution: a closed union of frozen values, matched with ``match``.

Every event carries ``at``, the moment it is applied: the engine never reads a clock, so
replaying the same events gives the same execution and the same actions.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from msgspec import Struct, field

from control_plane.engine.states import State

__all__ = [
    "INFRA_FAILURES",
    "NEVER_RETRIED",
    "Event",
    "JobFailure",
    "JobOutcome",
    "JobStatusChanged",
    "Kill",
    "Recover",
    "Restart",
    "Resume",
    "Started",
    "TaskResult",
    "TimerFired",
]


class JobOutcome(StrEnum):
    """A job's state as the engine sees it (the shell maps each runner's ``JobState`` onto it once)."""

    QUEUED = "QUEUED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    LOST = "LOST"

    @property
    def terminal(self) -> bool:
        return self not in (JobOutcome.QUEUED, JobOutcome.STARTING, JobOutcome.RUNNING)


class JobFailure(StrEnum):
    """Why a job did not succeed: decides whose retry budget an attempt spends."""

    USER = "USER"
    CONFIG = "CONFIG"
    PREEMPTED = "PREEMPTED"
    START_FAILED = "START_FAILED"
    UNSCHEDULABLE = "UNSCHEDULABLE"
    QUOTA = "QUOTA"
    TIMEOUT = "TIMEOUT"
    CANCELLED = "CANCELLED"
    LOST = "LOST"


INFRA_FAILURES = frozenset({JobFailure.PREEMPTED, JobFailure.START_FAILED, JobFailure.QUOTA, JobFailure.LOST})
"""The platform's fault, not the user's code: submitted again on their own budget, without
spending the task's ``retry`` attempts."""

NEVER_RETRIED = frozenset({JobFailure.CONFIG, JobFailure.CANCELLED})
"""Retrying cannot help (a missing image, a command not found, a staging error) or nobody
wants it (cancelled): the attempt ends the task run, whatever its ``retry`` says."""


class Started(Struct, frozen=True):
    """The execution begins: the root's first tasks start."""

    at: datetime


class JobStatusChanged(Struct, frozen=True):
    """A runner reported a job's status (push event or reconcile poll). Stale or duplicate
    reports are ignored."""

    at: datetime
    taskrun_id: str
    attempt: int
    status: JobOutcome
    failure: JobFailure | None = None
    exit_code: int | None = None
    reason: str | None = None
    outputs: Mapping[str, Any] | None = None
    cost: float | None = None
    runner: str | None = None  # where the job ran: kept on the attempt for the views
    job_id: str | None = None
    job_url: str | None = None


class TaskResult(Struct, frozen=True):
    """The outcome of work done outside ``plan``: a RunInline task or a subflow.

    ``logs`` are what a RunInline handler logged, as (level name, message): the engine records
    them on the task run, masked like its own lines.
    """

    at: datetime
    taskrun_id: str
    attempt: int
    state: State
    outputs: Mapping[str, Any] | None = None
    error: str | None = None
    logs: tuple[tuple[str, str], ...] = ()
    iteration: int | None = None  # the batch of a ForEachItem subflow (StartSubflow.iteration)


class TimerFired(Struct, frozen=True):
    at: datetime
    key: str


class Resume(Struct, frozen=True):
    """Resume paused task runs (all of them, or the one named), with onResume inputs."""

    at: datetime
    inputs: Mapping[str, Any] = field(default_factory=dict)
    taskrun_id: str | None = None


class Kill(Struct, frozen=True):
    at: datetime


class Restart(Struct, frozen=True):
    """Run failed task runs again in the same execution (Kestra's restart)."""

    at: datetime


class Recover(Struct, frozen=True):
    """A process took over an execution whose driver died.

    Re-emits what has no outbox record and may have been lost between the save that asked
    for it and the doing: the start of a subflow (its id is derived, so a second start is
    refused by the store) and, for an ended execution, the notice to its parent (a duplicate
    result is ignored by the parent's plan).
    """

    at: datetime


Event = Started | JobStatusChanged | TaskResult | TimerFired | Resume | Kill | Restart | Recover
