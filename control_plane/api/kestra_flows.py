"""``/api/v1/{tenant}/flows``: Kestra's flow routes (create, read, update, delete, search, validate).

Kestra's contract: create refuses a flow that exists (422, as Kestra does; update is ``PUT``),
responses are the flow itself (:func:`control_plane.api.kestra_views.flow`), search pages
with ``page``/``size`` and a ``total``, and validation answers one report per YAML document
instead of an error. A flow's YAML is the raw body (any of ``YAML_TYPES``), not wrapped in
JSON, so ``curl --data-binary @flow.yaml`` works and every violation's line and column point
into the file the user sent.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query

from control_plane.api import common, telemetry, tenants
from control_plane.api.kestra_query import SCAN_LIMIT, Filter, parse_search, refuse
from control_plane.api.kestra_views import KestraFlow, PagedFlows, flow
from control_plane.errors import FlowValidationError, NotFoundError
from control_plane.runtime import Runtime
from control_plane.store.base import FlowRecord

__all__ = ["YAML_TYPES", "flow_filters", "matching_flows", "router", "yaml_documents"]

router = Router()
YAML_TYPES = ("application/x-yaml", "application/yaml", "text/yaml", "text/plain")

_YAML_BODY = {
    "requestBody": {
        "required": True,
        "content": {kind: {"schema": {"type": "string"}} for kind in YAML_TYPES},
    }
}
_TAGS = ["kestra flows"]


def _source(event: dict[str, Any]) -> str:
    common.require_media_type(event, YAML_TYPES)
    return common.body_text(event)


def _exists(rt: Runtime, namespace: str, flow_id: str) -> FlowRecord | None:
    try:
        return rt.store.get_flow(namespace, flow_id)
    except NotFoundError:
        return None


def _deploy(rt: Runtime, source: str) -> FlowRecord:
    record = rt.service.deploy(source, "<request body>")
    telemetry.metrics.add_metric(name="FlowsDeployed", unit="Count", value=1)
    return record


@router.post(
    "/api/v1/<tenant>/flows",
    summary="Create a flow from its YAML",
    description="422 when the flow already exists (update it with PUT) or does not validate.",
    tags=_TAGS,
    openapi_extensions=_YAML_BODY,
    **tenants.SCOPED,
)
def create_flow(rt: common.Served, tenant: str) -> KestraFlow:
    source = _source(router.current_event.raw_event)
    from control_plane.flows.loader import parse_flow  # only deploys need the flow language (ADR 0006)

    parsed = parse_flow(source, "<request body>")
    telemetry.keys(namespace=parsed.namespace, flow_id=parsed.id)
    if _exists(rt, parsed.namespace, parsed.id) is not None:
        raise common.ApiError(
            422,
            f"flow {parsed.namespace}.{parsed.id} already exists: update it with"
            f" PUT /api/v1/{tenant}/flows/{parsed.namespace}/{parsed.id}",
        )
    return flow(_deploy(rt, source))


def _matches(record: FlowRecord, filters: tuple[Filter, ...]) -> bool:
    for f in filters:
        if f.field == "namespace":
            ok = (
                record.namespace == f.value
                if f.op == "EQUALS"
                else record.namespace == f.value or record.namespace.startswith(f.value + ".")
            )
        else:  # q: Kestra's free text, matched on the flow's id and namespace
            ok = f.value.lower() in f"{record.namespace}.{record.id}".lower()
        if not ok:
            return False
    return True


_FLOW_SORTS = ("id:asc", "id:desc", "namespace:asc", "namespace:desc")


def flow_filters() -> dict[str, tuple[str, ...]]:
    """The filters every flow search takes (search, export, bulk enable/disable/delete)."""
    return {"namespace": ("EQUALS", "PREFIX"), "q": ("EQUALS",)}


def matching_flows(rt: Runtime, filters: tuple[Filter, ...]) -> list[FlowRecord]:
    """The latest revision of every live flow the filters match, by (namespace, id)."""
    prefix = next((f.value for f in filters if f.field == "namespace"), None)
    found: list[FlowRecord] = []
    cursor: str | None = None
    while True:
        page = rt.store.list_flows(prefix, limit=1000, cursor=cursor)
        found.extend(r for r in page.items if _matches(r, filters))
        if len(found) > SCAN_LIMIT:
            raise refuse("filters", f"more than {SCAN_LIMIT} flows match: narrow the search")
        cursor = page.cursor
        if cursor is None:
            return found


def _now() -> datetime:
    """The instant a flow read lists its schedules' next dates after (the API reads no service clock)."""
    return datetime.now(UTC)


