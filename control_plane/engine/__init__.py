"""The pure core: ``plan(flow, execution, event) -> (execution', actions)``, with no I/O.

Nothing here reads a clock, draws a random number, or touches a store, runner or network:
time arrives in events, ids are derived, and a test pins these imports.

The planner (``plan``, ``new_execution``, ``replay``) is loaded on first use of those names:
it imports the flow language (pydantic models, YAML), which a store or an API read that only
needs the execution model does not (a Lambda cold start imports every package ``__init__`` on
the way to a module; ADR 0006).
"""

from typing import TYPE_CHECKING, Any

from control_plane.engine.actions import (
    Action,
    CancelJob,
    Emit,
    Finish,
    RunInline,
    StartSubflow,
    StartTimer,
    SubmitJob,
)
from control_plane.engine.events import (
    Event,
    JobStatusChanged,
    Kill,
    Restart,
    Resume,
    Started,
    TaskResult,
    TimerFired,
)
from control_plane.engine.ids import job_name
from control_plane.engine.model import Attempt, Execution, LogLine, Phase, Progress, TaskRun
from control_plane.engine.states import State

if TYPE_CHECKING:
    from control_plane.engine.planner import new_execution, plan, replay

_PLANNER = frozenset({"new_execution", "plan", "replay"})


def __getattr__(name: str) -> Any:
    if name in _PLANNER:
        from control_plane.engine import planner

        return getattr(planner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Action",
    "Attempt",
    "CancelJob",
    "Emit",
    "Event",
    "Execution",
    "Finish",
    "JobStatusChanged",
    "Kill",
    "LogLine",
    "Phase",
    "Progress",
    "Restart",
    "Resume",
    "RunInline",
    "StartSubflow",
    "StartTimer",
    "Started",
    "State",
    "SubmitJob",
    "TaskResult",
    "TaskRun",
    "TimerFired",
    "job_name",
    "new_execution",
    "plan",
    "replay",
]
