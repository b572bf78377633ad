"""``outputs.<task>`` built only when read (control_plane/engine/outputs.py).

The eager rule is the reference: ``nested_set`` applied write by write, as the planner did
before. Every index the log hands out must read as that fold of the writes made before it,
whenever and in whatever order the indexes are read.
"""

from __future__ import annotations

import gc
import random
from collections.abc import Mapping
from typing import Any

import immutables
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control_plane.engine import outputs as outputs_module
from control_plane.engine.model import Phase, TaskRun
from control_plane.engine.outputs import MAX_CHAIN, OutputsIndex, OutputsLog, nested_set, outputs_index
from control_plane.engine.states import State
from control_plane.store.codec import execution_from_json

from .helpers import T0

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
Write = tuple[str, tuple[str, ...], dict[str, int]]


def eager(writes: list[Write], start: immutables.Map[str, Any] | None = None) -> immutables.Map[str, Any]:
    built = start if start is not None else immutables.Map()
    for task_id, values, out in writes:
        built = built.set(task_id, nested_set(built.get(task_id), values, out) if values else out)
    return built


writes_strategy = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),
        st.lists(st.sampled_from(["x", "y", "1"]), max_size=3).map(tuple),
        st.dictionaries(st.sampled_from(["v", "w"]), st.integers(0, 3), max_size=2),
    ),
    max_size=20,
)


@SETTINGS
@given(st.lists(writes_strategy, min_size=1, max_size=4), st.integers(0, 10_000))
def test_every_snapshot_reads_the_writes_made_before_it_whenever_it_is_read(
    calls: list[list[Write]], seed: int
) -> None:
    """Plan calls chained (each log starts from the last one's index), a snapshot after every
    write, read in a random order: each equals the eager fold of the writes before it."""
    rng = random.Random(seed)
    snapshots: list[tuple[Mapping[str, Any], immutables.Map[str, Any]]] = []
    done: list[Write] = []
    index: Mapping[str, Any] = OutputsIndex()
    for writes in calls:
        log = OutputsLog(index)
        for write in writes:
            log.write(*write)
            done.append(write)
            snapshots.append((log.snapshot(), eager(done)))
        index = log.snapshot()
    rng.shuffle(snapshots)
    for snapshot, expected in snapshots:
        assert snapshot == expected
        assert dict(snapshot.items()) == dict(expected.items())
    assert index == eager(done)


def test_an_unread_index_is_not_built_and_a_read_builds_it_once(monkeypatch: pytest.MonkeyPatch) -> None:
    applied: list[Write] = []
    real = outputs_module._apply

    def counting(built: immutables.Map[str, Any], write: Write) -> immutables.Map[str, Any]:
        applied.append(write)
        return real(built, write)

    monkeypatch.setattr(outputs_module, "_apply", counting)
    log = OutputsLog(OutputsIndex())
    for i in range(100):
        log.write("each", (str(i),), {"value": str(i)})
        log.snapshot()  # a context per task run, never read
    assert applied == []
    index = log.snapshot()
    assert index["each"]["42"] == {"value": "42"} and len(index["each"]) == 100
    assert len(applied) == 100
    assert index["each"]["7"] == {"value": "7"}
    assert len(applied) == 100  # kept


def test_a_flow_that_reads_after_every_write_sets_each_write_once(monkeypatch: pytest.MonkeyPatch) -> None:
    count = 0
    real = outputs_module.nested_set

    def counting(current: Any, path: tuple[str, ...], value: Any) -> immutables.Map[str, Any]:
        nonlocal count
        count += 1
        return real(current, path, value)

    monkeypatch.setattr(outputs_module, "nested_set", counting)
    log = OutputsLog(OutputsIndex())
    for i in range(500):
        log.write("each", (str(i),), {"value": i})
        assert log.snapshot()["each"][str(i)] == {"value": i}
    assert count == 500  # incremental, not a rebuild per read (125,250 sets)


def test_a_chain_of_unread_plan_calls_stays_short_and_reads_every_write() -> None:
    index: OutputsIndex = OutputsIndex()
    done: list[Write] = []
    for call in range(10 * MAX_CHAIN):
        log = OutputsLog(index)
        write: Write = ("t", (), {"call": call})
        log.write(*write)
        done.append(write)
        index = OutputsIndex.of(log.snapshot())
        assert index.depth <= MAX_CHAIN
    assert index == eager(done)


