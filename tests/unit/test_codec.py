"""Executions, task runs, progress and log lines survive JSON exactly, as every store relies on."""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

import immutables
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control_plane.engine.events import JobFailure
from control_plane.engine.model import (
    Attempt,
    Batches,
    Execution,
    LogLine,
    Phase,
    Progress,
    TaskRun,
    nested_set,
)
from control_plane.engine.states import State
from control_plane.levels import Level
from control_plane.store.codec import (
    dumps,
    execution_from_json,
    execution_meta,
    loads,
    log_from_json,
    log_to_json,
    progress_from_json,
    progress_to_json,
    rebuild_outputs_index,
    taskrun_dumps,
    taskrun_from_json,
    taskrun_loads,
    taskrun_to_json,
)
from tests.driving import run

from .helpers import T0

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def through_json(raw: Any) -> Any:
    """What a store does between writing and reading: text in between."""
    return loads(dumps(raw))


def round_trip(ex: Execution, *, shuffle: int = 0) -> Execution:
    """Meta and task runs encoded apart, as stores keep them; task runs read back in any order."""
    trs = [taskrun_from_json(through_json(taskrun_to_json(tr))) for tr in ex.taskruns.values()]
    random.Random(shuffle).shuffle(trs)
    return execution_from_json(through_json(execution_meta(ex)), ex.version, trs)


# ---------------------------------------------------------------------------- strategies

texts = st.text(max_size=12)
moments = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.just(UTC))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
json_objects = st.dictionaries(texts, json_values, max_size=5)
counts = st.integers(min_value=0, max_value=10**7)

progresses = st.builds(
    Progress,
    phase=st.sampled_from(Phase),
    total=counts,
    started=counts,
    done=counts,
    limit=counts,
    failed=st.booleans(),
    killed=st.booleans(),
    worst=st.sampled_from(State),
    values=st.lists(texts, max_size=4).map(tuple),
    branch=st.none() | texts,
    dag_started=st.frozensets(st.integers(0, 64), max_size=6),
    dag_done=st.frozensets(st.integers(0, 64), max_size=6),
    iteration=counts,
    waiting=st.booleans(),
    first_failure=st.none() | texts,
    main=st.none() | st.tuples(counts, counts, counts),
    final=st.none() | st.sampled_from(State),
)
attempts = st.builds(
    Attempt,
    state=st.sampled_from(State),
    started=moments,
    ended=st.none() | moments,
    job=st.none() | texts,
    cost=st.none() | st.floats(0, 1e6, allow_nan=False),
)
taskruns = st.builds(
    TaskRun,
    id=st.text(min_size=1, max_size=16),
    seq=counts,
    task_id=st.text(min_size=1, max_size=8),
    task_type=texts,
    parent_id=st.none() | texts,
    phase=st.sampled_from(Phase),
    lane=counts,
    position=counts,
    values=st.lists(texts, max_size=3).map(tuple),
    iteration=counts,
    state=st.sampled_from(State),
    created=moments,
    ended=st.none() | moments,
    attempts=st.lists(attempts, max_size=3).map(tuple),
    outputs=st.none() | json_objects,
    error=st.none() | texts,
    progress=st.none() | progresses,
    infra_attempts=st.integers(0, 5),
)
log_lines = st.builds(
    LogLine,
    at=moments,
    level=st.sampled_from(Level),
    message=st.text(max_size=40),
    task_id=st.none() | texts,
    taskrun_id=st.none() | texts,
    attempt=st.integers(1, 10),
)


@st.composite
def executions(draw: st.DrawFn) -> Execution:
    runs = draw(st.lists(taskruns, max_size=8, unique_by=lambda tr: tr.id))
    runs = [tr.evolve(seq=i) for i, tr in enumerate(runs)]  # the engine numbers them uniquely
    created = draw(moments)
    return Execution(
        id=draw(st.text(min_size=1, max_size=16)),
        namespace=draw(texts),
        flow_id=draw(texts),
        flow_revision=draw(st.none() | st.integers(1, 1000)),
        state=draw(st.sampled_from(State)),
        created=created,
        inputs=draw(json_objects),
        labels=draw(st.dictionaries(texts, texts, max_size=4)),
        trigger=draw(st.none() | json_objects),
        version=draw(counts),
        started=draw(st.none() | moments),
        ended=draw(st.none() | moments),
        taskruns=immutables.Map((tr.id, tr) for tr in runs),
        outputs_index=rebuild_outputs_index(runs),
        progress=draw(progresses),
        outputs=draw(st.none() | json_objects),
        error_logs=tuple(draw(st.lists(log_lines, max_size=3))),
        next_seq=len(runs),
        original_id=draw(st.none() | texts),
        parent=draw(st.none() | json_objects),
        variables=draw(st.none() | json_objects),
        changed=frozenset(tr.id for tr in runs),
    )


