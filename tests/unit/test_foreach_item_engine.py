"""ForEachItem in the pure engine: the split's hint, chunked starts, counting ends once, recovery."""

from __future__ import annotations

from typing import Any

from control_plane.engine import RunInline, StartSubflow, StartTimer, State, TaskResult, TimerFired
from control_plane.engine.actions import BATCHES_KEY
from control_plane.engine.events import Recover, Restart
from control_plane.engine.foreach_item import CHUNK
from control_plane.engine.model import Batches
from control_plane.store.codec import taskrun_from_json, taskrun_to_json

from .helpers import Driver, at

FLOW = """
id: parent
namespace: t
labels:
  team: data
inputs:
  - id: file
    type: STRING
tasks:
  - id: each
    type: io.kestra.plugin.core.flow.ForEachItem
    items: "{{{{ inputs.file }}}}"
    namespace: t
    flowId: child
    wait: {wait}
    transmitFailed: {transmit}
    inheritLabels: true
    labels:
      batch: "{{{{ taskrun.iteration }}}}"
    inputs:
      items: "{{{{ taskrun.items }}}}"
      {extra}
"""
PREFIX = "s3://bucket/t/parent/ex1/split/1/"


def driver(*, wait: bool = True, transmit: bool = True, extra: str = "") -> Driver:
    text = FLOW.format(wait=str(wait).lower(), transmit=str(transmit).lower(), extra=extra)
    return Driver(text, {"file": "s3://bucket/in/items.csv"})


def split_done(d: Driver, total: int, seconds: float = 1) -> list[Any]:
    (split,) = d.of_type(RunInline)
    hint = {"total": total, "prefix": PREFIX, "extension": ".csv"}
    outputs = {"splits": f"{PREFIX}splits.txt", BATCHES_KEY: hint}
    return d.send(TaskResult(at(seconds), split.taskrun_id, 1, State.SUCCESS, outputs))


def child_done(d: Driver, start: StartSubflow, state: State = State.SUCCESS, seconds: float = 5) -> list[Any]:
    return d.send(TaskResult(at(seconds), start.taskrun_id, start.attempt, state, iteration=start.iteration))


def iterations(d: Driver) -> dict[str, int]:
    return dict(d.run("each_items").outputs["iterations"])


def test_the_split_is_asked_with_kestras_default_batch() -> None:
    d = driver()
    (split,) = d.of_type(RunInline, d.start())
    assert split.task_type == "io.kestra.plugin.core.flow.ForEachItem$ForEachItemSplit"
    assert split.properties["items"] == "s3://bucket/in/items.csv"
    assert split.properties["batch"] == {"rows": 1, "separator": "\n"}
    assert d.run("each").state is State.RUNNING


def test_starts_are_chunked_and_each_child_gets_its_batch() -> None:
    d = driver()
    d.start()
    first = split_done(d, 250)
    assert d.run("each_split").outputs == {"splits": f"{PREFIX}splits.txt"}  # the hint is not an output
    starts = d.of_type(StartSubflow, first)
    assert [s.iteration for s in starts] == list(range(1, CHUNK + 1))
    assert starts[0].inputs == {"items": f"{PREFIX}1.csv"}
    assert starts[0].outputs_uri == f"{PREFIX}outputs/1.ion"
    assert starts[6].labels == {"team": "data", "batch": "7", "system.correlationId": "ex1"}
    assert starts[0].wait
    assert len({s.execution_id for s in starts}) == CHUNK
    items = d.run("each_items")
    (timer,) = d.of_type(StartTimer, first)
    assert timer.key == f"foreach-item:{items.id}:{CHUNK}" and timer.at == at(1)
    assert iterations(d) == {"CREATED": 0, "RUNNING": CHUNK} and items.outputs["numberOfBatches"] == 250
    fired = d.send(TimerFired(at(2), timer.key))
    second = d.of_type(StartSubflow, fired)
    assert [s.iteration for s in second] == list(range(CHUNK + 1, 2 * CHUNK + 1))
    assert d.send(TimerFired(at(2), timer.key)) == []  # fired twice: the chunk is not asked twice
    (timer,) = d.of_type(StartTimer, fired)
    last = d.of_type(StartSubflow, d.send(TimerFired(at(3), timer.key)))
    assert [s.iteration for s in last] == list(range(2 * CHUNK + 1, 251))
    assert d.run("each_items").state is State.RUNNING and iterations(d)["RUNNING"] == 250


def test_child_ids_are_derived_so_a_replay_asks_for_the_same_children() -> None:
    a, b = driver(), driver()
    a.start()
    b.start()
    ids_a = [s.execution_id for s in a.of_type(StartSubflow, split_done(a, 3))]
    ids_b = [s.execution_id for s in b.of_type(StartSubflow, split_done(b, 3))]
    assert ids_a == ids_b and len(set(ids_a)) == 3


