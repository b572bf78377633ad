"""Pages: opaque cursors, and the listing of executions newest first.

A cursor is the base64 of a JSON list of the values a listing resumes after (a sort key, an
index...), checked against the kinds it must hold when it comes back: a cursor of another
listing, or a forged one, is a ``StoreError`` rather than a wrong page. Listings read GSIs,
which are eventually consistent: a stale answer there is harmless, a later page catches up.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from control_plane.engine.states import State
from control_plane.errors import StoreError
from control_plane.store.base import ExecutionSummary, Page
from control_plane.store.codec import dumps, loads
from control_plane.store.dynamodb.items import Item, names, s
from control_plane.store.dynamodb.records import summary_from_item
from control_plane.store.dynamodb.table import Table
from control_plane.store.dynamodb_schema import GSI_EXECUTIONS

__all__ = ["cursor_decode", "cursor_encode", "list_executions"]


def cursor_encode(*parts: Any) -> str:
    return base64.urlsafe_b64encode(dumps(list(parts)).encode()).decode()


def cursor_decode(cursor: str, kinds: Sequence[type]) -> list[Any]:
    try:
        parts = loads(base64.urlsafe_b64decode(cursor.encode()))
    except ValueError as exc:
        raise StoreError(f"invalid page cursor {cursor!r}") from exc
    if (
        not isinstance(parts, list)
        or len(parts) != len(kinds)
        or not all(isinstance(p, k) for p, k in zip(parts, kinds, strict=True))
    ):
        raise StoreError(f"invalid page cursor {cursor!r}")
    return parts


def list_executions(
    table: Table,
    namespace: str | None,
    flow_id: str | None,
    states: Sequence[State] | None,
    limit: int,
    cursor: str | None,
) -> Page[ExecutionSummary]:
    """Newest first, from the write-once ``executions`` index plus a ``BatchGetItem``.

    The index holds only immutable attributes, so namespace and flow are filtered there
    (index entries are about 100 bytes: an eventually consistent read unit covers about 40)
    and state and summary come from the items themselves (eventually consistent,
    ``ceil(item KB / 4) / 2`` RRU each: about 0.5 per document or META). A state filter is
    applied after that fetch, so the store keeps paging until it has ``limit + 1`` matches
    or the index ends: a rare state costs the reads of every execution it skips.
    """
    condition, values = "#xg = :h", {":h": s("EXEC")}
    if cursor:
        [after] = cursor_decode(cursor, (str,))
        condition += " AND #xc < :after"
        values[":after"] = s(after)
    filters = []
    if namespace is not None:
        filters.append("#xn = :ns")
        values[":ns"] = s(namespace)
    if flow_id is not None:
        filters.append("#xf = :f")
        values[":f"] = s(flow_id)
    kwargs: dict[str, Any] = {
        "TableName": table.name,
        "IndexName": GSI_EXECUTIONS,
        "KeyConditionExpression": condition,
        "ExpressionAttributeValues": values,
        "ScanIndexForward": False,
        "Limit": min(max(2 * (limit + 1), 20), 1000),
    }
    if filters:
        kwargs["FilterExpression"] = " AND ".join(filters)
    kwargs["ExpressionAttributeNames"] = names(condition, kwargs.get("FilterExpression"))
    wanted = {State(x).value for x in states} if states else None
    found: list[Item] = []
    while len(found) <= limit:
        response = table.call("Query", **kwargs)
        entries = response.get("Items", [])
        items = table.batch_get(
            [{"PK": x["PK"], "SK": x["SK"]} for x in entries],
            consistent=False,
            projection="PK, #st, #sm, #xn, #xf, #xc",
        )
        for entry in entries:  # the index's order, newest first
            item = items.get(entry["PK"]["S"])
            if item is None or "st" not in item:
                continue  # deleted meanwhile (TTL), or not readable yet (eventual consistency)
            if wanted is None or item["st"]["S"] in wanted:
                found.append(item)
                if len(found) > limit:
                    break
        last = response.get("LastEvaluatedKey")
        if not last:
            break
        kwargs["ExclusiveStartKey"] = last
    page = [summary_from_item(x) for x in found[:limit]]
    more = len(found) > limit
    return Page(page, cursor_encode(found[limit - 1]["xc"]["S"]) if more else None)
