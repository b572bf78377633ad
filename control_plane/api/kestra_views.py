"""Kestra 2.0's JSON shapes of Squall's records, for the tenant-scoped routes (``/api/v1/{tenant}/...``).

These are what Kestra's own clients parse. ``kestrapy`` 2.0.3 validates responses with
strict pydantic models generated from Kestra's OpenAPI document, which mark as *required*
some fields Squall's own views (:mod:`control_plane.api.views`, the CLI's JSON) never had:

* a state has ``histories`` (``[{state, date}]``) and, besides Kestra's ``duration``,
  ``startDate`` and ``endDate``, the generated names ``getDuration``, ``getStartDate`` and
  ``getEndDate`` (Kestra's Java getters, which its OpenAPI document lists as properties).
  Squall keeps three instants per execution and task run (created, started, ended), not every
  transition, so ``histories`` is rebuilt from them: CREATED, then RUNNING when it started,
  then the current state when it differs (at its end, or at the start for a state that has
  not ended). A pause and its resume are therefore not listed. ``endDate`` is null until the
  state ends, as in Kestra; ``getEndDate`` is required by the client's model, so until the
  end it is the moment of the latest known transition (said so here because it is not an end);
* an execution has ``deleted``, ``metadata.originalCreatedDate`` and ``originalId`` (its own
  id for an execution that is not a replay), and its ``trigger`` is ``{id, type, variables}``;
* a flow is its parsed YAML (``tasks`` required) with ``revision``, ``updated``,
  ``disabled``, ``draft``, ``deleted`` and ``source``; labels written as a YAML map are listed
  as ``[{key, value}]`` as Kestra does;
* a log entry names its ``namespace`` and ``flowId``.

Squall's extras (``cost``, ``outputs``) ride along as extra properties, which the client
keeps in ``additional_properties``. Every model here allows extra keys for that reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from control_plane.api.views import duration, jsonable
from control_plane.engine.model import Attempt, Execution, LogLine, TaskRun, iso
from control_plane.engine.states import State
from control_plane.masking import mask_paths
from control_plane.store.base import ExecutionSummary, FlowRecord

__all__ = [
    "KestraExecution",
    "KestraFlow",
    "KestraLogEntry",
    "KestraState",
    "KestraTaskRun",
    "PagedExecutions",
    "PagedFlows",
    "PagedLogs",
    "PagedTaskRuns",
    "execution",
    "execution_summary",
    "flow",
    "log_entry",
    "state",
    "taskrun",
]


class _Kestra(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, defer_build=True, populate_by_name=True)


class StateHistory(_Kestra):
    state: State
    date: str


class KestraState(_Kestra):
    current: State
    histories: list[StateHistory]
    startDate: str | None = None
    endDate: str | None = None
    duration: str | None = None
    getStartDate: str
    getEndDate: str = Field(description="Kestra's endDate once ended; before, the latest known transition.")
    getDuration: str


class KestraLabel(_Kestra):
    key: str
    value: str


_RUNNER = "The runner that ran the job: process, aws-batch, google-batch, ... (Squall extra)."
_JOB_ID = "The job's id as the cloud's console shows it (Squall extra)."
_JOB_URL = "A link to the job in the cloud's console, when one can be built (Squall extra)."
_FAILURE = "Why the job failed: USER, CONFIG, TIMEOUT, PREEMPTED, QUOTA, LOST, ... (Squall extra)."


class KestraAttempt(_Kestra):
    state: KestraState
    cost: float | None = Field(default=None, description="USD the runner estimates (Squall extra).")
    runner: str | None = Field(default=None, description=_RUNNER)
    jobId: str | None = Field(default=None, description=_JOB_ID)
    jobUrl: str | None = Field(default=None, description=_JOB_URL)
    failureClass: str | None = Field(default=None, description=_FAILURE)


class KestraTaskRun(_Kestra):
    id: str
    executionId: str
    namespace: str
    flowId: str
    taskId: str
    parentTaskRunId: str | None = None
    value: str | None = None
    attempts: list[KestraAttempt] | None = None
    outputs: dict[str, Any] | None = None
    state: KestraState
    iteration: int | None = None
    error: str | None = Field(default=None, description="Why the task run failed (Squall extra).")
    cost: float | None = Field(default=None, description="USD of every priced attempt (Squall extra).")
    runner: str | None = Field(default=None, description=_RUNNER + " Its last job's.")
    jobId: str | None = Field(default=None, description=_JOB_ID + " Its last job's.")
    jobUrl: str | None = Field(default=None, description=_JOB_URL + " Its last job's.")
    failureClass: str | None = Field(default=None, description=_FAILURE + " Its last job's.")


class ExecutionMetadata(_Kestra):
    attemptNumber: int
    originalCreatedDate: str


class KestraTrigger(_Kestra):
    id: str
    type: str
    variables: dict[str, Any] | None = None


class KestraExecution(_Kestra):
    id: str
    namespace: str
    flowId: str
    flowRevision: int
    state: KestraState
    taskRunList: list[KestraTaskRun] | None = None
    inputs: dict[str, Any] | None = None
    outputs: dict[str, Any] | None = None
    labels: list[KestraLabel] | None = None
    trigger: KestraTrigger | None = None
    parentId: str | None = None
    originalId: str
    deleted: bool
    metadata: ExecutionMetadata


class KestraFlow(_Kestra):
    """A flow as Kestra returns it: the parsed YAML plus the revision's fields."""

    id: str
    namespace: str
    revision: int
    updated: str | None = None
    disabled: bool
    draft: bool
    deleted: bool
    tasks: list[dict[str, Any]]
    labels: list[KestraLabel] | None = None
    source: str | None = None


