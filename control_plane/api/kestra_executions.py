"""``/api/v1/{tenant}/executions``: Kestra 2.0's execution routes (logs: :mod:`.kestra_logs`).

Kestra 2.0 moved the controls under ``/executions/{executionId}/actions/...`` (kill, restart,
replay, replay-with-inputs, resume), so no control route overlaps the start route
``POST /executions/{namespace}/{id}`` any more. Each route is one call into the service; the
JSON is Kestra's (:mod:`control_plane.api.kestra_views`), the start's inputs and labels are
read by :mod:`control_plane.api.start_inputs`.

An execution's JSON holds at most ``TASKRUNS_SHOWN`` task runs and stays within
``SQUALL_MAX_RESPONSE_BYTES``; ``taskRunCursor`` leads to the rest, through Squall's
``/executions/{executionId}/taskruns`` pages (:mod:`control_plane.api.taskrun_pages`).

Kestra parameters Squall cannot honour are refused with a 400 naming them, never ignored:
``wait=true``, ``scheduleDate``, ``breakpoints``, ``kind``, a ``revision`` on restart or
replay, replay-with-inputs from a task run.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query
from msgspec import Struct
from pydantic import BaseModel

from control_plane.api import common, taskrun_pages, telemetry, tenants, webhooks
from control_plane.api.kestra_query import SCAN_LIMIT, Filter, parse_search, refuse
from control_plane.api.kestra_views import (
    KestraExecution,
    KestraState,
    PagedExecutions,
    PagedTaskRuns,
    execution,
    execution_summary,
    state,
    taskrun,
)
from control_plane.api.start_inputs import START_TYPES, form_inputs, label_values
from control_plane.engine.model import Execution
from control_plane.engine.states import State
from control_plane.errors import InputError, NotFoundError
from control_plane.runtime import Runtime
from control_plane.service.storage import StorageError
from control_plane.store.base import ExecutionSummary

__all__ = ["router"]

router = Router()
_TAGS = ["kestra executions"]
_FORM = {
    "requestBody": {
        "required": False,
        "content": {"multipart/form-data": {"schema": {"type": "object", "additionalProperties": True}}},
    }
}


def _json(status: int, view: KestraExecution) -> Response[KestraExecution]:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=view)


def _view(rt: Runtime, execution_id: str) -> KestraExecution:
    """The execution as stored now, with the first page of its task runs.

    Meta first, so an execution seen ended is listed with its task runs ended too. At most
    ``TASKRUNS_SHOWN`` task runs, fewer when more would pass ``SQUALL_MAX_RESPONSE_BYTES``
    with the rest of the execution; then ``taskRunCursor`` leads to the ``/taskruns`` pages.
    """
    meta = rt.store.get_execution_meta(execution_id)
    telemetry.keys(execution_id=meta.id, namespace=meta.namespace, flow_id=meta.flow_id)
    runs = rt.store.list_taskruns(execution_id, limit=taskrun_pages.TASKRUNS_SHOWN + 1)
    bare = execution(meta, [])
    budget = rt.settings.max_response_bytes - taskrun_pages.size(bare) - taskrun_pages.ENVELOPE
    shown, cursor = taskrun_pages.fit(
        runs, taskrun_pages.TASKRUNS_SHOWN, budget, lambda tr: taskrun(meta, tr)
    )
    update: dict[str, Any] = {"taskRunList": shown}
    if cursor is not None:
        update["taskRunCursor"] = cursor
    return bare.model_copy(update=update)


def _refuse_given(**given: Any) -> None:
    for name, value in given.items():
        if value not in (None, False):
            raise refuse(name, "not supported by Squall")


def _inputs(
    rt: Runtime, namespace: str, flow_id: str, execution_id: str, folder: str = "inputs"
) -> tuple[Any, str | None]:
    """Inputs from the request: multipart (what Kestra's clients send) or a JSON object."""
    event = router.current_event.raw_event
    kind = common.require_media_type(event, START_TYPES, empty_ok=True)
    if kind == "multipart/form-data" and event.get("body"):
        return form_inputs(rt, event, namespace, flow_id, execution_id, folder)
    return common.json_body(event), None


# ---------------------------------------------------------------- search (literal paths first)


def _moment(f: Filter) -> datetime:
    try:
        moment = datetime.fromisoformat(f.value.replace("Z", "+00:00"))
    except ValueError:
        raise refuse(f"filters[{f.field}][{f.op}]", f"not an ISO 8601 instant: {f.value!r}") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _keep(summary: ExecutionSummary, filters: tuple[Filter, ...]) -> bool:
    created = summary.created if summary.created.tzinfo else summary.created.replace(tzinfo=UTC)
    for f in filters:
        if f.field == "namespace":
            ns = summary.namespace
            ok = ns == f.value if f.op == "EQUALS" else ns == f.value or ns.startswith(f.value + ".")
        elif f.field == "flowId":
            ok = summary.flow_id == f.value
        elif f.field == "state":
            ok = str(summary.state) in f.values()
        elif f.field == "startDate":
            ok = created >= _moment(f) if f.op == "GREATER_THAN_OR_EQUAL_TO" else created > _moment(f)
        elif f.field == "endDate":
            ok = created <= _moment(f) if f.op == "LESS_THAN_OR_EQUAL_TO" else created < _moment(f)
        else:  # labels
            ok = summary.labels.get(f.key or "") == f.value
        if not ok:
            return False
    return True


_EXECUTION_FILTERS = {
    "namespace": ("EQUALS", "PREFIX"),
    "flowId": ("EQUALS",),
    "state": ("EQUALS", "IN"),
    "startDate": ("GREATER_THAN_OR_EQUAL_TO", "GREATER_THAN"),
    "endDate": ("LESS_THAN_OR_EQUAL_TO", "LESS_THAN"),
    "labels": ("EQUALS",),
}


def _search(rt: Runtime, filters: tuple[Filter, ...], page_of: Any) -> PagedExecutions:
    found = _matches(rt, filters)
    shown = found[page_of.window(len(found))]
    return PagedExecutions(results=[execution_summary(s) for s in shown], total=len(found))


def _matches(rt: Runtime, filters: tuple[Filter, ...]) -> list[ExecutionSummary]:
    """Every execution ``filters`` match, newest first; a 400 past ``SCAN_LIMIT``."""
    for f in filters:  # an unknown state would match nothing: said, not silently an empty page
        unknown = [v for v in f.values() if v not in State.__members__] if f.field == "state" else []
        if unknown:
            raise common.ApiError(
                422,
                f"invalid query parameter 'filters[state][{f.op}]': unknown state {unknown[0]!r}",
                extra={
                    "errors": [{"name": f"filters[state][{f.op}]", "in": "query", "message": "unknown state"}]
                },
            )
    states = [State(v) for f in filters if f.field == "state" for v in f.values()]
    flow_ids = {f.value for f in filters if f.field == "flowId"}
    # the stores match a namespace exactly: a PREFIX filter reads them all and filters here
    namespace = next((f.value for f in filters if f.field == "namespace" and f.op == "EQUALS"), None)
    found: list[ExecutionSummary] = []
    cursor: str | None = None
    while True:
        page = rt.store.list_executions(
            namespace=namespace,
            flow_id=next(iter(flow_ids)) if len(flow_ids) == 1 else None,
            states=states or None,
            limit=1000,
            cursor=cursor,
        )
        found.extend(s for s in page.items if _keep(s, filters))
        if len(found) > SCAN_LIMIT:
            raise refuse("filters", f"more than {SCAN_LIMIT} executions match: narrow the search")
        cursor = page.cursor
        if cursor is None:
            return found


@router.get(
    "/api/v1/<tenant>/executions/search",
    summary="Search executions, newest first, a page at a time",
    description="Kestra's parameters: page (from 1), size, sort=state.startDate:desc, and"
    " filters[namespace][EQUALS|PREFIX], filters[flowId][EQUALS], filters[state][EQUALS|IN],"
    " filters[startDate][GREATER_THAN_OR_EQUAL_TO|GREATER_THAN],"
    " filters[endDate][LESS_THAN_OR_EQUAL_TO|LESS_THAN] (both on the creation time),"
    " filters[labels][EQUALS][key]. Results are summaries: no task runs, inputs or outputs."
    " Any other parameter is a 400 that names it.",
    tags=_TAGS,
    **tenants.SCOPED,
)
def search_executions(rt: common.Served, tenant: str) -> PagedExecutions:
    search = parse_search(
        router.current_event.raw_event, filters=_EXECUTION_FILTERS, sorts=("state.startDate:desc",)
    )
    return _search(rt, search.filters, search)


@router.get(
    "/api/v1/<tenant>/executions",
    summary="Executions of one flow, newest first (Kestra's search by flow)",
    description="namespace and flowId are required; page and size as in executions/search.",
    tags=_TAGS,
    **tenants.SCOPED,
)
def executions_of_flow(rt: common.Served, tenant: str) -> PagedExecutions:
    search = parse_search(router.current_event.raw_event, filters={}, params=("namespace", "flowId"))
    for name in ("namespace", "flowId"):
        if not search.params.get(name):
            raise common.ApiError(
                422,
                f"missing query parameter {name!r}",
                extra={"errors": [{"name": name, "in": "query", "message": "required"}]},
            )
    filters = (
        Filter("namespace", "EQUALS", search.params["namespace"]),
        Filter("flowId", "EQUALS", search.params["flowId"]),
    )
    return _search(rt, filters, search)


# ---------------------------------------------------------------- one execution


@router.get(
    "/api/v1/<tenant>/executions/<execution_id>",
    summary="An execution with its task runs",
    tags=_TAGS,
    **tenants.SCOPED,
)
def get_execution(rt: common.Served, tenant: str, execution_id: str) -> KestraExecution:
    return _view(rt, execution_id)


@router.get(
    "/api/v1/<tenant>/executions/<execution_id>/taskruns",
    summary="An execution's task runs, a page at a time (Squall extension)",
    description="Where an execution's taskRunCursor leads. Pages follow task-run ids; within a page, task"
    " runs are in creation order. A page holds fewer than limit when more would pass"
    " SQUALL_MAX_RESPONSE_BYTES.",
    tags=_TAGS,
    **tenants.SCOPED,
)
def execution_taskruns(
    rt: common.Served,
    tenant: str,
    execution_id: str,
    limit: Annotated[int, Query(ge=1, le=taskrun_pages.TASKRUN_PAGE_MAX)] = taskrun_pages.TASKRUN_PAGE,
    cursor: Annotated[
        str | None, Query(description="from the previous page, or the execution's taskRunCursor")
    ] = None,
) -> PagedTaskRuns:
    start = None if cursor is None else taskrun_pages.after(cursor)
    meta = rt.store.get_execution_meta(execution_id)  # 404 for an unknown id rather than an empty page
    telemetry.keys(execution_id=meta.id, namespace=meta.namespace, flow_id=meta.flow_id)
    candidates = rt.store.list_taskruns(execution_id, after=start, limit=limit + 1)
    budget = rt.settings.max_response_bytes - taskrun_pages.ENVELOPE
    shown, next_cursor = taskrun_pages.fit(candidates, limit, budget, lambda tr: taskrun(meta, tr))
    return PagedTaskRuns(results=shown, cursor=next_cursor)


FOLLOW_SECONDS = 25.0  # under API Gateway's 30 s integration limit: the stream ends by then
FOLLOW_POLL_SECONDS = 0.25
FOLLOW_MARGIN_SECONDS = 2.0  # kept to build and send the response before the invocation ends


def follow_deadline(lambda_context: Any) -> float:
    """When a follow stops gathering (``time.monotonic()`` clock): after ``FOLLOW_SECONDS``, or
    sooner when the Lambda invocation would end first (a function timeout under 29 s)."""
    import time

    seconds = FOLLOW_SECONDS
    if lambda_context is not None:
        remaining = lambda_context.get_remaining_time_in_millis() / 1000 - FOLLOW_MARGIN_SECONDS
        seconds = max(0.0, min(seconds, remaining))
    return time.monotonic() + seconds


def _follow_events(rt: Runtime, execution_id: str) -> str:
    """Kestra's ``follow`` as server-sent events: the execution, then again at each change of state.

    API Gateway's HTTP API and the Lambda behind it return a response whole, not as a stream,
    so the events are gathered here and sent together: when the execution ends, or after
    ``FOLLOW_SECONDS`` with what was seen so far (the client follows again to see more). The
    store is polled, read-only: a follow never holds the service lock, so the tick and the
    events that move the execution keep going meanwhile.
    """
    import threading
    import time

    events: list[str] = []
    seen: tuple[str, int] | None = None
    deadline = follow_deadline(router.lambda_context)
    pause = threading.Event()  # never set: a wait that is not a busy loop
    while True:
        meta = rt.store.get_execution_meta(execution_id)
        if (str(meta.state), meta.version) != seen:
            seen = (str(meta.state), meta.version)
            view = _view(rt, execution_id)
            events.append(f"event: execution\ndata: {view.model_dump_json()}\n\n")
        if meta.state.terminal or time.monotonic() >= deadline:
            return "".join(events)
        pause.wait(FOLLOW_POLL_SECONDS)


@router.get(
    "/api/v1/<tenant>/executions/<execution_id>/follow",
    summary="Follow an execution (server-sent events), to its end or for 25 seconds",
    description="text/event-stream: one `execution` event with the execution, then one per change, until"
    " it ends. The events are sent together when the stream ends (API Gateway does not stream"
    " responses): at the end of the execution, or after 25 seconds; follow again for more.",
    tags=_TAGS,
    **tenants.SCOPED,
)
def follow_execution(rt: common.Served, tenant: str, execution_id: str) -> Response[str]:
    rt.store.get_execution_meta(execution_id)  # 404 before any event
    body = _follow_events(rt, execution_id)
    return Response(status_code=200, content_type="text/event-stream", body=body)


def _execution_file(rt: Runtime, execution_id: str, path: str) -> str:
    """The storage URI of ``path`` if it is one of this execution's files (uploads, task outputs), else 404.

    ``path`` is the URI an execution shows: ``kestra:///<namespace>/<flow>/<execution>/...``
    for an upload, the storage's own URI for a task's output file; both are brought to the
    storage's spelling. Anything outside the execution's prefix, or with a ``..`` segment, is
    the same 404 as a missing file: the route reads no other execution's files.
    """
    meta = rt.store.get_execution_meta(execution_id)
    storage = rt.service.storage
    missing = common.ApiError(404, f"execution {execution_id} has no file {path!r}")
    if ".." in path.replace("\\", "/").split("/"):
        raise missing
    try:
        uri = storage.canonical(path)
        if not uri.startswith(storage.execution_prefix(meta.namespace, meta.flow_id, meta.id)):
            raise missing
        if not storage.exists(uri):
            raise missing
    except StorageError:
        raise missing from None
    return uri


@router.get(
    "/api/v1/<tenant>/executions/<execution_id>/file",
    summary="Download one of an execution's files (an upload or a task's output file)",
    description="path: its kestra:/// URI, as the execution's inputs and outputs give it.",
    tags=_TAGS,
    # The body is bytes, which powertools' response validation would serialise as JSON text:
    # the route runs without it, so it reads its query parameter itself (declared for the docs).
    enable_validation=False,
    **tenants.SCOPED,
)
def download_file(
    rt: common.Served,
    tenant: str,
    execution_id: str,
    path: Annotated[str | None, Query(description="the file's kestra:/// URI (required)")] = None,
) -> Response[bytes]:
    given = common.query_values(router.current_event.raw_event, "path")
    if len(given) != 1 or not given[0]:
        raise common.ApiError(
            422,
            "query parameter 'path' is required, once: the file's kestra:/// URI",
            extra={"errors": [{"name": "path", "in": "query", "message": "required"}]},
        )
    uri = _execution_file(rt, execution_id, given[0])
    name = uri.rsplit("/", 1)[-1]
    return Response(
        status_code=200,
        content_type="application/octet-stream",
        body=rt.service.storage.read(uri),
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


class FileMetas(BaseModel):
    size: int


@router.get(
    "/api/v1/<tenant>/executions/<execution_id>/file/metas",
    summary="The size of one of an execution's files",
    tags=_TAGS,
    **tenants.SCOPED,
)
def file_metas(rt: common.Served, tenant: str, execution_id: str, path: Annotated[str, Query()]) -> FileMetas:
    uri = _execution_file(rt, execution_id, path)
    return FileMetas(size=len(rt.service.storage.read(uri)))


@router.delete(
    "/api/v1/<tenant>/executions/<execution_id>/actions/kill",
    summary="Kill an execution",
    description="Cancels every running job through its runner; the execution ends KILLED. 409 when it"
    " already ended.",
    tags=_TAGS,
    status_code=202,
    **tenants.SCOPED,
)
def kill_execution(
    rt: common.Served,
    tenant: str,
    execution_id: str,
    cascade: Annotated[
        bool, Query(alias="isOnKillCascade", description="subflows are always killed with their parent")
    ] = True,
) -> Response[KestraExecution]:
    rt.store.get_execution_meta(execution_id)
    if not cascade:
        raise refuse("isOnKillCascade", "Squall always kills subflow executions with their parent")
    rt.service.kill(execution_id)
    telemetry.metrics.add_metric(name="ExecutionsKilled", unit="Count", value=1)
    return _json(202, _view(rt, execution_id))


@router.post(
    "/api/v1/<tenant>/executions/<execution_id>/actions/restart",
    summary="Restart a FAILED or KILLED execution (its failed task runs run again)",
    tags=_TAGS,
    **tenants.SCOPED,
)
def restart_execution(
    rt: common.Served,
    tenant: str,
    execution_id: str,
    revision: Annotated[int | None, Query(ge=1, description="not supported: 400")] = None,
) -> KestraExecution:
    _refuse_given(revision=revision)
    rt.store.get_execution_meta(execution_id)
    rt.service.restart(execution_id)
    return _view(rt, execution_id)


@router.post(
    "/api/v1/<tenant>/executions/<execution_id>/actions/resume",
    summary="Resume a PAUSED execution",
    description="Body (optional): the Pause task's onResume inputs as multipart/form-data or a JSON object.",
    tags=_TAGS,
    openapi_extensions=_FORM,
    **tenants.SCOPED,
)
def resume_execution(rt: common.Served, tenant: str, execution_id: str) -> KestraExecution:
    meta = rt.store.get_execution_meta(execution_id)
    # A resume's uploads get a folder of their own (FILE onResume inputs): a refused resume
    # removes it, and nothing of what its start uploaded.
    folder = f"inputs/resume-{rt.service.new_id()}"
    inputs, stored = _inputs(rt, meta.namespace, meta.flow_id, execution_id, folder)
    try:
        if inputs is not None and not isinstance(inputs, dict):
            raise common.ApiError(422, "the resume body must be a JSON object of onResume inputs")
        rt.service.resume(execution_id, inputs)
    except Exception:
        if stored is not None:
            rt.service.storage.delete_prefix(stored)
        raise
    return _view(rt, execution_id)


_LABELS_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"key": {"type": "string"}, "value": {"type": "string"}},
                        "required": ["key", "value"],
                    },
                }
            }
        },
    }
}


