"""The specs of a document's jobs: ``TRS#<hash>`` items, written once, read when a job is read.

A job's spec (what re-submits or finds it after a crash) is ~230 compressed bytes that no
step changes; in the entry it was rewritten with the document at every step of its
execution. It lives in an item of the execution's partition instead, one per write that adds
jobs (all that write's specs, content-addressed: :func:`~.records.spec_group`), written
before the document that refers to it, so every entry a reader sees has its spec stored.
The item has no TTL: an execution can run for longer than any; the sweeper's purge of the
expired execution's partition deletes it (``DynamoDBStore.purge_execution``).

Items read are kept (a few dozen, least recently used out): the key is the hash of the
content and the item is never rewritten, so a kept one cannot be stale. A warm ``events``
container reading the ten job ends of one ForEach step reads its spec item once, not ten
times (0.5 RRU and a round trip each, issue 28). What a write put is not kept: the function
that writes a spec item is seldom the one that reads it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from control_plane.store.dynamodb.items import Item, exec_key
from control_plane.store.dynamodb.memory import CACHE_SIZE, lru_put
from control_plane.store.dynamodb.records import doc_spec_ref, spec_item, specs_from_item
from control_plane.store.dynamodb.table import Table

__all__ = ["Specs"]

_KEPT_BYTES = 64 * 1024  # a bigger spec item is read each time: the kept ones stay within a few MB


class Specs:
    """Writes and reads of spec items."""

    def __init__(self, table: Table) -> None:
        self._table = table
        self._lock = threading.Lock()
        # the items as read (compressed bytes), decoded at each use: no caller shares a spec
        self._read: OrderedDict[tuple[str, str], Item] = OrderedDict()

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
            with self._lock:
                item = self._read.get((execution_id, ref))
            if item is None:
                item = self._get(execution_id, ref, consistent=False)
                if item is None:
                    item = self._get(execution_id, ref, consistent=True)
                if item is None:
                    continue
                if len(item["s"]["B"]) <= _KEPT_BYTES:
                    with self._lock:
                        lru_put(self._read, (execution_id, ref), item, CACHE_SIZE * 2)
            specs |= specs_from_item(item)
        return specs

    def _get(self, execution_id: str, ref: str, *, consistent: bool) -> Item | None:
        response = self._table.call(
            "GetItem", TableName=self._table.name, Key=exec_key(execution_id, ref), ConsistentRead=consistent
        )
        item: Item | None = response.get("Item")
        return item
