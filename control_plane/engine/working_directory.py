"""Whether a WorkingDirectory's children run as one job, and what each child's part of it was.

Kestra's worker runs a WorkingDirectory's children one after the other in one directory
(``Worker.handleTask``): a disabled child is skipped, a failing child stops the rest unless it
has ``allowFailure``, and each child gets its own task run. Squall does the same in **one**
runner job (ADR 0016) when every child can be handed over before the job starts:

* every enabled child is a job task (a script/command task): an inline or I/O task runs in the
  control plane, which cannot step in between two children of one container;
* they share ``taskRunner`` and ``containerImage`` (one job runs on one runner, in one image;
  without an image on the Docker runner, the language too: each has its own default image);
* no child has ``timeout``, ``retry`` or ``runIf``: each is a decision taken between two
  children (kill this one, run it again, skip it), which only the per-child jobs of ADR 0012
  can take;
* no child reads a sibling's outputs (``outputs.<sibling>``): its properties are rendered
  before the job starts, when no sibling has any. A property that fails to render then falls
  back too (the planner's choice, at run time).

Otherwise the WorkingDirectory runs one job per child (ADR 0012), and says why in its log.
This module is pure: it reads the flow's models and the job's per-child results.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from control_plane.flows.aliases import canonical_type, runner_name
from control_plane.flows.models import Task, TaskKind

__all__ = ["ChildResult", "child_results", "one_job_refusal"]

_PLACEMENT = ("taskRunner", "containerImage")


def _reads_sibling(text: str, sibling: str) -> bool:
    name = re.escape(sibling)
    return re.search(rf"outputs\s*(?:\.\s*{name}\b|\[\s*['\"]{name}['\"])", text) is not None


def one_job_refusal(children: Sequence[Task], retries: Mapping[str, object]) -> str | None:
    """Why these (enabled) children cannot run as one job; None when they can."""
    placement: dict[str, Any] | None = None
    ids = [t.id for t in children]
    for task in children:
        if task.kind is not TaskKind.JOB:
            return f"'{task.id}' is not a script task"
        if task.timeout is not None:
            return f"'{task.id}' has a timeout"
        if retries.get(task.id) is not None:
            return f"'{task.id}' has a retry"
        if task.runIf is not None:
            return f"'{task.id}' has runIf"
        dumped = task.model_dump(by_alias=True, exclude_none=True)
        where = _placement(task, dumped)
        if placement is None:
            placement = where
        elif where != placement:
            return f"'{task.id}' has another taskRunner or containerImage than '{ids[0]}'"
        text = json.dumps(dumped)
        for sibling in ids:
            if sibling != task.id and _reads_sibling(text, sibling):
                return f"'{task.id}' reads the outputs of '{sibling}'"
    return None


def _placement(task: Task, dumped: Mapping[str, Any]) -> dict[str, Any]:
    """Where a child runs: its runner block and image; without an image on the Docker runner,
    its language too (each language has its own default image there, as in Kestra)."""
    where = {k: dumped.get(k) for k in _PLACEMENT}
    block = dumped.get("taskRunner")
    kind = block.get("type") if isinstance(block, Mapping) else None
    if where["containerImage"] is None and kind is not None and runner_name(str(kind)) == "docker":
        canonical = canonical_type(task.type) or task.type
        where["language"] = canonical.split(".")[2] if canonical.count(".") == 3 else canonical
    return where


class ChildResult:
    """One child's part of the job, as the shell cut it out of the job's log and files.

    ``exit_code`` is None when the child started and never ended (the job died or was
    stopped during it); a child that never started has no result at all.
    """

    __slots__ = ("ended", "error", "exit_code", "outputs", "started")

    def __init__(self, raw: Mapping[str, Any]) -> None:
        code = raw.get("exitCode")
        self.exit_code: int | None = code if isinstance(code, int) else None
        outputs = raw.get("outputs")
        self.outputs: dict[str, Any] | None = dict(outputs) if isinstance(outputs, Mapping) else None
        error = raw.get("error")
        self.error: str | None = str(error) if error else None
        self.started = _epoch(raw.get("started"))
        self.ended = _epoch(raw.get("ended"))


def _epoch(value: Any) -> int | None:
    return value if isinstance(value, int) and value > 0 else None


def child_results(raw: Any) -> dict[str, ChildResult]:
    """``{task run id: result}`` from the job's outputs key (bad shapes give no result)."""
    if not isinstance(raw, Mapping):
        return {}
    return {str(k): ChildResult(v) for k, v in raw.items() if isinstance(v, Mapping)}
