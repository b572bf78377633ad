"""``io.kestra.plugin.core.execution``: Count and Resume.

Count (execution/Count.java, and the JDBC repository's executionCounts): executions of the
given ``flows`` (each ``{namespace, flowId}``, listed with 0 when none ran) and
``namespaces`` (summed per namespace, flowId null) started between ``startDate`` and
``endDate`` (now by default), in ``states`` when given; a result is kept when
``expression``, rendered with ``count``, is ``true``. It reads the store's newest-first
listing until it passes ``startDate``, at most :data:`MAX_SCANNED` executions per filter
(more fails the task, never a wrong count).

Resume (execution/Resume.java): resumes the paused execution ``executionId`` (the current one
by default) with ``inputs``, as the API's resume does.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from control_plane.engine.states import State
from control_plane.errors import ExpressionError, NotFoundError
from control_plane.expressions import render
from control_plane.tasks import TaskFailure

if TYPE_CHECKING:
    from control_plane.tasks import EffectContext, Handler

__all__ = ["HANDLERS", "MAX_SCANNED"]

MAX_SCANNED = 10_000
_PAGE = 200


def _date(props: Mapping[str, Any], name: str) -> datetime | None:
    value = props.get(name)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise TaskFailure(
            f"property '{name}': {value!r} is not a date-time with a zone (ZonedDateTime)"
        ) from None
    if parsed.tzinfo is None:
        raise TaskFailure(f"property '{name}': {value!r} has no zone offset (ZonedDateTime.parse needs one)")
    return parsed


def _count(
    ctx: EffectContext,
    namespace: str,
    flow_id: str | None,
    states: list[State] | None,
    start: datetime,
    end: datetime,
) -> dict[str, int]:
    """Executions per flow id started in [start, end], newest first until before ``start``.

    States are filtered here, not by the store: a store filtering a rare state pages through
    every execution it skips, past ``start`` too, where this stops at the first older one.
    """
    counts: dict[str, int] = {}
    cursor: str | None = None
    scanned = 0
    while True:
        page = ctx.store.list_executions(namespace=namespace, flow_id=flow_id, limit=_PAGE, cursor=cursor)
        for summary in page.items:
            scanned += 1
            if summary.created < start:
                return counts
            if summary.created <= end and (states is None or summary.state in states):
                counts[summary.flow_id] = counts.get(summary.flow_id, 0) + 1
        if page.cursor is None:
            return counts
        if scanned >= MAX_SCANNED:
            raise TaskFailure(f"more than {MAX_SCANNED} executions of {namespace} to count: narrow startDate")
        if time.monotonic() > ctx.deadline:
            raise TaskFailure("counting executions took longer than the task's time budget")
        cursor = page.cursor


def count(props: Mapping[str, Any], ctx: EffectContext) -> Mapping[str, Any]:
    flows = props.get("flows")
    namespaces = props.get("namespaces")
    if flows is None and namespaces is None:
        raise TaskFailure("You must provide a list of flows or namespaces")
    start = _date(props, "startDate")
    if start is None:
        raise TaskFailure("property 'startDate' is required")
    end = _date(props, "endDate") or ctx.now()
    raw_states = props.get("states")
    states = [State(s) for s in raw_states] if raw_states else None
    expression = str(props.get("expression") or "")
    counted: list[tuple[str, str | None, int]] = []
    for flow in flows or ():
        ns, fid = str(flow["namespace"]), str(flow["flowId"])
        counted.append((ns, fid, _count(ctx, ns, fid, states, start, end).get(fid, 0)))
    for ns in namespaces or ():
        per_flow = _count(ctx, str(ns), None, states, start, end)
        if per_flow:  # Kestra groups what the query found: a namespace without any is left out
            counted.append((str(ns), None, sum(per_flow.values())))
    results: list[dict[str, Any]] = []
    for where, flow_id, number in counted:
        try:
            variables = {**(props.get("@context") or {}), "count": number}
            kept = render(expression, variables).strip() == "true"
        except ExpressionError as exc:
            raise TaskFailure(f"property 'expression': {exc}") from None
        if kept:
            result = {"namespace": where, "flowId": flow_id, "count": number}
            results.append({k: v for k, v in result.items() if v is not None})  # Jackson's NON_NULL
    return {"results": results, "total": sum(r["count"] for r in results)}


def resume(props: Mapping[str, Any], ctx: EffectContext) -> None:
    execution_id = str(props.get("executionId") or ctx.execution_id)
    if ctx.resume is None:
        raise TaskFailure("resuming an execution is not available here")
    try:
        ctx.resume(execution_id, dict(props.get("inputs") or {}))
    except NotFoundError:
        raise TaskFailure(f"No execution found for execution id {execution_id}") from None
    return None


HANDLERS: dict[str, Handler] = {
    "squall.execution.Count": count,
    "squall.execution.Resume": resume,
}
