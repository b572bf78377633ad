"""Kestra's bulk flow routes: export and import (zip of YAML files), enable, disable and delete many.

Export writes each flow's YAML source as ``<namespace>.<id>.yml`` in a zip, Kestra's layout,
so an export imports back unchanged into Squall or Kestra. Import takes that zip (or one YAML
file, ``---`` separating flows) as the multipart part ``fileUpload``; each flow is deployed
(a new revision when its source changed). Kestra answers the list of sources that did not
validate; with ``failOnError=true`` any invalid one is a 422 and nothing is stored.

Enable and disable: ``disabled`` is part of a flow's YAML in Squall as in Kestra, so toggling
it writes a new revision whose source has ``disabled: true`` (or ``false``) as its top-level
line, replacing one that was there. A source whose ``disabled`` is not such a line (flow-style
YAML, a ``disabled`` spelled another way) is a 422 naming the flow rather than an edit that
might not do what it says. The parsed result is checked before it is stored.

Routes with ids take Kestra's JSON body ``[{"namespace": ..., "id": ...}]``; an unknown flow
is a 404 naming it (nothing is done), never skipped in silence.

This router is registered before :mod:`control_plane.api.kestra_flows`: its literal paths
(``/flows/export/by-query``, ``/flows/delete/by-ids``) would otherwise be read as
``/flows/{namespace}/{id}``.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterable
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query
from pydantic import BaseModel

from control_plane.api import common, telemetry, tenants
from control_plane.api.kestra_flows import flow_filters, matching_flows
from control_plane.api.kestra_query import parse_search
from control_plane.errors import FlowValidationError, NotFoundError
from control_plane.runtime import Runtime
from control_plane.store.base import FlowRecord

__all__ = ["router"]

router = Router()
_TAGS = ["kestra flows"]
_IDS_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"namespace": {"type": "string"}, "id": {"type": "string"}},
                        "required": ["namespace", "id"],
                    },
                }
            }
        },
    }
}
_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"fileUpload": {"type": "string", "format": "binary"}},
                    "required": ["fileUpload"],
                }
            }
        },
    }
}
MAX_IMPORT_FILES = 1000  # flows in one import: each is a deploy
_DISABLED_LINE = re.compile(r"^disabled:[^\n]*$", re.MULTILINE)


class BulkResponse(BaseModel):
    count: int


def _ids(rt: Runtime) -> list[FlowRecord]:
    """The flows a JSON ``[{namespace, id}]`` body names; 422 for a malformed one, 404 for an unknown one."""
    event = router.current_event.raw_event
    common.require_media_type(event, ("application/json",))
    body = common.json_body(event)
    if not isinstance(body, list):
        raise common.ApiError(422, 'the body must be a JSON array of {"namespace": ..., "id": ...}')
    records: list[FlowRecord] = []
    for index, item in enumerate(body):
        if not (
            isinstance(item, dict)
            and isinstance(item.get("namespace"), str)
            and isinstance(item.get("id"), str)
        ):
            raise common.ApiError(422, f"body[{index}]: expected {{namespace, id}} strings, got {item!r}")
        try:
            records.append(rt.store.get_flow(item["namespace"], item["id"]))
        except NotFoundError:
            raise common.ApiError(
                404, f"body[{index}]: flow {item['namespace']}.{item['id']} not found"
            ) from None
    return records


def _query(rt: Runtime) -> list[FlowRecord]:
    search = parse_search(router.current_event.raw_event, filters=flow_filters())
    return matching_flows(rt, search.filters)


def _zip(records: Iterable[FlowRecord]) -> Response[bytes]:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for record in records:
            archive.writestr(f"{record.namespace}.{record.id}.yml", record.source)
    return Response(
        status_code=200,
        content_type="application/octet-stream",
        body=buffer.getvalue(),
        headers={"Content-Disposition": 'attachment; filename="flows.zip"'},
    )


@router.get(
    "/api/v1/<tenant>/flows/export/by-query",
    summary="Export the flows a search matches, as a zip of YAML files",
    description="filters as in flows/search (namespace, q); no filter exports every flow.",
    tags=_TAGS,
    enable_validation=False,  # the body is bytes (see executions' file download)
    **tenants.SCOPED,
)
def export_by_query(rt: common.Served, tenant: str) -> Response[bytes]:
    return _zip(_query(rt))


@router.post(
    "/api/v1/<tenant>/flows/export/by-ids",
    summary="Export the flows named in the body, as a zip of YAML files",
    tags=_TAGS,
    openapi_extensions=_IDS_BODY,
    enable_validation=False,
    **tenants.SCOPED,
)
def export_by_ids(rt: common.Served, tenant: str) -> Response[bytes]:
    return _zip(_ids(rt))


def _uploaded_sources() -> list[tuple[str, str]]:
    """(name, YAML) of each flow in the ``fileUpload`` part: a zip's .yml/.yaml files, or YAML documents."""
    from control_plane.api.kestra_flows import yaml_documents

    event = router.current_event.raw_event
    common.require_media_type(event, ("multipart/form-data",))
    parts = [p for p in common.multipart(event) if p.name == "fileUpload"]
    if len(parts) != 1:
        raise common.ApiError(422, "send the flows as one multipart part named 'fileUpload'")
    content = parts[0].content
    if not content.startswith(b"PK\x03\x04"):
        text = parts[0].text()
        return [(f"document {n}", doc) for n, doc in enumerate(yaml_documents(text))]
    sources: list[tuple[str, str]] = []
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            names = [n for n in archive.namelist() if n.endswith((".yml", ".yaml")) and not n.endswith("/")]
            if len(names) > MAX_IMPORT_FILES:
                raise common.ApiError(422, f"{len(names)} flows in one import: at most {MAX_IMPORT_FILES}")
            for name in names:
                if archive.getinfo(name).file_size > 1024 * 1024:
                    raise common.ApiError(422, f"{name}: over 1 MiB")
                try:
                    sources.append((name, archive.read(name).decode("utf-8-sig")))
                except UnicodeDecodeError:
                    raise common.ApiError(422, f"{name}: not UTF-8 text") from None
    except zipfile.BadZipFile as exc:
        raise common.ApiError(400, f"fileUpload is not a valid zip: {exc}") from None
    return sources


