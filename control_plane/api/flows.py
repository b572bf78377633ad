"""``/api/v1/flows``: deploy flow YAML, list, read and delete flows (Kestra's paths).

A deploy takes the YAML as the raw body, not wrapped in JSON, so ``curl --data-binary
@flow.yaml`` works and every violation's line and column point into the file the user sent.
"""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query

from control_plane.api import common, telemetry
from control_plane.api.models import FlowPage, FlowSaved
from control_plane.api.views import FlowView, flow_summary_view, flow_view
from control_plane.errors import NotFoundError

__all__ = ["YAML_TYPES", "router"]

router = Router()

_JSON = content_types.APPLICATION_JSON
YAML_TYPES = ("application/x-yaml", "application/yaml", "text/yaml", "text/plain")

_YAML_BODY = {
    "requestBody": {
        "required": True,
        "content": {kind: {"schema": {"type": "string"}} for kind in YAML_TYPES},
    }
}


@router.post(
    "/api/v1/flows",
    summary="Deploy a flow",
    description="Body: the flow's YAML. 201 when a new revision was stored, 200 when the source is unchanged;"
    " 422 lists every violation with its line and column.",
    tags=["flows"],
    openapi_extensions=_YAML_BODY,
    responses={
        200: {"description": "unchanged", "content": {_JSON: {"model": FlowSaved}}},
        201: {"description": "new revision", "content": {_JSON: {"model": FlowSaved}}},
    },
)
def deploy_flow(rt: common.Served) -> Response[FlowSaved]:
    event = router.current_event.raw_event
    common.require_media_type(event, YAML_TYPES)
    source = common.body_text(event)
    from control_plane.flows.loader import parse_flow  # only deploys need the flow language (ADR 0006)

    flow = parse_flow(source, "<request body>")  # FlowValidationError -> 422 before anything is stored
    telemetry.keys(namespace=flow.namespace, flow_id=flow.id)
    try:
        previous: int | None = rt.store.get_flow(flow.namespace, flow.id).revision
    except NotFoundError:
        previous = None
    record = rt.service.deploy(source, "<request body>")
    created = record.revision != previous
    if created:
        telemetry.metrics.add_metric(name="FlowsDeployed", unit="Count", value=1)
    body = FlowSaved(namespace=record.namespace, id=record.id, revision=record.revision)
    return Response(
        status_code=201 if created else 200, content_type=content_types.APPLICATION_JSON, body=body
    )


@router.get("/api/v1/flows", summary="List flows (latest revision of each)", tags=["flows"])
def list_flows(
    rt: common.Served,
    namespace: Annotated[str | None, Query(description="namespace, or a parent namespace")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(description="from the previous page")] = None,
) -> FlowPage:
    with common.cursor_errors(cursor):
        page = rt.store.list_flows(namespace, limit=limit, cursor=cursor)
    return FlowPage(results=[flow_summary_view(r) for r in page.items], cursor=page.cursor)


@router.get("/api/v1/flows/<namespace>/<flow_id>", summary="A flow and its YAML source", tags=["flows"])
def get_flow(
    rt: common.Served, namespace: str, flow_id: str, revision: Annotated[int | None, Query(ge=1)] = None
) -> FlowView:
    telemetry.keys(namespace=namespace, flow_id=flow_id)
    return flow_view(rt.store.get_flow(namespace, flow_id, revision))


@router.delete(
    "/api/v1/flows/<namespace>/<flow_id>",
    summary="Delete a flow",
    description="Its revisions stay readable for the executions that used them.",
    tags=["flows"],
    status_code=204,
)
def delete_flow(rt: common.Served, namespace: str, flow_id: str) -> Response[None]:
    telemetry.keys(namespace=namespace, flow_id=flow_id)
    rt.store.get_flow(namespace, flow_id)  # 404 for an unknown or already deleted flow
    rt.store.delete_flow(namespace, flow_id, at=rt.service.clock.now())
    return Response(status_code=204, body=None)