def _sort_key(field: str) -> Callable[[FlowRecord], tuple[str, str]]:
    if field == "id":
        return lambda r: (r.id, r.namespace)
    return lambda r: (r.namespace, r.id)


@router.get(
    "/api/v1/<tenant>/flows/search",
    summary="Search flows (latest revision of each), a page at a time",
    description="Kestra's parameters: page (from 1), size, sort (id or namespace, :asc or :desc),"
    " filters[namespace][EQUALS|PREFIX], filters[q][EQUALS] (text in namespace.id). Any other"
    " parameter is a 400 that names it.",
    tags=_TAGS,
    **tenants.SCOPED,
)
def search_flows(rt: common.Served, tenant: str) -> PagedFlows:
    search = parse_search(router.current_event.raw_event, filters=flow_filters(), sorts=_FLOW_SORTS)
    found = matching_flows(rt, search.filters)
    for key in reversed(search.sort):  # stable sorts, the first key last: it is the main one
        field, _, direction = key.partition(":")
        found.sort(key=_sort_key(field), reverse=direction == "desc")
    shown = found[search.window(len(found))]
    return PagedFlows(results=[flow(r, source=False, now=_now()) for r in shown], total=len(found))


@router.post(
    "/api/v1/<tenant>/flows/validate",
    summary="Validate flows without storing them",
    description="Body: one or more YAML documents separated by ---. One report per document:"
    " constraints holds the violations (with line and column), absent when the flow is valid;"
    " violations (a Squall extra) lists them as {line, column, path, message}.",
    tags=_TAGS,
    openapi_extensions=_YAML_BODY,
    **tenants.SCOPED,
)
def validate_flows(rt: common.Served, tenant: str) -> list[dict[str, Any]]:
    source = _source(router.current_event.raw_event)
    from control_plane.flows.loader import parse_flow

    reports: list[dict[str, Any]] = []
    for index, document in enumerate(yaml_documents(source)):
        report: dict[str, Any] = {"index": index}
        try:
            parsed = parse_flow(document, f"<document {index}>")
            report.update(namespace=parsed.namespace, flow=parsed.id)
            report["outdated"] = False
        except FlowValidationError as exc:
            report["constraints"] = "\n".join(
                f"{v.path}: {v.message} (line {v.line}, column {v.column})" for v in exc.violations
            )
            # Squall's extra: the same violations as data, shaped as a 422's ``errors``, so an
            # editor marks each line without parsing the prose of ``constraints``.
            report["violations"] = [
                {"line": v.line, "column": v.column, "path": v.path, "message": v.message}
                for v in exc.violations
            ]
        reports.append(report)
    return reports


def yaml_documents(source: str) -> list[str]:
    """The YAML documents of a multi-document body, each kept as text (lines count from its start)."""
    documents: list[list[str]] = [[]]
    for line in source.splitlines(keepends=True):
        if line.rstrip() == "---":
            documents.append([])
        else:
            documents[-1].append(line)
    return ["".join(lines) for lines in documents if "".join(lines).strip()]


