"""Squall's records as DynamoDB items and back: execution META, jobs, timers, log lines.

Pure: each record is encoded here and decoded here, once, whichever mode writes it (a job is
a ``JOB#`` item in split mode and an entry of its execution's item in document mode). The
modules that write decide which items a step holds and on what conditions; what an item
looks like is decided here. ``docs/dynamodb.md`` shows the shapes.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import msgspec

from control_plane.engine.model import Execution, LogLine
from control_plane.engine.states import State
from control_plane.errors import StoreError
from control_plane.store.base import ExecutionSummary, JobPhase, JobRecord, TimerRecord, later_phase
from control_plane.store.codec import dumps, execution_meta, loads, log_to_json
from control_plane.store.dynamodb.items import (
    Item,
    compress,
    decompress,
    exec_key,
    from_us,
    item_size,
    job_key,
    n,
    s,
    us,
)
from control_plane.store.dynamodb_schema import ITEM_LIMIT_BYTES, TTL_ATTRIBUTE

__all__ = [
    "JOBS_BLOB",
    "JOBS_VERSION",
    "LOG_CHUNK_BYTES",
    "SPEC_PREFIX",
    "active_job_key",
    "apply_fields",
    "doc_job",
    "doc_job_entry",
    "doc_job_fields",
    "doc_job_update",
    "doc_jobs",
    "doc_jobs_attrs",
    "doc_spec_ref",
    "inline_logs",
    "job_attrs",
    "job_from_item",
    "job_item",
    "job_update",
    "log_items",
    "meta_attrs",
    "spec_group",
    "spec_item",
    "specs_from_item",
    "summary_from_item",
    "timer_from_item",
    "timer_item",
    "unique_timers",
]

LOG_CHUNK_BYTES = 300_000  # one log item, well under the 400 KB item limit

Expiry = Callable[[], int | None]  # the TTL a record written now gets when it is finished


# ---------------------------------------------------------------------- execution META


def meta_attrs(ex: Execution, ttl: int | None) -> Item:
    """META's attributes: version, meta body, and the state, summary and listing keys."""
    summary = {
        "r": ex.flow_revision,
        "c": ex.created.isoformat(),
        "e": None if ex.ended is None else ex.ended.isoformat(),
        "l": ex.labels,
        "p": (ex.parent or {}).get("id"),
    }
    attrs: Item = {
        "v": n(ex.version),
        "b": s(dumps(execution_meta(ex))),
        "st": s(ex.state.value),
        "sm": s(dumps(summary)),
        "xg": s("EXEC"),
        "xn": s(ex.namespace),
        "xc": s(f"{us(ex.created):017d}#{ex.id}"),
        "xf": s(ex.flow_id),
    }
    if ttl is not None:
        attrs[TTL_ATTRIBUTE] = n(ttl)
    return attrs


def summary_from_item(item: Item) -> ExecutionSummary:
    """A listing entry from META (document or split) as the listing projects it."""
    summary = loads(item["sm"]["S"])
    return ExecutionSummary(
        id=item["xc"]["S"].split("#", 1)[1],
        namespace=item["xn"]["S"],
        flow_id=item["xf"]["S"],
        flow_revision=summary.get("r"),
        state=State(item["st"]["S"]),
        created=datetime.fromisoformat(summary["c"]),
        ended=datetime.fromisoformat(summary["e"]) if summary.get("e") else None,
        labels=summary.get("l") or {},
        parent_id=summary.get("p"),
    )


# ---------------------------------------------------------------------- jobs: JOB# records


def active_job_key(phase: JobPhase, runner: str, name: str) -> str:
    return f"{0 if phase is JobPhase.SUBMITTING else 1}#{runner}#{name}"


_CLAIM_ATTRIBUTES = (("sc", "claim"), ("sx", "claim_until"), ("s0", "since"))
"""The submit claim's attributes (``JobRecord``): holder, expiry, first try."""


def _claim_attrs(job: JobRecord) -> tuple[Item, list[str]]:
    sets: Item = {}
    remove: list[str] = []
    for attr, field_name in _CLAIM_ATTRIBUTES:
        value = getattr(job, field_name)
        if value is None:
            remove.append(attr)
        else:
            sets[attr] = s(value if isinstance(value, str) else value.isoformat())
    return sets, remove