def _labels_of(body: Any, where: str) -> dict[str, str]:
    """Kestra's ``[{key, value}]`` labels; a 422 naming the first bad item or a ``system.`` key."""
    if not isinstance(body, list):
        raise common.ApiError(422, f'{where} must be a JSON array of {{"key": ..., "value": ...}}')
    labels: dict[str, str] = {}
    for index, item in enumerate(body):
        key = item.get("key") if isinstance(item, dict) else None
        value = item.get("value") if isinstance(item, dict) else None
        if not isinstance(key, str) or not key or not isinstance(value, str) or not value:
            raise common.ApiError(
                422, f"{where}[{index}]: expected {{key, value}}, non-empty strings, got {item!r}"
            )
        if key.startswith("system."):
            raise common.ApiError(422, f"{where}[{index}]: {key!r}: system.* labels are set by Squall only")
        labels[key] = value
    return labels


@router.post(
    "/api/v1/<tenant>/executions/<execution_id>/actions/labels",
    summary="Set the labels of an ended execution",
    description="Body: [{key, value}]; they replace the execution's labels, system.* labels excepted"
    " (those are Squall's: setting one is a 422). 409 while the execution runs.",
    tags=_TAGS,
    openapi_extensions=_LABELS_BODY,
    **tenants.SCOPED,
)
def set_labels(rt: common.Served, tenant: str, execution_id: str) -> KestraExecution:
    event = router.current_event.raw_event
    common.require_media_type(event, ("application/json",))
    labels = _labels_of(common.json_body(event), "body")
    rt.store.get_execution_meta(execution_id)  # 404 first
    rt.service.set_labels(execution_id, labels)
    return _view(rt, execution_id)


