"""The job outbox: a job is a ``JOB#`` record (split mode) or an entry of its execution's document.

The service writes new jobs with the step that decides them (``save_execution``); this module
reads them back by name, moves one job's phase on (``update_job``, conditional on that job's
version only, so it never conflicts with a step that changes other jobs), and lists the jobs
the tick must look at. A job name carries its execution id (``execution_of_job``), which is
how a document's entry is found from the name alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from msgspec.structs import replace

from control_plane.engine.ids import execution_of_job
from control_plane.errors import ConflictError, NotFoundError, StoreError
from control_plane.store.base import JobPhase, JobRecord
from control_plane.store.dynamodb.active import ActiveIndex
from control_plane.store.dynamodb.bigstep import BigSteps
from control_plane.store.dynamodb.conditions import AT_VERSION, ATTEMPTS, NO_LEASE
from control_plane.store.dynamodb.items import DOCUMENT, Item, exec_key, is_document, job_key, n, names, s
from control_plane.store.dynamodb.memory import Memory
from control_plane.store.dynamodb.records import (
    JOBS_BLOB,
    JOBS_VERSION,
    apply_fields,
    doc_job,
    doc_job_fields,
    doc_jobs,
    doc_jobs_attrs,
    job_attrs,
    job_from_item,
)
from control_plane.store.dynamodb.specs import Specs
from control_plane.store.dynamodb.table import Refused, Table
from control_plane.store.dynamodb_schema import GSI_ACTIVE_JOBS

__all__ = ["Jobs"]


class Jobs:
    """Reads and single-job updates of the outbox, and the listing of active jobs."""

    def __init__(
        self,
        table: Table,
        memory: Memory,
        big: BigSteps,
        active: ActiveIndex,
        specs: Specs,
        expiry: Callable[[], int | None],
    ) -> None:
        self._table = table
        self._memory = memory
        self._big = big
        self._active = active
        self._specs = specs
        self._expiry = expiry

    def get(self, name: str) -> JobRecord | None:
        """A job of a document is an entry of its execution's item, found from the name alone."""
        execution_id = execution_of_job(name)
        if execution_id is not None and not self._memory.is_split(execution_id):
            doc = self._doc_entry(execution_id, name)
            if doc is not None:
                return doc
        item = self._table.get(job_key(name))
        return None if item is None else job_from_item(item)

    def _doc_entry(self, execution_id: str, name: str) -> JobRecord | None:
        response = self._table.call(
            "GetItem",
            TableName=self._table.name,
            Key=exec_key(execution_id),
            ConsistentRead=True,
            ProjectionExpression="#md, #jz, #j.#n",
            ExpressionAttributeNames={"#md": "md", "#jz": JOBS_BLOB, "#j": "j", "#n": name},
        )
        item = response.get("Item")
        if item is None or not is_document(item):
            return None
        entry = doc_jobs(item).get(name)
        if entry is None:
            return None
        return doc_job(name, execution_id, entry, self._specs.of(execution_id, [entry]))

    def update(self, job: JobRecord, *, expected_version: int) -> JobRecord:
        written = replace(job, version=expected_version + 1)
        if execution_of_job(job.name) == job.execution_id and self._update_doc_job(job, expected_version):
            return written
        sets, remove = job_attrs(job, expected_version + 1, self._expiry)
        args = self._table.update(
            job_key(job.name),
            sets,
            remove=remove,
            condition=AT_VERSION,
            values={":expected": n(expected_version)},
        )
        try:
            self._table.call("UpdateItem", ReturnValuesOnConditionCheckFailure="ALL_OLD", **args)
        except Refused as refused:
            if "Item" not in refused.response:
                raise NotFoundError(f"job {job.name} not found") from None
            raise ConflictError(f"job {job.name} changed since version {expected_version}") from None
        return written

    def _update_doc_job(self, job: JobRecord, expected_version: int) -> bool:
        """The entry's new fields, written into the document's entries blob (conditional on
        the blob's version), or into a map's entry in a document written before the blob
        (conditional on that entry's version). False: not a document, or not its job."""
        if self._memory.is_split(job.execution_id):
            return False  # seen split, and split is for good
        # Field by field: the entry's task run, attempt, runner and spec (or its spec item's
        # key) are never changed by an update.
        sets, remove = doc_job_fields(job.name, job.runner, job, expected_version + 1)
        # The blob as this instance last knew it (the write is conditional on its version),
        # else as read now; a mismatch of the entry's version is a conflict only when read now.
        known = self._memory.document(job.execution_id)
        state = None
        if known is not None and known.jobs_version >= 0 and job.name in known.jobs:
            state = (known.jobs_version, dict(known.jobs), False)
        started = time.monotonic()
        item: Item | None = None
        for _ in range(ATTEMPTS):
            if state is None:
                if item is None:
                    item = self._table.get(exec_key(job.execution_id))
                if item is None or not is_document(item):
                    return False
                if "ls" in item:  # switching to split mode: wait, then write wherever it went
                    self._big.await_lease(job.execution_id, item, started)
                    item = None
                    continue
                if JOBS_VERSION not in item:
                    return self._update_map_entry(job, expected_version, sets, remove)
                state = (int(item[JOBS_VERSION]["N"]), doc_jobs(item), True)
            version, entries, fresh = state
            stored = entries.get(job.name)
            if stored is None:
                return False  # not in this document: the JOB# record, if any, answers
            if stored["M"]["v"]["N"] != str(expected_version):
                if fresh:
                    raise ConflictError(f"job {job.name} changed since version {expected_version}")
                state = item = None
                continue
            entries[job.name] = apply_fields(stored, sets, remove)
            args = self._table.update(
                exec_key(job.execution_id),
                doc_jobs_attrs(entries, version + 1),
                condition=f"#md = :doc AND #jv = :read AND {NO_LEASE}",
                values={":doc": s(DOCUMENT), ":read": n(version)},
            )
            try:
                self._table.call("UpdateItem", ReturnValuesOnConditionCheckFailure="ALL_OLD", **args)
            except Refused as refused:
                item = refused.reasons(1)[0].get("Item")  # as it is now: look again
                if item is None:
                    return False
                state = None
                continue
            self._memory.job_written(
                job.execution_id, job.name, lambda entry: apply_fields(entry, sets, remove), version + 1
            )
            return True
        raise StoreError(f"job {job.name}: its execution kept changing in table {self._table.name}")

    def _update_map_entry(self, job: JobRecord, expected_version: int, sets: Item, remove: list[str]) -> bool:
        """``SET j.<name>`` in a document that keeps its entries in a map, conditional on that
        entry's version only. Converted to the blob meanwhile: written there."""
        names = {"#n": job.name} | {f"#f{i}": attr for i, attr in enumerate([*sets, *remove])}
        values: Item = {":doc": s(DOCUMENT), ":expected": n(expected_version)}
        extra = []
        for i, value in enumerate(sets.values()):
            extra.append(f"#j.#n.#f{i} = :f{i}")
            values[f":f{i}"] = value
        removed = ", ".join(f"#j.#n.#f{len(sets) + i}" for i in range(len(remove)))
        args = self._table.update(
            exec_key(job.execution_id),
            {},
            extra=extra,
            condition=f"#md = :doc AND #j.#n.#v = :expected AND {NO_LEASE}",
            values=values,
            names=names,
        )
        if removed:
            args["UpdateExpression"] += " REMOVE " + removed
        started = time.monotonic()
        for _ in range(ATTEMPTS):
            try:
                self._table.call("UpdateItem", ReturnValuesOnConditionCheckFailure="ALL_OLD", **args)
            except Refused as refused:
                old = refused.reasons(1)[0].get("Item")
                if old is None or not is_document(old):
                    return False
                if "ls" in old:  # switching to split mode: wait, then write wherever it went
                    self._big.await_lease(job.execution_id, old, started)
                    continue
                if JOBS_VERSION in old:  # a save converted its entries to the blob meanwhile
                    return self._update_doc_job(job, expected_version)
                stored = old.get("j", {}).get("M", {}).get(job.name)
                if stored is None:
                    return False  # not in this document: the JOB# record, if any, answers
                raise ConflictError(f"job {job.name} changed since version {expected_version}") from None
            self._memory.job_written(
                job.execution_id, job.name, lambda entry: apply_fields(entry, sets, remove)
            )
            return True
        raise StoreError(f"job {job.name}: its execution stayed leased in table {self._table.name}")

    def active(self, *, runner: str | None = None, limit: int = 1000) -> list[JobRecord]:
        """Jobs not DONE, SUBMITTING first: split-mode records from ``active-jobs``, documents' from
        ``active-executions`` (every active document is read, eventually consistent, about 0.5 RRU
        each; one whose jobs all ended meanwhile leaves the index here)."""
        if limit <= 0:
            return []
        documents = self._active.document_jobs(runner)
        prefixes = [None] if runner is None else [f"0#{runner}#", f"1#{runner}#"]
        found: list[Item] = []
        for prefix in prefixes:
            condition = "#jq = :a" + ("" if prefix is None else " AND begins_with(#jr, :p)")
            values = {":a": s("ACTIVE")} | ({} if prefix is None else {":p": s(prefix)})
            kwargs = {
                "TableName": self._table.name,
                "IndexName": GSI_ACTIVE_JOBS,
                "KeyConditionExpression": condition,
                "ExpressionAttributeNames": names(condition),
                "ExpressionAttributeValues": values,
                "Limit": limit - len(found),
            }
            found += self._table.collect(kwargs, limit - len(found))
            if len(found) >= limit:
                break
        split = [job_from_item(x) for x in found]
        first = [j for j in split if j.phase is JobPhase.SUBMITTING]
        first += [j for j in documents if j.phase is JobPhase.SUBMITTING]
        rest = [j for j in split if j.phase is not JobPhase.SUBMITTING]
        rest += [j for j in documents if j.phase is not JobPhase.SUBMITTING]
        return (first + rest)[:limit]
