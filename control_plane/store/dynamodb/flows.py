"""Flow sources: every revision kept, the latest one listed.

A flow is the partition ``FLOW#<namespace>#<id>``: ``REV#<n:08d>`` per revision (never
rewritten) and ``LATEST``, a copy of the newest, which alone is in the ``flows`` index while
the flow is live. A save writes both in one transaction, conditional on ``LATEST`` still
being the revision read, so concurrent saves number their revisions without a gap or a
duplicate; a delete is a revision that marks the flow deleted.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from control_plane.errors import ConflictError, NotFoundError
from control_plane.store.base import FlowRecord, Page
from control_plane.store.dynamodb.conditions import IS_NEW
from control_plane.store.dynamodb.items import MAX_CHAR, Item, n, names, s
from control_plane.store.dynamodb.pages import cursor_decode, cursor_encode
from control_plane.store.dynamodb.table import Refused, Table
from control_plane.store.dynamodb_schema import GSI_FLOWS

__all__ = ["Flows"]


def _flow_pk(namespace: str, flow_id: str) -> dict[str, str]:
    return s(f"FLOW#{namespace}#{flow_id}")


def _flow(item: Item) -> FlowRecord:
    revision = int(item["r"]["N"]) if "r" in item else int(item["SK"]["S"].removeprefix("REV#"))
    return FlowRecord(
        item["fn"]["S"],
        item["fi"]["S"],
        revision,
        item["src"]["S"],
        datetime.fromisoformat(item["u"]["S"]),
        "del" in item,
    )


class Flows:
    def __init__(self, table: Table) -> None:
        self._table = table

    def save(self, namespace: str, flow_id: str, source: str, *, at: datetime) -> FlowRecord:
        for _ in range(20):
            latest = self._table.get({"PK": _flow_pk(namespace, flow_id), "SK": s("LATEST")})
            if latest is not None and latest["src"]["S"] == source and "del" not in latest:
                return _flow(latest)
            try:
                return self._new_revision(namespace, flow_id, source, at, latest, deleted=False)
            except Refused:
                continue  # another writer took this revision number: read the latest again
        raise ConflictError(f"flow {namespace}.{flow_id}: too many concurrent saves")

    def _new_revision(
        self, namespace: str, flow_id: str, source: str, at: datetime, latest: Item | None, *, deleted: bool
    ) -> FlowRecord:
        table = self._table
        revision = 1 if latest is None else int(latest["r"]["N"]) + 1
        pk = _flow_pk(namespace, flow_id)
        body: Item = {"src": s(source), "u": s(at.isoformat()), "fn": s(namespace), "fi": s(flow_id)}
        if deleted:
            body["del"] = {"BOOL": True}
        head: Item = {"PK": pk, "SK": s("LATEST"), "r": n(revision), **body}
        if not deleted:  # only live flows are in the listing index
            head |= {"fg": s("FLOW"), "fk": s(f"{namespace} {flow_id}")}
        if latest is None:
            head_put: dict[str, Any] = {"TableName": table.name, "Item": head, "ConditionExpression": IS_NEW}
        else:
            head_put = {
                "TableName": table.name,
                "Item": head,
                "ConditionExpression": "#r = :seen",  # LATEST is still the revision we read
                "ExpressionAttributeNames": {"#r": "r"},
                "ExpressionAttributeValues": {":seen": latest["r"]},
            }
        revision_put = {
            "TableName": table.name,
            "Item": {"PK": pk, "SK": s(f"REV#{revision:08d}"), **body},
            "ConditionExpression": IS_NEW,
        }
        table.call("TransactWriteItems", TransactItems=[{"Put": revision_put}, {"Put": head_put}])
        return FlowRecord(namespace, flow_id, revision, source, at, deleted)

    def get(self, namespace: str, flow_id: str, revision: int | None = None) -> FlowRecord:
        sk = "LATEST" if revision is None else f"REV#{revision:08d}"
        item = self._table.get({"PK": _flow_pk(namespace, flow_id), "SK": s(sk)})
        if item is None or (revision is None and "del" in item):
            at = "" if revision is None else f" revision {revision}"
            raise NotFoundError(f"flow {namespace}.{flow_id}{at} not found")
        return _flow(item)

    def page(
        self, namespace: str | None = None, *, limit: int = 100, cursor: str | None = None
    ) -> Page[FlowRecord]:
        kwargs: dict[str, Any] = {
            "TableName": self._table.name,
            "IndexName": GSI_FLOWS,
            "Limit": limit + 1,
        }
        values: dict[str, Any] = {":g": s("FLOW")}
        condition = "#fg = :g"
        if namespace is not None:
            # The key range holds the namespace and its sub-namespaces, plus names in between such
            # as `team-x` for `team`: the filter keeps exact matches and `<namespace>.` prefixes.
            condition += " AND #fk BETWEEN :lo AND :hi"
            values |= {":lo": s(f"{namespace} "), ":hi": s(f"{namespace}.{MAX_CHAR}")}
            values |= {":ns": s(namespace), ":sub": s(f"{namespace}.")}
            kwargs["FilterExpression"] = "#fn = :ns OR begins_with(#fn, :sub)"
        kwargs["KeyConditionExpression"] = condition
        kwargs["ExpressionAttributeNames"] = names(condition, kwargs.get("FilterExpression"))
        kwargs["ExpressionAttributeValues"] = values
        if cursor:
            ns, fid = cursor_decode(cursor, (str, str))
            kwargs["ExclusiveStartKey"] = {
                "PK": _flow_pk(ns, fid),
                "SK": s("LATEST"),
                "fg": s("FLOW"),
                "fk": s(f"{ns} {fid}"),
            }
        found = self._table.collect(kwargs, limit + 1)
        items = [_flow(x) for x in found[:limit]]
        more = len(found) > limit
        return Page(items, cursor_encode(items[-1].namespace, items[-1].id) if more else None)

    def revisions(self, namespace: str, flow_id: str) -> list[int]:
        items = self._table.query(
            KeyConditionExpression="PK = :pk AND begins_with(SK, :rev)",
            ExpressionAttributeValues={":pk": _flow_pk(namespace, flow_id), ":rev": s("REV#")},
            ProjectionExpression="SK, #del",
            ExpressionAttributeNames={"#del": "del"},
            ConsistentRead=True,
        )
        return [int(x["SK"]["S"].removeprefix("REV#")) for x in items if "del" not in x]

    def delete(self, namespace: str, flow_id: str, *, at: datetime) -> None:
        for _ in range(20):
            latest = self._table.get({"PK": _flow_pk(namespace, flow_id), "SK": s("LATEST")})
            if latest is None or "del" in latest:
                raise NotFoundError(f"flow {namespace}.{flow_id} not found")
            try:
                self._new_revision(namespace, flow_id, latest["src"]["S"], at, latest, deleted=True)
                return
            except Refused:
                continue
        raise ConflictError(f"flow {namespace}.{flow_id}: too many concurrent saves")