@router.post(
    "/api/v1/<tenant>/flows/import",
    summary="Import flows from a zip of YAML files (or one YAML file)",
    description="Answers the names of the sources that did not validate (and were not stored);"
    " failOnError=true: any invalid source is a 422 and nothing is stored.",
    tags=_TAGS,
    openapi_extensions=_UPLOAD_BODY,
    **tenants.SCOPED,
)
def import_flows(
    rt: common.Served,
    tenant: str,
    fail_on_error: Annotated[bool, Query(alias="failOnError")] = False,
) -> list[str]:
    from control_plane.flows.loader import parse_flow

    valid: list[str] = []
    invalid: list[str] = []
    problems: list[dict[str, Any]] = []
    for name, source in _uploaded_sources():
        try:
            parse_flow(source, name)
            valid.append(source)
        except FlowValidationError as exc:
            invalid.append(name)
            problems += [
                {"message": f"{name}: {v.path}: {v.message} (line {v.line})"} for v in exc.violations
            ]
    if invalid and fail_on_error:
        raise common.ApiError(
            422,
            f"{len(invalid)} invalid flow(s), nothing imported: {', '.join(invalid)}",
            extra={"errors": problems},
        )
    for source in valid:
        rt.service.deploy(source, "<import>")
        telemetry.metrics.add_metric(name="FlowsDeployed", unit="Count", value=1)
    return invalid