def test_a_loaded_execution_builds_its_index_from_its_task_runs_when_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    builds = 0
    real = outputs_module.outputs_index

    def counting(taskruns: list[TaskRun]) -> immutables.Map[str, Any]:
        nonlocal builds
        builds += 1
        return real(taskruns)

    monkeypatch.setattr(outputs_module, "outputs_index", counting)
    runs = [
        TaskRun(f"r{i}", i, "each" if i else "top", "Return", None, Phase.TASKS, 0, 0, (str(i),) if i else (),
                i, State.SUCCESS, T0, outputs={"value": i})
        for i in range(50)
    ]  # fmt: skip
    shuffled = runs[:]
    random.Random(3).shuffle(shuffled)
    meta = {"id": "ex", "namespace": "n", "flow_id": "f", "state": "SUCCESS", "created": T0.isoformat()}
    execution = execution_from_json(meta, 1, shuffled)
    assert isinstance(execution.outputs_index, OutputsIndex)
    assert builds == 0  # a display or a finished run never reads it
    assert execution.outputs_index == outputs_index(runs)
    assert execution.outputs_index["each"]["49"] == {"value": 49}
    assert execution.outputs_index["top"] == {"value": 0}
    assert builds == 1


def test_an_index_reads_as_the_map_it_stands_for() -> None:
    built = immutables.Map({"a": {"value": 1}, "b": immutables.Map({"x": {"value": 2}})})
    index = OutputsIndex.of(built)
    assert OutputsIndex.of(index) is index
    assert index == built and built == index
    assert index == {"a": {"value": 1}, "b": immutables.Map({"x": {"value": 2}})}
    assert index != {"a": {"value": 1}}
    assert hash(OutputsIndex.of(immutables.Map({"a": 1}))) == hash(immutables.Map({"a": 1}))
    assert "a" in index and "z" not in index and index.get("z") is None
    assert sorted(index) == ["a", "b"] and len(index) == 2
    with pytest.raises(KeyError):
        index["z"]
    assert OutputsIndex.of({"plain": 1})["plain"] == 1


def test_a_log_and_its_snapshots_form_no_reference_cycle() -> None:
    """A cycle would keep a whole execution's index alive until the collector's next full pass."""
    gc.collect()
    gc.disable()
    try:
        log = OutputsLog(OutputsIndex())
        for i in range(3):
            log.write("t", (str(i),), {"value": i})
            snapshot = log.snapshot()
        assert snapshot["t"]["2"] == {"value": 2}
        next_log = OutputsLog(log.snapshot())
        next_log.write("u", (), {"value": 0})
        del log, snapshot, next_log
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        found = [o for o in gc.garbage if type(o).__module__ == outputs_module.__name__]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert found == []


def test_a_snapshot_never_moves_after_it_was_handed_out() -> None:
    """A context keeps what it was given: later writes of the same plan call show only in
    later snapshots, whether the earlier one was read before or not."""
    log = OutputsLog(OutputsIndex())
    for i in range(100):
        log.write("t", (str(i),), {"value": i})
        log.snapshot()  # a context's, dropped before the next write
    assert log.snapshot()["t"]["99"] == {"value": 99}  # built now: a later write needs a new one
    held = log.snapshot()
    log.write("t", ("100",), {"value": 100})
    kept = {"outputs": log.snapshot()}
    log.write("t", ("101",), {"value": 101})
    assert "100" not in held["t"] and "101" not in kept["outputs"]["t"]
    assert kept["outputs"]["t"]["100"] == {"value": 100} and "101" in log.snapshot()["t"]


def test_once_a_call_reads_its_outputs_its_contexts_get_the_map_itself() -> None:
    """A flow that reads ``outputs`` reads them in every task: folded as written from then on."""
    log = OutputsLog(OutputsIndex())
    log.write("t", ("0",), {"value": 0})
    first = log.snapshot()
    assert isinstance(first, OutputsIndex)
    assert "t" in first  # read: built
    log.write("t", ("1",), {"value": 1})
    second = log.snapshot()
    assert type(second) is immutables.Map
    assert second == eager([("t", ("0",), {"value": 0}), ("t", ("1",), {"value": 1})])
    assert "1" not in first["t"]
