"""``/api/v1/{tenant}/namespaces`` and ``flows/distinct-namespaces``: namespaces as Kestra lists them.

Squall keeps no namespace records: a namespace exists because flows live in it. So the
namespaces listed are those of the live flows plus each of their parents (``company`` for a
flow in ``company.team``), as Kestra's open-source edition derives them; with
``existing=true``, only those that hold a flow themselves. Each is ``{id, deleted: false}``:
namespace settings (variables, secrets, storage isolation, quotas) are Enterprise features
Squall does not have.
"""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query
from pydantic import BaseModel

from control_plane.api import common, tenants
from control_plane.api.kestra_query import SCAN_LIMIT, parse_search, refuse
from control_plane.runtime import Runtime

__all__ = ["router"]

router = Router()
_TAGS = ["kestra namespaces"]


class KestraNamespace(BaseModel):
    id: str
    deleted: bool


class PagedNamespaces(BaseModel):
    results: list[KestraNamespace]
    total: int


def _flow_namespaces(rt: Runtime) -> set[str]:
    found: set[str] = set()
    cursor: str | None = None
    read = 0
    while True:
        page = rt.store.list_flows(None, limit=1000, cursor=cursor)
        found.update(r.namespace for r in page.items)
        read += len(page.items)
        if read > SCAN_LIMIT:
            raise refuse("namespace", f"more than {SCAN_LIMIT} flows to read: not supported yet")
        cursor = page.cursor
        if cursor is None:
            return found


def _with_parents(namespaces: set[str]) -> set[str]:
    out = set(namespaces)
    for ns in namespaces:
        parts = ns.split(".")
        out.update(".".join(parts[:n]) for n in range(1, len(parts)))
    return out


@router.get(
    "/api/v1/<tenant>/flows/distinct-namespaces",
    summary="The namespaces that hold flows, sorted",
    description="q: only those containing this text.",
    tags=_TAGS,
    **tenants.SCOPED,
)
def distinct_namespaces(
    rt: common.Served, tenant: str, q: Annotated[str | None, Query(description="text to contain")] = None
) -> list[str]:
    return sorted(ns for ns in _flow_namespaces(rt) if q is None or q in ns)


@router.get(
    "/api/v1/<tenant>/namespaces/search",
    summary="Search namespaces (those of the flows and their parents), a page at a time",
    description="page, size, sort=id:asc|id:desc, filters[q][EQUALS] (text in the id), existing=true"
    " (only namespaces that hold a flow). Any other parameter is a 400 that names it.",
    tags=_TAGS,
    **tenants.SCOPED,
)
def search_namespaces(rt: common.Served, tenant: str) -> PagedNamespaces:
    search = parse_search(
        router.current_event.raw_event,
        filters={"q": ("EQUALS",)},
        sorts=("id:asc", "id:desc"),
        params=("existing",),
    )
    existing = search.params.get("existing", "false")
    if existing not in ("true", "false"):
        raise refuse("existing", f"true or false, not {existing!r}")
    held = _flow_namespaces(rt)
    names = held if existing == "true" else _with_parents(held)
    texts = [f.value for f in search.filters]
    found = sorted(
        (ns for ns in names if all(t.lower() in ns.lower() for t in texts)),
        reverse=search.sort[:1] == ("id:desc",),
    )
    shown = found[search.window(len(found))]
    return PagedNamespaces(results=[KestraNamespace(id=ns, deleted=False) for ns in shown], total=len(found))


@router.get(
    "/api/v1/<tenant>/namespaces/<namespace>",
    summary="A namespace: 404 unless a flow lives in it or under it",
    tags=_TAGS,
    **tenants.SCOPED,
)
def get_namespace(rt: common.Served, tenant: str, namespace: str) -> KestraNamespace:
    if namespace not in _with_parents(_flow_namespaces(rt)):
        raise common.ApiError(404, f"namespace {namespace!r} not found: no flow lives in it or under it")
    return KestraNamespace(id=namespace, deleted=False)