# ---------------------------------------------------------------------------- property tests


@SETTINGS
@given(progresses)
def test_progress_round_trips(progress: Progress) -> None:
    assert progress_from_json(through_json(progress_to_json(progress))) == progress


@SETTINGS
@given(taskruns)
def test_taskrun_round_trips(tr: TaskRun) -> None:
    assert taskrun_from_json(through_json(taskrun_to_json(tr))) == tr


@SETTINGS
@given(log_lines)
def test_log_line_round_trips(line: LogLine) -> None:
    assert log_from_json(through_json(log_to_json(line))) == line


@SETTINGS
@given(executions(), st.integers(0, 1000))
def test_execution_round_trips_whatever_order_task_runs_come_back_in(ex: Execution, shuffle: int) -> None:
    got = round_trip(ex, shuffle=shuffle)
    assert got == ex.evolve(changed=frozenset())
    assert got.ordered_taskruns() == ex.ordered_taskruns()


# ---------------------------------------------------------------------------- real executions


def _hello_versions() -> list[Execution]:
    versions: list[Execution] = []  # every version the service stored, as the engine made it
    result = run(
        (SAMPLES / "hello.yaml").read_text(encoding="utf-8"),
        {"name": "Ada Lovelace 🌧"},
        labels={"run": "ünit"},
        trigger={"type": "manual"},
        start=T0,
        on_change=versions.append,
        id_factory=lambda: "hello-1",
    )
    assert result.state is State.SUCCESS
    return versions


def test_every_version_of_a_real_run_round_trips_with_the_engines_outputs_index() -> None:
    versions = _hello_versions()
    assert versions
    final = versions[-1]
    assert isinstance(final.outputs_index["planet"], immutables.Map)  # value-keyed loop outputs
    for ex in versions:
        got = round_trip(ex, shuffle=ex.version)
        assert got == ex.evolve(changed=frozenset())  # the rebuilt index equals the engine's own
    assert round_trip(final).outputs_index["planet"]["Earth"] == {"value": "EARTH"}
    assert round_trip(final).outputs == {"summary": "Ada Lovelace 🌧 visited 3 planets, last EARTH"}


def test_nested_loops_and_later_runs_in_the_outputs_index() -> None:
    def run(tr_id: str, seq: int, task_id: str, values: tuple[str, ...], outputs: Any) -> TaskRun:
        return TaskRun(
            tr_id,
            seq,
            task_id,
            "Return",
            None,
            Phase.TASKS,
            0,
            0,
            values,
            0,
            State.SUCCESS,
            T0,
            outputs=outputs,
        )

    index = rebuild_outputs_index(
        [
            run("a", 0, "leaf", ("x", "1"), {"v": "x1"}),
            run("b", 1, "leaf", ("x", "2"), {"v": "x2"}),
            run("c", 2, "leaf", ("y", "1"), {"v": "y1"}),
            run("d", 3, "check", (), {"n": 1}),
            run("e", 4, "check", (), {"n": 2}),  # a later iteration wins
            run("f", 5, "nothing", (), None),
        ]
    )
    assert json.loads(dumps(index)) == {
        "leaf": {"x": {"1": {"v": "x1"}, "2": {"v": "x2"}}, "y": {"1": {"v": "y1"}}},
        "check": {"n": 2},
    }


# ---------------------------------------------------------------------------- encoding details


def test_defaults_are_left_out() -> None:
    tr = TaskRun("id1", 0, "t", "Log", None, Phase.TASKS, 0, 0, (), 0, State.CREATED, T0)
    assert set(taskrun_to_json(tr)) == {"id", "seq", "task_id", "task_type", "state", "created"}
    assert progress_to_json(Progress()) == {}
    assert progress_from_json({}) == Progress() and progress_from_json(None) == Progress()
    assert set(log_to_json(LogLine(T0, Level.INFO, "m"))) == {"at", "level", "message"}
    ex = Execution("e", "ns", "f", None, State.CREATED, T0)
    assert set(execution_meta(ex)) == {
        "id",
        "namespace",
        "flow_id",
        "flow_revision",
        "state",
        "created",
        "inputs",
        "labels",
        "next_seq",
    }
    assert round_trip(ex) == ex


