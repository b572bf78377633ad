"""Split-mode execution writes (ADR 0004): one step as one transaction, or a big step.

Theory of operation
-------------------
A split-mode execution is META plus one ``TR#<taskrun>`` item per task run, its log items,
timers and ``JOB#`` records. Every execution write is conditional on ``v = expected_version``
and on no big step holding the execution (``attribute_not_exists(ls)``):

* small step (the common case: one job ends, the next is submitted): META + changed task runs
  + log item + timers + job records in ONE ``TransactWriteItems`` (<= 100 items, < 4 MB); a
  write of one item is a plain conditional ``PutItem``/``UpdateItem``. A cancelled
  transaction is read reason by reason: META failed -> ``ConflictError`` (or
  ``NotFoundError``), a new SUBMITTING job whose name exists -> ``ConflictError``, an update
  of a job that does not exist is dropped (SQLite's ``UPDATE`` of no row) and the
  transaction sent again.
* big step: anything larger, through the redo journal of :mod:`~control_plane.store.dynamodb.bigstep`.

Each write also records, in a ring on META (``ch``), which task runs it changed and the
version it replaced, so a reader holding an older version catches up by fetching those alone
(:mod:`~control_plane.store.dynamodb.reads`). A write that changed more task runs than an
entry holds (a fan-out chunk: 40 lanes and their parent) lists them in a ``CH#<version>``
item of the same transaction, its entry saying ``@``: a reader catches up across it with one
``GetItem`` and a ``BatchGetItem`` of those task runs, instead of a ``Query`` of all of them
(at 1,000 lanes about 80 read units and at 100,000 about 8,000, and the CPU to parse them).
Everything a write sends is built as a :class:`~control_plane.store.dynamodb.bigstep.Step`
(and size-checked) before anything is sent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from control_plane.engine.model import Execution, LogLine, TaskRun
from control_plane.errors import ConflictError, StoreError
from control_plane.store.base import JobPhase, JobRecord, TimerRecord
from control_plane.store.codec import dumps, taskrun_to_json
from control_plane.store.dynamodb.bigstep import BigSteps, Step
from control_plane.store.dynamodb.conditions import EXISTS, IS_NEW
from control_plane.store.dynamodb.items import (
    CH_SLOTS,
    CHANGES,
    DELETED_AT,
    TR,
    WRITTEN_AT,
    Item,
    exec_key,
    item_size,
    n,
    s,
)
from control_plane.store.dynamodb.memory import Memory
from control_plane.store.dynamodb.offload import Offload
from control_plane.store.dynamodb.records import job_item, job_update, log_items, meta_attrs, timer_item
from control_plane.store.dynamodb.table import Refused, Table
from control_plane.store.dynamodb.values import LoopValues
from control_plane.store.dynamodb_schema import ITEM_LIMIT_BYTES, TRANSACTION_ITEM_LIMIT, TTL_ATTRIBUTE

__all__ = ["SplitWrites"]

_TRANSACTION_BYTES = 3_500_000  # TransactWriteItems takes 4 MB; keep a margin for overhead
_CH_MAX_CHARS = 120  # a write that changed more task runs than fit lists them in a CH# item ("@")
_CHANGES_MAX_CHARS = 300_000  # ...up to this many characters of ids; more is "*" (read everything)
_CHANGES_TTL = 86_400  # a reader needs a CH# item only while it is in META's ring: gone after a day


class SplitWrites:
    """Builds and writes split-mode steps; the redo path for big ones is :class:`BigSteps`."""

    def __init__(
        self,
        table: Table,
        big: BigSteps,
        values: LoopValues,
        offload: Offload,
        expiry: Callable[[], int | None],
        memory: Memory | None = None,
    ) -> None:
        self._table = table
        self._memory = memory
        self._big = big
        self._values = values
        self._offload = offload
        self._expiry = expiry

    def build(
        self,
        ex: Execution,
        expected: int | None,
        changed: Any,
        logs: Sequence[LogLine],
        timers: Sequence[TimerRecord],
        jobs: Sequence[JobRecord],
    ) -> Step:
        """Every item of the write, built (and size-checked) before anything is sent."""
        ttl = self._expiry() if ex.state.terminal else None
        meta = meta_attrs(ex, ttl)
        size = item_size(meta) + 20
        if size > ITEM_LIMIT_BYTES:
            raise StoreError(
                f"execution {ex.id}: its meta item is {size:,} bytes, over DynamoDB's 400 KB item limit"
                f" (inputs, labels or outputs too large) in table {self._table.name}"
            )
        step = Step(ex.id, expected is None, ex.version, -1 if expected is None else expected, meta)
        if ttl is None:
            step.meta_remove.append(TTL_ATTRIBUTE)
        ids = sorted(changed)
        if expected is None:
            meta["ch"] = {"M": {}}
        else:  # what a reader holding version `expected` must fetch again to catch up with this write
            listed = ",".join(ids)
            if any(("," in i or "|" in i) for i in ids) or len(listed) > _CHANGES_MAX_CHARS:
                listed = "*"
            elif len(listed) > _CH_MAX_CHARS:
                step.puts.append(self._changes_item(ex.id, ex.version, listed))
                listed = "@"
            step.slot = [f"s{ex.version % CH_SLOTS}", f"{ex.version}|{expected}|{listed}"]
        for tr_id in ids:
            tr = ex.taskruns.get(tr_id)
            if tr is not None:
                step.puts.append(self._taskrun_item(ex.id, tr, ttl, step))
            elif expected is not None:
                step.deletes.append(exec_key(ex.id, TR + tr_id))
        if step.deletes:  # a reader further behind than the ring cannot see a deletion in the items
            meta[DELETED_AT] = n(ex.version)
        if logs:
            step.puts += log_items(ex.id, f"LOG#{ex.version:010d}#0", logs, ttl)
        step.puts += [timer_item(t) for t in {(t.execution_id, t.key): t for t in timers}.values()]
        names: set[str] = set()
        updates: dict[str, dict[str, Any]] = {}
        for job in jobs:
            if job.phase is JobPhase.SUBMITTING:
                if job.name in names:
                    raise ConflictError(f"job {job.name} already exists")
                names.add(job.name)
                step.new_jobs.append(job_item(job, self._expiry))
            else:
                updates[job.name] = job_update(job, self._expiry)
        step.job_updates = list(updates.values())
        return step

    @staticmethod
    def _changes_item(execution_id: str, version: int, listed: str) -> Item:
        """The task runs a wide write changed, for readers to catch up with (ring entry ``@``).

        Never rewritten (one version, one write), so a reader needs no condition to trust it.
        """
        item: Item = exec_key(execution_id, f"{CHANGES}{version:010d}")
        item["ids"] = s(listed)
        item[TTL_ATTRIBUTE] = n(int(time.time()) + _CHANGES_TTL)
        return item

    def _taskrun_item(self, execution_id: str, tr: TaskRun, ttl: int | None, step: Step) -> Item:
        raw = taskrun_to_json(tr)
        item: Item = exec_key(execution_id, TR + tr.id)
        progress = raw.get("progress")
        if isinstance(progress, dict) and progress.get("values"):
            self._values.split(execution_id, item, progress, ttl, step)
        if raw.get("outputs") is not None and self._offload.bucket is not None:
            blob = dumps(raw["outputs"]).encode()
            if len(blob) > self._offload.threshold:
                item["o"] = s(self._offload.put(execution_id, tr.id, blob))
                del raw["outputs"]
        item["b"] = s(dumps(raw))
        item[WRITTEN_AT] = n(step.version)  # what a reader behind the ring filters on
        if ttl is not None:
            item[TTL_ATTRIBUTE] = n(ttl)
        size = item_size(item)
        if size > ITEM_LIMIT_BYTES:
            raise StoreError(
                f"execution {execution_id}, task run {tr.id} ({tr.task_id}): the item is {size:,} bytes,"
                f" over DynamoDB's 400 KB item limit; configure an S3 bucket for large outputs"
                f" (DynamoDBStore(bucket=...)) in table {self._table.name}"
            )
        return item

    def write(self, step: Step) -> None:
        size = sum(item_size(x) for x in step.puts) + sum(item_size(x) for x in step.new_jobs)
        if step.operations <= TRANSACTION_ITEM_LIMIT and size <= _TRANSACTION_BYTES:
            self._small_step(step)
        else:
            self._big.write(step)
        self._values.committed(step)

    def _meta_write(self, step: Step) -> dict[str, Any]:
        """META's part of a small step: ``(op, args)`` for a transaction or a single call."""
        key = exec_key(step.execution_id)
        if step.create:
            return {
                "Put": {
                    "TableName": self._table.name,
                    "Item": {**key, **step.meta},
                    "ConditionExpression": IS_NEW,
                }
            }
        condition, values, guard_names = step.meta_condition()
        args = self._table.update(
            key,
            step.meta,
            remove=step.meta_remove,
            extra=[] if step.slot is None else [f"#ch.#{step.slot[0]} = :slot"],
            condition=condition,
            values=values | ({} if step.slot is None else {":slot": s(step.slot[1])}),
            names=guard_names,
        )
        # On refusal, return the stored META: tells "not found", "newer version" and "leased" apart.
        return {"Update": {**args, "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}}

    def _small_step(self, step: Step) -> None:
        table = self._table
        updates = list(step.job_updates)
        while True:
            ops: list[dict[str, Any]] = [self._meta_write(step)]
            ops += [{"Put": {"TableName": table.name, "Item": item}} for item in step.puts]
            ops += [{"Delete": {"TableName": table.name, "Key": key}} for key in step.deletes]
            ops += [
                {"Put": {"TableName": table.name, "Item": item, "ConditionExpression": IS_NEW}}
                for item in step.new_jobs
            ]
            ops += [
                {
                    "Update": table.update(
                        u["key"],
                        u["set"],
                        remove=u["remove"],
                        extra=["#v = #v + :one"],
                        condition=EXISTS,
                        values={":one": n(1)},
                    )
                }
                for u in updates
            ]
            try:
                table.send(ops)
                return
            except Refused as refused:
                reasons = refused.reasons(len(ops))
            old = reasons[0].get("Item")
            stale = reasons[0].get("Code") == "ConditionalCheckFailed"
            if self._memory is not None and stale and old is not None:
                self._memory.refused_meta(step.execution_id, dict(old))  # the reload starts from it
            self._big.refused(step, reasons[0])
            first_job = 1 + len(step.puts) + len(step.deletes)
            for item, reason in zip(step.new_jobs, reasons[first_job:], strict=False):
                if reason.get("Code") == "ConditionalCheckFailed":
                    raise ConflictError(f"job {item['PK']['S'].removeprefix('JOB#')} already exists")
            missing = {
                u["name"]
                for u, reason in zip(updates, reasons[first_job + len(step.new_jobs) :], strict=False)
                if reason.get("Code") == "ConditionalCheckFailed"
            }
            codes = {r.get("Code") for r in reasons} - {"None", "ConditionalCheckFailed", None}
            if codes == {"TransactionConflict"}:
                raise ConflictError(
                    f"execution {step.execution_id}: a concurrent write touched the same items:"
                    " reload and retry"
                )
            if codes or not missing:
                raise StoreError(
                    f"DynamoDB table {table.name}: the write of execution {step.execution_id} was cancelled:"
                    f" {[r.get('Code') for r in reasons]}"
                )
            updates = [u for u in updates if u["name"] not in missing]  # SQLite's UPDATE of no row
