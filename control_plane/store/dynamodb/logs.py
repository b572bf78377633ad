"""Log lines appended outside a step, and every log line read back in order, page by page.

Lines written with a step are part of it (``LOG#<version>#0`` items, or a document's inline
list). Lines appended later (``append_logs``) sort after those of the version they follow:
``LOG#<v>#1#<time ns><random>``; in a document they are appended inline until
``DOCUMENT_LOG_BYTES``, where the execution switches to split mode. A document's inline lines
read first, under the pseudo sort key ``LOG#``; then the log items in sort-key order.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Sequence
from typing import Any

from control_plane.engine.model import LogLine
from control_plane.errors import ConflictError, StoreError
from control_plane.store.base import Page
from control_plane.store.codec import loads, log_from_json
from control_plane.store.dynamodb.bigstep import BigSteps
from control_plane.store.dynamodb.conditions import ATTEMPTS, NO_LEASE
from control_plane.store.dynamodb.documents import DOCUMENT_LOG_BYTES, Documents
from control_plane.store.dynamodb.items import (
    DOCUMENT,
    INLINE_LOGS,
    MAX_CHAR,
    decompress,
    exec_key,
    is_document,
    n,
    s,
)
from control_plane.store.dynamodb.memory import Memory
from control_plane.store.dynamodb.pages import cursor_decode, cursor_encode
from control_plane.store.dynamodb.reads import Reads
from control_plane.store.dynamodb.records import inline_logs, log_items
from control_plane.store.dynamodb.table import Refused, Table
from control_plane.store.dynamodb_schema import TTL_ATTRIBUTE

__all__ = ["Logs"]


class Logs:
    """``append_logs`` and ``read_logs``; the only state is the last timestamp handed out."""

    def __init__(
        self, table: Table, memory: Memory, reads: Reads, documents: Documents, big: BigSteps
    ) -> None:
        self._table = table
        self._memory = memory
        self._reads = reads
        self._documents = documents
        self._big = big
        self._lock = threading.Lock()
        self._last_ns = 0

    def append(self, execution_id: str, logs: Sequence[LogLine]) -> None:
        """Lines sort after those of the version they follow: ``LOG#<v>#1#<time ns>...``."""
        if not logs:
            return
        meta = self._table.get(exec_key(execution_id), projection=f"#v, #{TTL_ATTRIBUTE}, #md")
        if meta is not None and is_document(meta) and self._append_inline(execution_id, logs):
            return
        version = int(meta["v"]["N"]) if meta and "v" in meta else 0
        ttl = int(meta[TTL_ATTRIBUTE]["N"]) if meta and TTL_ATTRIBUTE in meta else None
        with self._lock:
            self._last_ns = max(self._last_ns + 1, time.time_ns())
            stamp = self._last_ns
        prefix = f"LOG#{version:010d}#1#{stamp:020d}{secrets.token_hex(3)}"
        items = log_items(execution_id, prefix, logs, ttl)
        if len(items) == 1:
            self._table.call("PutItem", TableName=self._table.name, Item=items[0])
        else:  # over 300 KB of lines: several items (sort order keeps them in sequence)
            self._table.batch_write([{"PutRequest": {"Item": x}} for x in items])

    def _append_inline(self, execution_id: str, logs: Sequence[LogLine]) -> bool:
        """Lines appended to a document's inline logs (one ``UpdateItem``), or its switch to split
        mode when they would pass :data:`DOCUMENT_LOG_BYTES`. False: it is split now, the caller
        writes a log item."""
        chunk = inline_logs(logs)
        args = self._table.update(
            exec_key(execution_id),
            {},
            extra=["#lg = list_append(#lg, :lg)", "#lb = #lb + :lbn"],
            condition=f"#md = :doc AND #lb <= :room AND {NO_LEASE}",
            values={
                ":lg": {"L": [{"B": chunk}]},
                ":lbn": n(len(chunk)),
                ":doc": s(DOCUMENT),
                ":room": n(DOCUMENT_LOG_BYTES - len(chunk)),
            },
        )
        for _ in range(ATTEMPTS):
            try:
                self._table.call("UpdateItem", ReturnValuesOnConditionCheckFailure="ALL_OLD", **args)
                self._memory.forget_document(execution_id)  # its inline log size moved
                return True
            except Refused as refused:
                old = refused.reasons(1)[0].get("Item")
            if old is None or not is_document(old):
                return False
            if "ls" in old:
                self._big.await_lease(execution_id, old, time.monotonic())
                continue
            # Too many lines for the document: switch it (at the same version) and write them there.
            ex = self._reads.get_execution(execution_id)
            try:
                self._documents.switch(ex, ex.version, logs, [], [])
                return True
            except ConflictError:
                continue  # written meanwhile: read it again
        raise ConflictError(f"execution {execution_id}: kept changing while its logs were appended")

    def read(
        self, execution_id: str, taskrun_id: str | None, limit: int, cursor: str | None
    ) -> Page[LogLine]:
        start_sk, start_index = cursor_decode(cursor, (str, int)) if cursor else ("LOG#", 0)
        if not start_sk.startswith("LOG#"):
            raise StoreError(f"invalid page cursor {cursor!r}")
        kwargs: dict[str, Any] = {
            "TableName": self._table.name,
            "KeyConditionExpression": "PK = :pk AND SK BETWEEN :lo AND :hi",
            "ExpressionAttributeValues": {
                ":pk": s(f"EXEC#{execution_id}"),
                ":lo": s(start_sk),
                ":hi": s("LOG#" + MAX_CHAR),
            },
            "ConsistentRead": True,
            "Limit": 4,
        }
        lines: list[tuple[LogLine, str, int]] = []
        if start_sk == INLINE_LOGS:  # a document's lines come first (pseudo sort key "LOG#")
            doc = self._table.get(exec_key(execution_id), projection="#md, #lg")
            inline = [] if doc is None else doc.get("lg", {}).get("L", [])
            entries = [entry for chunk in inline for entry in loads(decompress(chunk["B"]))]
            for index, entry in enumerate(entries):
                if index >= start_index and (taskrun_id is None or entry.get("taskrun_id") == taskrun_id):
                    lines.append((log_from_json(entry), INLINE_LOGS, index))
        while len(lines) <= limit:
            response = self._table.call("Query", **kwargs)
            for item in response.get("Items", []):
                sk = item["SK"]["S"]
                try:
                    raw = loads(item["l"]["S"])
                except (ValueError, KeyError) as exc:
                    raise StoreError(
                        f"execution {execution_id}: log item {sk} is unreadable: {exc!r}"
                    ) from exc
                for index, entry in enumerate(raw):
                    if sk == start_sk and index < start_index:
                        continue
                    if taskrun_id is not None and entry.get("taskrun_id") != taskrun_id:
                        continue
                    lines.append((log_from_json(entry), sk, index))
            last = response.get("LastEvaluatedKey")
            if not last:
                break
            kwargs["ExclusiveStartKey"] = last
            kwargs["Limit"] = min(kwargs["Limit"] * 2, 64)
        more = len(lines) > limit
        page = lines[:limit]
        return Page([x[0] for x in page], cursor_encode(page[-1][1], page[-1][2] + 1) if more else None)
