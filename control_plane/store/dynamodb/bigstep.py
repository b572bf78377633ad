"""Big steps: execution writes too big for one transaction, made atomic by a redo journal and a lease.

Theory of operation
-------------------
A big step is a 1,000-lane fan-out, a wide kill or restart, a 5,000-task-run create: more
than ``TransactWriteItems`` takes (100 items, 4 MB). It is written in stages:
(1) the change set (a :class:`Step`) is written as ``JOURNAL#<token>#<n>`` chunks; (2) a lease
``ls`` is taken on META with the version condition (for a create: a META placeholder is put
with ``attribute_not_exists``, invisible to listings); (3) new jobs are put, each conditional
on the name being free or already ours (``lt = token``), a taken name rolls the step back;
(4) items are written with ``BatchWriteItem`` (idempotent overwrites and deletes); (5) job
updates, idempotent through ``lt``; (6) META is committed conditional on holding the lease,
which removes it; (7) the journal is deleted (it also carries a one-day TTL). Whoever meets
an *expired* lease (reader or writer) runs (3)-(7) again from the journal before anything
else, so a crash at any point leaves either the old execution or the new one, never a mix.
A live lease makes writers fail with ``ConflictError`` (they reload) and readers wait.
Before (1), a step that is not a create reads META's version (1 RRU): a step planned on a copy
that is already stale is refused there, not after its journal was written and deleted again.

The lease is also what every other module waits on (:meth:`BigSteps.await_lease`) and what a
refused META condition may be about (:meth:`BigSteps.refused`), so both live here.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

from msgspec import Struct, field
from msgspec.structs import asdict

from control_plane.errors import ConflictError, NotFoundError, StoreError
from control_plane.store.codec import dumps, loads
from control_plane.store.dynamodb.conditions import (
    AT_VERSION,
    EXISTS,
    FREE_OR_OURS,
    HOLDS_LEASE,
    IS_NEW,
    NO_LEASE,
    NOT_APPLIED,
)
from control_plane.store.dynamodb.items import Item, exec_key, job_key, n, names, s
from control_plane.store.dynamodb.table import Refused, Table
from control_plane.store.dynamodb_schema import TTL_ATTRIBUTE

__all__ = ["BigSteps", "Step"]

_JOURNAL_CHARS = 80_000  # one redo chunk: at most 320 KB of UTF-8
_JOURNAL_TTL = 86_400  # a leftover redo chunk disappears after a day


class Step(Struct):
    """One execution write, in wire format: what a transaction or the redo journal carries."""

    execution_id: str
    create: bool
    version: int
    expected: int
    meta: Item  # attributes SET on META (not its key)
    meta_remove: list[str] = field(default_factory=list)
    puts: list[Item] = field(default_factory=list)
    deletes: list[Item] = field(default_factory=list)
    new_jobs: list[Item] = field(default_factory=list)
    job_updates: list[dict[str, Any]] = field(default_factory=list)  # {"key", "set", "remove"}
    slot: list[str] | None = None  # [ring slot name, "<version>|<previous>|<ids or *>"]
    # Extra META condition of a switch to split mode: the document's job versions and inline log
    # size it copied, so an ``update_job`` or ``append_logs`` landing meanwhile is not lost.
    guard: dict[str, Any] | None = None  # {"expr": "...", "names": {...}, "values": {...}}
    values_written: list[str] = field(default_factory=list)  # digests of ``TRV#`` items in ``puts``

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Step:
        return cls(**raw)

    @property
    def operations(self) -> int:
        return 1 + len(self.puts) + len(self.deletes) + len(self.new_jobs) + len(self.job_updates)

    def meta_condition(self) -> tuple[str, dict[str, Any], dict[str, str]]:
        """META's condition for a step that is not a create: (expression, values, names)."""
        guard = self.guard or {"expr": "", "names": {}, "values": {}}
        return (
            f"{AT_VERSION} AND {NO_LEASE}{guard['expr']}",
            {":expected": n(self.expected), **guard["values"]},
            guard["names"],
        )