def test_each_end_is_counted_once_and_the_last_one_ends_the_task() -> None:
    d = driver()
    d.start()
    starts = d.of_type(StartSubflow, split_done(d, 3))
    child_done(d, starts[0])
    child_done(d, starts[0])  # heard twice (a recovered notice): counted once
    d.send(TaskResult(at(6), starts[0].taskrun_id, 1, State.SUCCESS, iteration=9))  # no such batch
    assert iterations(d) == {"CREATED": 0, "RUNNING": 2, "SUCCESS": 1}
    child_done(d, starts[1])
    merge_actions = child_done(d, starts[2])
    items = d.run("each_items")
    assert items.state is State.SUCCESS and len(items.attempts) == 1
    assert items.outputs == {
        "iterations": {"CREATED": 0, "RUNNING": 0, "SUCCESS": 3},
        "numberOfBatches": 3,
        "subflowOutputsBaseUri": f"{PREFIX}outputs/",
    }
    (merge,) = d.of_type(RunInline, merge_actions)
    assert merge.task_type.endswith("$ForEachItemMergeOutputs")
    assert merge.properties == {"total": 3, "prefix": PREFIX}
    out = {"subflowOutputs": "s3://bucket/merged/outputs.ion"}
    d.send(TaskResult(at(9), merge.taskrun_id, 1, State.SUCCESS, out))
    assert d.execution.state is State.SUCCESS
    assert set(d.states().values()) == {"SUCCESS"}
    assert list(d.states()) == ["each", "each_split", "each_items", "each_merge"]


def test_a_failed_child_fails_the_task_under_transmit_failed_only() -> None:
    for transmit, expected in ((True, State.FAILED), (False, State.SUCCESS)):
        d = driver(transmit=transmit)
        d.start()
        starts = d.of_type(StartSubflow, split_done(d, 2))
        child_done(d, starts[0], State.FAILED)
        child_done(d, starts[1])
        items = d.run("each_items")
        assert items.state is expected, transmit
        assert items.outputs["iterations"] == {"CREATED": 0, "RUNNING": 0, "FAILED": 1, "SUCCESS": 1}
        if transmit:
            assert items.error == "1 of 2 subflow executions failed"
            assert d.execution.state is State.FAILED and "each_merge" not in d.states()


def test_a_killed_child_kills_the_task() -> None:
    d = driver()
    d.start()
    starts = d.of_type(StartSubflow, split_done(d, 2))
    child_done(d, starts[0], State.KILLED)
    child_done(d, starts[1])
    assert d.run("each_items").state is State.KILLED


def test_without_wait_children_count_as_started_and_the_task_ends_once_all_are() -> None:
    d = driver(wait=False)
    d.start()
    first = split_done(d, CHUNK + 5)
    starts = d.of_type(StartSubflow, first)
    assert len(starts) == CHUNK and not starts[0].wait and starts[0].outputs_uri is None
    assert iterations(d) == {"RUNNING": 0, "SUCCESS": CHUNK}
    (timer,) = d.of_type(StartTimer, first)
    rest = d.send(TimerFired(at(2), timer.key))
    assert len(d.of_type(StartSubflow, rest)) == 5
    items = d.run("each_items")
    assert items.state is State.SUCCESS
    assert items.outputs["iterations"] == {"RUNNING": 0, "SUCCESS": CHUNK + 5}
    (merge,) = d.of_type(RunInline, rest)
    assert merge.properties == {"total": 0}  # nothing waited for: nothing to merge


def test_no_batch_means_no_child_and_no_outputs() -> None:
    d = driver()
    d.start()
    actions = split_done(d, 0)
    assert d.of_type(StartSubflow, actions) == []
    items = d.run("each_items")
    assert items.state is State.SUCCESS and items.outputs is None


def test_inputs_that_fail_to_render_fail_the_task_before_any_child() -> None:
    d = driver(extra='broken: "{{ nope.nothing }}"')
    d.start()
    assert d.of_type(StartSubflow, split_done(d, 3)) == []
    items = d.run("each_items")
    assert items.state is State.FAILED and "nope" in (items.error or "")


def test_recover_asks_again_for_children_not_yet_ended_with_the_same_ids() -> None:
    d = driver()
    d.start()
    starts = d.of_type(StartSubflow, split_done(d, 4))
    child_done(d, starts[0])
    again = d.of_type(StartSubflow, d.send(Recover(at(7))))
    pairs = [(s.iteration, s.execution_id) for s in again]
    assert pairs == [(s.iteration, s.execution_id) for s in starts[1:]]


def test_recover_without_wait_asks_again_for_the_last_chunk_only() -> None:
    d = driver(wait=False)
    d.start()
    first = split_done(d, CHUNK + 3)
    (timer,) = d.of_type(StartTimer, first)
    d.send(TimerFired(at(2), timer.key))
    again = d.of_type(StartSubflow, d.send(Recover(at(7))))
    assert [s.iteration for s in again] == [CHUNK + 1, CHUNK + 2, CHUNK + 3]


