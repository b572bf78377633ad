"""Engine throughput: a ForEach of N Return tasks (concurrencyLimit 0) run by the in-memory executor.

Prints task runs per second for N = 1,000, 10,000 and 100,000 and the ratio of the per-task
time at 100,000 to that at 1,000 (1.0 = perfectly linear; quadratic behaviour would show up
as a ratio near 100). Flow parsing is outside the timed region; rendering, planning and
indexing outputs are inside. The last line is stable for tracking over time:

    engine: <task runs/s at 100,000> task runs/s, ratio <ratio>

Usage: python benchmarks/engine.py [--sizes 1000,10000,100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gc
import json
import time

from control_plane.flows.loader import parse_flow
from control_plane.service.memory import InMemoryExecutor

FLOW = """
id: bench
namespace: squall.bench
tasks:
  - id: each
    type: io.kestra.plugin.core.flow.ForEach
    concurrencyLimit: 0
    values: {values}
    tasks:
      - id: item
        type: io.kestra.plugin.core.debug.Return
        format: "{{{{ taskrun.value }}}}"
"""

CHAIN = "id: chain\nnamespace: squall.bench\ntasks:\n" + "".join(
    f'  - id: t{i}\n    type: io.kestra.plugin.core.debug.Return\n    format: "{{{{ task.id }}}}"\n'
    for i in range(200)
)


def measure(n: int, repeat: int) -> tuple[float, int]:
    flow = parse_flow(FLOW.format(values=json.dumps([str(i) for i in range(n)])), f"bench-{n}.yaml")
    best = float("inf")
    taskruns = 0
    for _ in range(repeat):
        gc.collect()
        started = time.perf_counter()
        result = InMemoryExecutor().run(flow)
        elapsed = time.perf_counter() - started
        assert str(result.state) == "SUCCESS", result.state
        taskruns = len(result.execution.taskruns)
        best = min(best, elapsed)
    return best, taskruns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    per_task: dict[int, float] = {}
    rates: dict[int, float] = {}
    for n in sizes:
        elapsed, taskruns = measure(n, args.repeat)
        per_task[n] = elapsed / taskruns
        rates[n] = taskruns / elapsed
        print(
            f"foreach N={n:>7,}: {taskruns:>7,} task runs in {elapsed:7.3f} s"
            f" = {rates[n]:>9,.0f} task runs/s, {per_task[n] * 1e6:6.1f} us/task run"
        )
    chain = parse_flow(CHAIN, "chain.yaml")
    started = time.perf_counter()
    result = InMemoryExecutor().run(chain)
    elapsed = time.perf_counter() - started
    print(
        f"chain of 200 Return tasks: {elapsed * 1e3 / len(result.execution.taskruns):.3f} ms/task (in memory)"
    )
    small, large = min(sizes), max(sizes)
    ratio = per_task[large] / per_task[small]
    print(f"engine: {rates[large]:.0f} task runs/s, ratio {ratio:.2f}")


if __name__ == "__main__":
    main()