def _replayed(rt: Runtime, replayed: Execution) -> Response[KestraExecution]:
    telemetry.metrics.add_metric(name="ExecutionsStarted", unit="Count", value=1)
    return _json(200, _view(rt, replayed.id))


@router.post(
    "/api/v1/<tenant>/executions/<execution_id>/actions/replay",
    summary="Replay an execution",
    description="A new execution of the same flow revision and inputs; with taskRunId, from that task on.",
    tags=_TAGS,
    **tenants.SCOPED,
)
def replay_execution(
    rt: common.Served,
    tenant: str,
    execution_id: str,
    task_run_id: Annotated[str | None, Query(alias="taskRunId")] = None,
    revision: Annotated[int | None, Query(ge=1, description="not supported: 400")] = None,
    breakpoints: Annotated[str | None, Query(description="not supported: 400")] = None,
) -> Response[KestraExecution]:
    _refuse_given(revision=revision, breakpoints=breakpoints)
    rt.store.get_execution_meta(execution_id)
    return _replayed(rt, rt.service.replay(execution_id, taskrun_id=task_run_id))


@router.post(
    "/api/v1/<tenant>/executions/<execution_id>/actions/replay-with-inputs",
    summary="Replay an execution with new inputs",
    description="Body: multipart/form-data, one part per input (file parts become kestra:/// URIs); the"
    " inputs replace the original ones (defaults apply to those not given). An empty body replays with"
    " the original inputs. taskRunId with inputs is refused (400).",
    tags=_TAGS,
    openapi_extensions=_FORM,
    **tenants.SCOPED,
)
def replay_with_inputs(
    rt: common.Served,
    tenant: str,
    execution_id: str,
    task_run_id: Annotated[str | None, Query(alias="taskRunId")] = None,
    revision: Annotated[int | None, Query(ge=1, description="not supported: 400")] = None,
    breakpoints: Annotated[str | None, Query(description="not supported: 400")] = None,
) -> Response[KestraExecution]:
    _refuse_given(revision=revision, breakpoints=breakpoints)
    original = rt.store.get_execution_meta(execution_id)
    new_id = rt.service.new_id()
    inputs, stored = _inputs(rt, original.namespace, original.flow_id, new_id)
    if not inputs:
        return _replayed(rt, rt.service.replay(execution_id, taskrun_id=task_run_id))
    if task_run_id is not None:
        if stored is not None:  # the new execution's uploads: nothing else lives under its prefix
            rt.service.storage.delete_prefix(stored)
        raise refuse("taskRunId", "replaying from a task run with new inputs is not supported")
    labels = {k: v for k, v in original.labels.items() if not k.startswith("system.")}
    labels["system.replay"] = "true"
    try:
        replayed = rt.service.start(
            original.namespace,
            original.flow_id,
            inputs,
            revision=original.flow_revision,
            labels=labels,
            trigger=original.trigger,
            execution_id=new_id,
            original_id=original.id,
        )
    except (InputError, NotFoundError):
        if stored is not None:
            rt.service.storage.delete_prefix(stored)
        raise
    return _replayed(rt, replayed)


