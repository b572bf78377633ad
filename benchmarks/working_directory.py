"""One job per WorkingDirectory (ADR 0016) against one job per child (ADR 0012), counted.

A WorkingDirectory of N shell children, each adding a file of ``--kib`` KiB to the shared
directory and reading the previous child's, runs on the process runner in a scratch runtime
(the production driver on SQLite, as ``squall conformance`` runs flows) twice: as it is (one
job) and with a ``timeout`` on every child (which makes it one job per child, the directory
carried through the deployment storage). Printed per mode: runner jobs (distinct job names
over the attempts), objects and bytes written into the deployment storage, and the ratios
per-child / one-job; wall time is printed for information only (a noisy machine). Every child
must succeed in both modes, or the run fails.

Usage: python benchmarks/working_directory.py [--children 10] [--kib 256]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from control_plane.conformance import run_flow, scratch_runtime
from control_plane.service.storage import LocalStorage


def flow(children: int, kib: int, per_child: bool) -> str:
    timeout = "\n        timeout: PT10M" if per_child else ""
    tasks = "".join(
        f"""
      - id: c{i}
        type: io.kestra.plugin.scripts.shell.Commands{timeout}
        commands:
          - {"echo start" if i == 0 else f"test -s f{i - 1}.bin"}
          - head -c {kib * 1024} /dev/zero > f{i}.bin"""
        for i in range(children)
    )
    return f"""
id: wd-bench
namespace: squall.bench
tasks:
  - id: wd
    type: io.kestra.plugin.core.flow.WorkingDirectory
    tasks:{tasks}
"""


def measure(children: int, kib: int, per_child: bool) -> dict[str, float]:
    with scratch_runtime() as runtime:
        storage = runtime.service.storage
        assert isinstance(storage, LocalStorage), type(storage)
        started = time.perf_counter()
        run = run_flow(runtime, flow(children, kib, per_child))
        seconds = time.perf_counter() - started
        states = {tr.task_id: str(tr.state) for tr in run.execution.taskruns.values()}
        if str(run.state) != "SUCCESS" or len(states) != children + 1:
            raise SystemExit(f"the run did not succeed: {run.state} {states}")
        jobs = {a.job for tr in run.execution.taskruns.values() for a in tr.attempts if a.job}
        files = [p for p in storage.root.rglob("*") if p.is_file()]
        return {
            "jobs": len(jobs),
            "objects": len(files),
            "bytes": sum(p.stat().st_size for p in files),
            "seconds": seconds,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--children", type=int, default=10)
    parser.add_argument("--kib", type=int, default=256)
    args = parser.parse_args()
    measure(1, 1, per_child=False)  # warm-up: imports and the process runner's first start
    one = measure(args.children, args.kib, per_child=False)
    each = measure(args.children, args.kib, per_child=True)
    print(f"WorkingDirectory of {args.children} children, {args.kib} KiB added by each")
    print(f"{'':22}{'one job':>12}{'job per child':>16}{'ratio':>10}")
    for key in ("jobs", "objects", "bytes"):
        ratio = f"{each[key] / one[key]:.1f}" if one[key] else "(none)"
        print(f"{key:22}{one[key]:>12,.0f}{each[key]:>16,.0f}{ratio:>10}")
    print(f"{'seconds (info only)':22}{one['seconds']:>12.2f}{each['seconds']:>16.2f}")


if __name__ == "__main__":
    main()
