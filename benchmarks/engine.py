"""Engine throughput through the production driver: a ForEach of N Return tasks (concurrencyLimit 0).

The flow runs as every runtime runs it: ``Service`` (plan, versioned save, reload) wired by
``open_local``, on SQLite in a memory-backed directory (``/dev/shm`` when there is one) with
``synchronous=OFF``, and a virtual clock: the store is as fast as SQLite gets, so what is
measured is the engine and the driver's bookkeeping around it, not a disk.

Prints task runs per second for N = 1,000, 10,000 and 100,000, the share of the time spent
inside store calls, and the ratio of the per-task time at 100,000 to that at 1,000 (1.0 =
perfectly linear; quadratic behaviour would show up as a ratio near 100). Flow parsing is
outside the timed region; rendering, planning, storing the execution and reading it back at
the end are inside. The flow's template reads ``taskrun.value`` only, so ``outputs.item`` is
logged, never built (control_plane/engine/outputs.py); ``--read-outputs`` makes every task
read ``outputs`` too (``{{ outputs.each is defined }}``), which builds it as the loop goes.
Beside the wall time it prints the process's CPU time per task run, the CPU time of each
phase per task run (``plan`` calls, and each store call: writing the execution, reading it
back) and the cyclic collector's passes in the timed region (counted with ``gc.callbacks``):
on a machine shared with other work the wall time swings several-fold from run to run, the
CPU time and the count much less. The last line is stable for tracking over
time (wall time, as before):

    engine: <task runs/s at 100,000> task runs/s, ratio <ratio>

Usage: python benchmarks/engine.py [--sizes 1000,10000,100000] [--repeat 3] [--dir /dev/shm] [--read-outputs]
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from control_plane.runtime import local_settings, open_local
from control_plane.service import driver
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

READING = "{{{{ outputs.each is defined }}}}"  # every task reads the outputs index

PHASES = ("plan", "create_execution", "save_execution", "get_execution")
STORE_CALLS = (
    "create_execution",
    "save_execution",
    "get_execution",
    "append_logs",
    "next_timer",
    "active_jobs",
)


class _Timed:
    """Seconds spent inside the store's calls, by wrapping them on the instance, and the CPU
    seconds of each (few calls: one per event, not per task run)."""

    def __init__(self, store: SqliteStore) -> None:
        self.seconds = 0.0
        self.cpu: dict[str, float] = {}
        for name in STORE_CALLS:
            setattr(store, name, self._wrap(getattr(store, name), name))

    def _wrap(self, call: Callable[..., Any], name: str) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            cpu = time.process_time()
            try:
                return call(*args, **kwargs)
            finally:
                self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - cpu
                self.seconds += time.perf_counter() - started

        return timed


class _Planning:
    """CPU seconds inside the engine's ``plan`` calls, by wrapping the driver's reference to it."""

    def __init__(self) -> None:
        self.cpu = 0.0
        self._plan = driver.plan

        def timed(*args: Any, **kwargs: Any) -> Any:
            cpu = time.process_time()
            try:
                return self._plan(*args, **kwargs)
            finally:
                self.cpu += time.process_time() - cpu

        driver.plan = timed


PLANNING = _Planning()


class _Collections:
    """Passes of the cyclic garbage collector while ``counting`` is set, and their seconds."""

    def __init__(self) -> None:
        self.counting = False
        self.passes = 0
        self.seconds = 0.0
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if not self.counting:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.passes += 1
            self.seconds += time.perf_counter() - self._started


COLLECTIONS = _Collections()


class Run(NamedTuple):
    wall: float
    in_store: float
    taskruns: int
    cpu: float
    collections: int
    phases: dict[str, float]  # CPU seconds: plan, and each store call


def run_once(source: str, directory: str | None) -> Run:
    """Wall seconds, seconds in the store, task runs, CPU seconds, collector passes of one
    execution, start to end."""
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        db = Path(tmp) / "squall.db"
        store = SqliteStore(db, synchronous="OFF")
        timed = _Timed(store)
        with open_local(local_settings(db), store=store, clock=VirtualClock()) as rt:
            record = rt.service.deploy(source, "bench.yaml")
            rt.service.flow(record.namespace, record.id)  # parse outside the timed region
            gc.collect()
            timed.seconds = 0.0
            timed.cpu.clear()
            PLANNING.cpu = 0.0
            COLLECTIONS.passes = 0
            COLLECTIONS.counting = True
            cpu = time.process_time()
            started = time.perf_counter()
            execution = rt.service.start(record.namespace, record.id)
            final = rt.service.run(execution.id)
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu
            COLLECTIONS.counting = False
            assert str(final.state) == "SUCCESS", final.state
            phases = {"plan": PLANNING.cpu, **timed.cpu}
            return Run(elapsed, timed.seconds, len(final.taskruns), cpu, COLLECTIONS.passes, phases)


def measure(n: int, repeat: int, directory: str | None, flow: str = FLOW) -> tuple[Run, Run]:
    """The fastest of ``repeat`` runs by wall time, and the one of least CPU time."""
    source = flow.format(values=json.dumps([str(i) for i in range(n)]))
    runs = [run_once(source, directory) for _ in range(repeat)]
    return min(runs), min(runs, key=lambda run: run.cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--repeat", type=int, default=3)
    shm = Path("/dev/shm")
    parser.add_argument(
        "--dir", default=str(shm) if shm.is_dir() else None, help="where the SQLite file goes"
    )
    parser.add_argument(
        "--read-outputs", action="store_true", help="every task reads `outputs` (builds the index)"
    )
    args = parser.parse_args()
    flow = FLOW.replace("{{{{ taskrun.value }}}}", READING) if args.read_outputs else FLOW
    sizes = [int(s) for s in args.sizes.split(",")]
    per_task: dict[int, float] = {}
    cpu_per_task: dict[int, float] = {}
    rates: dict[int, float] = {}
    for n in sizes:
        run, least = measure(n, args.repeat, args.dir, flow)
        cpu = least.cpu
        per_task[n] = run.wall / run.taskruns
        cpu_per_task[n] = cpu / run.taskruns
        rates[n] = run.taskruns / run.wall
        print(
            f"foreach N={n:>7,}: {run.taskruns:>7,} task runs in {run.wall:7.3f} s"
            f" = {rates[n]:>9,.0f} task runs/s, {per_task[n] * 1e6:6.1f} us/task run,"
            f" {run.in_store / run.wall:4.0%} in the store; CPU {cpu_per_task[n] * 1e6:5.1f} us/task run,"
            f" {run.collections} collector passes"
        )
        phases = ", ".join(
            f"{name} {least.phases.get(name, 0.0) / least.taskruns * 1e6:.1f}" for name in PHASES
        )
        print(f"  CPU us/task run by phase (run of least CPU): {phases}")
    chain = run_once(CHAIN, args.dir)
    print(f"chain of 200 Return tasks: {chain.wall * 1e3 / chain.taskruns:.3f} ms/task (service on SQLite)")
    small, large = min(sizes), max(sizes)
    ratio = per_task[large] / per_task[small]
    cpu_ratio = cpu_per_task[large] / cpu_per_task[small]
    print(f"engine CPU: {1 / cpu_per_task[large]:.0f} task runs per CPU second, ratio {cpu_ratio:.2f}")
    print(f"engine: {rates[large]:.0f} task runs/s, ratio {ratio:.2f}")


if __name__ == "__main__":
    main()