# ---------------------------------------------------------------- webhooks


class WebhookResponse(BaseModel):
    """Kestra's answer to a webhook: which execution started (not its inputs, trigger or outputs)."""

    tenantId: str
    id: str
    namespace: str
    flowId: str
    flowRevision: int
    state: KestraState


@router.route(
    "/api/v1/<tenant>/executions/webhook/<namespace>/<flow_id>/<key>",
    method=["POST", "GET", "PUT"],
    summary="Start a flow through its Webhook trigger (Kestra's path)",
    description="No API auth: the key is the credential (see /webhooks/{namespace}/{flow_id}/{key}, the"
    " same delivery). Idempotency-Key header: a replay gets 409.",
    tags=_TAGS,
    **tenants.SCOPED,
)
def kestra_webhook(rt: common.Served, tenant: str, namespace: str, flow_id: str, key: str) -> WebhookResponse:
    started = webhooks.deliver(rt, namespace, flow_id, key)
    return WebhookResponse(
        tenantId=tenant,
        id=started.id,
        namespace=started.namespace,
        flowId=started.flow_id,
        flowRevision=started.flow_revision or 1,
        state=state(started.state, started.created, started.started, started.ended),
    )


# ---------------------------------------------------------------- bulk actions by ids (before start)

_IDS_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "array", "items": {"type": "string"}}}},
    }
}


