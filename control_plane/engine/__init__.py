"""The pure core: ``plan(flow, execution, event) -> (execution', actions)``, with no I/O.

Nothing here reads a clock, draws a random number, or touches a store, runner or network:
time arrives in events, ids are derived, and a test pins these imports.
"""

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
from control_plane.engine.model import Attempt, Execution, LogLine, Phase, Progress, TaskRun
from control_plane.engine.planner import job_name, new_execution, plan, replay
from control_plane.engine.states import State

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