def _claim_fields(raw: Item) -> dict[str, Any]:
    claim = raw["sc"]["S"] if "sc" in raw else None
    until = datetime.fromisoformat(raw["sx"]["S"]) if "sx" in raw else None
    since = datetime.fromisoformat(raw["s0"]["S"]) if "s0" in raw else None
    return {"claim": claim, "claim_until": until, "since": since}


CANCEL_MARK = "kc"
"""Set on a split-mode JOB# record once it is CANCELLING, and never removed by a phase update
(``job_update``): the record reads CANCELLING until DONE even when a step that carries the
job's handle (SUBMITTED) lands after the kill's, which an update expression alone cannot
order (``later_phase``). A full, version-checked write (``job_attrs``) sets or removes it."""


def _phase_of(raw: Item) -> JobPhase:
    phase = JobPhase(raw["p"]["S"])
    return JobPhase.CANCELLING if CANCEL_MARK in raw and phase is not JobPhase.DONE else phase


def job_attrs(job: JobRecord, version: int, expiry: Expiry) -> tuple[Item, list[str]]:
    """What an insert or a full update writes, and what it removes."""
    attrs: Item = {"p": s(job.phase.value), "s": s(dumps(job.spec)), "v": n(version)}
    claim, remove = _claim_attrs(job)
    attrs.update(claim)
    if job.phase is JobPhase.CANCELLING:
        attrs[CANCEL_MARK] = n(1)
    else:
        remove.append(CANCEL_MARK)
    if job.handle is not None:
        attrs["h"] = s(dumps(job.handle))
    else:
        remove.append("h")
    if job.updated is not None:
        attrs["u"] = s(job.updated.isoformat())
    else:
        remove.append("u")
    if job.phase is JobPhase.DONE:
        remove += ["jq", "jr"]
        if (ttl := expiry()) is not None:
            attrs[TTL_ATTRIBUTE] = n(ttl)
    else:
        attrs["jq"] = s("ACTIVE")
        attrs["jr"] = s(active_job_key(job.phase, job.runner, job.name))
    return attrs, remove


def job_item(job: JobRecord, expiry: Expiry) -> Item:
    attrs, _ = job_attrs(job, 1, expiry)
    item = {
        **job_key(job.name),
        "e": s(job.execution_id),
        "t": s(job.taskrun_id),
        "a": n(job.attempt),
        "r": s(job.runner),
        **attrs,
    }
    size = item_size(item)
    if size > ITEM_LIMIT_BYTES:
        raise StoreError(f"job {job.name}: the record is {size:,} bytes, over DynamoDB's 400 KB item limit")
    return item


def job_update(job: JobRecord, expiry: Expiry) -> dict[str, Any]:
    """A later phase, as SQLite's ``UPDATE``: keep the handle when none is given, version + 1;
    CANCELLING sticks until DONE (:data:`CANCEL_MARK`)."""
    sets: Item = {"p": s(job.phase.value)}
    remove: list[str] = []
    if job.phase is JobPhase.CANCELLING:
        sets[CANCEL_MARK] = n(1)
    if job.handle is not None:
        sets["h"] = s(dumps(job.handle))
    if job.updated is not None:
        sets["u"] = s(job.updated.isoformat())
    else:
        remove.append("u")
    if job.phase is JobPhase.DONE:
        remove += ["jq", "jr"]
        if (ttl := expiry()) is not None:
            sets[TTL_ATTRIBUTE] = n(ttl)
    else:
        sets["jq"] = s("ACTIVE")
        sets["jr"] = s(active_job_key(job.phase, job.runner, job.name))
    return {"name": job.name, "key": job_key(job.name), "set": sets, "remove": remove}


def job_from_item(item: Item) -> JobRecord:
    return JobRecord(
        name=item["PK"]["S"].removeprefix("JOB#"),
        execution_id=item["e"]["S"],
        taskrun_id=item["t"]["S"],
        attempt=int(item["a"]["N"]),
        runner=item["r"]["S"],
        phase=_phase_of(item),
        spec=loads(item["s"]["S"]),
        handle=loads(item["h"]["S"]) if "h" in item else None,
        version=int(item["v"]["N"]),
        updated=datetime.fromisoformat(item["u"]["S"]) if "u" in item else None,
        **_claim_fields(item),
    )