class BulkResponse(BaseModel):
    count: int


def _body_ids() -> list[str]:
    """The execution ids of a JSON array body, each once, in the order given."""
    event = router.current_event.raw_event
    common.require_media_type(event, ("application/json",))
    body = common.json_body(event)
    if not isinstance(body, list) or not all(isinstance(i, str) and i for i in body):
        raise common.ApiError(422, "the body must be a JSON array of execution ids")
    return list(dict.fromkeys(body))


def _query_ids(rt: Runtime, params: tuple[str, ...] = ()) -> tuple[list[str], dict[str, str]]:
    """The ids of every execution the request's ``filters[...]`` match (as executions/search
    reads them), and the plain ``params`` the route allows. Paging and sorting mean nothing to
    a bulk action: given, they are a 400, never ignored."""
    event = router.current_event.raw_event
    for name in ("page", "size", "sort"):
        if any(key == name for key, _ in parse_qsl(str(event.get("rawQueryString") or ""))):
            raise refuse(name, "a bulk action acts on every match")
    search = parse_search(event, filters=_EXECUTION_FILTERS, params=params)
    return [summary.id for summary in _matches(rt, search.filters)], dict(search.params)


def _checked(
    rt: Runtime, ids: list[str], action: str, allowed: Callable[[Execution], bool], why: str
) -> list[str]:
    """``ids`` once each checked, before anything is done.

    An unknown id is a 404 and an execution whose state refuses ``action`` a 409, each naming
    the id, and nothing is done: Kestra's clients then see which one to leave out. (A state can
    still change between the check and the action; the service refuses it then, with a 409.)
    """
    for execution_id in ids:
        try:
            meta = rt.store.get_execution_meta(execution_id)
        except NotFoundError:
            raise common.ApiError(404, f"execution {execution_id} not found: nothing done") from None
        if not allowed(meta):
            raise common.ApiError(
                409, f"execution {execution_id} is {meta.state}: cannot {action} ({why}); nothing done"
            )
    return ids