def _toggled(record: FlowRecord, disabled: bool) -> str:
    """The source with ``disabled: <value>`` as its top-level line; 422 when that cannot be done plainly."""
    source = record.source
    lines = _DISABLED_LINE.findall(source)
    wanted = f"disabled: {'true' if disabled else 'false'}"
    if len(lines) > 1:
        raise common.ApiError(422, f"flow {record.namespace}.{record.id}: several top-level disabled lines")
    edited = (
        _DISABLED_LINE.sub(wanted, source)
        if lines
        else source + ("" if source.endswith("\n") else "\n") + wanted + "\n"
    )
    from control_plane.flows.loader import parse_flow

    try:
        parsed = parse_flow(edited, f"{record.namespace}.{record.id}")
    except FlowValidationError:
        parsed = None
    if parsed is None or bool(parsed.disabled) is not disabled:
        raise common.ApiError(
            422,
            f"flow {record.namespace}.{record.id}: its source does not take a top-level"
            f" '{wanted}' line as written; edit it and update the flow",
        )
    return edited


def _set_disabled(rt: Runtime, records: list[FlowRecord], disabled: bool) -> BulkResponse:
    edited = [_toggled(r, disabled) for r in records]  # every one checked before any is stored
    for source in edited:
        rt.service.deploy(source, "<request>")
    return BulkResponse(count=len(edited))


@router.post(
    "/api/v1/<tenant>/flows/disable/by-ids",
    summary="Disable flows (a new revision with disabled: true)",
    tags=_TAGS,
    openapi_extensions=_IDS_BODY,
    **tenants.SCOPED,
)
def disable_by_ids(rt: common.Served, tenant: str) -> BulkResponse:
    return _set_disabled(rt, _ids(rt), True)


@router.post(
    "/api/v1/<tenant>/flows/enable/by-ids",
    summary="Enable flows (a new revision with disabled: false)",
    tags=_TAGS,
    openapi_extensions=_IDS_BODY,
    **tenants.SCOPED,
)
def enable_by_ids(rt: common.Served, tenant: str) -> BulkResponse:
    return _set_disabled(rt, _ids(rt), False)


@router.post(
    "/api/v1/<tenant>/flows/disable/by-query",
    summary="Disable the flows a search matches",
    description="filters as in flows/search (namespace, q).",
    tags=_TAGS,
    **tenants.SCOPED,
)
def disable_by_query(rt: common.Served, tenant: str) -> BulkResponse:
    return _set_disabled(rt, _query(rt), True)


@router.post(
    "/api/v1/<tenant>/flows/enable/by-query",
    summary="Enable the flows a search matches",
    description="filters as in flows/search (namespace, q).",
    tags=_TAGS,
    **tenants.SCOPED,
)
def enable_by_query(rt: common.Served, tenant: str) -> BulkResponse:
    return _set_disabled(rt, _query(rt), False)


def _delete(rt: Runtime, records: list[FlowRecord]) -> BulkResponse:
    for record in records:
        rt.service.delete_flow(record.namespace, record.id)
    return BulkResponse(count=len(records))


@router.delete(
    "/api/v1/<tenant>/flows/delete/by-ids",
    summary="Delete the flows named in the body",
    tags=_TAGS,
    openapi_extensions=_IDS_BODY,
    **tenants.SCOPED,
)
def delete_by_ids(rt: common.Served, tenant: str) -> BulkResponse:
    return _delete(rt, _ids(rt))


@router.delete(
    "/api/v1/<tenant>/flows/delete/by-query",
    summary="Delete the flows a search matches",
    description="filters as in flows/search (namespace, q); at least one filter is required.",
    tags=_TAGS,
    **tenants.SCOPED,
)
def delete_by_query(rt: common.Served, tenant: str) -> BulkResponse:
    search = parse_search(router.current_event.raw_event, filters=flow_filters())
    if not search.filters:
        raise common.ApiError(422, "give at least one filter: deleting every flow takes an explicit filter")
    return _delete(rt, matching_flows(rt, search.filters))
