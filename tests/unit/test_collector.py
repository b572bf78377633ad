"""The cyclic collector and the engine's values (issue 28: a linear engine).

Loading or planning N task runs must not make the collector rescan everything built so far
at each generation threshold: the engine's value types are declared untracked (they cannot
form cycles), and the stores decode one execution with the collector paused.
"""

from __future__ import annotations

import gc
import threading
import weakref
from datetime import UTC, datetime

import pytest

from control_plane.collector import PROMOTE_AFTER, planning
from control_plane.engine import Started, new_execution, plan
from control_plane.engine.model import Attempt, Execution, LogLine, Phase, Progress, TaskRun
from control_plane.engine.states import State
from control_plane.flows.inputs import MASK
from control_plane.levels import Level
from control_plane.store.codec import acyclic, dumps, loads, taskrun_from_json, taskrun_to_json
from tests.unit.helpers import T0, flow

NOW = datetime(2026, 12, 4, tzinfo=UTC)


def _taskrun(i: int) -> TaskRun:
    return TaskRun(
        id=f"tr{i}",
        seq=i,
        task_id="t",
        task_type="io.kestra.plugin.core.debug.Return",
        parent_id=None,
        phase=Phase.TASKS,
        lane=i,
        position=0,
        values=(str(i),),
        iteration=0,
        state=State.SUCCESS,
        created=NOW,
        attempts=(Attempt(State.SUCCESS, NOW, NOW),),
        outputs={"value": [str(i)]},
        progress=Progress(values=("a",)),
    )


def test_the_engine_values_are_not_tracked_by_the_collector() -> None:
    tr = _taskrun(1)
    values = [
        tr,
        tr.attempts[0],
        Progress(),
        LogLine(NOW, Level.INFO, "x"),
        Execution(id="e", namespace="n", flow_id="f", flow_revision=1, state=State.RUNNING, created=NOW),
    ]
    assert [gc.is_tracked(v) for v in values] == [False] * len(values)
    assert gc.is_tracked(tr.outputs)  # what they hold is tracked as usual: a cycle there is still found


def test_acyclic_pauses_the_collector_for_the_call_only_and_nests() -> None:
    assert gc.isenabled()
    with acyclic():
        assert not gc.isenabled()
        with acyclic():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner one did not resume it under the outer one
    assert gc.isenabled()
    with pytest.raises(ValueError), acyclic():
        raise ValueError("a failed decode")
    assert gc.isenabled()


def test_acyclic_leaves_a_collector_the_process_disabled_alone() -> None:
    gc.disable()
    try:
        with acyclic():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_cycles_made_while_paused_are_still_collected_afterwards() -> None:
    class Node:
        def __init__(self) -> None:
            self.other: Node | None = None

    with acyclic():
        a, b = Node(), Node()
        a.other, b.other = b, a
        seen = threading.Event()
        weakref.finalize(a, seen.set)
        del a, b
    gc.collect()
    assert seen.is_set()


def test_a_task_run_round_trips_with_the_collector_paused() -> None:
    with acyclic():
        rows = [dumps(taskrun_to_json(_taskrun(i))) for i in range(3)]
        back = [taskrun_from_json(loads(row)) for row in rows]
    assert back == [_taskrun(i) for i in range(3)]


def test_what_a_call_builds_joins_the_oldest_generation_unscanned() -> None:
    with planning():
        assert not gc.isenabled()
        built = [[i] for i in range(PROMOTE_AFTER + 1)]  # tracked containers, alive after the call
    assert gc.isenabled()
    oldest = {id(o) for o in gc.get_objects(generation=2)}
    assert all(id(item) in oldest for item in built)
    assert gc.get_freeze_count() == 0  # promoted, not kept frozen


def test_a_small_call_leaves_its_objects_young() -> None:
    gc.collect()
    with planning():
        built = [[1]]
    assert id(built[0]) not in {id(o) for o in gc.get_objects(generation=2)}


def test_cycles_made_while_planning_are_found_by_the_next_full_collection() -> None:
    class Node:
        def __init__(self) -> None:
            self.other: Node | None = None

    seen = threading.Event()
    with planning():
        a, b = Node(), Node()
        a.other, b.other = b, a
        weakref.finalize(a, seen.set)
        del a, b
    gc.collect()
    assert seen.is_set()


def test_a_process_freeze_is_left_alone() -> None:
    gc.freeze()  # as a Lambda handler may after its imports
    try:
        frozen = gc.get_freeze_count()
        with planning():
            built = [[i] for i in range(PROMOTE_AFTER + 1)]
        # not undone: an unfreeze would leave 0 (a frozen object freed by refcount meanwhile,
        # by this worker's other threads, lowers the count a little)
        assert gc.get_freeze_count() > frozen // 2
        assert id(built[0]) not in {id(o) for o in gc.get_objects(generation=2)}  # left young
    finally:
        gc.unfreeze()


class _Secrets:
    def get(self, name: str) -> str:
        return f"value-of-{name}"

    def revealed(self) -> list[str]:
        return []


def _squall_object(o: object) -> bool:
    """Whether ``o`` is an instance, function or bound method defined in Squall's code."""
    if (getattr(type(o), "__module__", None) or "").startswith("control_plane"):
        return True
    code = getattr(getattr(o, "__func__", o), "__module__", None)
    return isinstance(code, str) and code.startswith("control_plane")


def test_a_plan_that_hands_out_a_secret_leaves_no_cycle_holding_its_state() -> None:
    """Left to the collector, a cycle through the plan call kept everything it built (a whole
    100,000-task-run execution) alive until the next full pass."""
    f = flow(
        "id: s\nnamespace: test\ntasks:\n  - id: ret\n    type: io.kestra.plugin.core.debug.Return\n"
        "    format: \"{{ secret('K') }}\"\n"
    )
    gc.collect()
    gc.disable()
    try:
        execution, _ = plan(f, new_execution(f, "ex1", at=T0), Started(at=T0), secrets=_Secrets())
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        # Only Squall's own objects: in a shared test process other tests' threads (an HTTP
        # client, an emulator's server) leave cycles of their own at any moment.
        cyclic = sorted({type(o).__name__ for o in gc.garbage if _squall_object(o)})
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert [tr.outputs for tr in execution.taskruns.values()] == [{"value": MASK}]  # secret() was read
    assert cyclic == []