def _bulk(rt: Runtime, action: str, allowed: Callable[[Execution], bool], why: str) -> list[str]:
    return _checked(rt, _body_ids(), action, allowed, why)


class _Bulk(Struct, frozen=True):
    """One bulk action: which states allow it (``why`` says so in the 409) and what it does."""

    verb: str
    allowed: Callable[[Execution], bool]
    why: str
    act: Callable[[Runtime, str], Any]


def _run(rt: Runtime, bulk: _Bulk, ids: list[str]) -> BulkResponse:
    for execution_id in _checked(rt, ids, bulk.verb, bulk.allowed, bulk.why):
        bulk.act(rt, execution_id)
    return BulkResponse(count=len(ids))


_KILL = _Bulk("kill", lambda e: not e.state.terminal, "it ended", lambda rt, i: rt.service.kill(i))
_RESTART = _Bulk(
    "restart",
    lambda e: e.state in (State.FAILED, State.KILLED),
    "only FAILED or KILLED",
    lambda rt, i: rt.service.restart(i),
)
_RESUME = _Bulk(
    "resume", lambda e: e.state is State.PAUSED, "only PAUSED", lambda rt, i: rt.service.resume(i, None)
)
_REPLAY = _Bulk("replay", lambda e: True, "", lambda rt, i: rt.service.replay(i))
_BY_QUERY = (
    " Selects what executions/search would return for the same filters[...] (every match, no paging:"
    " page, size and sort are a 400); then as by-ids: all are checked first (404, 409 naming the"
    " first refused one), and nothing is done unless all pass."
)


@router.delete(
    "/api/v1/<tenant>/executions/kill/by-ids",
    summary="Kill executions by id",
    description="Body: a JSON array of ids. All are checked first (404 unknown, 409 already ended).",
    tags=_TAGS,
    openapi_extensions=_IDS_BODY,
    **tenants.SCOPED,
)
def kill_by_ids(rt: common.Served, tenant: str) -> BulkResponse:
    done = _run(rt, _KILL, _body_ids())
    telemetry.metrics.add_metric(name="ExecutionsKilled", unit="Count", value=done.count)
    return done


@router.delete(
    "/api/v1/<tenant>/executions/kill/by-query",
    summary="Kill every running execution the filters match",
    description="Only running executions can be killed: filter on state to leave ended ones out." + _BY_QUERY,
    tags=_TAGS,
    **tenants.SCOPED,
)
def kill_by_query(rt: common.Served, tenant: str) -> BulkResponse:
    done = _run(rt, _KILL, _query_ids(rt)[0])
    telemetry.metrics.add_metric(name="ExecutionsKilled", unit="Count", value=done.count)
    return done


@router.post(
    "/api/v1/<tenant>/executions/restart/by-ids",
    summary="Restart FAILED or KILLED executions by id",
    description="Body: a JSON array of ids. All are checked first (404 unknown, 409 not FAILED or KILLED).",
    tags=_TAGS,
    openapi_extensions=_IDS_BODY,
    **tenants.SCOPED,
)
def restart_by_ids(rt: common.Served, tenant: str) -> BulkResponse:
    return _run(rt, _RESTART, _body_ids())