# ---------------------------------------------------------------------- jobs: a document's entries
#
# An entry is rewritten with its document at every step, so it carries only what a step or the
# tick needs (issue 28): the spec lives in a ``TRS#<hash>`` item of the execution, written once
# with the step that added the job (``sr`` names it; entries written before hold it inline, as
# ``s``); times are numbers (µs since the epoch; text before); a handle naming the entry's own
# job and runner is stored without them (``hc``; a full one, ``h``, otherwise and before).

SPEC_PREFIX = "TRS#"
"""Sort key prefix of a document's spec items: ``TRS#<16 hex digits of the content's hash>``.

``TRS#`` sorts after every ``TR#`` key ('S' > '#'), like ``TRV#``: an execution read (the range
``META``..``TR#<max>``) never returns a spec item as a task run. (``SPEC#`` fell inside it.)"""


def spec_group(jobs: Sequence[JobRecord]) -> tuple[str, bytes]:
    """The specs of the jobs one write adds, as one item: its sort key and compressed body.

    Content-addressed, so two writers planning the same step put the same item, and a writer
    that lost the race cannot overwrite the winner's specs with different ones."""
    body = compress(dumps({job.name: job.spec for job in jobs}))
    return SPEC_PREFIX + hashlib.sha256(body).hexdigest()[:16], body


def spec_item(execution_id: str, key: str, body: bytes) -> Item:
    return {**exec_key(execution_id, key), "s": {"B": body}}


def specs_from_item(item: Item) -> dict[str, Any]:
    specs: dict[str, Any] = loads(decompress(item["s"]["B"]))
    return specs


JOBS_BLOB = "jz"
"""A document's job entries, all of them in one compressed attribute (the entries' wire maps
as msgpack, zlib): ten open entries of a Batch ForEach were ~1,950 bytes as a map keyed by job
name (every entry repeats the execution id, the claim, the spec item's key, the runner) and
are ~560 compressed, which keeps a 10-job document under 2 KB, so each of its job ends costs 2
write units, not 3 (issue 28). Documents written before hold a map, ``j``, keyed by name."""
JOBS_VERSION = "jv"
"""Moves with every write of :data:`JOBS_BLOB`: a write of the blob is conditional on it, so a
writer never loses another's change of any entry (a map entry was conditional on its own
version, which a whole-blob write cannot be)."""


def doc_jobs(item: Item) -> dict[str, Item]:
    """A document's job entries by name, as wire maps, whichever way they are stored."""
    if JOBS_BLOB in item:
        raw: dict[str, dict[str, Any]] = msgspec.msgpack.decode(zlib.decompress(item[JOBS_BLOB]["B"]))
        return {name: {"M": entry} for name, entry in raw.items()}
    return dict(item.get("j", {}).get("M", {}))


def doc_jobs_attrs(entries: Mapping[str, Item], jobs_version: int) -> Item:
    """The attributes that store ``entries`` at ``jobs_version`` (see :data:`JOBS_BLOB`)."""
    blob = zlib.compress(msgspec.msgpack.encode({name: entry["M"] for name, entry in entries.items()}), 9)
    return {JOBS_BLOB: {"B": blob}, JOBS_VERSION: n(jobs_version)}


def _time(moment: datetime) -> Item:
    return n(us(moment))


def _read_time(raw: Item, attr: str) -> datetime | None:
    value = raw.get(attr)
    if value is None:
        return None
    return from_us(int(value["N"])) if "N" in value else datetime.fromisoformat(value["S"])


