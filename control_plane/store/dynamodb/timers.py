"""Timers: ``DUE#<key>`` items of an execution's partition, found by the sparse ``timers`` index.

They are written with the step that starts them (a retry's delay, a Sleep, a Pause's
timeout), in the execution's partition, so they go with it; the tick reads the due ones
earliest first and deletes each one it has dealt with.
"""

from __future__ import annotations

from datetime import datetime

from control_plane.store.base import TimerRecord
from control_plane.store.dynamodb.items import exec_key, s, us
from control_plane.store.dynamodb.records import timer_from_item
from control_plane.store.dynamodb.table import Table
from control_plane.store.dynamodb_schema import GSI_TIMERS

__all__ = ["Timers"]


class Timers:
    def __init__(self, table: Table) -> None:
        self._table = table

    def due(self, now: datetime, *, limit: int = 100) -> list[TimerRecord]:
        response = self._table.call(
            "Query",
            TableName=self._table.name,
            IndexName=GSI_TIMERS,
            KeyConditionExpression="#tq = :t AND #ta < :bound",
            ExpressionAttributeNames={"#tq": "tq", "#ta": "ta"},
            ExpressionAttributeValues={":t": s("T"), ":bound": s(f"{us(now) + 1:017d}")},
            Limit=limit,
        )
        return [timer_from_item(x) for x in response.get("Items", [])]

    def next(self) -> datetime | None:
        response = self._table.call(
            "Query",
            TableName=self._table.name,
            IndexName=GSI_TIMERS,
            KeyConditionExpression="#tq = :t",
            ExpressionAttributeNames={"#tq": "tq"},
            ExpressionAttributeValues={":t": s("T")},
            Limit=1,
        )
        items = response.get("Items", [])
        return timer_from_item(items[0]).at if items else None

    def delete(self, execution_id: str, key: str) -> None:
        self._table.call("DeleteItem", TableName=self._table.name, Key=exec_key(execution_id, f"DUE#{key}"))