def test_batches_round_trip_through_the_store_codec() -> None:
    d = driver()
    d.start()
    starts = d.of_type(StartSubflow, split_done(d, 20))
    child_done(d, starts[12])
    items = d.run("each_items")
    back = taskrun_from_json(taskrun_to_json(items))
    assert back == items and back.batches is not None and back.batches.has_ended(13)
    assert not back.batches.has_ended(12) and back.batches.done == 1


def test_ends_are_remembered_each_alone_and_in_order_ends_keep_no_bitmap() -> None:
    b = Batches(40, PREFIX, ".csv")
    for n in (1, 9, 10, 17, 40):
        b = b.mark_ended(n)
    assert [n for n in range(1, 41) if b.has_ended(n)] == [1, 9, 10, 17, 40]
    assert b.done == 5 and b.low == 0
    for n in range(2, 9):
        b = b.mark_ended(n)
    assert b.low == 8 and [n for n in range(1, 41) if b.has_ended(n)] == [*range(1, 11), 17, 40]
    in_order = Batches(10_000, PREFIX, ".csv")
    for n in range(1, 10_001):
        in_order = in_order.mark_ended(n)
    assert in_order.ended == b"" and in_order.low == 10_000 and in_order.done == 10_000


def test_with_wait_each_end_also_asks_for_the_next_chunk() -> None:
    d = driver()
    d.start()
    first = split_done(d, 3 * CHUNK)
    (timer,) = d.of_type(StartTimer, first)
    more = d.of_type(StartSubflow, child_done(d, d.of_type(StartSubflow, first)[0]))
    assert [s.iteration for s in more] == list(range(CHUNK + 1, 2 * CHUNK + 1))
    assert d.send(TimerFired(at(6), timer.key)) == []  # that chunk was asked for already


def test_restart_runs_every_batch_again_as_new_children() -> None:
    d = driver()
    d.start()
    first = d.of_type(StartSubflow, split_done(d, 2))
    child_done(d, first[0], State.FAILED)
    child_done(d, first[1])
    assert d.execution.state is State.FAILED
    again = d.of_type(StartSubflow, d.send(Restart(at(10))))
    assert [s.iteration for s in again] == [1, 2] and {s.attempt for s in again} == {2}
    assert not {s.execution_id for s in again} & {s.execution_id for s in first}
    assert iterations(d) == {"CREATED": 0, "RUNNING": 2}
    for start in again:
        child_done(d, start, seconds=11)
    assert d.run("each_items").state is State.SUCCESS


def test_inside_a_foreach_each_value_has_its_own_split_children_and_outputs() -> None:
    d = Driver(
        """
id: loop
namespace: t
tasks:
  - id: files
    type: io.kestra.plugin.core.flow.ForEach
    values: ["s3://bucket/a.csv", "s3://bucket/b.csv"]
    concurrencyLimit: 0
    tasks:
      - id: each
        type: io.kestra.plugin.core.flow.ForEachItem
        items: "{{ taskrun.value }}"
        namespace: t
        flowId: child
        inputs:
          items: "{{ taskrun.items }}"
"""
    )
    splits = d.of_type(RunInline, d.start())
    assert sorted(s.properties["items"] for s in splits) == ["s3://bucket/a.csv", "s3://bucket/b.csv"]
    starts = []
    for n, split in enumerate(splits, start=1):
        prefix = f"s3://bucket/split{n}/"
        hint = {"total": n, "prefix": prefix, "extension": ".csv"}
        outputs = {"splits": f"{prefix}splits.txt", BATCHES_KEY: hint}
        starts += d.of_type(
            StartSubflow, d.send(TaskResult(at(n), split.taskrun_id, 1, State.SUCCESS, outputs))
        )
    assert [s.inputs["items"] for s in starts] == [
        "s3://bucket/split1/1.csv",
        *(f"s3://bucket/split2/{i}.csv" for i in (1, 2)),
    ]
    assert len({s.execution_id for s in starts}) == 3
    for start in starts:
        child_done(d, start)
    merges = d.of_type(RunInline)[2:]
    assert sorted(m.properties["total"] for m in merges) == [1, 2]
    for merge in merges:
        d.send(TaskResult(at(9), merge.taskrun_id, 1, State.SUCCESS, None))
    assert d.execution.state is State.SUCCESS
    numbers = d.execution.outputs_index["each_items"]
    assert {value: out["numberOfBatches"] for value, out in numbers.items()} == {
        "s3://bucket/a.csv": 1,
        "s3://bucket/b.csv": 2,
    }


def test_without_wait_a_child_that_cannot_start_fails_the_task_while_it_runs() -> None:
    d = driver(wait=False)
    d.start()
    starts = d.of_type(StartSubflow, split_done(d, CHUNK + 1))
    failed = TaskResult(
        at(3), starts[0].taskrun_id, 1, State.FAILED, error="Unable to find flow", iteration=1
    )
    d.send(failed)
    items = d.run("each_items")
    assert items.state is State.FAILED and items.error == "Batch 1: Unable to find flow"
