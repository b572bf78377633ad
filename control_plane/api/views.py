"""JSON views of Squall's records for the CLI's ``--json`` output, in Kestra's field names.

(The HTTP API answers in Kestra 2.0's fuller shapes, :mod:`control_plane.api.kestra_views`,
which reuses :func:`duration` and :func:`jsonable` from here.)

Field names are Kestra's camelCase (``flowId``, ``taskRunList``, ``parentTaskRunId``); states
are ``{current, startDate, endDate, duration}`` with instants in UTC ISO 8601 (milliseconds and
a ``Z``, as Kestra renders them) and durations in ISO 8601 (``PT1.5S``, Java's spelling).
Labels are a list of ``{key, value}``, as in Kestra's execution JSON.

The ``*_view`` functions are the only place the CLI turns domain records into JSON, so the
Python names (``flow_id``...) never leak into what it prints.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import date, datetime, time, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from control_plane.engine.model import Attempt, Execution, TaskRun, iso
from control_plane.masking import mask_paths
from control_plane.store.base import ExecutionSummary, FlowRecord

__all__ = [
    "OMITTED",
    "VIEW_DEPTH",
    "AttemptView",
    "ExecutionSummaryView",
    "ExecutionView",
    "FlowSummaryView",
    "LabelView",
    "StateView",
    "TaskRunView",
    "attempt_view",
    "duration",
    "execution_summary_view",
    "execution_view",
    "flow_summary_view",
    "jsonable",
    "state_view",
    "taskrun_view",
]


class _View(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class StateView(_View):
    current: str
    startDate: str | None = None
    endDate: str | None = None
    duration: str | None = None


class LabelView(_View):
    key: str
    value: str


class AttemptView(_View):
    state: StateView
    cost: float | None = Field(
        default=None, description="USD the runner estimates this attempt's job was billed (Squall extra)."
    )


class TaskRunView(_View):
    id: str
    executionId: str
    namespace: str
    flowId: str
    taskId: str
    parentTaskRunId: str | None = None
    value: str | None = None
    state: StateView
    attempts: list[AttemptView]
    outputs: dict[str, Any] | None = None
    error: str | None = None
    cost: float | None = Field(
        default=None, description="Sum of the attempts' estimated cost in USD, when known (Squall extra)."
    )


class ExecutionView(_View):
    id: str
    namespace: str
    flowId: str
    flowRevision: int | None = None
    state: StateView
    taskRunList: list[TaskRunView] = Field(
        description="The task runs in creation order; for a big execution only the first page of them"
        " (see taskRunCursor)."
    )
    taskRunCursor: str | None = Field(
        default=None,
        description="Set when taskRunList does not hold every task run: pass it as ?cursor= to"
        " GET /api/v1/{tenant}/executions/{executionId}/taskruns for the rest (Squall extra).",
    )
    inputs: dict[str, Any]
    outputs: dict[str, Any] | None = None
    labels: list[LabelView]
    trigger: dict[str, Any] | None = None
    parentId: str | None = None
    originalId: str | None = None


class ExecutionSummaryView(_View):
    id: str
    namespace: str
    flowId: str
    flowRevision: int | None = None
    state: StateView
    labels: list[LabelView]
    parentId: str | None = None


class FlowSummaryView(_View):
    namespace: str
    id: str
    revision: int
    updated: str | None


def duration(start: datetime | None, end: datetime | None) -> str | None:
    """Java's ``Duration.toString()`` (``PT1M2.5S``), which Kestra's API returns."""
    if start is None or end is None:
        return None
    millis = max(0, round((end - start).total_seconds() * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    out = "PT"
    if hours:
        out += f"{hours}H"
    if minutes:
        out += f"{minutes}M"
    if seconds or millis or out == "PT":
        out += f"{seconds}.{millis:03d}".rstrip("0").rstrip(".") + "S"
    return out


VIEW_DEPTH = 100  # levels shown, above the 64 a request body may have (common.MAX_JSON_DEPTH) plus wrappers
OMITTED = "<nested too deep to show>"


def jsonable(value: Any, depth: int = 0) -> Any:
    """Plain JSON data: outputs may hold values the store's codec knows but JSON does not.

    Whatever is stored, this returns something every later step can serialise: containers
    nested deeper than ``VIEW_DEPTH`` become ``OMITTED`` (data stored before the API refused
    deep bodies would otherwise exhaust a serialiser's recursion and fail the GET for ever),
    NaN and infinities (not JSON) become null. Other values take the form the store's codec
    gives them, so a response built from memory equals the one read back later.
    """
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping | list | tuple | set | frozenset):
        if depth >= VIEW_DEPTH:
            return OMITTED
        if isinstance(value, Mapping):
            return {_key(k): jsonable(v, depth + 1) for k, v in value.items()}
        return [jsonable(v, depth + 1) for v in value]
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _key(key: Any) -> str:
    """An object key as ``json.dumps`` writes it (``1``, ``true``, ``null``), else its string."""
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, bool | int | float):
        return json.dumps(key)
    return str(key)


def state_view(current: object, start: datetime | None, end: datetime | None) -> StateView:
    return StateView(
        current=str(current), startDate=iso(start), endDate=iso(end), duration=duration(start, end)
    )


def _labels(labels: Mapping[str, str]) -> list[LabelView]:
    return [LabelView(key=str(k), value=str(v)) for k, v in labels.items()]


def attempt_view(attempt: Attempt) -> AttemptView:
    return AttemptView(state=state_view(attempt.state, attempt.started, attempt.ended), cost=attempt.cost)


def taskrun_view(execution: Execution, tr: TaskRun) -> TaskRunView:
    return TaskRunView(
        id=tr.id,
        executionId=execution.id,
        namespace=execution.namespace,
        flowId=execution.flow_id,
        taskId=tr.task_id,
        parentTaskRunId=tr.parent_id,
        value=tr.value,
        state=state_view(tr.state, tr.created, tr.ended),
        attempts=[attempt_view(a) for a in tr.attempts],
        outputs=jsonable(dict(tr.outputs)) if tr.outputs is not None else None,
        error=tr.error,
        cost=_total_cost(tr.attempts),
    )


def _total_cost(attempts: Sequence[Attempt]) -> float | None:
    known = [a.cost for a in attempts if a.cost is not None]
    return round(sum(known), 6) if known else None


def execution_view(
    execution: Execution, taskruns: Sequence[TaskRunView] | None = None, cursor: str | None = None
) -> ExecutionView:
    """The execution with ``taskruns`` (default: every one it holds) and the cursor to the rest."""
    parent = execution.parent or {}
    if taskruns is None:
        taskruns = [taskrun_view(execution, tr) for tr in execution.ordered_taskruns()]
    return ExecutionView(
        id=execution.id,
        namespace=execution.namespace,
        flowId=execution.flow_id,
        flowRevision=execution.flow_revision,
        state=state_view(execution.state, execution.created, execution.ended),
        taskRunList=list(taskruns),
        taskRunCursor=cursor,
        inputs=jsonable(mask_paths(execution.inputs, execution.secret_inputs)),
        outputs=jsonable(dict(execution.outputs)) if execution.outputs is not None else None,
        labels=_labels(execution.labels),
        trigger=jsonable(dict(execution.trigger)) if execution.trigger is not None else None,
        parentId=parent.get("id"),
        originalId=execution.original_id,
    )


def execution_summary_view(summary: ExecutionSummary) -> ExecutionSummaryView:
    return ExecutionSummaryView(
        id=summary.id,
        namespace=summary.namespace,
        flowId=summary.flow_id,
        flowRevision=summary.flow_revision,
        state=state_view(summary.state, summary.created, summary.ended),
        labels=_labels(summary.labels),
        parentId=summary.parent_id,
    )


def flow_summary_view(record: FlowRecord) -> FlowSummaryView:
    return FlowSummaryView(
        namespace=record.namespace, id=record.id, revision=record.revision, updated=iso(record.updated)
    )
