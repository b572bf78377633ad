"""Orchestration overhead of the local runtime (SQLite store, every state change durable).

Two flows, each run through the service with a fresh SQLite database (synchronous=FULL, WAL):

1. 200 sequential shell tasks, each `echo`, run by the process runner. Overhead per task =
   (wall time of the whole execution - time spent inside the subprocesses) / 200, where the
   time inside is what the runner reports for each job (``JobStatus.started`` to ``ended``:
   the shim's fork of the job to its reaping), taken from the statuses the service polls
   (the job directories are disposed of afterwards). Starting the job's shim, recording the
   job, reading its log and every store write count as overhead.
2. 200 sequential inline Return tasks (no subprocess): wall time / 200.

Also counted, per task: SQLite write transactions (the store's write transactions are
counted by wrapping it), and the ratio of the overhead to a bare ``subprocess.run`` of the
same command (best of ``--repeat``, as the overhead is), which holds when the machine's
speed drifts (on a shared VM it does, by 2x and more) but not when other processes compete
for its two cores: each process hop of a job (squall -> shim -> job -> shim -> watcher ->
squall) then waits for a time slice, where a bare ``subprocess.run`` has one. The last line
is stable for tracking:

    local: <ms> ms/task overhead (process runner, sqlite)

Figures (shared 2-core VM, other test suites running: load average 8-9), A/B interleaved,
base = 929b957 (a Python interpreter per job's shim) with this file's measurement, then
this branch (shims forked by a fork server with a spare waiting, the job recording itself,
disposed directories deleted in the background):

    base:   overhead / bare = 20.74, 11.36; total 59.9, 30.5 ms/task
    branch: overhead / bare =  8.68,  5.43; total 17.6, 18.3 ms/task
    branch, three consecutive runs: 3.85, 5.41, 8.14 (overhead 5.0, 6.7, 11.4 ms/task)
    branch, three more at load 4-5: 4.55, 4.73, 2.91 (overhead 7.5, 4.8, 4.1 ms/task;
        with synchronous=NORMAL 3.2-3.5: the one fsync per task costs 1-4 ms on this disk)
    the fork server alone, at the quietest moment seen (load ~2; bare run once): 2.94
    (overhead 3.75 ms/task, total 6.56; the same moment's base run: 16.34 total)

Issue 28 part 5, second session (load 6-8 throughout: other suites on the same two cores):
three consecutive runs gave overhead / bare = 5.94, 7.36, 10.04 (overhead 7.4, 11.6, 12.3
ms/task; bare 1.2-1.6 ms), 1.02 SQLite write transactions per task. The squall process
spends 2.5-2.7 ms of CPU per task and blocks ~21 times per task (voluntary context
switches: fork server, handshake, watcher thread, commit); at that load each block waits
for a time slice, which a bare ``subprocess.run`` (one block) does not, so the ratio grows
with the load. Group commit (jobs of one execution that one poll hears ended, stored in
one write) brought a Parallel of 10 / 40 echo tasks from 2.30 / 2.08 to 1.40 / 1.10 write
transactions per task; the sequential path was already at one.

The process tree's CPU per task went from 15.8 to 7.8 ms (``perf stat``, 200 minus 20 tasks);
the squall process alone spends ~2.4 ms user + 0.8 ms sys per task, most of it in the
control plane (plan, save, supervision), which bounds the ratio above 2 on this machine.

Issue 28 part 5, third session. Where the squall process's time went (``getrusage`` and
``strace -f -c`` over 200 tasks minus 20, cProfile with ``time.thread_time``): 370 syscalls per
task, 79 of them futex: three threads of this process (the control plane's, the pool thread
watching each job, the pool thread deleting disposed directories) handing the GIL to each
other, 22 voluntary context switches per task. Changed: disposed files are deleted by a helper
process fed through a pipe (``runners/process/disposal.py``), and a job's end is finalized by
the thread that waits on the runner, which polls the shims' descriptors itself (no watcher
thread: ``runners/process/registry.py``); a job that started no longer wakes that thread for
a step with nothing to do; the shim's end is its pipe's end of file once ``result`` is
written, and its pid comes on a pipe nobody waits on (docs/scaling.md, ADR 0017). A/B on the
same machine, interleaved (load 3-12, so wall times are not comparable; these counts are),
the squall process per task:

    base (d820e81):  2.6-3.5 ms CPU, 22-25 voluntary context switches, 380 service steps / 200 tasks
    this branch:     1.6-2.1 ms CPU,   5-6 voluntary context switches, 201 service steps / 200 tasks

The split is honest only if the job's window holds the job: ``in subprocesses`` is the shim's
fork of the job to its reap, which also holds the shim's own work (the fork of a Python
process, the job's ``pid`` record written before its exec, the shim's wakeups until the
reap). The benchmark prints that share against the bare ``subprocess.run`` of the same
command (``in subprocesses ... x bare``) and the ratio with it counted as overhead; the last
line keeps the tracked definition. On a loaded machine that share grows most (each process
hop in the window waits for a time slice): 4.9-15.8 ms/task more than bare at load 10-12.

Issue 28 part 5, fourth session: the next job's start is readied before the write that records
it (the job directory laid out, a fork-server shim holding its configuration and waiting for a
go byte), and when a step only submits readied jobs its write commits without its fsync, the
jobs get their go, and the fsync (one ``fdatasync`` of the WAL) runs while they start; what the
step lets out (display, the previous job's disposal) waits for it (ADR 0019). The split stays
honest: the squall process's work after the go (the handshake, the fsync, the disposal) runs
inside the next job's window, and counts as overhead only where it outlasts the job (then the
job's end is heard late, which the next gap holds). The ``median gap`` line is the overhead
per task without the mean's tail (on a loaded machine a few steps lose a whole time slice).
Figures: docs/scaling.md (local section).

Usage: python benchmarks/local.py [--tasks 200] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gc
import itertools
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from control_plane.runtime import local_settings, open_local
from control_plane.store.sqlite import SqliteStore


def shell_flow(n: int) -> str:
    return "id: shell\nnamespace: squall.bench\ntasks:\n" + "".join(
        f"  - id: t{i}\n    type: io.kestra.plugin.scripts.shell.Commands\n    commands: ['echo {i}']\n"
        for i in range(n)
    )


def inline_flow(n: int) -> str:
    return "id: inline\nnamespace: squall.bench\ntasks:\n" + "".join(
        f'  - id: t{i}\n    type: io.kestra.plugin.core.debug.Return\n    format: "{{{{ task.id }}}}"\n'
        for i in range(n)
    )


class _Counting:
    """Counts write transactions by wrapping the store's ``_write`` context manager."""

    def __init__(self, store: SqliteStore) -> None:
        self.writes = 0
        original = store._write

        def counted(**options: Any) -> Any:
            self.writes += 1
            return original(**options)

        store._write = counted  # type: ignore[method-assign]


