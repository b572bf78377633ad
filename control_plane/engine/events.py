"""What can happen to an execution: a closed union of frozen values, matched with ``match``.

Every event carries ``at``, the moment it is applied: the engine never reads a clock, so
replaying the same events gives the same execution and the same actions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

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


@dataclass(frozen=True, slots=True)
class Started:
    """The execution begins: the root's first tasks start."""

    at: datetime


@dataclass(frozen=True, slots=True)
class JobStatusChanged:
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


@dataclass(frozen=True, slots=True)
class TaskResult:
    """The outcome of work done outside ``plan``: a RunInline task or a subflow."""

    at: datetime
    taskrun_id: str
    attempt: int
    state: State
    outputs: Mapping[str, Any] | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class TimerFired:
    at: datetime
    key: str


@dataclass(frozen=True, slots=True)
class Resume:
    """Resume paused task runs (all of them, or the one named), with onResume inputs."""

    at: datetime
    inputs: Mapping[str, Any] = field(default_factory=dict)
    taskrun_id: str | None = None


@dataclass(frozen=True, slots=True)
class Kill:
    at: datetime


@dataclass(frozen=True, slots=True)
class Restart:
    """Run failed task runs again in the same execution (Kestra's restart)."""

    at: datetime


Event = Started | JobStatusChanged | TaskResult | TimerFired | Resume | Kill | Restart
