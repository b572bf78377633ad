"""A wide loop's values, written once per execution and value set instead of with every step.

A ForEach over N values keeps them in its progress to start its lanes; inline, each child's
completion (which rewrites the ForEach's task run) would rewrite all N, so the units per task
would grow with N. Over :data:`VALUES_INLINE_BYTES` they go to a content-addressed
``TRV#<digest>`` item of the execution's partition and the task run keeps the digest. Values
are immutable, so the cache here is never stale.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any

from control_plane.errors import StoreError
from control_plane.store.codec import dumps, loads
from control_plane.store.dynamodb.bigstep import Step
from control_plane.store.dynamodb.items import VALUES, Item, compress, decompress, exec_key, n, s
from control_plane.store.dynamodb.memory import CACHE_SIZE, lru_put
from control_plane.store.dynamodb.table import Table
from control_plane.store.dynamodb_schema import TTL_ATTRIBUTE

__all__ = ["VALUES_INLINE_BYTES", "LoopValues"]

VALUES_INLINE_BYTES = 512  # below this, a ForEach's values stay in its task run's body


class LoopValues:
    """Loop values by (execution, digest), as written or read by this store instance."""

    def __init__(self, table: Table) -> None:
        self._table = table
        self._lock = threading.Lock()
        self._values: OrderedDict[tuple[str, str], list[Any]] = OrderedDict()

    def split(
        self, execution_id: str, item: Item, progress: dict[str, Any], ttl: int | None, step: Step
    ) -> None:
        """Move a wide loop's values out of its task run's ``progress`` into a ``TRV#`` item of
        ``step``, written only when this store has not written or read that digest yet."""
        blob = dumps(progress["values"])
        if len(blob) <= VALUES_INLINE_BYTES:
            return
        digest = hashlib.blake2b(blob.encode(), digest_size=12).hexdigest()
        del progress["values"]
        item["pv"] = s(digest)
        with self._lock:
            known = (execution_id, digest) in self._values
        if known or digest in step.values_written:
            return
        side: Item = {**exec_key(execution_id, VALUES + digest), "d": {"B": compress(blob)}}
        if ttl is not None:
            side[TTL_ATTRIBUTE] = n(ttl)
        step.puts.append(side)
        step.values_written.append(digest)

    def committed(self, step: Step) -> None:
        """``step`` was written: later steps of this store need not write its values again."""
        for side in step.puts:
            if side["SK"]["S"].startswith(VALUES):
                self.know(
                    step.execution_id, side["SK"]["S"][len(VALUES) :], loads(decompress(side["d"]["B"]))
                )

    def get(self, execution_id: str, digest: str) -> list[Any]:
        with self._lock:
            known = self._values.get((execution_id, digest))
        if known is not None:
            return known
        found = self._table.get(exec_key(execution_id, VALUES + digest))
        if found is None:
            raise StoreError(
                f"execution {execution_id}: loop values {digest} are missing from table {self._table.name}"
            )
        values: list[Any] = loads(decompress(found["d"]["B"]))
        self.know(execution_id, digest, values)
        return values

    def know(self, execution_id: str, digest: str, values: list[Any]) -> None:
        with self._lock:
            lru_put(self._values, (execution_id, digest), values, CACHE_SIZE)