class _Inside:
    """Sums each job's time inside its subprocess (start to exit, as the runner measured it),
    from the terminal statuses the service polls: the job directories are gone afterwards."""

    def __init__(self, runner: Any) -> None:
        self.seconds: dict[str, float] = {}
        self.windows: dict[str, tuple[float, float]] = {}  # name -> (started, ended), epoch seconds
        original = runner.poll

        def poll(handles: Any) -> Any:
            found = original(handles)
            for name, status in found.items():
                if status.terminal and status.started is not None and status.ended is not None:
                    self.seconds.setdefault(name, (status.ended - status.started).total_seconds())
                    self.windows.setdefault(name, (status.started.timestamp(), status.ended.timestamp()))
            return found

        runner.poll = poll

    def median_gap(self) -> float:
        """The median time from one job's end to the next one's start (seconds; the shims'
        clock): the per-task overhead with the slowest steps (a time slice lost to another
        process) weighing no more than the others."""
        windows = sorted(self.windows.values())
        gaps = sorted(nxt[0] - prev[1] for prev, nxt in itertools.pairwise(windows))
        return gaps[len(gaps) // 2] if gaps else 0.0


class Run:
    """One execution's figures: wall and in-subprocess seconds, write transactions, and the
    squall process's own CPU seconds and voluntary context switches (``getrusage``: every
    thread of this process, none of its children)."""

    def __init__(
        self, wall: float, inside: float, writes: int, cpu: float, switches: int, gap: float = 0.0
    ) -> None:
        self.wall, self.inside, self.writes, self.cpu, self.switches = wall, inside, writes, cpu, switches
        self.gap = gap

    @property
    def overhead(self) -> float:
        return self.wall - self.inside


def run_once(source: str, n: int, synchronous: str = "FULL", jobs_dir: Path | None = None) -> Run:
    """The figures of one execution of ``source`` on a fresh database."""
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory(dir=jobs_dir) as jobs:
        runners = {"process": {"base_dir": Path(jobs) / "jobs"}}
        db = Path(tmp) / "squall.db"
        settings = local_settings(db, runners=runners)
        with open_local(settings, store=SqliteStore(db, synchronous=synchronous)) as rt:
            counter = _Counting(rt.store)
            inside = _Inside(rt.service.runners.get("process"))
            record = rt.service.deploy(source)
            rt.service.flow(record.namespace, record.id)  # parse outside the timed region
            gc.collect()
            counter.writes = 0
            before = resource.getrusage(resource.RUSAGE_SELF)
            started = time.perf_counter()
            execution = rt.service.start(record.namespace, record.id)
            final = rt.service.run(execution.id)
            wall = time.perf_counter() - started
            after = resource.getrusage(resource.RUSAGE_SELF)
            assert str(final.state) == "SUCCESS", final.state
            assert len(final.taskruns) == n
            for job in rt.store.active_jobs(limit=1):
                raise AssertionError(f"job left active: {job.name}")
        cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        switches = after.ru_nvcsw - before.ru_nvcsw
        return Run(wall, sum(inside.seconds.values()), counter.writes, cpu, switches, inside.median_gap())


def _mkdir_us(where: Path | None) -> float:
    """The cost of one mkdir there: on a busy virtual disk it, not Python, can dominate."""
    with tempfile.TemporaryDirectory(dir=where) as tmp:
        started = time.perf_counter()
        for i in range(100):
            Path(tmp, str(i)).mkdir()
        return (time.perf_counter() - started) * 1e6 / 100


def _bare_subprocess_ms(n: int) -> float:
    """What one ``echo`` costs as a plain ``subprocess.run``: the yardstick for the overhead."""
    import subprocess

    started = time.perf_counter()
    for i in range(n):
        subprocess.run(["/bin/sh", "-c", f"echo {i}"], stdout=subprocess.PIPE, check=True)
    return (time.perf_counter() - started) * 1e3 / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--jobs-dir",
        type=Path,
        default=None,
        help="where the process runner's job directories go (default: $TMPDIR)",
    )
    args = parser.parse_args()
    n = args.tasks

    best_inline = min((run_once(inline_flow(n), n) for _ in range(args.repeat)), key=lambda r: r.wall)
    print(
        f"inline Return x{n}: {best_inline.wall * 1e3 / n:.2f} ms/task,"
        f" {best_inline.writes / n:.2f} SQLite write transactions/task"
    )
    print(
        f"directory creation where the jobs go: {_mkdir_us(args.jobs_dir):.0f} us"
        " (the process runner makes 3 per job: 1 in the squall process, 2 in the job's shim)"
    )
    best_shell = min(
        (run_once(shell_flow(n), n, jobs_dir=args.jobs_dir) for _ in range(args.repeat)),
        key=lambda r: r.overhead,
    )
    normal = min(
        (run_once(shell_flow(n), n, "NORMAL", args.jobs_dir) for _ in range(args.repeat)),
        key=lambda r: r.overhead,
    )
    print(
        f"shell echo x{n} with synchronous=NORMAL (no fsync per commit; not durable on power loss):"
        f" {normal.overhead * 1e3 / n:.2f} ms/task overhead"
    )
    overhead = best_shell.overhead * 1e3 / n
    inside = best_shell.inside * 1e3 / n
    bare = min(_bare_subprocess_ms(n) for _ in range(args.repeat))  # best of, as the overhead is
    print(
        f"bare subprocess.run of the same echo: {bare:.2f} ms/task; overhead / bare = {overhead / bare:.2f}"
        " (a ratio that holds when this machine's speed drifts)"
    )
    hidden = max(inside - bare, 0.0)  # what the job's window holds beyond the command itself
    print(
        f"in subprocesses {inside:.2f} ms/task = {inside / bare:.2f} x bare: the shim's own work inside"
        f" the job's window (fork of the job, its pid record before exec, the reap) is"
        f" {hidden:.2f} ms/task more; counted as overhead, overhead / bare = {(overhead + hidden) / bare:.2f}"
    )
    print(
        f"median gap from one job's end to the next one's start (same run): {best_shell.gap * 1e3:.2f} ms"
        f" = {best_shell.gap * 1e3 / bare:.2f} x bare"
    )
    print(
        f"squall process (every thread, same run): {best_shell.cpu * 1e3 / n:.2f} ms CPU/task,"
        f" {best_shell.switches / n:.1f} voluntary context switches/task"
    )
    print(
        f"shell echo x{n}: total {best_shell.wall * 1e3 / n:.2f} ms/task,"
        f" in subprocesses {inside:.2f} ms/task,"
        f" {best_shell.writes / n:.2f} SQLite write transactions/task"
    )
    print(f"local: {overhead:.2f} ms/task overhead (process runner, sqlite)")


if __name__ == "__main__":
    main()