class PagedFlows(_Kestra):
    results: list[KestraFlow]
    total: int


class PagedExecutions(_Kestra):
    results: list[KestraExecution]
    total: int


class PagedTaskRuns(_Kestra):
    """A page of an execution's task runs (Squall extension): pass ``cursor`` back for the next."""

    results: list[KestraTaskRun]
    cursor: str | None = None


class KestraLogEntry(_Kestra):
    namespace: str
    flowId: str
    taskId: str | None = None
    executionId: str
    taskRunId: str | None = None
    attemptNumber: int
    timestamp: str | None = None
    level: str
    message: str


class PagedLogs(_Kestra):
    """A page of an execution's log lines (Squall extension): pass ``cursor`` back for the next."""

    results: list[KestraLogEntry]
    cursor: str | None = None


def state(current: State, created: datetime, started: datetime | None, ended: datetime | None) -> KestraState:
    """A Kestra state rebuilt from the three instants Squall keeps (see the module docstring)."""
    histories = [StateHistory(state=State.CREATED, date=iso(created) or "")]
    if started is not None and current is not State.CREATED:
        histories.append(StateHistory(state=State.RUNNING, date=iso(started) or ""))
    if current not in (State.CREATED, State.RUNNING):
        histories.append(StateHistory(state=current, date=iso(ended or started or created) or ""))
    last = ended or started or created
    return KestraState(
        current=current,
        histories=histories,
        startDate=iso(created),
        endDate=iso(ended),
        duration=duration(created, ended),
        getStartDate=iso(created) or "",
        getEndDate=iso(last) or "",
        getDuration=duration(created, last) or "PT0S",
    )


def _labels(labels: Mapping[str, str]) -> list[KestraLabel]:
    return [KestraLabel(key=str(k), value=str(v)) for k, v in labels.items()]


def _attempt(a: Attempt) -> KestraAttempt:
    return KestraAttempt(
        state=state(a.state, a.started, a.started, a.ended),
        cost=a.cost,
        runner=a.runner,
        jobId=a.job_id,
        jobUrl=a.job_url,
        failureClass=None if a.failure is None else str(a.failure),
    )


def taskrun(execution: Execution, tr: TaskRun) -> KestraTaskRun:
    """The task run; ``runner``..``failureClass`` are its last job's (an inline task has none)."""
    started = tr.attempts[0].started if tr.attempts else None
    ran = next((a for a in reversed(tr.attempts) if a.runner is not None), None)
    costs = [a.cost for a in tr.attempts if a.cost is not None]
    return KestraTaskRun(
        id=tr.id,
        executionId=execution.id,
        namespace=execution.namespace,
        flowId=execution.flow_id,
        taskId=tr.task_id,
        parentTaskRunId=tr.parent_id,
        value=tr.value,
        attempts=[_attempt(a) for a in tr.attempts],
        outputs=jsonable(dict(tr.outputs)) if tr.outputs is not None else None,
        state=state(tr.state, tr.created, started, tr.ended),
        iteration=tr.iteration or None,
        error=tr.error,
        cost=sum(costs) if costs else None,
        runner=None if ran is None else ran.runner,
        jobId=None if ran is None else ran.job_id,
        jobUrl=None if ran is None else ran.job_url,
        failureClass=None if ran is None or ran.failure is None else str(ran.failure),
    )


