"""Executions and task runs to JSON and back, shared by every store.

Stores keep an execution as one meta document plus one document per task run (DynamoDB
items are at most 400 KB, and advancing one task must not rewrite the others). Default
values are left out so a typical task run encodes to a few hundred bytes.

``outputs_index`` (what ``{{ outputs.x }}`` reads) is not stored: it is rebuilt on load from
the task runs' own outputs in creation order, the same way the engine builds it, so the two
can never disagree; and only when read (``OutputsIndex.of_taskruns``).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from typing import Any

import immutables
import msgspec

from control_plane.collector import acyclic  # noqa: F401 - where the stores found it first
from control_plane.engine.events import JobFailure
from control_plane.engine.model import (
    Attempt,
    Batches,
    Execution,
    LogLine,
    OutputsIndex,
    Phase,
    Progress,
    TaskRun,
    outputs_index,
)
from control_plane.engine.states import State
from control_plane.levels import Level

__all__ = [
    "dumps",
    "execution_from_json",
    "execution_meta",
    "loads",
    "log_from_json",
    "log_to_json",
    "progress_from_json",
    "progress_to_json",
    "rebuild_outputs_index",
    "taskrun_dumps",
    "taskrun_from_json",
    "taskrun_loads",
    "taskrun_to_json",
]

_DEFAULT_PROGRESS = Progress()


def _default(value: Any) -> Any:
    if isinstance(value, immutables.Map | Mapping):
        return dict(value)
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def dumps(value: Any) -> str:
    """Compact JSON; values JSON cannot hold (dates, maps, tuples) become their plain form."""
    return json.dumps(value, default=_default, separators=(",", ":"), ensure_ascii=False)


loads = json.loads


def _dt(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _pdt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def progress_to_json(p: Progress) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in Progress.__struct_fields__:
        value = getattr(p, name)
        if value == getattr(_DEFAULT_PROGRESS, name):
            continue
        if isinstance(value, frozenset):
            value = sorted(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[name] = value
    return out


def progress_from_json(raw: Mapping[str, Any] | None) -> Progress:
    if not raw:
        return _DEFAULT_PROGRESS
    kw = dict(raw)
    if "phase" in kw:
        kw["phase"] = Phase(kw["phase"])
    for name in ("worst", "final"):
        if kw.get(name) is not None:
            kw[name] = State(kw[name])
    for name in ("dag_started", "dag_done"):
        if name in kw:
            kw[name] = frozenset(kw[name])
    if "values" in kw:
        kw["values"] = tuple(kw["values"])
    if kw.get("main") is not None:
        kw["main"] = tuple(kw["main"])
    return Progress(**kw)


def _attempt_to_json(a: Attempt) -> dict[str, Any]:
    out: dict[str, Any] = {"state": a.state.value, "started": a.started.isoformat()}
    if a.ended is not None:
        out["ended"] = a.ended.isoformat()
    if a.job is not None:
        out["job"] = a.job
    if a.cost is not None:
        out["cost"] = a.cost
    if a.timed_out:
        out["timed_out"] = True
    for key in ("runner", "job_id", "job_url", "failure"):
        value = getattr(a, key)
        if value is not None:
            out[key] = str(value)
    return out


def _attempt_from_json(raw: Mapping[str, Any]) -> Attempt:
    return Attempt(
        State(raw["state"]),
        datetime.fromisoformat(raw["started"]),
        _pdt(raw.get("ended")),
        raw.get("job"),
        raw.get("cost"),
        bool(raw.get("timed_out", False)),
        raw.get("runner"),
        raw.get("job_id"),
        raw.get("job_url"),
        JobFailure(raw["failure"]) if raw.get("failure") else None,
    )


def taskrun_to_json(tr: TaskRun) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": tr.id,
        "seq": tr.seq,
        "task_id": tr.task_id,
        "task_type": tr.task_type,
        "state": tr.state.value,
        "created": tr.created.isoformat(),
    }
    if tr.parent_id is not None:
        out["parent_id"] = tr.parent_id
    if tr.phase is not Phase.TASKS:
        out["phase"] = tr.phase.value
    if tr.lane:
        out["lane"] = tr.lane
    if tr.position:
        out["position"] = tr.position
    if tr.values:
        out["values"] = list(tr.values)
    if tr.iteration:
        out["iteration"] = tr.iteration
    if tr.ended is not None:
        out["ended"] = tr.ended.isoformat()
    if tr.attempts:
        out["attempts"] = [_attempt_to_json(a) for a in tr.attempts]
    if tr.outputs is not None:
        out["outputs"] = tr.outputs
    if tr.error is not None:
        out["error"] = tr.error
    if tr.progress is not None:
        out["progress"] = progress_to_json(tr.progress)
    if tr.infra_attempts:
        out["infra_attempts"] = tr.infra_attempts
    if tr.batches is not None:
        out["batches"] = _batches_to_json(tr.batches)
    return out


def _batches_to_json(b: Batches) -> dict[str, Any]:
    out: dict[str, Any] = {"total": b.total, "prefix": b.prefix, "extension": b.extension}
    if b.started:
        out["started"] = b.started
    if b.done:
        out["done"] = b.done
    if b.low:
        out["low"] = b.low
    if b.ended:
        out["ended"] = base64.b64encode(b.ended).decode()
    return out


def _batches_from_json(raw: Mapping[str, Any]) -> Batches:
    return Batches(
        raw["total"],
        raw["prefix"],
        raw["extension"],
        raw.get("started", 0),
        raw.get("done", 0),
        raw.get("low", 0),
        base64.b64decode(raw["ended"]) if raw.get("ended") else b"",
    )


def taskrun_from_json(raw: Mapping[str, Any]) -> TaskRun:
    progress = raw.get("progress")
    return TaskRun(
        id=raw["id"],
        seq=raw["seq"],
        task_id=raw["task_id"],
        task_type=raw["task_type"],
        parent_id=raw.get("parent_id"),
        phase=Phase(raw.get("phase", "tasks")),
        lane=raw.get("lane", 0),
        position=raw.get("position", 0),
        values=tuple(raw.get("values", ())),
        iteration=raw.get("iteration", 0),
        state=State(raw["state"]),
        created=datetime.fromisoformat(raw["created"]),
        ended=_pdt(raw.get("ended")),
        attempts=tuple(_attempt_from_json(a) for a in raw.get("attempts", ())),
        outputs=raw.get("outputs"),
        error=raw.get("error"),
        progress=None if progress is None else progress_from_json(progress),
        infra_attempts=raw.get("infra_attempts", 0),
        batches=None if raw.get("batches") is None else _batches_from_json(raw["batches"]),
    )


def log_to_json(line: LogLine) -> dict[str, Any]:
    out: dict[str, Any] = {"at": line.at.isoformat(), "level": line.level.value, "message": line.message}
    if line.task_id is not None:
        out["task_id"] = line.task_id
    if line.taskrun_id is not None:
        out["taskrun_id"] = line.taskrun_id
    if line.attempt != 1:
        out["attempt"] = line.attempt
    return out


def log_from_json(raw: Mapping[str, Any]) -> LogLine:
    return LogLine(
        datetime.fromisoformat(raw["at"]),
        Level(raw["level"]),
        raw["message"],
        raw.get("task_id"),
        raw.get("taskrun_id"),
        raw.get("attempt", 1),
    )


def execution_meta(ex: Execution) -> dict[str, Any]:
    """Everything but the task runs (stored apart) and the outputs index (rebuilt on load)."""
    out: dict[str, Any] = {
        "id": ex.id,
        "namespace": ex.namespace,
        "flow_id": ex.flow_id,
        "flow_revision": ex.flow_revision,
        "state": ex.state.value,
        "created": ex.created.isoformat(),
        "inputs": ex.inputs,
        "labels": ex.labels,
        "next_seq": ex.next_seq,
    }
    if ex.trigger is not None:
        out["trigger"] = ex.trigger
    if ex.started is not None:
        out["started"] = ex.started.isoformat()
    if ex.ended is not None:
        out["ended"] = ex.ended.isoformat()
    if ex.progress != _DEFAULT_PROGRESS:
        out["progress"] = progress_to_json(ex.progress)
    if ex.outputs is not None:
        out["outputs"] = ex.outputs
    if ex.error_logs:
        out["error_logs"] = [log_to_json(line) for line in ex.error_logs]
    if ex.original_id is not None:
        out["original_id"] = ex.original_id
    if ex.parent is not None:
        out["parent"] = ex.parent
    if ex.secret_inputs:
        out["secret_inputs"] = list(ex.secret_inputs)
    if ex.variables is not None:
        out["variables"] = ex.variables
    if ex.retry_origin is not None:
        out["retry_origin"] = ex.retry_origin.isoformat()
    return out


rebuild_outputs_index = outputs_index  # the engine's own rule: the stored index cannot drift from it


def execution_from_json(meta: Mapping[str, Any], version: int, taskruns: list[TaskRun]) -> Execution:
    """Rebuild an execution from its meta document and its task runs (any order)."""
    # The map in the order given (a store's rows: the order the task runs were just allocated
    # in, so read in memory order). The outputs index is built from the same list (in creation
    # order, sorted then) only if something reads it: a display or a finished run never does.
    by_id = immutables.Map([(tr.id, tr) for tr in taskruns])
    return Execution(
        id=meta["id"],
        namespace=meta["namespace"],
        flow_id=meta["flow_id"],
        flow_revision=meta.get("flow_revision"),
        state=State(meta["state"]),
        created=datetime.fromisoformat(meta["created"]),
        inputs=meta.get("inputs", {}),
        labels=meta.get("labels", {}),
        trigger=meta.get("trigger"),
        version=version,
        started=_pdt(meta.get("started")),
        ended=_pdt(meta.get("ended")),
        taskruns=by_id,
        outputs_index=OutputsIndex.of_taskruns(taskruns),
        progress=progress_from_json(meta.get("progress")),
        outputs=meta.get("outputs"),
        error_logs=tuple(log_from_json(x) for x in meta.get("error_logs", ())),
        next_seq=meta.get("next_seq", 0),
        original_id=meta.get("original_id"),
        parent=meta.get("parent"),
        secret_inputs=tuple(meta.get("secret_inputs", ())),
        variables=meta.get("variables"),
        retry_origin=_pdt(meta.get("retry_origin")),
    )


# ---------------------------------------------------------------- task-run text, fast path
#
# A store that keeps each task run as one JSON text (SQLite) encodes and decodes it once per
# task run saved or loaded: at 100,000 task runs ``json`` (and the dicts built for it) took
# longer than the planner spent on the whole loop (benchmarks/engine.py). msgspec writes and
# reads the value types directly, in C. The text is the document ``taskrun_to_json`` describes:
# the same keys, the same defaults left out (``omit_defaults`` on the value types), the same
# values; only datetimes in UTC are spelled ``...Z`` instead of ``...+00:00``, which
# ``datetime.fromisoformat`` (3.11+) and msgspec both read. So documents written before load
# here and documents written here load in ``taskrun_from_json``. Outputs msgspec would write
# differently from ``dumps`` (NaN, dates, bytes and other non-JSON values) take the ``json``
# path, and so do documents it cannot read (NaN, 1e400, a type the document does not expect).


class _TaskRunDoc(msgspec.Struct, gc=False, omit_defaults=True):
    """A stored task run as msgspec writes and reads it: ``taskrun_to_json``'s keys and defaults."""

    id: str
    seq: int
    task_id: str
    task_type: str
    state: State
    created: datetime
    parent_id: str | None = None
    phase: Phase = Phase.TASKS
    lane: int = 0
    position: int = 0
    values: tuple[str, ...] = ()
    iteration: int = 0
    ended: datetime | None = None
    attempts: tuple[Attempt, ...] = ()
    outputs: dict[str, Any] | None = None
    error: str | None = None
    progress: Progress | None = None
    infra_attempts: int = 0
    batches: Batches | None = None