def test_empty_but_present_values_are_kept() -> None:
    tr = TaskRun(
        "id1", 3, "t", "Log", "p", Phase.FINALLY, 2, 1, ("",), 4, State.FAILED, T0,
        outputs={}, error="", progress=Progress(),
    )  # fmt: skip
    back = taskrun_from_json(through_json(taskrun_to_json(tr)))
    assert back == tr
    assert back.outputs == {} and back.error == "" and back.progress == Progress() and back.values == ("",)


def test_meta_leaves_out_task_runs_and_the_outputs_index() -> None:
    final = _hello_versions()[-1]
    meta = execution_meta(final)
    assert "taskruns" not in meta and "outputs_index" not in meta
    assert len(dumps(meta)) < 1000  # small however many task runs the execution has


def test_dumps_gives_plain_json_for_what_json_cannot_hold() -> None:
    value = {
        "map": immutables.Map({"a": immutables.Map({"b": 1})}),
        "tuple": (1, 2),
        "set": frozenset({"only"}),
        "when": datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        "day": date(2026, 1, 2),
        "clock": time(3, 4, 5),
        "span": timedelta(minutes=1, milliseconds=500),
        "bytes": "ü".encode(),
        "text": "日本語 🌧",
    }
    text = dumps(value)
    assert "日本語 🌧" in text  # not \u-escaped: smaller, and readable in the database
    assert " " not in text.replace("日本語 🌧", "")  # compact separators
    assert loads(text) == {
        "map": {"a": {"b": 1}},
        "tuple": [1, 2],
        "set": ["only"],
        "when": "2026-01-02T03:04:05.000006+00:00",
        "day": "2026-01-02",
        "clock": "03:04:05",
        "span": 60.5,
        "bytes": "ü",
        "text": "日本語 🌧",
    }


def test_datetimes_keep_their_offset_and_microseconds() -> None:
    moment = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=timezone(timedelta(hours=-5, minutes=-30)))
    attempt_at = datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    tr = TaskRun(
        "x", 0, "t", "Log", None, Phase.TASKS, 0, 0, (), 0, State.SUCCESS, moment,
        ended=moment, attempts=(Attempt(State.SUCCESS, attempt_at, attempt_at, "job"),),
    )  # fmt: skip
    back = taskrun_from_json(through_json(taskrun_to_json(tr)))
    assert back.created.utcoffset() == timedelta(hours=-5, minutes=-30)
    assert back.created.microsecond == 891011
    assert back.attempts[0].started.tzinfo is not None and back.attempts[0].started == attempt_at


# ---------------------------------------------------------------------------- the msgspec path

full_attempts = st.builds(
    Attempt,
    state=st.sampled_from(State),
    started=moments,
    ended=st.none() | moments,
    job=st.none() | texts,
    cost=st.none() | st.floats(0, 1e6, allow_nan=False) | st.integers(0, 10),
    timed_out=st.booleans(),
    runner=st.none() | texts,
    job_id=st.none() | texts,
    job_url=st.none() | texts,
    failure=st.none() | st.sampled_from(JobFailure),
)
batches = st.builds(
    Batches,
    total=counts,
    prefix=texts,
    extension=texts,
    started=counts,
    done=counts,
    low=counts,
    ended=st.binary(max_size=6),
)
full_taskruns = taskruns.flatmap(
    lambda tr: st.builds(
        tr.evolve,
        attempts=st.lists(full_attempts, max_size=3).map(tuple),
        batches=st.none() | batches,
        created=moments | st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1)),
    )
)


