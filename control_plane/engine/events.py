"""What can happen to an execution: a closed union of frozen values, matched with ``match``.

Every event carries ``at``, the moment it is applied: the engine never reads a clock, so
replaying the same events gives the same execution and the same actions.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from msgspec import Struct, field

from control_plane.engine.states import State

__all__ = [
    "Event",
    "JobStatusChanged",
    "Kill",
    "Restart",
    "Resume",
    "Started",
    "TaskResult",
    "TimerFired",
]


class Started(Struct, frozen=True):
    """The execution begins: the root's first tasks start."""

    at: datetime


class JobStatusChanged(Struct, frozen=True):
    """A runner reported a job's status (push event or reconcile poll).

    ``status`` is the runner's neutral job state (QUEUED STARTING RUNNING SUCCEEDED FAILED
    CANCELLED LOST) and ``failure`` its failure class (USER PREEMPTED START_FAILED
    UNSCHEDULABLE QUOTA TIMEOUT CANCELLED LOST). Stale or duplicate reports are ignored.
    """

    at: datetime
    taskrun_id: str
    attempt: int
    status: str
    failure: str | None = None
    exit_code: int | None = None
    reason: str | None = None
    outputs: Mapping[str, Any] | None = None
    cost: float | None = None


class TaskResult(Struct, frozen=True):
    """The outcome of work done outside ``plan``: a RunInline task or a subflow."""

    at: datetime
    taskrun_id: str
    attempt: int
    state: State
    outputs: Mapping[str, Any] | None = None
    error: str | None = None


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


Event = Started | JobStatusChanged | TaskResult | TimerFired | Resume | Kill | Restart
