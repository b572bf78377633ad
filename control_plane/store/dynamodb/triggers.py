"""Trigger state: one ``TRIGGER#<key>`` / ``STATE`` item per trigger, versioned.

What a trigger keeps (a schedule's last fire date...) is written conditional on the version
read, so of two writers that read the same version one wins and the other gets ``ConflictError``.
"""

from __future__ import annotations

from control_plane.errors import ConflictError
from control_plane.store.base import TriggerRecord
from control_plane.store.codec import dumps, loads
from control_plane.store.dynamodb.conditions import AT_VERSION, IS_NEW
from control_plane.store.dynamodb.items import n, s
from control_plane.store.dynamodb.table import Refused, Table

__all__ = ["Triggers"]


class Triggers:
    def __init__(self, table: Table) -> None:
        self._table = table

    def get(self, key: str) -> TriggerRecord | None:
        item = self._table.get({"PK": s(f"TRIGGER#{key}"), "SK": s("STATE")})
        return None if item is None else TriggerRecord(key, loads(item["d"]["S"]), int(item["v"]["N"]))

    def put(self, trigger: TriggerRecord, *, expected_version: int) -> TriggerRecord:
        table = self._table
        key = {"PK": s(f"TRIGGER#{trigger.key}"), "SK": s("STATE")}
        data = s(dumps(trigger.data))
        try:
            if expected_version == 0:
                table.call(
                    "PutItem",
                    TableName=table.name,
                    Item={**key, "d": data, "v": n(1)},
                    ConditionExpression=IS_NEW,
                )
            else:
                args = table.update(
                    key,
                    {"d": data, "v": n(expected_version + 1)},
                    condition=AT_VERSION,
                    values={":expected": n(expected_version)},
                )
                table.call("UpdateItem", **args)
        except Refused:
            if expected_version == 0:
                raise ConflictError(f"trigger {trigger.key} already exists") from None
            raise ConflictError(f"trigger {trigger.key} changed since version {expected_version}") from None
        return TriggerRecord(trigger.key, trigger.data, expected_version + 1)