@router.get(
    "/api/v1/<tenant>/flows/<namespace>",
    summary="Every flow of a namespace (latest revisions, without sources)",
    tags=_TAGS,
    **tenants.SCOPED,
)
def list_flows_by_namespace(rt: common.Served, tenant: str, namespace: str) -> list[KestraFlow]:
    found: list[KestraFlow] = []
    cursor: str | None = None
    while True:
        page = rt.store.list_flows(namespace, limit=1000, cursor=cursor)
        found.extend(flow(r, source=False) for r in page.items if r.namespace == namespace)
        if len(found) > SCAN_LIMIT:
            raise common.ApiError(400, f"more than {SCAN_LIMIT} flows in {namespace}: use flows/search")
        cursor = page.cursor
        if cursor is None:
            return found


@router.get(
    "/api/v1/<tenant>/flows/<namespace>/<flow_id>",
    summary="A flow, with its source",
    tags=_TAGS,
    **tenants.SCOPED,
)
def get_flow(
    rt: common.Served,
    tenant: str,
    namespace: str,
    flow_id: str,
    revision: Annotated[int | None, Query(ge=1)] = None,
    source: Annotated[bool, Query(description="include the YAML source")] = True,
    allow_deleted: Annotated[
        bool, Query(alias="allowDeleted", description="only false is supported")
    ] = False,
) -> KestraFlow:
    telemetry.keys(namespace=namespace, flow_id=flow_id)
    if allow_deleted:
        raise refuse("allowDeleted", "reading a deleted flow is not supported")
    return flow(rt.store.get_flow(namespace, flow_id, revision), source=source, now=_now())


@router.put(
    "/api/v1/<tenant>/flows/<namespace>/<flow_id>",
    summary="Update a flow (a new revision when the source changed)",
    description="The YAML's namespace and id must be the path's (422 otherwise); 404 for an unknown flow.",
    tags=_TAGS,
    openapi_extensions=_YAML_BODY,
    **tenants.SCOPED,
)
def update_flow(rt: common.Served, tenant: str, namespace: str, flow_id: str) -> KestraFlow:
    source = _source(router.current_event.raw_event)
    telemetry.keys(namespace=namespace, flow_id=flow_id)
    from control_plane.flows.loader import parse_flow

    parsed = parse_flow(source, "<request body>")
    if (parsed.namespace, parsed.id) != (namespace, flow_id):
        raise common.ApiError(
            422,
            f"the flow's namespace and id ({parsed.namespace}.{parsed.id}) are not the path's"
            f" ({namespace}.{flow_id}): a flow cannot be renamed",
        )
    rt.store.get_flow(namespace, flow_id)  # 404 for an unknown flow: PUT does not create
    return flow(_deploy(rt, source))


@router.delete(
    "/api/v1/<tenant>/flows/<namespace>/<flow_id>",
    summary="Delete a flow",
    description="Its revisions stay readable for the executions that used them.",
    tags=_TAGS,
    status_code=204,
    **tenants.SCOPED,
)
def delete_flow(rt: common.Served, tenant: str, namespace: str, flow_id: str) -> Response[None]:
    telemetry.keys(namespace=namespace, flow_id=flow_id)
    rt.store.get_flow(namespace, flow_id)
    rt.service.delete_flow(namespace, flow_id)
    return Response(status_code=204, body=None)


@router.get(
    "/api/v1/<tenant>/flows/<namespace>/<flow_id>/revisions",
    summary="Every revision of a flow, oldest first, with its source",
    tags=_TAGS,
    **tenants.SCOPED,
)
def flow_revisions(
    rt: common.Served,
    tenant: str,
    namespace: str,
    flow_id: str,
    allow_delete: Annotated[bool, Query(alias="allowDelete", description="only false is supported")] = False,
) -> list[KestraFlow]:
    telemetry.keys(namespace=namespace, flow_id=flow_id)
    if allow_delete:
        raise refuse("allowDelete", "listing a deleted flow's revisions is not supported")
    rt.store.get_flow(namespace, flow_id)
    return [
        flow(rt.store.get_flow(namespace, flow_id, n)) for n in rt.store.flow_revisions(namespace, flow_id)
    ]
