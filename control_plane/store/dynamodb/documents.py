"""Document mode (ADR 0005): a small execution is ONE item, and a step one conditional write.

Theory of operation
-------------------
A new small execution is ``META`` with ``md = "d"``: the execution and its task runs as one
zlib body, its jobs as a map of entries (each with its own version, so ``update_job`` and
``save_execution`` never lose each other's updates), its log lines inline. A step is one
conditional ``UpdateItem`` (1-2 WRU instead of a transaction); job names carry the execution
id, so ``get_job`` finds the item from the name. A write that would pass a threshold
(``DOCUMENT_MAX_*``) converts the execution to split mode
(:mod:`~control_plane.store.dynamodb.steps`), once and for good: :meth:`Documents.switch`.
``docs/dynamodb.md`` has both item shapes.

Every write says what became of it as a :class:`WriteMode`, decided here and nowhere else.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import immutables
from msgspec.structs import replace

from control_plane.engine.ids import execution_of_job
from control_plane.engine.model import Execution, LogLine
from control_plane.errors import ConflictError, NotFoundError, StoreError
from control_plane.store.base import JobPhase, JobRecord, TimerRecord
from control_plane.store.codec import (
    dumps,
    execution_meta,
    loads,
    log_from_json,
    taskrun_from_json,
    taskrun_to_json,
)
from control_plane.store.dynamodb.active import ActiveIndex
from control_plane.store.dynamodb.conditions import AT_VERSION, ATTEMPTS, IS_NEW, NO_LEASE, jobs_unchanged
from control_plane.store.dynamodb.items import (
    DOCUMENT,
    Item,
    compress,
    decompress,
    exec_key,
    is_document,
    item_size,
    n,
    s,
    us,
)
from control_plane.store.dynamodb.memory import DocState, Memory
from control_plane.store.dynamodb.records import (
    JOBS_BLOB,
    JOBS_VERSION,
    doc_job,
    doc_job_entry,
    doc_job_update,
    doc_jobs,
    doc_jobs_attrs,
    inline_logs,
    job_item,
    log_items,
    meta_attrs,
    spec_group,
    timer_item,
    unique_timers,
)
from control_plane.store.dynamodb.specs import Specs
from control_plane.store.dynamodb.steps import SplitWrites
from control_plane.store.dynamodb.table import Refused, Table
from control_plane.store.dynamodb_schema import TTL_ATTRIBUTE

__all__ = [
    "DOCUMENT_LOG_BYTES",
    "DOCUMENT_MAX_BYTES",
    "DOCUMENT_MAX_TASKRUNS",
    "DOCUMENT_MODE",
    "DOCUMENT_SPEC_BYTES",
    "Documents",
    "WriteMode",
]

DOCUMENT_MODE = True
"""New small executions are one item (ADR 0005). False: every execution is split, as in ADR 0004."""
DOCUMENT_MAX_TASKRUNS = 32
"""A document holds at most this many task runs; the write that adds one more switches to split mode."""
DOCUMENT_MAX_BYTES = 6 * 1024
"""...and its item stays at most this big (compressed body, jobs, inline logs, keys). A document
step costs 1 WRU per started KB of the larger of the old and the new item; a split-mode step is
a transaction of at least three items (META, the task run, the job), 2 WRU per item per KB:
6 WRU at least, 8 for a loop's child (its parent's progress too). Up to 6 KB a document step
is never dearer, and its create is one item instead of a transaction of every task run and
job. Not for a step that also writes a timer (a retry delay, a Sleep, a Pause, a task's
timeout): that one is a transaction, 2 WRU per KB of the document, so it costs up to twice
what it did at the old threshold. (It was 3,000 bytes, tuned when DynamoDB Local's under-count
of transactions was taken for the bill: benchmarks/cost.py, docs/cost.md.)"""
DOCUMENT_SPEC_BYTES = 300_000
"""The compressed specs of the jobs one write adds (one ``TRS#`` item, :mod:`.specs`); more
switches the execution to split mode, where each job's record holds its own."""
DOCUMENT_LOG_BYTES = 1_500
"""Compressed log lines kept inline in a document; more switches the execution to split mode."""
_DOC_ATTRS = (
    "md",
    "d",
    "j",
    JOBS_BLOB,
    JOBS_VERSION,
    "lg",
    "lb",
    "aq",
    "ar",
)  # removed from META by the switch to split mode


class WriteMode(enum.Enum):
    """What became of an execution write offered to the document path."""

    DOCUMENT = enum.auto()
    """Written, as one item: the execution is (and stays) a document."""
    SPLIT = enum.auto()
    """Not written: the execution is stored split (or a big step holds it, which the split path
    knows how to wait for), or it is a create that does not fit a document."""
    SWITCH = enum.auto()
    """Not written: this write would outgrow the document; :meth:`Documents.switch` converts it."""


class Documents:
    """Writes of document-mode executions, and their one-way switch to split mode."""

    def __init__(
        self,
        table: Table,
        memory: Memory,
        split: SplitWrites,
        active: ActiveIndex,
        specs: Specs,
        *,
        offload_bytes: int,
        expiry: Callable[[], int | None],
    ) -> None:
        self._table = table
        self._memory = memory
        self._split = split
        self._active = active
        self._specs = specs
        self._offload_bytes = offload_bytes
        self._expiry = expiry

    def write(
        self,
        ex: Execution,
        expected: int | None,
        logs: Sequence[LogLine],
        timers: Sequence[TimerRecord],
        jobs: Sequence[JobRecord],
    ) -> WriteMode:
        """Write ``ex`` as one document item if it is (and stays) one (``expected`` None: a create)."""
        key = exec_key(ex.id)
        new_jobs = [job for job in jobs if job.phase is JobPhase.SUBMITTING]
        # A write adding several jobs puts their specs in one item, which no later write of the
        # document carries (:mod:`.specs`): each of the next steps would carry every spec still
        # open. One job's spec stays inline: it leaves with the job's end, often the next step,
        # and an item of its own would cost a write unit more (a single-task execution's create).
        spec_key, spec_body = spec_group(new_jobs) if len(new_jobs) > 1 else (None, b"")
        specs_written = False
        for _ in range(ATTEMPTS):
            if expected is None:
                doc: DocState | None = DocState(-1, {}, 0, False, {}) if DOCUMENT_MODE else None
            else:
                doc = self._state(ex.id, expected)
            if doc is None:
                return WriteMode.SPLIT
            entries = dict(doc.jobs)
            changed: dict[str, Item] = {}
            for job in jobs:
                if job.phase is JobPhase.SUBMITTING:
                    if job.name in entries:
                        raise ConflictError(f"job {job.name} already exists")
                    entries[job.name] = changed[job.name] = doc_job_entry(job, 1, spec_key)
                elif job.name in entries:  # else SQLite's UPDATE of no row: dropped
                    entries[job.name] = changed[job.name] = doc_job_update(job.name, entries[job.name], job)
            # Only the changed task runs are taken from ``ex``: the others stay as stored.
            raws = dict(doc.taskruns)
            for tr_id in ex.taskruns.keys() if expected is None else ex.changed:
                tr = ex.taskruns.get(tr_id)
                if tr is None:
                    raws.pop(tr_id, None)
                else:
                    raws[tr_id] = taskrun_to_json(tr)
            log_chunk = inline_logs(logs) if logs else None
            log_bytes = doc.log_bytes + (len(log_chunk) if log_chunk else 0)
            ttl = self._expiry() if ex.state.terminal else None
            attrs = self._attrs(ex, raws, ttl)
            active = any(e["M"]["p"]["S"] != JobPhase.DONE.value for e in entries.values())
            # The entries are written (as one blob, at the next blob version) only when they
            # changed: a write that leaves them alone does not refuse a concurrent update_job.
            jobs_version = doc.jobs_version + 1 if doc.jobs_version >= 0 else 0
            jobs_attrs = doc_jobs_attrs(entries, jobs_version) if changed or expected is None else None
            fits = (
                len(raws) <= DOCUMENT_MAX_TASKRUNS
                and len(spec_body) <= DOCUMENT_SPEC_BYTES
                and log_bytes <= DOCUMENT_LOG_BYTES
                and all(execution_of_job(name) == ex.id for name in entries)
                and all(
                    raw.get("outputs") is None or len(dumps(raw["outputs"]).encode()) <= self._offload_bytes
                    for raw in raws.values()
                )
            )
            if fits:
                stored_jobs = jobs_attrs if jobs_attrs is not None else {"j": {"M": entries}}
                size = (
                    item_size({**key, **attrs, **stored_jobs, "xg": s("EXEC"), "xc": s("x" * 40)})
                    + log_bytes
                    + 60
                )
                fits = size <= DOCUMENT_MAX_BYTES
            if not fits:
                return WriteMode.SPLIT if expected is None else WriteMode.SWITCH
            if spec_key is not None and not specs_written:
                self._specs.put(ex.id, spec_key, spec_body)  # before any entry refers to it
                specs_written = True
            try:
                late = self._active.late(ex, jobs)
                if expected is None:
                    assert jobs_attrs is not None
                    self._create(ex, attrs | jobs_attrs, log_chunk, timers, active and late)
                else:
                    self._update(
                        ex, expected, doc, attrs, jobs_attrs, changed, log_chunk, timers, active, ttl, late
                    )
            except Refused as refused:
                reason = refused.reasons(1)[0]
                if reason.get("Code") != "ConditionalCheckFailed":
                    codes = [r.get("Code") for r in refused.reasons(1)]
                    if "TransactionConflict" in codes:
                        raise ConflictError(
                            f"execution {ex.id}: a concurrent write touched the same items: reload and retry"
                        ) from None
                    raise StoreError(
                        f"DynamoDB table {self._table.name}: the write of execution {ex.id}"
                        f" was cancelled: {codes}"
                    ) from None
                old = reason.get("Item")
                if expected is None:
                    raise ConflictError(f"execution {ex.id} already exists") from None
                self._memory.forget_document(ex.id)
                if old is None:
                    raise NotFoundError(f"execution {ex.id} not found") from None
                if not is_document(old) or "ls" in old:
                    return WriteMode.SPLIT
                if int(old["v"]["N"]) != expected:
                    raise ConflictError(
                        f"execution {ex.id} is at version {old['v']['N']}, not {expected}: reload and retry"
                    ) from None
                continue  # a job entry or the inline logs moved (update_job, append_logs): again
            self._memory.forget_snapshot(ex.id)
            written = jobs_version if jobs_attrs is not None else doc.jobs_version
            self._memory.know(ex.id, DocState(ex.version, entries, log_bytes, active, raws, written))
            return WriteMode.DOCUMENT
        raise ConflictError(f"execution {ex.id}: its jobs kept changing during the write: reload and retry")

    def _state(self, execution_id: str, version: int) -> DocState | None:
        """What a document write must know besides the execution: its jobs and inline log size.

        From this instance's last read or write when that was at ``version`` (the common case:
        the service read the execution it now saves), else one strongly consistent read.
        None: the execution is not (or no longer) a document, or a big step holds it.
        """
        known = self._memory.document(execution_id)
        if known is not None and known.version == version:
            return known
        if self._memory.is_split(execution_id):
            return None  # seen split, and split is for good
        item = self._table.get(exec_key(execution_id))  # a read unit covers 4 KB: the body is free
        if item is None:
            raise NotFoundError(f"execution {execution_id} not found")
        if not is_document(item) or "ls" in item:
            return None
        if int(item["v"]["N"]) != version:
            raise ConflictError(
                f"execution {execution_id} is at version {item['v']['N']}, not {version}: reload and retry"
            )
        doc = DocState.of(item)
        self._memory.know(execution_id, doc)
        return doc

    def _attrs(self, ex: Execution, raws: Mapping[str, Any], ttl: int | None) -> Item:
        """The attributes every document write sets: version, compressed body, state and summary."""
        body = {"m": execution_meta(ex), "t": list(raws.values())}
        attrs: Item = {"v": n(ex.version), "d": {"B": compress(dumps(body))}}
        summary = meta_attrs(ex, ttl)
        attrs |= {name: summary[name] for name in ("st", "sm")}
        if ttl is not None:
            attrs[TTL_ATTRIBUTE] = n(ttl)
        return attrs

    def _create(
        self,
        ex: Execution,
        attrs: Item,
        log_chunk: bytes | None,
        timers: Sequence[TimerRecord],
        active: bool,
    ) -> None:
        """One ``PutItem`` (a transaction only when the execution starts with timers)."""
        item: Item = {
            **exec_key(ex.id),
            **attrs,
            "md": s(DOCUMENT),
            "lg": {"L": [{"B": log_chunk}] if log_chunk else []},
            "lb": n(len(log_chunk) if log_chunk else 0),
            "xg": s("EXEC"),
            "xc": s(f"{us(ex.created):017d}#{ex.id}"),
            "xn": s(ex.namespace),
            "xf": s(ex.flow_id),
        }
        if active:
            item |= self._active.keys(ex.id)
        self._send(
            {"Put": {"TableName": self._table.name, "Item": item, "ConditionExpression": IS_NEW}}, timers
        )

    def _update(
        self,
        ex: Execution,
        expected: int,
        doc: DocState,
        attrs: Item,
        jobs_attrs: Item | None,
        changed: Mapping[str, Item],
        log_chunk: bytes | None,
        timers: Sequence[TimerRecord],
        active: bool,
        ttl: int | None,
        late: bool,
    ) -> None:
        """One conditional ``UpdateItem`` on ``v``. The job entries, when some changed
        (``jobs_attrs``), are rewritten as one blob conditional on the blob version this write
        read, so a concurrent ``update_job`` refuses the write (which is then done again) and is
        never lost. A document that still keeps its entries in a map (written before the blob)
        is converted by that write, conditional on every entry's version.

        Active keys, eager mode: set when a job becomes active, removed when none is left.
        With the visit: set only by a ``late`` job (see :meth:`ActiveIndex.late`); removed
        whenever no job is left, whatever this instance knows, since a visit may have set them
        without moving ``v`` (removing absent keys writes nothing to the index)."""
        names: dict[str, str] = {}
        values: Item = {":expected": n(expected), ":doc": s(DOCUMENT)}
        extra: list[str] = []
        condition = f"{AT_VERSION} AND #md = :doc AND {NO_LEASE}"
        remove = [] if ttl is not None else [TTL_ATTRIBUTE]
        sets = dict(attrs)
        if jobs_attrs is not None:
            sets |= jobs_attrs
            condition += jobs_unchanged(doc.jobs_version, doc.jobs, names, values)
            if doc.jobs_version < 0:
                remove.append("j")
        if log_chunk:
            extra += ["#lg = list_append(#lg, :lg)", "#lb = #lb + :lbn"]
            values |= {":lg": {"L": [{"B": log_chunk}]}, ":lbn": n(len(log_chunk))}
            condition += " AND #lb <= :room"
            values[":room"] = n(DOCUMENT_LOG_BYTES - len(log_chunk))
        visiting = self._active.visiting
        if active and (late if visiting else not doc.active):
            sets |= self._active.keys(ex.id)
        elif not active and (visiting or doc.active):
            remove += ["aq", "ar"]
            # Leaving the active index: every other job must still be DONE (phases only move on).
            if jobs_attrs is None:
                condition += jobs_unchanged(doc.jobs_version, doc.jobs, names, values)
        args = self._table.update(
            exec_key(ex.id),
            sets,
            remove=remove,
            extra=extra,
            condition=condition,
            values=values,
            names=names,
        )
        self._send({"Update": {**args, "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}}, timers)

    def _send(self, op: dict[str, Any], timers: Sequence[TimerRecord]) -> None:
        """The document's write and its timers: one item alone, a transaction with timers."""
        timer_puts = [
            {"Put": {"TableName": self._table.name, "Item": timer_item(t)}} for t in unique_timers(timers)
        ]
        self._table.send([op, *timer_puts])

    def switch(
        self,
        ex: Execution,
        expected: int,
        logs: Sequence[LogLine],
        timers: Sequence[TimerRecord],
        jobs: Sequence[JobRecord],
    ) -> None:
        """Convert a document to split mode, once and for good, in the write that outgrew it.

        The whole execution becomes ADR 0004 items in one step: every task run, the inline log
        lines (as the first log item, ``LOG#0000000000#0``), every job as a ``JOB#`` record with
        its version, plus this write's own records. It is a transaction when it fits and the
        redo path otherwise, conditional on the version and on the job versions and inline log
        size it copied (``guard``), so nothing written meanwhile is lost.
        """
        item = self._table.get(exec_key(ex.id))
        if item is None:
            raise NotFoundError(f"execution {ex.id} not found")
        if not is_document(item) or "ls" in item or int(item["v"]["N"]) != expected:
            self._memory.forget_document(ex.id)
            raise ConflictError(f"execution {ex.id} changed while switching to split mode: reload and retry")
        entries = doc_jobs(item)
        specs = self._specs.of(ex.id, entries.values())
        records = {name: doc_job(name, ex.id, entry, specs) for name, entry in entries.items()}
        guard_names: dict[str, str] = {}
        guard_values: Item = {":glb": item.get("lb", n(0))}
        jobs_version = int(item[JOBS_VERSION]["N"]) if JOBS_VERSION in item else -1
        expr = " AND #lb = :glb" + jobs_unchanged(jobs_version, entries, guard_names, guard_values, tag="g")
        for job in jobs:
            if job.phase is JobPhase.SUBMITTING:
                if job.name in records:
                    raise ConflictError(f"job {job.name} already exists")
                records[job.name] = replace(job, version=1)
            elif job.name in records:
                old = records[job.name]
                records[job.name] = replace(
                    old,
                    phase=job.phase,
                    handle=job.handle if job.handle is not None else old.handle,
                    updated=job.updated,
                    version=old.version + 1,
                )
        stored = DocState.of(item).taskruns
        taskruns = {tr_id: taskrun_from_json(raw) for tr_id, raw in stored.items()}
        for tr_id in ex.changed:  # only the changed task runs come from ``ex``, as in every write
            tr = ex.taskruns.get(tr_id)
            if tr is None:
                taskruns.pop(tr_id, None)
            else:
                taskruns[tr_id] = tr
        ex = ex.evolve(taskruns=immutables.Map(sorted(taskruns.items(), key=lambda x: x[1].seq)))
        inline = [line for chunk in item.get("lg", {}).get("L", []) for line in loads(decompress(chunk["B"]))]
        step = self._split.build(ex, expected, ex.taskruns.keys(), logs, timers, [])
        step.slot = None
        step.meta["ch"] = {"M": {}}  # no reader can catch up across the switch: they read it all
        step.meta_remove += list(_DOC_ATTRS)
        step.guard = {"expr": expr, "names": guard_names, "values": guard_values}
        if inline:
            ttl = self._expiry() if ex.state.terminal else None
            step.puts += log_items(ex.id, f"LOG#{0:010d}#0", [log_from_json(x) for x in inline], ttl)
        for record in records.values():
            record_item = job_item(record, self._expiry)
            record_item["v"] = n(record.version)
            step.new_jobs.append(record_item)
        self._split.write(step)
        self._memory.forget_document(ex.id)
        self._memory.remember(ex.id, ex.version, dict(ex.taskruns))