def _utc_as_z(value: Any) -> Any:
    """A document as the fast path spells it: ``+00:00`` at the end of a timestamp becomes ``Z``."""
    if isinstance(value, dict):
        return {k: _utc_as_z(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_utc_as_z(v) for v in value]
    if isinstance(value, str) and value.endswith("+00:00") and value[:4].isdigit():
        return value[:-6] + "Z"
    return value


def _no_empty_sets(doc: dict[str, Any]) -> dict[str, Any]:
    """Sets as the json path writes them: sorted, and left out when empty (msgspec leaves out
    an empty frozenset only when it is the default object itself)."""
    progress = doc.get("progress")
    if progress is not None:
        for key in ("dag_started", "dag_done"):
            if progress.get(key) == []:
                del progress[key]
            elif key in progress:
                progress[key] = sorted(progress[key])
    return doc


@SETTINGS
@given(full_taskruns)
def test_the_fast_path_writes_the_same_document_and_reads_old_and_new_ones(tr: TaskRun) -> None:
    old_text = dumps(taskrun_to_json(tr))  # what SQLite stores held before the fast path
    new_text = taskrun_dumps(tr)
    assert _utc_as_z(loads(old_text)) == _no_empty_sets(loads(new_text))  # the same document
    assert taskrun_from_json(loads(new_text)) == tr  # which the json reader reads too
    assert taskrun_loads(new_text) == tr
    assert taskrun_loads(old_text) == tr
    assert taskrun_loads(new_text.encode()) == tr


def test_outputs_msgspec_would_write_differently_take_the_json_path() -> None:
    tr = TaskRun("id1", 0, "t", "Log", None, Phase.TASKS, 0, 0, (), 0, State.SUCCESS, T0)
    for outputs in (
        {"when": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)},  # msgspec: ...Z, dumps: +00:00
        {"span": timedelta(seconds=90)},  # msgspec: an ISO duration, dumps: 90.0
        {"raw": "ü".encode()},  # msgspec: base64, dumps: the text
        {"nan": float("nan"), "inf": [float("inf")]},  # msgspec: null, dumps: NaN
        {1: "an int key"},
        {"map": immutables.Map({"a": 1}), "set": frozenset({"x"})},
        {"sub": type("Text", (str,), {})("str subclass")},
    ):
        one = tr.evolve(outputs=outputs)
        assert taskrun_dumps(one) == dumps(taskrun_to_json(one)), outputs
    plain = tr.evolve(outputs={"a": [1, 2.5, True, None, {"b": "é 🌧"}], "big": 2**70, "t": (1, 2)})
    assert loads(taskrun_dumps(plain))["outputs"] == loads(dumps(taskrun_to_json(plain)))["outputs"]
    assert taskrun_loads(taskrun_dumps(plain)) == plain.evolve(outputs={**plain.outputs, "t": [1, 2]})


def test_documents_msgspec_cannot_read_load_as_json_reads_them() -> None:
    doc = {
        "id": "x",
        "seq": 0,
        "task_id": "t",
        "task_type": "Log",
        "state": "SUCCESS",
        "created": "2026-01-02T03:04:05+00:00",
    }
    for outputs in ({"nan": float("nan")}, {"huge": 1e400}):
        text = json.dumps({**doc, "outputs": outputs})  # as dumps wrote them
        assert taskrun_loads(text) == taskrun_from_json(json.loads(text)) or "nan" in outputs
        assert taskrun_loads(text).outputs is not None
    unusual = json.dumps({**doc, "values": [1], "outputs": ["a list"]})  # types the typed reader refuses
    assert taskrun_loads(unusual) == taskrun_from_json(json.loads(unusual))
    for broken in ("{", json.dumps({**doc, "state": "NOPE"}), json.dumps({"id": "x"})):
        try:
            taskrun_loads(broken)
        except (ValueError, KeyError, TypeError):
            pass  # what the stores turn into StoreError, as before
        else:
            raise AssertionError(f"{broken!r} was read")


index_runs = st.lists(
    st.tuples(
        st.sampled_from(["a", "b"]),
        st.lists(st.sampled_from(["x", "y", "1"]), max_size=3).map(tuple),
        st.none() | st.dictionaries(st.sampled_from(["v", "w"]), st.integers(0, 3), max_size=2),
    ),
    max_size=12,
)


@SETTINGS
@given(index_runs, st.integers(0, 1000))
def test_the_outputs_index_is_nested_set_folded_over_the_runs_in_creation_order(
    runs: list[tuple[str, tuple[str, ...], dict[str, int] | None]], shuffle: int
) -> None:
    trs = [
        TaskRun(
            f"r{i}", i, task, "Return", None, Phase.TASKS, 0, 0, values, 0, State.SUCCESS, T0, outputs=out
        )
        for i, (task, values, out) in enumerate(runs)
    ]
    expected = immutables.Map[str, Any]()
    for tr in trs:  # the engine's index_outputs, one task run at a time
        if tr.outputs is not None:
            value = (
                tr.outputs if not tr.values else nested_set(expected.get(tr.task_id), tr.values, tr.outputs)
            )
            expected = expected.set(tr.task_id, value)
    random.Random(shuffle).shuffle(trs)
    assert rebuild_outputs_index(trs) == expected