@router.post(
    "/api/v1/<tenant>/executions/restart/by-query",
    summary="Restart every FAILED or KILLED execution the filters match",
    description="Filter on state=FAILED,KILLED to leave the others out." + _BY_QUERY,
    tags=_TAGS,
    **tenants.SCOPED,
)
def restart_by_query(rt: common.Served, tenant: str) -> BulkResponse:
    return _run(rt, _RESTART, _query_ids(rt)[0])


@router.post(
    "/api/v1/<tenant>/executions/resume/by-ids",
    summary="Resume PAUSED executions by id (without onResume inputs)",
    description="Body: a JSON array of ids. All are checked first (404 unknown, 409 not PAUSED).",
    tags=_TAGS,
    openapi_extensions=_IDS_BODY,
    **tenants.SCOPED,
)
def resume_by_ids(rt: common.Served, tenant: str) -> BulkResponse:
    return _run(rt, _RESUME, _body_ids())


@router.post(
    "/api/v1/<tenant>/executions/resume/by-query",
    summary="Resume every PAUSED execution the filters match (without onResume inputs)",
    description="Filter on state=PAUSED to leave the others out." + _BY_QUERY,
    tags=_TAGS,
    **tenants.SCOPED,
)
def resume_by_query(rt: common.Served, tenant: str) -> BulkResponse:
    return _run(rt, _RESUME, _query_ids(rt)[0])


@router.post(
    "/api/v1/<tenant>/executions/replay/by-ids",
    summary="Replay executions by id (each a new execution of the same revision and inputs)",
    description="Body: a JSON array of ids (404 for an unknown one, nothing done). latestRevision=true is"
    " refused (400).",
    tags=_TAGS,
    openapi_extensions=_IDS_BODY,
    **tenants.SCOPED,
)
def replay_by_ids(
    rt: common.Served,
    tenant: str,
    latest_revision: Annotated[bool, Query(alias="latestRevision", description="only false")] = False,
) -> BulkResponse:
    _refuse_given(latestRevision=latest_revision)
    done = _run(rt, _REPLAY, _body_ids())
    telemetry.metrics.add_metric(name="ExecutionsStarted", unit="Count", value=done.count)
    return done


@router.post(
    "/api/v1/<tenant>/executions/replay/by-query",
    summary="Replay every execution the filters match (each a new execution)",
    description="latestRevision=true is refused (400)." + _BY_QUERY,
    tags=_TAGS,
    **tenants.SCOPED,
)
def replay_by_query(
    rt: common.Served,
    tenant: str,
    latest_revision: Annotated[bool, Query(alias="latestRevision", description="only false")] = False,
) -> BulkResponse:
    _refuse_given(latestRevision=latest_revision)
    done = _run(rt, _REPLAY, _query_ids(rt, ("latestRevision",))[0])
    telemetry.metrics.add_metric(name="ExecutionsStarted", unit="Count", value=done.count)
    return done


def _labels_bulk(labels: dict[str, str]) -> _Bulk:
    return _Bulk(
        "set labels",
        lambda e: e.state.terminal,
        "it still runs",
        lambda rt, i: rt.service.set_labels(i, labels),
    )


@router.post(
    "/api/v1/<tenant>/executions/labels/by-ids",
    summary="Set the labels of ended executions by id",
    description='Body: {"executionsId": [ids], "executionLabels": [{key, value}]}; the labels replace each'
    " execution's own (system.* labels excepted). All are checked first (404, 409 still running).",
    tags=_TAGS,
    **tenants.SCOPED,
)
def labels_by_ids(rt: common.Served, tenant: str) -> BulkResponse:
    event = router.current_event.raw_event
    common.require_media_type(event, ("application/json",))
    body = common.json_body(event)
    ids = body.get("executionsId") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
        raise common.ApiError(422, "executionsId: a non-empty JSON array of execution ids is required")
    labels = _labels_of(body.get("executionLabels"), "executionLabels")
    return _run(rt, _labels_bulk(labels), list(dict.fromkeys(ids)))


@router.post(
    "/api/v1/<tenant>/executions/labels/by-query",
    summary="Set the labels of every ended execution the filters match",
    description="Body: [{key, value}], as for one execution." + _BY_QUERY,
    tags=_TAGS,
    openapi_extensions=_LABELS_BODY,
    **tenants.SCOPED,
)
def labels_by_query(rt: common.Served, tenant: str) -> BulkResponse:
    event = router.current_event.raw_event
    common.require_media_type(event, ("application/json",))
    labels = _labels_of(common.json_body(event), "body")
    return _run(rt, _labels_bulk(labels), _query_ids(rt)[0])


# ---------------------------------------------------------------- delete


def _delete_options(include_non_terminated: bool, delete_logs: bool) -> None:
    if include_non_terminated:
        raise refuse(
            "includeNonTerminated",
            "a running execution's jobs would keep running with nobody to stop them: kill it, then delete it",
        )
    if not delete_logs:
        raise refuse("deleteLogs", "an execution's logs are stored with it and go with it")


def _delete_bulk(delete_storage: bool) -> _Bulk:
    return _Bulk(
        "delete",
        lambda e: e.state.terminal,
        "it still runs",
        lambda rt, i: rt.service.delete(i, files=delete_storage),
    )


