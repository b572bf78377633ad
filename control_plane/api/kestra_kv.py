"""Kestra's KV store over HTTP: ``/api/v1/{tenant}/namespaces/{namespace}/kv/{key}`` and ``/kv``.

Where the pairs live, and how: :mod:`control_plane.service.kv` (``_kv/<namespace>/<key>.json``
in the deployment storage), the one layout the ``core.kv`` tasks and ``kv()`` use too.

A value is sent as text and typed as Kestra types it: JSON that parses is a NUMBER, BOOLEAN
or JSON (objects and arrays) value, or a STRING when it is a JSON string; an ISO 8601 date,
date-time or duration is DATE, DATETIME or DURATION; anything else is the text as a STRING.
Kestra's ``ttl`` header (an expiring pair) is refused with a 400 naming it, not ignored.

Not served yet: reading pairs inherited from parent namespaces.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from pydantic import BaseModel

from control_plane.api import common, tenants
from control_plane.api.kestra_query import SCAN_LIMIT, parse_search, refuse
from control_plane.runtime import Runtime
from control_plane.service.kv import KEY_PATTERN, MAX_VALUE_BYTES, KvError, KvStore

__all__ = ["KEY_PATTERN", "check_namespace", "router", "typed"]

_DURATION = re.compile(r"^P(?!$)(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$")
router = Router()
_TAGS = ["kestra kv"]
_TEXT_BODY = {
    "requestBody": {"required": True, "content": {"text/plain": {"schema": {"type": "string"}}}},
}


class KvDetail(BaseModel):
    type: str
    value: Any
    revision: int
    updated: str


class KvEntry(BaseModel):
    namespace: str
    key: str
    revision: int
    creationDate: str
    updateDate: str


class PagedKvEntries(BaseModel):
    results: list[KvEntry]
    total: int


def check_namespace(namespace: str) -> None:
    """422 unless ``namespace`` is one a flow could have (what keeps storage paths plain)."""
    from control_plane.flows.models import NAMESPACE_PATTERN  # the flow language's rule only

    if not re.match(NAMESPACE_PATTERN, namespace):
        raise common.ApiError(422, f"invalid namespace {namespace!r}: lowercase letters, digits, . _ -")


def _checked(namespace: str, key: str | None = None) -> None:
    check_namespace(namespace)
    if key is not None and not re.match(KEY_PATTERN, key):
        raise common.ApiError(422, f"invalid key {key!r}: letters, digits, . _ - (not first)")


def _kv(rt: Runtime) -> KvStore:
    return KvStore(rt.service.storage, rt.service.clock.now)


def typed(text: str) -> tuple[str, Any]:
    """Kestra's type of a value sent as text, and the value (see the module docstring)."""
    try:
        value = common.parse_json(text)
    except ValueError:
        value = text
    else:
        if isinstance(value, bool):
            return "BOOLEAN", value
        if isinstance(value, int | float):
            return "NUMBER", value
        if isinstance(value, dict | list):
            return "JSON", value
        if value is None:
            return "STRING", text
    stripped = value.strip() if isinstance(value, str) else text
    for kind, parse in (("DATE", date.fromisoformat), ("DATETIME", datetime.fromisoformat)):
        try:
            parse(stripped)
            return kind, stripped
        except ValueError:
            continue
    if _DURATION.match(stripped):
        return "DURATION", stripped
    return "STRING", value


def _read(rt: Runtime, namespace: str, key: str) -> dict[str, Any] | None:
    try:
        return _kv(rt).record(namespace, key)
    except KvError as exc:
        raise common.ApiError(503, str(exc)) from None


@router.put(
    "/api/v1/<tenant>/namespaces/<namespace>/kv/<key>",
    summary="Set a KV pair",
    description="Body: the value as text (typed as Kestra types it: JSON, dates, durations, else a"
    " string). The ttl header is refused (400).",
    tags=_TAGS,
    openapi_extensions=_TEXT_BODY,
    **tenants.SCOPED,
)
def set_value(rt: common.Served, tenant: str, namespace: str, key: str) -> Response[None]:
    event = router.current_event.raw_event
    _checked(namespace, key)
    if common.header(event, "ttl") is not None:
        raise refuse("ttl", "expiring KV pairs are not supported yet")
    raw = common.body_text(event)
    if len(raw.encode()) > MAX_VALUE_BYTES:
        raise common.ApiError(413, f"a KV value is at most {MAX_VALUE_BYTES} bytes")
    kind, value = typed(raw)
    try:
        _kv(rt).put(namespace, key, kind, value)
    except KvError as exc:
        raise common.ApiError(503, str(exc)) from None
    return Response(status_code=200, body=None)


@router.get(
    "/api/v1/<tenant>/namespaces/<namespace>/kv/<key>",
    summary="Read a KV pair: its type and value",
    tags=_TAGS,
    **tenants.SCOPED,
)
def get_value(rt: common.Served, tenant: str, namespace: str, key: str) -> KvDetail:
    _checked(namespace, key)
    record = _read(rt, namespace, key)
    if record is None:
        raise common.ApiError(404, f"no KV pair {key!r} in namespace {namespace!r}")
    return KvDetail(
        type=record["type"], value=record["value"], revision=record["revision"], updated=record["updated"]
    )


@router.delete(
    "/api/v1/<tenant>/namespaces/<namespace>/kv/<key>",
    summary="Delete a KV pair: true if it was there",
    tags=_TAGS,
    **tenants.SCOPED,
)
def delete_value(rt: common.Served, tenant: str, namespace: str, key: str) -> bool:
    _checked(namespace, key)
    try:
        return _kv(rt).delete(namespace, key)
    except KvError as exc:
        raise common.ApiError(503, str(exc)) from None


@router.get(
    "/api/v1/<tenant>/kv",
    summary="List KV pairs (keys and dates, not values), a page at a time",
    description="page, size, sort=key:asc|key:desc, filters[namespace][EQUALS|PREFIX]. Any other"
    " parameter is a 400 that names it.",
    tags=_TAGS,
    **tenants.SCOPED,
)
def list_keys(rt: common.Served, tenant: str) -> PagedKvEntries:
    search = parse_search(
        router.current_event.raw_event,
        filters={"namespace": ("EQUALS", "PREFIX")},
        sorts=("key:asc", "key:desc"),
    )
    pairs: list[tuple[str, str]] = []
    for namespace, key in _kv(rt).pairs():
        ok = all(
            namespace == f.value
            if f.op == "EQUALS"
            else namespace == f.value or namespace.startswith(f.value + ".")
            for f in search.filters
        )
        if ok:
            pairs.append((namespace, key))
    if len(pairs) > SCAN_LIMIT:
        raise refuse("filters", f"more than {SCAN_LIMIT} KV pairs match: narrow the search")
    pairs.sort(key=lambda p: (p[1], p[0]), reverse=search.sort[:1] == ("key:desc",))
    entries: list[KvEntry] = []
    for namespace, key in pairs[search.window(len(pairs))]:
        record = _read(rt, namespace, key)
        if record is not None:  # deleted meanwhile
            entries.append(
                KvEntry(
                    namespace=namespace,
                    key=key,
                    revision=record["revision"],
                    creationDate=record["created"],
                    updateDate=record["updated"],
                )
            )
    return PagedKvEntries(results=entries, total=len(pairs))