def doc_job_fields(name: str, runner: str, job: JobRecord, version: int) -> tuple[Item, list[str]]:
    """The fields of an entry ``update_job`` sets and removes (all but the immutable ones: task
    run, attempt, runner and spec); a DONE job drops its spec and claim as :func:`doc_job_update`."""
    sets: Item = {"v": n(version), "p": s(job.phase.value)}
    remove: list[str] = []
    for attr, field_name in _CLAIM_ATTRIBUTES:
        value = getattr(job, field_name)
        if value is None:
            remove.append(attr)
        else:
            sets[attr] = s(value) if isinstance(value, str) else _time(value)
    handle_attr, handle = _handle_attr(name, runner, job.handle)
    if handle is None:
        remove += ["h", "hc"]
    else:
        sets[handle_attr] = handle
        remove.append("hc" if handle_attr == "h" else "h")
    if job.updated is None:
        remove.append("u")
    else:
        sets["u"] = _time(job.updated)
    if job.phase is JobPhase.DONE:
        remove += ["s", "sr"]
    return sets, remove


def _handle_attr(name: str, runner: str, handle: Any) -> tuple[str, Item | None]:
    if handle is None:
        return "h", None
    if handle.get("name") == name and handle.get("runner") == runner:
        rest = {key: value for key, value in handle.items() if key not in ("name", "runner")}
        return "hc", s(dumps(rest))
    return "h", s(dumps(handle))


def doc_job_entry(job: JobRecord, version: int, spec_ref: str | None) -> Item:
    """A new entry; ``spec_ref`` is the sort key of the spec item holding its spec (None: inline)."""
    sets, _ = doc_job_fields(job.name, job.runner, job, version)
    entry: Item = {"t": s(job.taskrun_id), "a": n(job.attempt), "r": s(job.runner), **sets}
    if job.phase is JobPhase.DONE:
        pass
    elif spec_ref is not None:
        entry["sr"] = s(spec_ref.removeprefix(SPEC_PREFIX))
    else:
        entry["s"] = {"B": compress(dumps(job.spec))}
    return {"M": entry}


def apply_fields(entry: Item, sets: Item, remove: Sequence[str]) -> Item:
    """``entry`` as the stored one reads after ``SET`` of ``sets`` and ``REMOVE`` of ``remove``."""
    raw = {key: value for key, value in entry["M"].items() if key not in remove}
    return {"M": raw | dict(sets)}


def doc_job_update(name: str, old: Item, job: JobRecord) -> Item:
    """A later phase, as SQLite's ``UPDATE``: the handle kept when none is given, version + 1;
    DONE and CANCELLING stick (``later_phase``)."""
    entry = dict(old["M"])
    entry["p"] = s(later_phase(JobPhase(entry["p"]["S"]), job.phase).value)
    entry["v"] = n(int(entry["v"]["N"]) + 1)
    handle = job.handle
    runner = entry["r"]["S"]
    if job.phase is JobPhase.DONE:
        # A finished job is never submitted, found or cancelled again: its spec, its submit
        # claim and the handle's backend detail (queue, region, submit time: what poll,
        # cancel and logs need) are dead weight in every later write of the document (the
        # spec made a 1-task completion cost 2 write units instead of 1; claims and detail
        # were ~230 bytes a job, 2 of the 6 KB of a 10-job ForEach's document, issue 28).
        # The handle's name, runner and id stay: they say which backend job ran.
        for attr in ("s", "sr", *(attr for attr, _ in _CLAIM_ATTRIBUTES)):
            entry.pop(attr, None)
        if handle is None:
            handle = _stored_handle(name, runner, entry)
        if handle is not None:
            handle = {key: handle[key] for key in ("name", "runner", "id") if key in handle}
    if handle is not None:
        entry.pop("h", None)
        entry.pop("hc", None)
        attr, value = _handle_attr(name, runner, handle)
        entry[attr] = value
    entry.pop("u", None)
    if job.updated is not None:
        entry["u"] = _time(job.updated)
    return {"M": entry}


def _stored_handle(name: str, runner: str, raw: Item) -> dict[str, Any] | None:
    if "hc" in raw:
        return {"name": name, "runner": runner, **loads(raw["hc"]["S"])}
    return loads(raw["h"]["S"]) if "h" in raw else None


def doc_spec_ref(entry: Item) -> str | None:
    """The sort key of the spec item an entry's spec is in; None when inline, or dropped (DONE)."""
    raw = entry["M"]
    return SPEC_PREFIX + raw["sr"]["S"] if "sr" in raw else None


