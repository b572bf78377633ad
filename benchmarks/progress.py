"""What the live display of ``squall run`` costs: a 300-task ForEach with and without it.

The flow: a ForEach over 300 values, ``concurrencyLimit: 8``, each value one shell ``echo``
run by the process runner (the case of issue 26). Each run is ``python -m control_plane.cli
run FLOW --db <fresh database>`` in its own process, its stdout and stderr on a
pseudo-terminal of 120x40 (so the live display is drawn, as a user at a terminal sees it);
every byte it writes is read and counted. The runs alternate, live then ``-q``, pair by pair,
and the medians are compared (the machine is shared and noisy: the ratio is the figure):

    progress overhead: <median live wall / median -q wall>

also the CPU seconds of each (the process and the jobs it ran: steadier than the wall on a
busy machine), the bytes written to the terminal and the redraws (rich erases the live region with
``CR, erase line`` once per redraw: those are counted).

Usage: python benchmarks/progress.py [--values 300] [--concurrency 8] [--pairs 8]
"""

from __future__ import annotations

import argparse
import fcntl
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REDRAW = b"\r\x1b[2K"


def foreach_flow(values: int, concurrency: int) -> str:
    items = ", ".join(f'"v{i}"' for i in range(values))
    return (
        "id: fanout\nnamespace: squall.bench\ntasks:\n"
        "  - id: each\n    type: io.kestra.plugin.core.flow.ForEach\n"
        f"    values: [{items}]\n    concurrencyLimit: {concurrency}\n    tasks:\n"
        "      - id: planet\n        type: io.kestra.plugin.scripts.shell.Commands\n"
        "        commands: ['echo {{ taskrun.value }}']\n"
    )


def run_on_pty(
    args: list[str], env: dict[str, str], columns: int = 120, rows: int = 40
) -> tuple[float, float, bytes, int]:
    """Run ``args`` with stdout/stderr on a new pty.

    Returns (wall seconds, CPU seconds of the process and the jobs it ran, everything it
    wrote, exit code).
    """
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    started = time.perf_counter()
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env, cwd=ROOT)
    os.close(slave)
    chunks: list[bytes] = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: every writer closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    _, status, usage = os.wait4(proc.pid, 0)  # its usage counts the children it reaped: the jobs
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    os.close(master)
    return wall, usage.ru_utime + usage.ru_stime, b"".join(chunks), proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--pairs", type=int, default=8)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TERM": os.environ.get("TERM", "xterm-256color")}
    env.pop("NO_COLOR", None)
    env.pop("SQUALL_DB", None)
    with tempfile.TemporaryDirectory(prefix="squall-progress-bench-") as scratch:
        flow = Path(scratch) / "fanout.yaml"
        flow.write_text(foreach_flow(args.values, args.concurrency))
        walls: dict[str, list[float]] = {"live": [], "quiet": []}
        cpus: dict[str, list[float]] = {"live": [], "quiet": []}
        written: dict[str, list[int]] = {"live": [], "quiet": []}
        redraws: list[int] = []
        for pair in range(args.pairs + 1):  # the first pair warms the disk cache and is not counted
            for mode in ("live", "quiet"):
                db = Path(scratch) / f"{mode}-{pair}.db"
                command = [sys.executable, "-m", "control_plane.cli", "run", str(flow), "--db", str(db)]
                wall, cpu, out, code = run_on_pty([*command, *(["-q"] if mode == "quiet" else [])], env)
                if code != 0:
                    sys.exit(f"{mode} run failed ({code}):\n{out.decode(errors='replace')[-2000:]}")
                if pair:
                    walls[mode].append(wall)
                    cpus[mode].append(cpu)
                    written[mode].append(len(out))
                    if mode == "live":
                        redraws.append(out.count(REDRAW))
        live, quiet = statistics.median(walls["live"]), statistics.median(walls["quiet"])
        print(f"{args.values}-value ForEach, concurrency {args.concurrency}, {args.pairs} pairs (medians)")
        print(
            f"live display: {live:.2f} s, {statistics.median(written['live']) / 1024:.1f} KiB written,"
            f" {statistics.median(redraws):.0f} redraws"
        )
        cpu_live, cpu_quiet = statistics.median(cpus["live"]), statistics.median(cpus["quiet"])
        print(f"-q:           {quiet:.2f} s, {statistics.median(written['quiet']) / 1024:.1f} KiB written")
        ratios = [a / b for a, b in zip(walls["live"], walls["quiet"], strict=True)]
        print(f"pairwise ratios: {' '.join(f'{r:.3f}' for r in ratios)}")
        cpu = f"live {cpu_live:.2f}, -q {cpu_quiet:.2f}; ratio {cpu_live / cpu_quiet:.3f}"
        print(f"CPU seconds (with the jobs'): {cpu}")
        print(f"progress overhead: {live / quiet:.3f}")


if __name__ == "__main__":
    main()
