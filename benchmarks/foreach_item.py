"""ForEachItem in the pure engine: work per step and the size of its ``_items`` task run.

Feeds ``plan`` the events a ForEachItem of N batches receives (the split's result, then each
child's end, in a shuffled order within a window of ``--spread`` batches behind the newest
start, as children that start together end in any order) and counts, without timing anything:

- steps: ``plan`` calls; and the most subflow starts one step asked for (bounded by CHUNK);
- the largest encoded ``_items`` task run (the JSON the stores write with every end: its
  bytes decide DynamoDB write units, 1 WCU per KB) and its size once every batch ended;
- the ratio of the largest item at N = 100,000 to that at N = 1,000 (1.0 = the item does not
  grow with the number of batches).

The last line is stable for tracking:

    foreach_item: max starts/step <k>, max item <bytes> B at <N>, ratio <r>

Usage: python benchmarks/foreach_item.py [--sizes 1000,10000,100000] [--spread 200]
"""

from __future__ import annotations

import argparse
import json
import random
from datetime import UTC, datetime, timedelta

from control_plane.engine import RunInline, Started, StartSubflow, StartTimer, State, TaskResult, TimerFired
from control_plane.engine.actions import BATCHES_KEY
from control_plane.engine.planner import new_execution, plan
from control_plane.flows.loader import parse_flow
from control_plane.store.codec import taskrun_to_json

FLOW = """
id: bench
namespace: squall.bench
tasks:
  - id: each
    type: io.kestra.plugin.core.flow.ForEachItem
    items: "s3://bucket/items.csv"
    namespace: squall.bench
    flowId: child
    inputs:
      items: "{{ taskrun.items }}"
"""
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def measure(total: int, spread: int, seed: int = 7) -> dict[str, int]:
    flow = parse_flow(FLOW, "bench.yaml")
    execution = new_execution(flow, "bench1", at=T0, inputs={})
    rng = random.Random(seed)
    steps = 0
    max_starts = 0
    max_item = 0
    pending: list[StartSubflow] = []
    timers: list[str] = []
    clock = T0

    def step(event: object) -> list[object]:
        nonlocal execution, steps, max_starts, max_item
        execution, actions = plan(flow, execution, event)  # type: ignore[arg-type]
        steps += 1
        starts = [a for a in actions if isinstance(a, StartSubflow)]
        max_starts = max(max_starts, len(starts))
        pending.extend(starts)
        timers.extend(a.key for a in actions if isinstance(a, StartTimer))
        items = next((tr for tr in execution.taskruns.values() if tr.task_id == "each_items"), None)
        if items is not None:
            max_item = max(max_item, len(json.dumps(taskrun_to_json(items))))
        return list(actions)

    (split,) = [a for a in step(Started(at=T0)) if isinstance(a, RunInline)]
    hint = {"total": total, "prefix": "s3://bucket/bench/split/1/", "extension": ".csv"}
    step(TaskResult(T0, split.taskrun_id, 1, State.SUCCESS, {"splits": "s3://x", BATCHES_KEY: hint}))
    while pending or timers:
        clock += timedelta(milliseconds=1)
        if not pending:
            step(TimerFired(clock, timers.pop(0)))
            continue
        window = min(len(pending), spread)
        child = pending.pop(rng.randrange(window))
        step(TaskResult(clock, child.taskrun_id, child.attempt, State.SUCCESS, iteration=child.iteration))
    items = next(tr for tr in execution.taskruns.values() if tr.task_id == "each_items")
    assert items.state is State.SUCCESS and items.outputs is not None
    assert items.outputs["iterations"]["SUCCESS"] == total, items.outputs
    return {
        "steps": steps,
        "max_starts": max_starts,
        "max_item": max_item,
        "final_item": len(json.dumps(taskrun_to_json(items))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--spread", type=int, default=200)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results = {n: measure(n, args.spread) for n in sizes}
    for n, r in results.items():
        print(
            f"N={n}: {r['steps']} steps, at most {r['max_starts']} starts per step, "
            f"_items item at most {r['max_item']} B ({-(-r['max_item'] // 1024)} WCU), "
            f"{r['final_item']} B at the end"
        )
    first, last = sizes[0], sizes[-1]
    ratio = results[last]["max_item"] / results[first]["max_item"]
    worst = max(r["max_starts"] for r in results.values())
    biggest = results[last]["max_item"]
    print(f"foreach_item: max starts/step {worst}, max item {biggest} B at {last}, ratio {ratio:.2f}")


if __name__ == "__main__":
    main()