def doc_job(name: str, execution_id: str, entry: Item, specs: Mapping[str, Any] | None = None) -> JobRecord:
    """The record of an entry; ``specs`` holds its spec when the entry refers to a spec item
    (:func:`doc_spec_ref`): the readers fetch those items (``Jobs.get``, the tick's list)."""
    raw = entry["M"]
    runner = raw["r"]["S"]
    if "s" in raw:
        spec = loads(decompress(raw["s"]["B"]))
    elif "sr" in raw:
        if specs is None or name not in specs:
            ref = doc_spec_ref(entry)
            raise StoreError(f"job {name}: its spec item {ref} of execution {execution_id} is missing")
        spec = specs[name]
    else:
        spec = {}
    return JobRecord(
        name=name,
        execution_id=execution_id,
        taskrun_id=raw["t"]["S"],
        attempt=int(raw["a"]["N"]),
        runner=runner,
        phase=JobPhase(raw["p"]["S"]),
        spec=spec,
        handle=_stored_handle(name, runner, raw),
        version=int(raw["v"]["N"]),
        updated=_read_time(raw, "u"),
        claim=raw["sc"]["S"] if "sc" in raw else None,
        claim_until=_read_time(raw, "sx"),
        since=_read_time(raw, "s0"),
    )


# ---------------------------------------------------------------------- timers


def timer_item(timer: TimerRecord) -> Item:
    return {
        "PK": s(f"EXEC#{timer.execution_id}"),
        "SK": s(f"DUE#{timer.key}"),
        "tq": s("T"),
        "ta": s(f"{us(timer.at):017d}#{timer.execution_id}#{timer.key}"),
    }


def timer_from_item(item: Item) -> TimerRecord:
    return TimerRecord(
        item["PK"]["S"].removeprefix("EXEC#"),
        item["SK"]["S"].removeprefix("DUE#"),
        from_us(int(item["ta"]["S"].split("#", 1)[0])),
    )


def unique_timers(timers: Sequence[TimerRecord]) -> list[TimerRecord]:
    """One timer per (execution, key), the last one written winning (as a rewrite would)."""
    return list({(t.execution_id, t.key): t for t in timers}.values())


# ---------------------------------------------------------------------- log lines


def log_items(execution_id: str, prefix: str, logs: Sequence[LogLine], ttl: int | None) -> list[Item]:
    """All the lines of one write in as few items as fit (one, nearly always)."""
    chunks: list[list[str]] = [[]]
    size = 0
    for line in logs:
        encoded = _encoded(line)
        length = len(encoded.encode()) + 1
        if chunks[-1] and size + length > LOG_CHUNK_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(encoded)
        size += length
    items = []
    for i, chunk in enumerate(chunks):
        item = exec_key(execution_id, f"{prefix}#{i:04d}")
        item["l"] = s("[" + ",".join(chunk) + "]")
        if ttl is not None:
            item[TTL_ATTRIBUTE] = n(ttl)
        items.append(item)
    return items


def inline_logs(logs: Sequence[LogLine]) -> bytes:
    """A document's chunk of log lines: compressed, each line cut as a log item would cut it."""
    return compress("[" + ",".join(_encoded(line) for line in logs) + "]")


def _encoded(line: LogLine) -> str:
    """One line as JSON, cut to fit a log item."""
    encoded = dumps(log_to_json(line))
    if len(encoded.encode()) > LOG_CHUNK_BYTES:
        encoded = dumps(log_to_json(_truncated(line)))
    return encoded


def _truncated(line: LogLine) -> LogLine:
    """A line too long for one item keeps its head and says how much was cut."""
    data = line.message.encode()
    budget = LOG_CHUNK_BYTES - 2_000
    while True:  # JSON escapes can make the encoded line longer than the raw bytes: shrink to fit
        head = data[:budget].decode(errors="ignore")
        note = f" ... [truncated by the store: {len(data) - len(head.encode()):,} more bytes]"
        cut = LogLine(line.at, line.level, head + note, line.task_id, line.taskrun_id, line.attempt)
        if len(dumps(log_to_json(cut)).encode()) <= LOG_CHUNK_BYTES:
            return cut
        budget //= 2