_NonTerminated = Annotated[bool, Query(alias="includeNonTerminated", description="only false")]
_DeleteLogs = Annotated[bool, Query(alias="deleteLogs", description="only true: logs go with the execution")]
_DeleteMetrics = Annotated[bool, Query(alias="deleteMetrics", description="Squall keeps no metrics")]
_DeleteStorage = Annotated[bool, Query(alias="deleteStorage", description="its files in the storage")]
_DELETE_PARAMS = ("includeNonTerminated", "deleteLogs", "deleteMetrics", "deleteStorage")


@router.delete(
    "/api/v1/<tenant>/executions/by-ids",
    summary="Delete ended executions by id",
    description="Body: a JSON array of ids. All are checked first (404 unknown, 409 still running)."
    " includeNonTerminated=true and deleteLogs=false are refused (400).",
    tags=_TAGS,
    openapi_extensions=_IDS_BODY,
    **tenants.SCOPED,
)
def delete_by_ids(
    rt: common.Served,
    tenant: str,
    include_non_terminated: _NonTerminated = False,
    delete_logs: _DeleteLogs = True,
    delete_metrics: _DeleteMetrics = True,
    delete_storage: _DeleteStorage = True,
) -> BulkResponse:
    _delete_options(include_non_terminated, delete_logs)
    return _run(rt, _delete_bulk(delete_storage), _body_ids())


@router.delete(
    "/api/v1/<tenant>/executions/by-query",
    summary="Delete every ended execution the filters match",
    description="Filter on ended states to leave running ones out; options as in by-ids." + _BY_QUERY,
    tags=_TAGS,
    **tenants.SCOPED,
)
def delete_by_query(
    rt: common.Served,
    tenant: str,
    include_non_terminated: _NonTerminated = False,
    delete_logs: _DeleteLogs = True,
    delete_metrics: _DeleteMetrics = True,
    delete_storage: _DeleteStorage = True,
) -> BulkResponse:
    _delete_options(include_non_terminated, delete_logs)
    return _run(rt, _delete_bulk(delete_storage), _query_ids(rt, _DELETE_PARAMS)[0])


@router.delete(
    "/api/v1/<tenant>/executions/<execution_id>",
    summary="Delete an ended execution, its task runs, logs and (deleteStorage) files",
    description="204 when deleted; 404 unknown; 409 while it runs or while one of its jobs is still being"
    " cancelled. includeNonTerminated does not apply; deleteLogs=false is refused (400).",
    tags=_TAGS,
    status_code=204,
    **tenants.SCOPED,
)
def delete_execution(
    rt: common.Served,
    tenant: str,
    execution_id: str,
    delete_logs: _DeleteLogs = True,
    delete_metrics: _DeleteMetrics = True,
    delete_storage: _DeleteStorage = True,
) -> Response[None]:
    _delete_options(False, delete_logs)
    rt.service.delete(execution_id, files=delete_storage)
    return Response(status_code=204)


# ---------------------------------------------------------------- start (last: its path is the widest)


@router.post(
    "/api/v1/<tenant>/executions/<namespace>/<flow_id>",
    summary="Start an execution of a flow's latest revision (or ?revision=)",
    description="Inputs as multipart/form-data (what Kestra's clients send; file parts become kestra:///"
    " URIs) or a JSON object; labels as repeated labels=key:value. wait=true, scheduleDate,"
    " breakpoints and kind are refused (400).",
    tags=_TAGS,
    openapi_extensions=_FORM,
    **tenants.SCOPED,
)
def create_execution(
    rt: common.Served,
    tenant: str,
    namespace: str,
    flow_id: str,
    revision: Annotated[int | None, Query(ge=1)] = None,
    labels: Annotated[list[str] | None, Query(description="repeatable key:value")] = None,
    wait: Annotated[bool, Query(description="only false is supported")] = False,
    schedule_date: Annotated[str | None, Query(alias="scheduleDate", description="not supported")] = None,
    breakpoints: Annotated[str | None, Query(description="not supported")] = None,
    kind: Annotated[str | None, Query(description="not supported")] = None,
) -> KestraExecution:
    _refuse_given(wait=wait, scheduleDate=schedule_date, breakpoints=breakpoints, kind=kind)
    event = router.current_event.raw_event
    telemetry.keys(namespace=namespace, flow_id=flow_id)
    chosen = label_values(event)
    flow = rt.service.flow(namespace, flow_id, revision)  # 404 before any file is written
    if flow.disabled:
        raise common.ApiError(409, f"flow {namespace}.{flow_id} is disabled")
    execution_id = rt.service.new_id()
    inputs, stored = _inputs(rt, namespace, flow_id, execution_id)
    try:
        started = rt.service.start(
            namespace, flow_id, inputs, revision=revision, labels=chosen, execution_id=execution_id
        )
    except (InputError, NotFoundError):
        if stored is not None:
            rt.service.storage.delete_prefix(stored)
        raise
    telemetry.metrics.add_metric(name="ExecutionsStarted", unit="Count", value=1)
    return _view(rt, started.id)
