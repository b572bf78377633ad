"""Execution reads: never a torn execution, and under a busy writer a read that catches up.

Theory of operation
-------------------
``get_execution`` is one strongly consistent ``Query`` over ``META`` .. ``TR#`` (adjacent in
sort-key order) followed by a ``GetItem`` of META. Queries are only read-committed, so a
write may land between the two: if META moved by exactly one write, the task runs that write
changed (META keeps their ids in ``ch`` and the version it replaced in ``pv``; a wide write's
ids in its ``CH#<version>`` item) are fetched again and META checked again; anything else is
read again from the start. A reader therefore never returns a torn execution and, under a
busy writer, catches up instead of starving. A store instance keeps its last consistent
snapshot of an execution (:class:`~control_plane.store.dynamodb.memory.Memory`), so a warm
read is one ``GetItem`` of META plus the task runs changed since. A document (one item) is
consistent by itself. A big step's lease makes the reader wait, or roll the step forward once
the lease expired.
"""

from __future__ import annotations

import itertools
import random
import time
import zlib
from typing import Any

from msgspec.structs import replace

from control_plane.engine.model import Execution, TaskRun
from control_plane.errors import NotFoundError, StoreError
from control_plane.store.codec import execution_from_json, loads, taskrun_from_json
from control_plane.store.dynamodb.bigstep import BigSteps
from control_plane.store.dynamodb.conditions import ATTEMPTS
from control_plane.store.dynamodb.items import (
    CH_SLOTS,
    CHANGES,
    DELETED_AT,
    MAX_CHAR,
    META,
    TR,
    WRITTEN_AT,
    Item,
    decompress,
    exec_key,
    is_document,
    n,
    s,
)
from control_plane.store.dynamodb.memory import DocState, Memory
from control_plane.store.dynamodb.offload import Offload
from control_plane.store.dynamodb.table import Table
from control_plane.store.dynamodb.values import LoopValues

__all__ = ["Reads"]

_CONSISTENT_ATTEMPTS = 40
_FETCH_SHARE = 8
"""Catch up through a wide write only while its task runs are at most 1/8 of the execution's.
A ``BatchGetItem`` costs at least a read unit per item, a ``Query`` one per 4 KB read (a task
run is about 300 bytes): past that share, reading everything again is the cheaper way."""


def _read_backoff(attempt: int) -> None:
    """Full-jitter backoff before reading a busy execution again.

    A reader needs a moment with no write between its META read and its catch-up; when many
    writers hammer one execution (a wide fan-in), re-reading at once only races them again.
    Readers here are also the writers (load, plan, save), so pausing them lets the others
    finish: the execution settles and the read goes through.
    """
    time.sleep(random.uniform(0.0, min(0.1, 0.001 * 2 ** min(attempt, 7))))


