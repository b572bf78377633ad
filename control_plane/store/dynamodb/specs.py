"""The specs of a document's jobs: ``TRS#<hash>`` items, written once, read when a job is read.

A job's spec (what re-submits or finds it after a crash) is ~230 compressed bytes that no
step changes; in the entry it was rewritten with the document at every step of its
execution. It lives in an item of the execution's partition instead, one per write that adds
jobs (all that write's specs, content-addressed: :func:`~.records.spec_group`), written
before the document that refers to it, so every entry a reader sees has its spec stored.
The item has no TTL: an execution can run for longer than any; the sweeper's purge of the
expired execution's partition deletes it (``DynamoDBStore.purge_execution``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from control_plane.store.dynamodb.items import Item, exec_key
from control_plane.store.dynamodb.records import doc_spec_ref, spec_item, specs_from_item
from control_plane.store.dynamodb.table import Table

__all__ = ["Specs"]


class Specs:
    """Writes and reads of spec items."""

    def __init__(self, table: Table) -> None:
        self._table = table

    def put(self, execution_id: str, key: str, body: bytes) -> None:
        """Unconditional: the key is the content's hash, so a second put writes the same item."""
        self._table.call("PutItem", TableName=self._table.name, Item=spec_item(execution_id, key, body))

    def of(self, execution_id: str, entries: Iterable[Item]) -> dict[str, Any]:
        """The specs the ``entries`` refer to, by job name (entries holding theirs inline add none).

        Read eventually consistent first (half a read unit): the item was written before any
        document referring to it, so only a read within a moment of that write can miss it,
        and it is read again strongly then."""
        specs: dict[str, Any] = {}
        for ref in sorted({ref for entry in entries if (ref := doc_spec_ref(entry)) is not None}):
            item = self._get(execution_id, ref, consistent=False)
            if item is None:
                item = self._get(execution_id, ref, consistent=True)
            if item is not None:
                specs |= specs_from_item(item)
        return specs

    def _get(self, execution_id: str, ref: str, *, consistent: bool) -> Item | None:
        response = self._table.call(
            "GetItem", TableName=self._table.name, Key=exec_key(execution_id, ref), ConsistentRead=consistent
        )
        item: Item | None = response.get("Item")
        return item