class BigSteps:
    """The redo path of one table: journal, lease, roll forward or back, recovery of expired leases.

    ``fault`` is a test seam called with the name of each stage (``journal``, ``lease``,
    ``jobs``, ``apply``, ``commit``); it may raise to simulate a crash there. ``clock``
    (epoch seconds) decides when a lease has expired.
    """

    def __init__(
        self,
        table: Table,
        *,
        lease_seconds: float,
        clock: Callable[[], float],
        fault: Callable[[str], None] | None,
    ) -> None:
        self._table = table
        self.lease_seconds = lease_seconds
        self._clock = clock
        self._fault = fault

    def _at(self, stage: str) -> None:
        if self._fault is not None:
            self._fault(stage)

    def write(self, step: Step) -> None:
        table = self._table
        if not step.create:
            self._still_current(step)
        step.meta["ch"] = {"M": {}}  # readers cannot catch up across a big step: they read it all
        step.slot = None
        token = secrets.token_hex(12)
        journal = dumps(step.to_json())
        chunks = [journal[i : i + _JOURNAL_CHARS] for i in range(0, len(journal), _JOURNAL_CHARS)]
        expires = int(self._clock()) + _JOURNAL_TTL
        table.batch_write(
            [
                {
                    "PutRequest": {
                        "Item": {
                            **exec_key(step.execution_id, f"JOURNAL#{token}#{i:05d}"),
                            "d": s(chunk),
                            TTL_ATTRIBUTE: n(expires),
                        }
                    }
                }
                for i, chunk in enumerate(chunks)
            ]
        )
        self._at("journal")
        lease = {
            "tk": s(token),
            "ex": n(self._clock() + self.lease_seconds),
            "nv": n(step.version),
            "n": n(len(chunks)),
        }
        key = exec_key(step.execution_id)
        try:
            if step.create:  # a placeholder: no listing keys, so nobody lists a half-made execution
                table.call(
                    "PutItem",
                    TableName=table.name,
                    Item={**key, "ls": {"M": lease}},
                    ConditionExpression=IS_NEW,
                )
            else:
                condition, values, guard_names = step.meta_condition()
                args = table.update(
                    key, {"ls": {"M": lease}}, condition=condition, values=values, names=guard_names
                )
                table.call("UpdateItem", ReturnValuesOnConditionCheckFailure="ALL_OLD", **args)
        except Refused as refused:
            self._delete_journal(step.execution_id, token, len(chunks))
            self.refused(step, refused.reasons(1)[0])
            raise StoreError(f"execution {step.execution_id}: the lease was refused") from None
        self._at("lease")
        self._roll_forward(step, token, len(chunks))

    def _still_current(self, step: Step) -> None:
        """Refuse a step planned on a copy META has already moved past, before its journal.

        The lease's condition would refuse it anyway, but only after the journal was written
        and then deleted again: 2 x 2 WRU per KB of it (about 166 WRU for a 40-lane chunk of a
        1,000-lane ForEach), where this read is 1 RRU. A writer whose cached copy is old (the
        tick, while ``events`` containers advance the execution) meets this often.
        """
        old = self._table.get(exec_key(step.execution_id), projection="#v, #ls")
        if old is None:
            raise NotFoundError(f"execution {step.execution_id} not found")
        if "ls" in old or old.get("v", {}).get("N") != str(step.expected):
            self.refused(step, {"Code": "ConditionalCheckFailed", "Item": old})

    def _roll_forward(self, step: Step, token: str, chunks: int) -> None:
        """Stages (3)-(7): safe to run again, by anyone, from the journal."""
        table = self._table
        values = {":token": s(token)}
        refused: list[str] = []

        def put_jobs(group: list[Item]) -> None:
            # 100 conditional puts per transaction: ten calls for a 1,000-lane start, not 1,000.
            ops = [
                {
                    "Put": {
                        "TableName": table.name,
                        "Item": {**item, "lt": s(token)},
                        "ConditionExpression": FREE_OR_OURS,
                        "ExpressionAttributeNames": names(FREE_OR_OURS),
                        "ExpressionAttributeValues": values,
                    }
                }
                for item in group
            ]
            try:
                table.send(ops)
            except Refused as exc:
                reasons = exc.reasons(len(ops))
                taken = [
                    item["PK"]["S"].removeprefix("JOB#")
                    for item, reason in zip(group, reasons, strict=False)
                    if reason.get("Code") == "ConditionalCheckFailed"
                ]
                if not taken:
                    raise StoreError(
                        f"DynamoDB table {table.name}: job records of execution {step.execution_id}"
                        f" were refused: {[r.get('Code') for r in reasons]}"
                    ) from None
                refused.extend(taken)

        table.parallel(put_jobs, [step.new_jobs[i : i + 100] for i in range(0, len(step.new_jobs), 100)])
        if refused:
            self._roll_back(step, token, chunks)
            raise ConflictError(f"job {sorted(refused)[0]} already exists")
        self._at("jobs")
        table.batch_write(
            [{"PutRequest": {"Item": item}} for item in step.puts]
            + [{"DeleteRequest": {"Key": key}} for key in step.deletes]
        )
        self._at("apply")

        def update_job(update: dict[str, Any]) -> None:
            args = table.update(
                update["key"],
                {**update["set"], "lt": s(token)},
                remove=update["remove"],
                extra=["#v = #v + :one"],
                condition=f"{EXISTS} AND {NOT_APPLIED}",
                values={**values, ":one": n(1)},
            )
            with contextlib.suppress(Refused):  # no such job, or this step already updated it
                table.call("UpdateItem", **args)

        table.parallel(update_job, step.job_updates)
        args = table.update(
            exec_key(step.execution_id),
            step.meta,
            remove=[*step.meta_remove, "ls"],
            condition=HOLDS_LEASE,
            values=values,
        )
        try:
            table.call("UpdateItem", **args)
        except Refused:
            now = table.get(exec_key(step.execution_id), projection="#v, #ls")
            if now is None or "ls" in now or int(now.get("v", {}).get("N", "-1")) != step.version:
                raise StoreError(
                    f"execution {step.execution_id}: lost the lease of a big step and nobody completed it"
                ) from None
            # someone found our lease expired and rolled this very step forward: done
        self._at("commit")
        self._delete_journal(step.execution_id, token, chunks)

    def _roll_back(self, step: Step, token: str, chunks: int) -> None:
        """Undo a big step refused at stage (3): only its own job records were written."""
        table = self._table
        values = {":token": s(token)}

        def delete_job(item: Item) -> None:
            with contextlib.suppress(Refused):  # not ours: the record that took the name stays
                table.call(
                    "DeleteItem",
                    TableName=table.name,
                    Key=job_key(item["PK"]["S"].removeprefix("JOB#")),
                    ConditionExpression="#lt = :token",
                    ExpressionAttributeNames={"#lt": "lt"},
                    ExpressionAttributeValues=values,
                )

        table.parallel(delete_job, step.new_jobs)
        key = exec_key(step.execution_id)
        try:
            if step.create:
                table.call(
                    "DeleteItem",
                    TableName=table.name,
                    Key=key,
                    ConditionExpression=HOLDS_LEASE,
                    ExpressionAttributeNames=names(HOLDS_LEASE),
                    ExpressionAttributeValues=values,
                )
            else:
                table.call(
                    "UpdateItem",
                    **table.update(key, {}, remove=["ls"], condition=HOLDS_LEASE, values=values),
                )
        except Refused:
            pass  # someone else already rolled it back
        self._delete_journal(step.execution_id, token, chunks)

    def _delete_journal(self, execution_id: str, token: str, chunks: int) -> None:
        self._table.batch_write(
            [
                {"DeleteRequest": {"Key": exec_key(execution_id, f"JOURNAL#{token}#{i:05d}")}}
                for i in range(chunks)
            ]
        )

    def recover(self, execution_id: str, lease: Mapping[str, Any]) -> None:
        """Finish (or roll back) the big step whose lease expired, from its journal."""
        token = lease["tk"]["S"]
        chunks = int(lease["n"]["N"])
        found = list(
            self._table.query(
                KeyConditionExpression="PK = :pk AND begins_with(SK, :j)",
                ExpressionAttributeValues={
                    ":pk": s(f"EXEC#{execution_id}"),
                    ":j": s(f"JOURNAL#{token}#"),
                },
                ConsistentRead=True,
            )
        )
        if len(found) != chunks:
            raise StoreError(
                f"execution {execution_id}: the journal of big step {token} has {len(found)} of {chunks}"
                f" chunks in table {self._table.name}; it cannot be rolled forward"
            )
        step = Step.from_json(loads("".join(x["d"]["S"] for x in found)))
        with contextlib.suppress(ConflictError):  # a job name was taken: it was rolled back instead
            self._roll_forward(step, token, chunks)

    def await_lease(self, execution_id: str, meta: Item, started: float) -> None:
        """A big step holds the execution: roll it forward if its lease expired, else wait a little."""
        lease = meta["ls"]["M"]
        if float(lease["ex"]["N"]) <= self._clock():
            self.recover(execution_id, lease)
            return
        if time.monotonic() - started > self.lease_seconds + 10:
            raise StoreError(f"execution {execution_id}: a big step held it for over {self.lease_seconds}s")
        time.sleep(0.05)  # the holder is working: poll META again until it commits or expires

    def refused(self, step: Step, reason: Mapping[str, Any]) -> None:
        """Raise what a refused META condition means; return if META was not the cause."""
        if reason.get("Code") != "ConditionalCheckFailed":
            return
        if step.create:
            raise ConflictError(f"execution {step.execution_id} already exists")
        old = reason.get("Item")
        if old is None:
            old = self._table.get(exec_key(step.execution_id))  # a transaction without ALL_OLD
        if old is None:
            raise NotFoundError(f"execution {step.execution_id} not found")
        if "ls" in old:
            lease = old["ls"]["M"]
            if float(lease["ex"]["N"]) <= self._clock():
                self.recover(step.execution_id, lease)
            raise ConflictError(
                f"execution {step.execution_id} is being written by a big step: reload and retry"
            )
        version = old.get("v", {}).get("N", "?")
        raise ConflictError(
            f"execution {step.execution_id} is at version {version}, not {step.expected}: reload and retry"
        )