_encode = msgspec.json.Encoder().encode
_decode_taskrun = msgspec.json.Decoder(_TaskRunDoc).decode


def _plain(value: Any) -> bool:
    """True when ``value`` is JSON as both encoders write it alike: exact types, finite floats."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True
    if kind is dict:
        return all(type(k) is str and _plain(v) for k, v in value.items())
    if kind is list or kind is tuple:
        return all(_plain(v) for v in value)
    if kind is float:
        return value - value == 0.0  # NaN and infinities: json writes NaN, msgspec null
    return False


def taskrun_dumps(tr: TaskRun) -> str:
    """``dumps(taskrun_to_json(tr))`` as one call into msgspec when the outputs are plain JSON."""
    if tr.outputs is not None and not _plain(tr.outputs):
        return dumps(taskrun_to_json(tr))
    doc = _TaskRunDoc(
        tr.id,
        tr.seq,
        tr.task_id,
        tr.task_type,
        tr.state,
        tr.created,
        tr.parent_id,
        tr.phase,
        tr.lane,
        tr.position,
        tr.values,
        tr.iteration,
        tr.ended,
        tr.attempts,
        tr.outputs,  # type: ignore[arg-type]  # a plain dict: _plain checked it
        tr.error,
        tr.progress,
        tr.infra_attempts,
        tr.batches,
    )
    return _encode(doc).decode()


def taskrun_loads(text: str | bytes) -> TaskRun:
    """``taskrun_from_json(loads(text))``, read by msgspec straight into the value types."""
    try:
        d = _decode_taskrun(text)
    except msgspec.MsgspecError:
        return taskrun_from_json(loads(text))
    return TaskRun(
        d.id,
        d.seq,
        d.task_id,
        d.task_type,
        d.parent_id,
        d.phase,
        d.lane,
        d.position,
        d.values,
        d.iteration,
        d.state,
        d.created,
        d.ended,
        d.attempts,
        d.outputs,
        d.error,
        d.progress,
        d.infra_attempts,
        d.batches,
    )
