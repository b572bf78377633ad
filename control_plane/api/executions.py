"""``/api/v1/executions``: start, read, list, logs, kill, restart, resume, replay (Kestra's paths).

Route order matters: ``POST /api/v1/executions/<id>/restart`` and ``POST
/api/v1/executions/<namespace>/<flow_id>`` match the same paths, as in Kestra. The control
routes are registered first, so the literal segment wins (a flow named ``restart``,
``resume`` or ``replay`` cannot be started through this API; the CLI can).

Big executions come in pages. An execution's JSON lists at most ``TASKRUNS_SHOWN`` task runs,
fewer when they would make the response larger than about ``SQUALL_MAX_RESPONSE_BYTES``;
``taskRunCursor`` then leads to ``GET /api/v1/executions/<id>/taskruns?cursor=`` for the rest.
Pages follow task-run ids (the order both stores keep them in, so a page is one range read,
never a sort of the whole execution); within a page, task runs are listed in creation order,
so an execution that fits in one page reads exactly as Kestra lists it. The cursor is the last
id of the page, opaque to clients.

File inputs (multipart parts with a filename) are written to the deployment storage
(``SQUALL_STORAGE``, so a task submitted from another container reads them) under
``<root>/<namespace>/<flow>/<execution>/inputs/<input>/<filename>`` and the input gets the
part's ``kestra:///`` URI, which names that object whatever the backend (Kestra's layout) and
which tasks read like any other storage URI. If the execution is then refused (bad inputs),
the files are removed again: a rejected request leaves nothing behind.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import heapq
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Annotated, Any
from urllib.parse import quote

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query

from control_plane.api import common, telemetry
from control_plane.api.models import ExecutionPage, LogPage, TaskRunPage
from control_plane.api.views import (
    ExecutionView,
    TaskRunView,
    execution_summary_view,
    execution_view,
    log_view,
    taskrun_view,
)
from control_plane.engine.model import Execution, TaskRun
from control_plane.engine.states import State
from control_plane.errors import InputError, NotFoundError
from control_plane.runtime import Runtime
from control_plane.service.storage import StorageError
from control_plane.store.base import ExecutionSummary

__all__ = [
    "START_TYPES",
    "TASKRUNS_SHOWN",
    "TASKRUN_PAGE",
    "TASKRUN_PAGE_MAX",
    "form_inputs",
    "label_values",
    "router",
    "task_run_cursor",
]

router = Router()

START_TYPES = ("application/json", "multipart/form-data")
SCAN_BUDGET = 2000  # summaries read per listing call at most when date filters skip most of them
TASKRUNS_SHOWN = 1000  # task runs an execution's JSON lists at most; the rest through /taskruns
TASKRUN_PAGE = 100  # /taskruns page size by default
TASKRUN_PAGE_MAX = 1000
_ENVELOPE = 1024  # bytes kept free for what wraps the task runs ({"results":[...],"cursor":...})

_JSON_OBJECT = {"schema": {"type": "object", "additionalProperties": True}}
_START_BODY = {
    "requestBody": {
        "required": False,
        "content": {
            "application/json": _JSON_OBJECT,
            "multipart/form-data": {"schema": {"type": "object", "additionalProperties": True}},
        },
    }
}
_RESUME_BODY = {"requestBody": {"required": False, "content": {"application/json": _JSON_OBJECT}}}


def _json(status: int, view: ExecutionView) -> Response[ExecutionView]:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=view)


def _keys(execution: Execution) -> None:
    telemetry.keys(execution_id=execution.id, namespace=execution.namespace, flow_id=execution.flow_id)


def task_run_cursor(taskrun_id: str) -> str:
    return base64.urlsafe_b64encode(taskrun_id.encode()).decode().rstrip("=")


def _after(cursor: str) -> str:
    """The task-run id a ``/taskruns`` cursor names; 422 naming the parameter when it is not one."""
    try:
        after = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
        if not after:
            raise ValueError("empty")
        return after
    except (binascii.Error, ValueError):
        raise common.ApiError(
            422,
            "invalid query parameter 'cursor': not a cursor this API returned",
            extra={
                "errors": [{"name": "cursor", "in": "query", "message": "not a cursor this API returned"}]
            },
        ) from None


def _size(value: Any) -> int:
    """Bytes of ``value`` as the response serialiser writes it (ASCII JSON, no spaces)."""
    return len(json.dumps(value.model_dump(mode="json"), separators=(",", ":")))


def _fit(
    execution: Execution, candidates: Sequence[TaskRun], limit: int, budget: int
) -> tuple[list[TaskRunView], str | None]:
    """The first of ``candidates`` (in id order) that fit in ``limit`` and ``budget`` bytes, and the cursor.

    At least one is shown whatever its size (the response limit then decides); the page is
    listed in creation order, the cursor is the id of the last one taken.
    """
    taken: list[tuple[TaskRun, TaskRunView]] = []
    used = 0
    for tr in candidates[:limit]:
        view = taskrun_view(execution, tr)
        size = _size(view) + 1
        if taken and used + size > budget:
            break
        taken.append((tr, view))
        used += size
    cursor = task_run_cursor(taken[-1][0].id) if taken and len(taken) < len(candidates) else None
    return [view for _, view in sorted(taken, key=lambda pair: pair[0].seq)], cursor


def _view(rt: Runtime, execution: Execution, candidates: Sequence[TaskRun] | None = None) -> ExecutionView:
    """The execution with the first page of its task runs (``candidates``: up to TASKRUNS_SHOWN + 1 of
    them in id order; by default taken from the execution in memory, the service's answer to a write)."""
    if candidates is None:
        candidates = heapq.nsmallest(
            TASKRUNS_SHOWN + 1, execution.taskruns.values(), key=lambda tr: tr.id.encode()
        )
    budget = rt.settings.max_response_bytes - _size(execution_view(execution, [])) - _ENVELOPE
    shown, cursor = _fit(execution, candidates, TASKRUNS_SHOWN, budget)
    return execution_view(execution, shown, cursor)


def _get(rt: Runtime, execution_id: str) -> Execution:
    telemetry.keys(execution_id=execution_id)
    execution = rt.store.get_execution(execution_id)
    _keys(execution)
    return execution


# ---------------------------------------------------------------- control (before the start route)


@router.delete(
    "/api/v1/executions/<execution_id>/kill",
    summary="Kill an execution",
    description="Cancels every running job through its runner; the execution ends KILLED."
    " 409 when it already ended.",
    tags=["executions"],
    status_code=202,
)
def kill_execution(rt: common.Served, execution_id: str) -> Response[ExecutionView]:
    _get(rt, execution_id)
    execution = rt.service.kill(execution_id)
    telemetry.metrics.add_metric(name="ExecutionsKilled", unit="Count", value=1)
    return _json(202, _view(rt, execution))


@router.post(
    "/api/v1/executions/<execution_id>/restart",
    summary="Restart a FAILED or KILLED execution",
    description="Kestra's restart: the failed task runs run again in the same execution.",
    tags=["executions"],
)
def restart_execution(rt: common.Served, execution_id: str) -> ExecutionView:
    _get(rt, execution_id)
    return _view(rt, rt.service.restart(execution_id))


@router.post(
    "/api/v1/executions/<execution_id>/resume",
    summary="Resume a PAUSED execution",
    description="Body: the Pause task's onResume inputs as a JSON object (optional).",
    tags=["executions"],
    openapi_extensions=_RESUME_BODY,
)
def resume_execution(rt: common.Served, execution_id: str) -> ExecutionView:
    event = router.current_event.raw_event
    common.require_media_type(event, ("application/json",), empty_ok=True)
    inputs = common.json_body(event)
    if inputs is not None and not isinstance(inputs, dict):
        raise common.ApiError(422, "the resume body must be a JSON object of onResume inputs")
    _get(rt, execution_id)
    return _view(rt, rt.service.resume(execution_id, inputs))


@router.post(
    "/api/v1/executions/<execution_id>/replay",
    summary="Replay an execution",
    description="A new execution of the same flow revision and inputs; with taskRunId, from that task on.",
    tags=["executions"],
    status_code=201,
)
def replay_execution(
    rt: common.Served,
    execution_id: str,
    task_run_id: Annotated[str | None, Query(alias="taskRunId")] = None,
) -> Response[ExecutionView]:
    _get(rt, execution_id)
    execution = rt.service.replay(execution_id, taskrun_id=task_run_id)
    _keys(execution)
    telemetry.metrics.add_metric(name="ExecutionsStarted", unit="Count", value=1)
    return _json(201, _view(rt, execution))


@router.get(
    "/api/v1/executions/<execution_id>/logs",
    summary="An execution's stored log lines, in order",
    tags=["executions"],
)
def execution_logs(
    rt: common.Served,
    execution_id: str,
    task_run_id: Annotated[str | None, Query(alias="taskRunId")] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
    cursor: Annotated[str | None, Query(description="from the previous page")] = None,
) -> LogPage:
    telemetry.keys(execution_id=execution_id)
    if cursor is None:
        _get(rt, execution_id)  # 404 for an unknown id rather than an empty page
    with common.cursor_errors(cursor):
        page = rt.store.read_logs(execution_id, taskrun_id=task_run_id, limit=limit, cursor=cursor)
    return LogPage(results=[log_view(execution_id, line) for line in page.items], cursor=page.cursor)


@router.get(
    "/api/v1/executions/<execution_id>/taskruns",
    summary="An execution's task runs, a page at a time",
    description="Pages follow task-run ids; within a page, task runs are in creation order. A page"
    " holds fewer than limit when more would pass SQUALL_MAX_RESPONSE_BYTES.",
    tags=["executions"],
)
def execution_taskruns(
    rt: common.Served,
    execution_id: str,
    limit: Annotated[int, Query(ge=1, le=TASKRUN_PAGE_MAX)] = TASKRUN_PAGE,
    cursor: Annotated[
        str | None, Query(description="from the previous page, or the execution's taskRunCursor")
    ] = None,
) -> TaskRunPage:
    after = None if cursor is None else _after(cursor)
    execution = _meta(rt, execution_id)  # 404 for an unknown id rather than an empty page
    candidates = rt.store.list_taskruns(execution_id, after=after, limit=limit + 1)
    shown, next_cursor = _fit(execution, candidates, limit, rt.settings.max_response_bytes - _ENVELOPE)
    return TaskRunPage(results=shown, cursor=next_cursor)


def _meta(rt: Runtime, execution_id: str) -> Execution:
    telemetry.keys(execution_id=execution_id)
    execution = rt.store.get_execution_meta(execution_id)
    _keys(execution)
    return execution


@router.get(
    "/api/v1/executions/<execution_id>",
    summary="An execution with its task runs (the first page of them when there are many)",
    tags=["executions"],
)
def get_execution(rt: common.Served, execution_id: str) -> ExecutionView:
    # Meta first: the task runs read after it are at least as new, so an execution seen ended
    # is listed with its task runs ended too. Only a page of them is ever loaded.
    execution = _meta(rt, execution_id)
    return _view(rt, execution, rt.store.list_taskruns(execution_id, limit=TASKRUNS_SHOWN + 1))


# ---------------------------------------------------------------- listing


def _utc(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


@router.get(
    "/api/v1/executions",
    summary="Executions, newest first",
    description="startDate/endDate filter on the creation time (ISO 8601; a time without offset is UTC)."
    " state is repeatable.",
    tags=["executions"],
)
def list_executions(
    rt: common.Served,
    namespace: Annotated[str | None, Query()] = None,
    flow_id: Annotated[str | None, Query(alias="flowId")] = None,
    state: Annotated[list[State] | None, Query(description="repeatable")] = None,
    start_date: Annotated[datetime | None, Query(alias="startDate")] = None,
    end_date: Annotated[datetime | None, Query(alias="endDate")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query(description="from the previous page")] = None,
) -> ExecutionPage:
    start, end = _utc(start_date), _utc(end_date)
    if start is not None and end is not None and start > end:
        raise common.ApiError(
            422,
            "invalid query parameters: startDate is after endDate",
            extra={"errors": [{"name": "startDate", "in": "query", "message": "after endDate"}]},
        )
    found: list[ExecutionSummary] = []
    scanned = 0
    next_cursor = cursor
    with common.cursor_errors(cursor):
        while True:
            # Ask for no more than is still wanted, so a page is always consumed whole and
            # its cursor is exactly where the next call must resume.
            page = rt.store.list_executions(
                namespace=namespace,
                flow_id=flow_id,
                states=state,
                limit=limit - len(found),
                cursor=next_cursor,
            )
            next_cursor = page.cursor
            scanned += len(page.items)
            older = False
            for summary in page.items:
                created = _utc(summary.created)
                assert created is not None
                if start is not None and created < start:
                    older = True  # newest first: everything after this is older still
                    break
                if end is None or created <= end:
                    found.append(summary)
            if older:
                next_cursor = None
                break
            if next_cursor is None or len(found) >= limit or scanned >= SCAN_BUDGET:
                break
    return ExecutionPage(results=[execution_summary_view(s) for s in found], cursor=next_cursor)


# ---------------------------------------------------------------- start (last: its path is the widest)


def label_values(event: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for raw in common.query_values(event, "labels"):
        key, sep, value = raw.partition(":")
        if not sep or not key.strip():
            raise common.ApiError(
                422,
                f"invalid query parameter 'labels': expected key:value, got {raw!r}",
                extra={"errors": [{"name": "labels", "in": "query", "message": "expected key:value"}]},
            )
        labels[key.strip()] = value
    return labels


def _safe_name(filename: str, fallback: str) -> str:
    """The last path component of a client-supplied file name: never a path out of the directory."""
    name = PurePosixPath(filename.replace("\\", "/")).name
    return name if name not in ("", ".", "..") else fallback


def form_inputs(
    rt: Runtime, event: dict[str, Any], namespace: str, flow_id: str, execution_id: str
) -> tuple[dict[str, Any], str | None]:
    """Inputs from multipart parts: fields as text (repeated fields as lists), files stored as URIs.

    Also the storage prefix that holds this execution's uploads, None when there were none.
    """
    inputs: dict[str, Any] = {}
    stored: str | None = None
    storage = rt.service.storage
    relative = PurePosixPath(namespace, flow_id, execution_id, "inputs")
    for part in common.multipart(event):
        if part.filename is not None:
            name = _safe_name(part.filename, part.name)
            key = relative / _safe_name(part.name, "input") / name
            stored = storage.uri(f"{relative}/")
            try:
                storage.write(storage.uri(key), part.content)
            except StorageError as exc:  # keep nothing of a request that fails
                with contextlib.suppress(StorageError):
                    storage.delete_prefix(stored)
                status = 503 if exc.transient else 500
                raise common.ApiError(status, f"input {part.name!r}: cannot store the file: {exc}") from None
            value: Any = "kestra:///" + quote(str(key))
        else:
            value = part.text()
        if part.name in inputs:
            previous = inputs[part.name]
            inputs[part.name] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            inputs[part.name] = value
    return inputs, stored


def _remove_uploads(rt: Runtime, stored: str) -> None:
    """Delete a refused execution's uploads (the whole ``inputs/`` prefix of its execution)."""
    rt.service.storage.delete_prefix(stored)


@router.post(
    "/api/v1/executions/<namespace>/<flow_id>",
    summary="Start an execution of a flow's latest revision (or ?revision=)",
    description="Inputs as a JSON object or multipart/form-data (file parts become kestra:/// URIs);"
    " labels as repeated labels=key:value. 422 with one message per bad input.",
    tags=["executions"],
    status_code=201,
    openapi_extensions=_START_BODY,
)
def start_execution(
    rt: common.Served,
    namespace: str,
    flow_id: str,
    revision: Annotated[int | None, Query(ge=1)] = None,
    labels: Annotated[list[str] | None, Query(description="repeatable key:value")] = None,
) -> Response[ExecutionView]:
    event = router.current_event.raw_event
    telemetry.keys(namespace=namespace, flow_id=flow_id)
    chosen = label_values(event)
    kind = common.require_media_type(event, START_TYPES, empty_ok=True)
    flow = rt.service.flow(namespace, flow_id, revision)  # 404 before any file is written
    if flow.disabled:
        raise common.ApiError(409, f"flow {namespace}.{flow_id} is disabled")
    execution_id = rt.service.new_id()
    stored: str | None = None
    inputs: Any
    if kind == "multipart/form-data" and event.get("body"):
        inputs, stored = form_inputs(rt, event, namespace, flow_id, execution_id)
    else:
        inputs = common.json_body(event)
    try:
        execution = rt.service.start(
            namespace, flow_id, inputs, revision=revision, labels=chosen, execution_id=execution_id
        )
    except (InputError, NotFoundError):
        if stored is not None:  # refused before anything was stored: take the uploads back
            _remove_uploads(rt, stored)
        raise
    _keys(execution)
    telemetry.metrics.add_metric(name="ExecutionsStarted", unit="Count", value=1)
    return _json(201, _view(rt, execution))
