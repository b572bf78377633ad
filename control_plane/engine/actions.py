"""What the engine asks the imperative shell to do: frozen values, carried out in order."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from msgspec import Struct

from control_plane.engine.model import LogLine
from control_plane.engine.states import State

__all__ = [
    "BATCHES_KEY",
    "WORKSPACE_CHILDREN",
    "WORKSPACE_KEY",
    "WORKSPACE_OUTPUT_FILES",
    "Action",
    "CancelJob",
    "Emit",
    "Finish",
    "RunInline",
    "StartSubflow",
    "StartTimer",
    "SubmitJob",
]


WORKSPACE_KEY = "squall.workingDirectory"
"""A ``SubmitJob.properties`` key the engine adds for a job child of a WorkingDirectory.

Its value is ``{"previous": {"taskrun": id, "attempt": n} | None}``: the latest earlier job
child of the same WorkingDirectory run, whose whole working directory the shell stages
before this child's own files (:mod:`control_plane.service.workspace`); for the first job
child (``previous`` None), also the WorkingDirectory's rendered ``inputFiles`` and
``namespaceFiles``, staged first. No user property has
a dotted name, so the key cannot collide with one.

When the WorkingDirectory runs as one job (ADR 0016, :mod:`control_plane.engine.working_directory`),
the first child's job carries them all: the value is ``{"previous": None, "children": [{"taskrun":
id, "attempt": n, "task_id": id, "task_type": type, "allowFailure": bool, "properties": {...}},
...], "inputFiles"/"namespaceFiles"/"outputFiles": the WorkingDirectory's}``, every child's
properties rendered in its own task run's context.
"""


WORKSPACE_CHILDREN = "squall.workingDirectory.children"
"""A key of a one-job WorkingDirectory's result outputs: ``{task run id: {"exitCode": n | None,
"outputs": {vars, exitCode, outputFiles}, "error": str | None, "started": epoch s, "ended":
epoch s}}`` for each child that started (:class:`control_plane.engine.working_directory.ChildResult`).
The engine ends each child's task run with its own part."""


WORKSPACE_OUTPUT_FILES = "squall.workingDirectory.outputFiles"
"""A key of a WorkingDirectory job child's result outputs: the files of its directory that the
WorkingDirectory's ``outputFiles`` globs match (given in the hint as ``outputFiles``). The
engine moves it to the WorkingDirectory's own ``outputs.outputFiles``; the last job child to
succeed sets it, as Kestra collects them after the last child (``postExecuteTasks``)."""


BATCHES_KEY = "squall.forEachItem.batches"
"""A key of a ForEachItem ``_split`` result's outputs: ``{total, prefix, extension}`` of the
batch files it wrote. The engine moves it to the task run's ``batches`` (not its outputs, which
are Kestra's ``splits`` alone), where the ``_items`` task reads it."""


class SubmitJob(Struct, frozen=True):
    """Hand a task attempt to a runner. ``job_name`` is deterministic: one attempt, one job.

    ``properties`` holds the task's properties rendered against the task run's context
    (commands, env, inputFiles, taskRunner, ...), so the shell never renders templates.
    """

    taskrun_id: str
    attempt: int
    job_name: str
    task_type: str
    properties: Mapping[str, Any]
    timeout: timedelta | None = None


class CancelJob(Struct, frozen=True):
    taskrun_id: str
    attempt: int
    job_name: str


class StartTimer(Struct, frozen=True):
    """Deliver ``TimerFired(key)`` at ``at``. Firing a timer that no longer matters is harmless."""

    key: str
    at: datetime


class RunInline(Struct, frozen=True):
    """Run a task with side effects in the control plane; answer with a TaskResult.

    ``properties`` are rendered, as for ``SubmitJob``; ``timeout`` is the task's, which the
    handler also uses to bound its own waits (an HTTP call), so its answer comes in time.
    """

    taskrun_id: str
    attempt: int
    task_type: str
    properties: Mapping[str, Any]
    timeout: timedelta | None = None


class StartSubflow(Struct, frozen=True):
    """Start another flow's execution; when ``wait``, answer with a TaskResult at its end.

    ``iteration`` is set by a ForEachItem for each batch and comes back on the result;
    ``outputs_uri`` is where the shell writes the child's outputs (one JSON line) when it ends.
    """

    taskrun_id: str
    attempt: int
    namespace: str
    flow_id: str
    revision: int | None
    inputs: Mapping[str, Any]
    labels: Mapping[str, str]
    wait: bool
    execution_id: str
    iteration: int | None = None
    outputs_uri: str | None = None


class Emit(Struct, frozen=True):
    """Log lines to store and show; secrets are already masked."""

    logs: tuple[LogLine, ...]


class Finish(Struct, frozen=True):
    """The execution reached a terminal state.

    ``retry_at`` is set when a flow-level retry with CREATE_NEW_EXECUTION asks the shell to
    start a new execution of the same flow with the same inputs at that moment.
    """

    state: State
    outputs: Mapping[str, Any] | None = None
    retry_at: datetime | None = None


Action = SubmitJob | CancelJob | StartTimer | RunInline | StartSubflow | Emit | Finish