class Reads:
    """Strongly consistent reads of one execution: whole, its meta alone, or a page of task runs."""

    def __init__(
        self, table: Table, memory: Memory, values: LoopValues, offload: Offload, big: BigSteps
    ) -> None:
        self._table = table
        self._memory = memory
        self._values = values
        self._offload = offload
        self._big = big

    def get_execution(self, execution_id: str) -> Execution:
        started = time.monotonic()
        key = exec_key(execution_id)
        base = self._memory.snapshot(execution_id)
        # Invariant: `base` = (version, task runs) is right for every task run except those that
        # writes after `version` changed; META's ring names them, so reading them again is enough.
        meta_seen: Item | None = None
        for attempt in range(ATTEMPTS):
            if attempt >= 2:
                _read_backoff(attempt)
            if attempt >= _CONSISTENT_ATTEMPTS and base is not None and meta_seen is not None:
                return self._settle_for_stale(execution_id, meta_seen, base)
            meta = None
            if base is not None:  # nothing cached: go to the query
                # after a refused write, META as it returned it (checked again after the catch-up)
                refused = self._memory.take_refused_meta(execution_id) if attempt == 0 else None
                meta = refused if refused is not None else self._table.get(key)
            meta_seen = meta if meta is not None else meta_seen
            if meta is None and base is not None:
                self._memory.forget_snapshot(execution_id)
                raise NotFoundError(f"execution {execution_id} not found")
            if meta is not None and "ls" in meta:
                self._big.await_lease(execution_id, meta, started)
                continue
            if meta is not None and is_document(meta):
                return self.from_doc(execution_id, meta)
            if meta is not None and base is not None and base[0] == int(meta["v"]["N"]):
                # No write since the snapshot (or since catching up): it is consistent with META.
                execution = self._build(execution_id, meta, base[1])
                self._memory.remember(execution_id, base[0], base[1])
                return execution
            if meta is not None and base is not None:
                caught = self._catch_up(execution_id, base, meta)
                if caught is None:
                    caught = self._filtered_catch_up(execution_id, base, meta)
                if caught is not None:
                    base = (int(meta["v"]["N"]), caught)
                    continue  # read META again: nothing may have been written meanwhile
            items = list(
                self._table.query(
                    KeyConditionExpression="PK = :pk AND SK BETWEEN :lo AND :hi",
                    ExpressionAttributeValues={
                        ":pk": key["PK"],
                        ":lo": s(META),
                        ":hi": s(TR + MAX_CHAR),
                    },
                    ConsistentRead=True,
                )
            )
            if not items or items[0]["SK"]["S"] != META:
                raise NotFoundError(f"execution {execution_id} not found")
            if "ls" in items[0]:
                self._big.await_lease(execution_id, items[0], started)
                continue
            if is_document(items[0]):  # one item: consistent by itself
                return self.from_doc(execution_id, items[0])
            # META is read first in sort-key order, every task run after it: a write that lands
            # during the query is at a later version, which the next META read shows.
            base = (int(items[0]["v"]["N"]), {tr.id: tr for tr in self._parse(execution_id, items[1:])})
            meta_seen = items[0]
        raise StoreError(
            f"execution {execution_id} kept changing while being read from table {self._table.name}"
        )

    def _settled_meta(self, execution_id: str) -> Item | None:
        """META once no big step holds the execution (None when absent)."""
        started = time.monotonic()
        while True:
            meta = self._table.get(exec_key(execution_id))
            if meta is None or "ls" not in meta:
                return meta
            self._big.await_lease(execution_id, meta, started)

    def get_execution_meta(self, execution_id: str) -> Execution:
        meta = self._settled_meta(execution_id)
        if meta is None:
            raise NotFoundError(f"execution {execution_id} not found")
        if is_document(meta):
            try:
                body = loads(decompress(meta["d"]["B"]))
                return execution_from_json(body["m"], int(meta["v"]["N"]), [])
            except (ValueError, KeyError, TypeError, zlib.error) as exc:
                raise self._unreadable(execution_id, exc) from exc
        return self._build(execution_id, meta, {})

    def list_taskruns(
        self, execution_id: str, *, after: str | None = None, limit: int = 100
    ) -> list[TaskRun]:
        meta = self._settled_meta(execution_id)
        if meta is None or limit <= 0:
            return []
        if is_document(meta):  # one item, small by construction: sort and slice it
            taskruns = sorted(
                self.from_doc(execution_id, meta).taskruns.values(), key=lambda tr: tr.id.encode()
            )
            start = after.encode() if after is not None else b""
            return [tr for tr in taskruns if tr.id.encode() > start][:limit]
        key = exec_key(execution_id)
        query: dict[str, Any] = {
            "KeyConditionExpression": "PK = :pk AND SK BETWEEN :lo AND :hi",
            "ExpressionAttributeValues": {":pk": key["PK"], ":lo": s(TR), ":hi": s(TR + MAX_CHAR)},
            "ConsistentRead": True,
            "Limit": limit,
        }
        if after is not None:
            query["ExclusiveStartKey"] = exec_key(execution_id, TR + after)
        items = list(itertools.islice(self._table.query(**query), limit))
        return self._parse(execution_id, items)

    def _settle_for_stale(
        self, execution_id: str, meta: Item, base: tuple[int, dict[str, TaskRun]]
    ) -> Execution:
        """A busy execution that never held still for a consistent read: a view that cannot be saved.

        Writers hammering one execution (a wide fan-in) can keep a reader from ever seeing
        META unchanged across its catch-up. Rather than fail, return what was read, labelled
        with the *oldest* version it is built from (``base``'s): every task run is at least
        that new, and any save made from this view names that version, so the store refuses
        it (META has moved on) and the writer reloads. Only a read-only caller can see the
        mix, and only while the execution is that busy.
        """
        execution = self._build(execution_id, meta, base[1])
        return replace(execution, version=base[0]) if execution.version != base[0] else execution

    def from_doc(self, execution_id: str, item: Item) -> Execution:
        """A document's execution; this instance now knows the document as read."""
        self._memory.forget_snapshot(execution_id)
        self._memory.know(execution_id, DocState.of(item))
        try:
            body = loads(decompress(item["d"]["B"]))
            taskruns = [taskrun_from_json(raw) for raw in body["t"]]
            return execution_from_json(body["m"], int(item["v"]["N"]), taskruns)
        except (ValueError, KeyError, TypeError, zlib.error) as exc:
            raise self._unreadable(execution_id, exc) from exc

    def _catch_up(
        self, execution_id: str, base: tuple[int, dict[str, TaskRun]], meta: Item
    ) -> dict[str, TaskRun] | None:
        """``base``'s task runs brought to META's version, or None when the ring does not reach back."""
        ring = meta.get("ch", {}).get("M", {})
        ids: set[str] = set()
        wide: list[int] = []  # versions whose ids are in their CH# item
        version = int(meta["v"]["N"])
        for _ in range(CH_SLOTS):
            if version == base[0]:
                break
            entry = ring.get(f"s{version % CH_SLOTS}", {}).get("S", "")
            parts = entry.split("|", 2)
            if len(parts) != 3 or parts[0] != str(version) or parts[2] == "*":
                return None
            if parts[2] == "@":
                wide.append(version)
            else:
                ids.update(x for x in parts[2].split(",") if x)
            version = int(parts[1])
        else:
            return None
        if version != base[0]:
            return None
        for listed in wide:  # written in the same transaction as that version: there, or expired
            changes = self._table.get(exec_key(execution_id, f"{CHANGES}{listed:010d}"))
            if changes is None:
                return None
            ids.update(x for x in changes["ids"]["S"].split(",") if x)
            if len(ids) * _FETCH_SHARE > len(base[1]):
                return None
        taskruns = dict(base[1])
        fetched = self._table.batch_get([exec_key(execution_id, TR + i) for i in sorted(ids)])
        for tr in self._parse(execution_id, list(fetched.values())):
            taskruns[tr.id] = tr
        for tr_id in ids:
            if TR + tr_id not in fetched:
                taskruns.pop(tr_id, None)  # deleted by that write (a restart dropping a branch)
        return taskruns

    def _filtered_catch_up(
        self, execution_id: str, base: tuple[int, dict[str, TaskRun]], meta: Item
    ) -> dict[str, TaskRun] | None:
        """``base`` brought up to date by the task runs written after it, when the ring does not reach back.

        A container whose copy is many writes old (the tick beside busy ``events`` containers, a
        writer refused by more than 8 others) would otherwise read and decode every task run: at
        100,000 that is up to ~10 s of CPU. Every task run item carries the version that wrote
        it (``wv``), so a ``Query`` filtered on it returns only the changed ones. DynamoDB still
        bills the items it scanned (the same read units as a full read); the saving is the
        transfer and the decoding. A deletion leaves no item to find: past META's ``dv`` (the
        last write that deleted task runs), read everything. Items from before ``wv`` existed
        have none and always pass the filter.
        """
        if int(meta.get(DELETED_AT, {}).get("N", "0")) > base[0]:
            return None
        key = exec_key(execution_id)
        items = self._table.query(
            KeyConditionExpression="PK = :pk AND SK BETWEEN :lo AND :hi",
            FilterExpression="attribute_not_exists(#wv) OR #wv > :base",
            ExpressionAttributeNames={"#wv": WRITTEN_AT},
            ExpressionAttributeValues={
                ":pk": key["PK"],
                ":lo": s(TR),
                ":hi": s(TR + MAX_CHAR),
                ":base": n(base[0]),
            },
            ConsistentRead=True,
        )
        taskruns = dict(base[1])
        for tr in self._parse(execution_id, list(items)):
            taskruns[tr.id] = tr
        return taskruns

    def _parse(self, execution_id: str, items: list[Item]) -> list[TaskRun]:
        try:
            taskruns = []
            for item in items:
                raw = loads(item["b"]["S"])
                if "o" in item:
                    raw["outputs"] = self._offload.fetch(item["o"]["S"])
                if "pv" in item:
                    values = self._values.get(execution_id, item["pv"]["S"])
                    raw.setdefault("progress", {})["values"] = values
                taskruns.append(taskrun_from_json(raw))
            return taskruns
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(
                f"execution {execution_id} has an unreadable task run"
                f" in DynamoDB table {self._table.name}: {exc!r}"
            ) from exc

    def _build(self, execution_id: str, meta: Item, taskruns: dict[str, TaskRun]) -> Execution:
        try:
            return execution_from_json(loads(meta["b"]["S"]), int(meta["v"]["N"]), list(taskruns.values()))
        except (ValueError, KeyError, TypeError) as exc:
            raise self._unreadable(execution_id, exc) from exc

    def _unreadable(self, execution_id: str, exc: Exception) -> StoreError:
        return StoreError(
            f"execution {execution_id} is unreadable in DynamoDB table {self._table.name}: {exc!r}"
        )
