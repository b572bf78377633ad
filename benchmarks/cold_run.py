"""Cold ``squall run``: the whole process (interpreter, imports, validation, run, summary) of 200
chained inline Return tasks, the peer bench's ``seq200`` flow (../shared/peer-bench).

Each run is a new process. Two cases:

- ``fresh``: a new data directory every run: a new database, no validated flow and no compiled
  template kept by an earlier process (``<data_dir>/cache``, ADR 0006's last section);
- ``warm``: one data directory for every run, after one run that filled its caches (what a
  user re-running an unchanged flow gets, as Python reuses ``.pyc`` files).

It prints the median CPU time (user + system of the process, steadier than wall time on a
shared machine, though not immune to it) and wall time per case, and their ratio. With
``--base DIR``, the same for a source tree at ``DIR`` (``git archive <commit> control_plane
runners | tar -x -C DIR``), run in the same loop, interleaved, so that a ratio compares like
with like. Bytecode is written (``PYTHONDONTWRITEBYTECODE`` unset) as an installed package
has it. The last line is stable for tracking:

    cold run: <ms> ms CPU per process warm, <ms> fresh (200 inline tasks)

Usage: python benchmarks/cold_run.py [--runs 5] [--base DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def seq_flow(n: int = 200) -> str:
    """The peer bench's seq200: each Return adds 1 to its predecessor's output."""
    lines = ["id: seq200", "namespace: bench.peers", "tasks:"]
    lines += ["  - id: t0", "    type: io.kestra.plugin.core.debug.Return", '    format: "1"']
    for i in range(1, n):
        lines += [f"  - id: t{i}", "    type: io.kestra.plugin.core.debug.Return"]
        lines += [f'    format: "{{{{ fromJson(outputs.t{i - 1}.value) + 1 }}}}"']
    lines += [
        "outputs:",
        "  - id: result",
        "    type: STRING",
        f'    value: "{{{{ outputs.t{n - 1}.value }}}}"',
    ]
    return "\n".join(lines) + "\n"


def run(tree: Path, flow: Path, db: Path) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one ``squall run`` process."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(PYTHONPATH=str(tree), SQUALL_DB=str(db))
    env.pop("SQUALL_DATA_DIR", None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = _now()
    done = subprocess.run(  # in the flow's directory: ``-m`` puts the working directory on sys.path first
        [sys.executable, "-m", "control_plane.cli", "run", str(flow)],
        env=env,
        capture_output=True,
        text=True,
        cwd=flow.parent,
    )
    wall = _now() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0 or '"200"' not in done.stdout:
        raise SystemExit(
            f"squall run failed (exit {done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )
    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, wall


def _now() -> float:
    return time.perf_counter()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--base", type=Path, default=None, help="another source tree, measured alongside")
    args = parser.parse_args()
    trees = {"this": ROOT, **({"base": args.base.resolve()} if args.base else {})}
    with tempfile.TemporaryDirectory() as tmp:
        flow = Path(tmp) / "seq200.yaml"
        flow.write_text(seq_flow())
        figures: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for name, tree in trees.items():
            run(tree, flow, Path(tmp) / name / "warm" / "squall.db")  # fills the warm caches (and .pyc)
        for i in range(args.runs):
            for name, tree in trees.items():
                fresh = Path(tmp) / name / f"fresh{i}" / "squall.db"
                figures.setdefault((name, "fresh"), []).append(run(tree, flow, fresh))
                warm = Path(tmp) / name / "warm" / "squall.db"
                figures.setdefault((name, "warm"), []).append(run(tree, flow, warm))
    medians = {
        key: (statistics.median(c for c, _ in v), statistics.median(w for _, w in v))
        for key, v in figures.items()
    }
    for (name, case), (cpu, wall) in medians.items():
        print(
            f"{name:5} {case:5}: CPU {cpu * 1e3:6.0f} ms, wall {wall * 1e3:6.0f} ms (median of {args.runs})"
        )
    this_warm, this_fresh = medians[("this", "warm")][0], medians[("this", "fresh")][0]
    print(f"warm / fresh CPU: {this_warm / this_fresh:.2f}")
    if args.base:
        for case in ("fresh", "warm"):
            print(f"this / base CPU, {case}: {medians[('this', case)][0] / medians[('base', case)][0]:.2f}")
    load = os.getloadavg()[0]
    print(f"load average (1 min) at the end: {load:.1f} on {os.cpu_count()} CPUs")
    print(
        f"cold run: {this_warm * 1e3:.0f} ms CPU per process warm,"
        f" {this_fresh * 1e3:.0f} fresh (200 inline tasks)"
    )


if __name__ == "__main__":
    main()