def _trigger(trigger: Mapping[str, Any] | None) -> KestraTrigger | None:
    if trigger is None:
        return None
    variables = {k: v for k, v in trigger.items() if k not in ("id", "type")}
    return KestraTrigger(
        id=str(trigger.get("id") or ""), type=str(trigger.get("type") or ""), variables=jsonable(variables)
    )


def execution(execution: Execution, taskruns: Sequence[TaskRun] | None = None) -> KestraExecution:
    """The execution with ``taskruns`` (default: every one it holds), in creation order."""
    runs = execution.ordered_taskruns() if taskruns is None else sorted(taskruns, key=lambda tr: tr.seq)
    parent = execution.parent or {}
    return KestraExecution(
        id=execution.id,
        namespace=execution.namespace,
        flowId=execution.flow_id,
        flowRevision=execution.flow_revision or 1,
        state=state(execution.state, execution.created, execution.started, execution.ended),
        taskRunList=[taskrun(execution, tr) for tr in runs],
        inputs=jsonable(mask_paths(execution.inputs, execution.secret_inputs)),
        outputs=jsonable(dict(execution.outputs)) if execution.outputs is not None else None,
        labels=_labels(execution.labels),
        trigger=_trigger(execution.trigger),
        parentId=parent.get("id"),
        originalId=execution.original_id or execution.id,
        deleted=False,
        metadata=ExecutionMetadata(attemptNumber=1, originalCreatedDate=iso(execution.created) or ""),
    )


def execution_summary(summary: ExecutionSummary) -> KestraExecution:
    """A search result: the execution without task runs, inputs or outputs (what a listing reads)."""
    return KestraExecution(
        id=summary.id,
        namespace=summary.namespace,
        flowId=summary.flow_id,
        flowRevision=summary.flow_revision or 1,
        state=state(summary.state, summary.created, None, summary.ended),
        labels=_labels(summary.labels),
        parentId=summary.parent_id,
        originalId=summary.id,
        deleted=False,
        metadata=ExecutionMetadata(attemptNumber=1, originalCreatedDate=iso(summary.created) or ""),
    )


def _with_next_dates(trigger: Any, now: datetime) -> Any:
    """A Schedule trigger with its next dates (Squall extras ``nextExecutionDate`` and
    ``nextExecutionDates``, the next three): what a person reading the flow wants to know."""
    from control_plane.flows.aliases import canonical_trigger_type

    if not isinstance(trigger, dict):
        return trigger
    if canonical_trigger_type(str(trigger.get("type"))) != "squall.trigger.Schedule":
        return trigger
    from control_plane.flows.models import Schedule  # only flows with a schedule pay for it
    from control_plane.triggers.schedule import upcoming

    dates = [iso(d) for d in upcoming(Schedule.model_validate(trigger), now)]
    return {**trigger, "nextExecutionDate": dates[0] if dates else None, "nextExecutionDates": dates}


def flow(record: FlowRecord, *, source: bool = True, now: datetime | None = None) -> KestraFlow:
    """The revision's YAML as Kestra's flow JSON (the source was validated when it was deployed).

    With ``now``, each Schedule trigger of an enabled flow lists its next dates after it.
    """
    import yaml  # only flow reads need it

    body = yaml.safe_load(record.source) or {}
    if now is not None and not body.get("disabled") and isinstance(body.get("triggers"), list):
        body["triggers"] = [_with_next_dates(t, now) for t in body["triggers"]]
    labels = body.pop("labels", None)
    if isinstance(labels, Mapping):
        labels = [{"key": str(k), "value": str(v)} for k, v in labels.items()]
    disabled = body.pop("disabled", False)
    for key in ("id", "namespace", "revision", "updated", "draft", "deleted", "source"):
        body.pop(key, None)
    return KestraFlow(
        id=record.id,
        namespace=record.namespace,
        revision=record.revision,
        updated=iso(record.updated),
        disabled=bool(disabled),
        draft=False,
        deleted=record.deleted,
        labels=labels,
        source=record.source if source else None,
        **jsonable(body),
    )


def log_entry(execution: Execution, line: LogLine) -> KestraLogEntry:
    return KestraLogEntry(
        namespace=execution.namespace,
        flowId=execution.flow_id,
        taskId=line.task_id,
        executionId=execution.id,
        taskRunId=line.taskrun_id,
        attemptNumber=line.attempt,
        timestamp=iso(line.at),
        level=str(line.level),
        message=line.message,
    )
