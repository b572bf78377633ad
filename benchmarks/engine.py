"""Engine throughput through the production driver: a ForEach of N Return tasks (concurrencyLimit 0).

The flow runs as every runtime runs it: ``Service`` (plan, versioned save, reload) wired by
``open_local``, on SQLite in a memory-backed directory (``/dev/shm`` when there is one) with
``synchronous=OFF``, and a virtual clock: the store is as fast as SQLite gets, so what is
measured is the engine and the driver's bookkeeping around it, not a disk.

Prints task runs per second for N = 1,000, 10,000 and 100,000, the share of the time spent
inside store calls, and the ratio of the per-task time at 100,000 to that at 1,000 (1.0 =
perfectly linear; quadratic behaviour would show up as a ratio near 100). Flow parsing is
outside the timed region; rendering, planning, indexing outputs, storing the execution and
reading it back at the end are inside. The last line is stable for tracking over time:

    engine: <task runs/s at 100,000> task runs/s, ratio <ratio>

Usage: python benchmarks/engine.py [--sizes 1000,10000,100000] [--repeat 3] [--dir /dev/shm]
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from control_plane.runtime import local_settings, open_local
from control_plane.service.clock import VirtualClock
from control_plane.store.sqlite import SqliteStore

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

STORE_CALLS = (
    "create_execution",
    "save_execution",
    "get_execution",
    "append_logs",
    "next_timer",
    "active_jobs",
)


class _Timed:
    """Seconds spent inside the store's calls, by wrapping them on the instance."""

    def __init__(self, store: SqliteStore) -> None:
        self.seconds = 0.0
        for name in STORE_CALLS:
            setattr(store, name, self._wrap(getattr(store, name)))

    def _wrap(self, call: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        return timed


def run_once(source: str, directory: str | None) -> tuple[float, float, int]:
    """(wall seconds, seconds in the store, task runs) of one execution, start to end."""
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        db = Path(tmp) / "squall.db"
        store = SqliteStore(db, synchronous="OFF")
        timed = _Timed(store)
        with open_local(local_settings(db), store=store, clock=VirtualClock()) as rt:
            record = rt.service.deploy(source, "bench.yaml")
            rt.service.flow(record.namespace, record.id)  # parse outside the timed region
            gc.collect()
            timed.seconds = 0.0
            started = time.perf_counter()
            execution = rt.service.start(record.namespace, record.id)
            final = rt.service.run(execution.id)
            elapsed = time.perf_counter() - started
            assert str(final.state) == "SUCCESS", final.state
            return elapsed, timed.seconds, len(final.taskruns)


def measure(n: int, repeat: int, directory: str | None) -> tuple[float, float, int]:
    source = FLOW.format(values=json.dumps([str(i) for i in range(n)]))
    return min(run_once(source, directory) for _ in range(repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--repeat", type=int, default=3)
    shm = Path("/dev/shm")
    parser.add_argument(
        "--dir", default=str(shm) if shm.is_dir() else None, help="where the SQLite file goes"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    per_task: dict[int, float] = {}
    rates: dict[int, float] = {}
    for n in sizes:
        elapsed, in_store, taskruns = measure(n, args.repeat, args.dir)
        per_task[n] = elapsed / taskruns
        rates[n] = taskruns / elapsed
        print(
            f"foreach N={n:>7,}: {taskruns:>7,} task runs in {elapsed:7.3f} s"
            f" = {rates[n]:>9,.0f} task runs/s, {per_task[n] * 1e6:6.1f} us/task run,"
            f" {in_store / elapsed:4.0%} in the store"
        )
    elapsed, _, taskruns = run_once(CHAIN, args.dir)
    print(f"chain of 200 Return tasks: {elapsed * 1e3 / taskruns:.3f} ms/task (service on SQLite)")
    small, large = min(sizes), max(sizes)
    ratio = per_task[large] / per_task[small]
    print(f"engine: {rates[large]:.0f} task runs/s, ratio {ratio:.2f}")


if __name__ == "__main__":
    main()
