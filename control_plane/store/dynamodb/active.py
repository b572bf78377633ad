"""The ``active-executions`` index: which documents have unfinished jobs, and the visit that fills it.

A split-mode job record is in ``active-jobs`` by itself; a document's jobs are entries of its
item, so the item enters ``active-executions`` instead, and the tick reads the documents it
lists. ``visit_after`` chooses when a document enters (ADR 0005, point 5):

* None (eager): the write that adds an unfinished job sets the keys, 1 WRU to enter and 1 to
  leave.
* A duration (the watermark visit): creates and steps do not set them, and :meth:`ActiveIndex.visit`
  (the tick) registers the documents created more than ``visit_after`` ago that still have
  unfinished jobs, so a task that ends sooner costs no index write at all. It must not exceed
  the tick's ``submit_grace`` nor ``reconcile_after``: the tick needs a job only once it is
  that old. ``visit_overlap`` is how far back of its watermark a visit reads again (index
  propagation, clock skew); ``visit_limit`` bounds the executions one visit reads.

The watermark is the ``VISIT``/``STATE`` item; this module is the only one that reads it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from control_plane.engine.model import Execution
from control_plane.store.base import JobPhase, JobRecord
from control_plane.store.dynamodb.conditions import AT_VERSION, IS_NEW, NO_LEASE, jobs_unchanged
from control_plane.store.dynamodb.items import DOCUMENT, MAX_CHAR, Item, exec_key, is_document, n, s, us
from control_plane.store.dynamodb.memory import Memory
from control_plane.store.dynamodb.records import JOBS_VERSION, doc_job, doc_jobs
from control_plane.store.dynamodb.specs import Specs
from control_plane.store.dynamodb.table import Refused, Table
from control_plane.store.dynamodb_schema import GSI_ACTIVE_EXECUTIONS, GSI_EXECUTIONS

__all__ = ["ActiveIndex"]

_VISIT_KEY = {"PK": {"S": "VISIT"}, "SK": {"S": "STATE"}}  # the watermark of ``visit``
_FIRST_VISIT = timedelta(days=1)  # how far back a visit with no watermark yet looks
_VISIT_ATTEMPTS = 5  # registrations of one document refused by concurrent steps before giving up


class ActiveIndex:
    """When a document enters and leaves ``active-executions``, and the tick's visit."""

    def __init__(
        self,
        table: Table,
        memory: Memory,
        specs: Specs,
        *,
        clock: Callable[[], float],
        visit_after: timedelta | None,
        visit_overlap: timedelta,
        visit_limit: int,
    ) -> None:
        self._table = table
        self._memory = memory
        self._specs = specs
        self._clock = clock
        self.visit_after = visit_after
        self.visit_overlap = visit_overlap
        self.visit_limit = visit_limit

    @property
    def visiting(self) -> bool:
        """Whether documents enter through the visit (else: eagerly, with their first active job)."""
        return self.visit_after is not None

    @staticmethod
    def keys(execution_id: str) -> Item:
        return {"aq": s("A"), "ar": s(execution_id)}

    def late(self, ex: Execution, jobs: Sequence[JobRecord]) -> bool:
        """Whether this write must set the active keys itself instead of leaving it to :meth:`visit`.

        Always in eager mode. With the visit, when it adds a job once the visit may already
        have passed the execution: ``visit_after`` (less the overlap, for skew) after its
        creation, by the job's own timestamp (the service's clock, the one the tick's
        ``now`` and ``created`` come from). A retry or the next task of a long flow is such a
        job; without its keys it would never be recovered nor reconciled.
        """
        if self.visit_after is None:
            return True
        threshold = us(ex.created) + (self.visit_after - self.visit_overlap) // timedelta(microseconds=1)
        for job in jobs:
            if job.phase is JobPhase.SUBMITTING:
                at = job.updated or datetime.fromtimestamp(self._clock(), UTC)
                if us(at) >= threshold:
                    return True
        return False

    def document_jobs(self, runner: str | None) -> list[JobRecord]:
        """The unfinished jobs of the documents in the index (eventually consistent, about
        0.5 RRU each); a document whose jobs all ended meanwhile leaves the index here."""
        keys = [
            {"PK": x["PK"], "SK": x["SK"]}
            for x in self._table.query(
                IndexName=GSI_ACTIVE_EXECUTIONS,
                KeyConditionExpression="#aq = :a",
                ExpressionAttributeNames={"#aq": "aq"},
                ExpressionAttributeValues={":a": s("A")},
            )
        ]
        jobs: list[JobRecord] = []
        found = self._table.batch_get(keys, consistent=False, projection="PK, #v, #md, #j, #jz, #jv")
        for pk, item in sorted(found.items()):
            if not is_document(item):
                continue
            execution_id = pk.removeprefix("EXEC#")
            entries = doc_jobs(item)
            open_entries = {
                name: entry for name, entry in entries.items() if entry["M"]["p"]["S"] != JobPhase.DONE.value
            }
            mine = []
            if open_entries:
                specs = self._specs.of(execution_id, open_entries.values())
                mine = [doc_job(name, execution_id, e, specs) for name, e in sorted(open_entries.items())]
            if not mine:
                self._leave(execution_id, item)
            jobs += [j for j in mine if runner is None or j.runner == runner]
        return jobs

    def _leave(self, execution_id: str, item: Item) -> None:
        """Remove the active keys of a document whose jobs all ended through ``update_job``
        (which does not know the other jobs), if nothing was written since it was read."""
        values: Item = {":expected": item["v"], ":doc": s(DOCUMENT)}
        names: dict[str, str] = {}
        condition = f"{AT_VERSION} AND #md = :doc" + jobs_unchanged(
            _jobs_version(item), doc_jobs(item), names, values
        )
        args = self._table.update(
            exec_key(execution_id),
            {},
            remove=["aq", "ar"],
            condition=condition,
            values=values,
            names=names,
        )
        with contextlib.suppress(Refused):  # written meanwhile: the next call looks again
            self._table.call("UpdateItem", **args)
        self._memory.forget_document(execution_id)

    def visit(self, now: datetime) -> None:
        """Register the documents created more than ``visit_after`` before ``now`` that still
        have unfinished jobs in ``active-executions`` (ADR 0005, point 5; no-op when eager).

        Reads the watermark (``VISIT``/``STATE``: ``w`` the created µs visited up to, ``c`` the
        listing key a bounded visit stopped at, ``v`` its version), queries the ``executions``
        index for ``(w - visit_overlap, now - visit_after]`` (or after ``c``), reads those
        items eventually consistent (about 0.5 RRU each) and sets the keys of each document
        that has an unfinished job and none yet, conditional on its version and its jobs'
        versions as read: a step or ``update_job`` landing meanwhile refuses it, and the
        returned item is looked at again. A finished execution costs no write. Split-mode
        executions need nothing: their jobs are in ``active-jobs``. At most ``visit_limit``
        executions are read per call; the watermark then keeps where it stopped. It is
        advanced with a version check: a concurrent tick that got there first did the same.
        """
        if self.visit_after is None:
            return
        table = self._table
        upto = us(now - self.visit_after)
        state = table.get(_VISIT_KEY)
        version = int(state["v"]["N"]) if state else 0
        mark = int(state["w"]["N"]) if state else upto - _FIRST_VISIT // timedelta(microseconds=1)
        resume = state["c"]["S"] if state and "c" in state else None
        if resume is None and state is not None and mark >= upto:
            return
        low = resume or f"{mark - self.visit_overlap // timedelta(microseconds=1) + 1:017d}"
        entries: list[Item] = []
        for entry in table.query(
            IndexName=GSI_EXECUTIONS,
            KeyConditionExpression="#xg = :h AND #xc BETWEEN :lo AND :hi",
            ExpressionAttributeNames={"#xg": "xg", "#xc": "xc"},
            ExpressionAttributeValues={
                ":h": s("EXEC"),
                ":lo": s(low),
                ":hi": s(f"{upto:017d}#{MAX_CHAR}"),
            },
            Limit=min(self.visit_limit + 1, 1000),
        ):
            if entry["xc"]["S"] == resume:
                continue  # the last one the bounded visit before did
            entries.append(entry)
            if len(entries) > self.visit_limit:
                break
        bounded = len(entries) > self.visit_limit
        entries = entries[: self.visit_limit]
        keys = [{"PK": x["PK"], "SK": x["SK"]} for x in entries]
        items = table.batch_get(keys, consistent=False, projection="PK, #v, #md, #j, #jz, #jv, #aq, #ls")
        for pk, item in items.items():
            self._register(pk.removeprefix("EXEC#"), item)
        new: Item = {**_VISIT_KEY, "v": n(version + 1), "w": n(upto)}
        if bounded:
            new |= {"w": n(mark), "c": entries[-1]["xc"]}
        check: dict[str, Any] = {"ConditionExpression": IS_NEW}
        if state is not None:
            check = {
                "ConditionExpression": AT_VERSION,
                "ExpressionAttributeNames": {"#v": "v"},
                "ExpressionAttributeValues": {":expected": n(version)},
            }
        with contextlib.suppress(Refused):  # another tick moved it: it visited the same executions
            table.call("PutItem", TableName=table.name, Item=new, **check)

    def _register(self, execution_id: str, item: Item | None) -> None:
        """Set one document's active keys if it still has an unfinished job and none yet."""
        for _ in range(_VISIT_ATTEMPTS):
            if item is None or not is_document(item) or "ls" in item or "aq" in item:
                return  # gone, split (its jobs are in active-jobs), switching, or registered
            entries = doc_jobs(item)
            open_ = {k: e for k, e in entries.items() if e["M"]["p"]["S"] != JobPhase.DONE.value}
            if not open_:
                return  # finished within the delay: no index write at all
            # Not registered meanwhile by a concurrent tick (that would write the index again).
            values: Item = {":expected": item["v"], ":doc": s(DOCUMENT)}
            names: dict[str, str] = {}
            condition = f"{AT_VERSION} AND #md = :doc AND {NO_LEASE} AND attribute_not_exists(#aq)"
            condition += jobs_unchanged(_jobs_version(item), open_, names, values)
            args = self._table.update(
                exec_key(execution_id),
                self.keys(execution_id),
                condition=condition,
                values=values,
                names=names,
            )
            try:
                self._table.call("UpdateItem", ReturnValuesOnConditionCheckFailure="ALL_OLD", **args)
            except Refused as refused:
                item = refused.reasons(1)[0].get("Item")  # as it is now: look again
                continue
            self._memory.registered(execution_id, int(item["v"]["N"]))
            return


def _jobs_version(item: Item) -> int:
    return int(item[JOBS_VERSION]["N"]) if JOBS_VERSION in item else -1
