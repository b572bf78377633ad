"""The crash campaign of issue 18: ``kill -9`` (and SIGTERM, SIGHUP) at random points of ``squall run``.

Run it from the repository root::

    python -m tests.reliability.crash_campaign --trials 300 [--seed S] [--workers 2]

It ends with the line ``crash trials: N, tasks run twice: 0, lost: 0, stuck: 0, orphans after
recovery: 0`` (and a breakdown per scenario); the exit code is 1 when any counter is not 0.

Theory of operation
-------------------
Each trial gets a directory of its own, holding a database, the flows, the jobs' directories
(``jobs/`` and ``storage/`` beside the database, as ``squall run`` puts them) and a *ledger*.
Every task of every flow ends with one short ``echo ... >> ledger``: ``<execution id> <task
key> <attempt>``, a single append under ``PIPE_BUF`` (atomic). The ledger is what really
happened, whatever the database says.

1. Plan (:func:`plan_trial`): a scenario (``sequential``: a chain of 4 shell tasks passing
   outputs and output files down; ``parallel``: a ``Parallel`` of 4-6 shell tasks then a join;
   ``foreach``: a ``ForEach`` of 4-6 values with a concurrency limit, then a join;
   ``concurrent``: two of those flows run by two ``squall run`` processes on one database at
   once), random task durations (0-300 ms), a signal (``kill -9`` mostly, else SIGTERM or
   SIGHUP) sent after a random delay drawn over the expected duration (0 and after the end
   included), and a recovery command. Trial ``i`` of seed ``S`` is the same plan every time:
   ``--only i`` reruns one.
2. Run: ``squall run -q --db`` in a session of its own; the signal at the planned moment.
3. Stop: a SIGKILLed process is reaped; a SIGTERMed or SIGHUPed one must stop cleanly by itself
   (Ctrl-C's contract): its execution KILLED with exit code 130, or already SUCCESS; anything
   else is an *unclean stop*.
4. Recovery: while an execution is not terminal and the process that ran it is gone, the
   trial's recovery command runs (``squall executions resume ID``, or ``squall executions
   list``/``show ID``: "any squall command on that database drives it on"), until every
   execution is terminal or ``--recovery-deadline`` passes (then it is *stuck*).
5. Checks: after a ``kill -9`` the execution must end SUCCESS; each task key has one ledger
   line (two: *run twice*; none in a SUCCESS execution, or in one that ended otherwise after a
   ``kill -9``: *lost*). Finally any process whose cwd, command line or environment mentions
   the trial's directory is an *orphan after recovery* (after a short grace), and is killed.

The database is read through the project's store (:class:`SqliteStore`), never by parsing
the CLI's tables; the CLI's output is only kept to explain a failure.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

__all__ = [
    "COUNTERS",
    "CampaignError",
    "CampaignSummary",
    "Options",
    "Timing",
    "TrialPlan",
    "TrialResult",
    "plan_trial",
    "run_campaign",
    "run_trial",
]

SCENARIOS = ("sequential", "parallel", "foreach", "concurrent")
SHAPES = ("sequential", "parallel", "foreach")
RECOVERIES = ("resume", "resume", "list", "show")  # resume twice as often
COUNTERS = ("run_twice", "lost", "stuck", "orphans")
EXTRA_COUNTERS = ("unclean", "wrong_end", "errors")

SHELL = "io.kestra.plugin.scripts.shell.Commands"
PROCESS_RUNNER = {"type": "io.kestra.plugin.core.runner.Process"}
NAMESPACE = "crash.campaign"
TRIAL_ENV = "SQUALL_CRASH_TRIAL"  # set for every process of a trial: /proc/PID/environ finds them

STARTUP = 1.3  # seconds from `squall run` to its execution stored, on a busy 2-core machine (calibrated)
JOB_OVERHEAD = 0.08  # seconds a job costs beyond its own duration (spawn, poll, store)
STOP_TIMEOUT = 40.0  # a SIGTERMed run kills its jobs within 30 s (the CLI's deadline), then exits
ORPHAN_GRACE = 3.0  # seconds processes of a trial get to vanish once its executions are terminal
COMMAND_TIMEOUT = 60.0  # a recovery command may take this long (and at most the deadline left)


# ====================================================================== plans


@dataclass(frozen=True)
class FlowPlan:
    """One flow of a trial: its YAML, the ledger keys its tasks write, how long it should take."""

    flow_id: str
    shape: str
    source: str
    keys: tuple[str, ...]
    expected: float  # seconds of jobs on the critical path, startup not included


@dataclass(frozen=True)
class TrialPlan:
    index: int
    seed: int
    scenario: str
    flows: tuple[FlowPlan, ...]
    signal: str  # KILL, TERM or HUP
    points: tuple[float | None, ...]  # per run, when to signal it (see delay()); None: never
    recovery: str  # resume, list or show

    def delay(self, i: int, timing: Timing) -> float | None:
        """Seconds after the start to signal run ``i``: a point of 0 is at once; in (0, 1], over the run
        from 80% of its startup (little happens before) to its expected end; above 1, that many times
        the expected duration."""
        point = self.points[i]
        if point is None or point == 0:
            return point
        startup = timing.startup * (1.4 if len(self.flows) > 1 else 1.0)  # two interpreters start at once
        total = startup + self.flows[i].expected * timing.scale
        if point > 1:
            return point * total
        return 0.8 * startup + point * (total - 0.8 * startup)

    def describe(self, timing: Timing) -> str:
        shapes = "+".join(f.shape for f in self.flows)
        name = self.scenario if self.scenario != "concurrent" else f"concurrent({shapes})"
        delays = [self.delay(i, timing) for i in range(len(self.flows))]
        when = ",".join("-" if d is None else f"{d:.2f}s" for d in delays)
        return f"{name} {self.signal}@{when} {self.recovery}"


@dataclass(frozen=True)
class Timing:
    """How long runs take on this machine now: measured by :func:`preflight`, used to place signals."""

    startup: float = STARTUP  # seconds until the execution is stored
    scale: float = 1.0  # actual job time / FlowPlan.expected


def _ledger_command(key: str, ledger: str) -> str:
    return f'echo "{{{{ execution.id }}}} {key} {{{{ taskrun.attemptsCount }}}}" >> {shlex.quote(ledger)}'


def _shell_task(
    task_id: str, sleep: str, ledger: str, *, key: str | None = None, produce: bool, consume: str | None
) -> dict[str, object]:
    """A shell task: sleeps, checks its upstream's outputs, produces its own, writes its ledger line."""
    task: dict[str, object] = {"id": task_id, "type": SHELL, "taskRunner": dict(PROCESS_RUNNER)}
    commands = [sleep]
    if consume is not None:
        task["inputFiles"] = {"in.txt": f"{{{{ outputs.{consume}.outputFiles['{consume}.txt'] }}}}"}
        commands += [f'test "{{{{ outputs.{consume}.vars.n }}}}" = 1', f"grep -qx {consume} in.txt"]
    if produce:
        task["outputFiles"] = [f"{task_id}.txt"]
        commands += [f"echo {task_id} > {task_id}.txt", """echo '::{"outputs":{"n":1}}::'"""]
    commands.append(_ledger_command(key or task_id, ledger))
    task["commands"] = commands
    return task


def _seconds(ms: int) -> str:
    return f"sleep {ms / 1000:.3f}"


def _makespan(durations: Sequence[float], lanes: int) -> float:
    """Greedy list scheduling of ``durations`` on ``lanes`` lanes (0: as many as jobs)."""
    free = [0.0] * (lanes or len(durations) or 1)
    for d in durations:
        i = free.index(min(free))
        free[i] += d + JOB_OVERHEAD
    return max(free)


def plan_flow(rng: random.Random, shape: str, flow_id: str, ledger: str) -> FlowPlan:
    tasks: list[dict[str, object]]
    if shape == "sequential":
        ms = [rng.randint(0, 300) for _ in range(4)]
        produce = [rng.random() < 0.5 for _ in range(4)]
        tasks = []
        for i in range(4):
            upstream = f"s{i}" if i and produce[i - 1] else None
            tasks.append(
                _shell_task(f"s{i + 1}", _seconds(ms[i]), ledger, produce=produce[i], consume=upstream)
            )
        keys = tuple(f"s{i + 1}" for i in range(4))
        expected = _makespan([m / 1000 for m in ms], 1)
    elif shape == "parallel":
        n = rng.randint(4, 6)
        concurrent = rng.choice((0, 2, 3))
        ms = [rng.randint(0, 300) for _ in range(n)]
        produce = [rng.random() < 0.5 for _ in range(n)]
        children = [
            _shell_task(f"p{i + 1}", _seconds(ms[i]), ledger, produce=produce[i], consume=None)
            for i in range(n)
        ]
        producers = [f"p{i + 1}" for i in range(n) if produce[i]]
        join = _shell_task(
            "join", "true", ledger, produce=False, consume=rng.choice(producers) if producers else None
        )
        tasks = [
            {
                "id": "par",
                "type": "io.kestra.plugin.core.flow.Parallel",
                "concurrent": concurrent,
                "tasks": children,
            },
            join,
        ]
        keys = (*(f"p{i + 1}" for i in range(n)), "join")
        expected = _makespan([m / 1000 for m in ms], concurrent) + JOB_OVERHEAD
    elif shape == "foreach":
        n = rng.randint(4, 6)
        limit = rng.choice((0, 2, 3))
        ms = [rng.randint(0, 300) for _ in range(n)]
        values = [f"v{i + 1}-{ms[i]:03d}" for i in range(n)]
        worker: dict[str, object] = {
            "id": "w",
            "type": SHELL,
            "taskRunner": dict(PROCESS_RUNNER),
            "outputFiles": ["w.txt"],
            "commands": [
                'V="{{ taskrun.value }}"',
                'sleep "0.${V##*-}"',
                'echo "$V" > w.txt',
                """echo '::{"outputs":{"n":1}}::'""",
                _ledger_command("w-{{ taskrun.value }}", ledger),
            ],
        }
        first = values[0]
        gather: dict[str, object] = {
            "id": "join",
            "type": SHELL,
            "taskRunner": dict(PROCESS_RUNNER),
            "inputFiles": {"in.txt": f"{{{{ outputs.w['{first}'].outputFiles['w.txt'] }}}}"},
            "commands": [
                f"""test "{{{{ outputs.w['{first}'].vars.n }}}}" = 1""",
                f"grep -qx {first} in.txt",
                _ledger_command("join", ledger),
            ],
        }
        tasks = [
            {
                "id": "each",
                "type": "io.kestra.plugin.core.flow.ForEach",
                "values": values,
                "concurrencyLimit": limit,
                "tasks": [worker],
            },
            gather,
        ]
        keys = (*(f"w-{v}" for v in values), "join")
        expected = _makespan([m / 1000 for m in ms], limit) + JOB_OVERHEAD
    else:
        raise ValueError(f"unknown flow shape {shape!r}")
    source = yaml.safe_dump(
        {"id": flow_id, "namespace": NAMESPACE, "tasks": tasks}, sort_keys=False, width=1000
    )
    return FlowPlan(flow_id=flow_id, shape=shape, source=source, keys=keys, expected=expected)


def _point(rng: random.Random) -> float:
    """When to signal (:meth:`TrialPlan.delay`): at once sometimes, after the end sometimes."""
    draw = rng.random()
    if draw < 0.06:
        return 0.0
    if draw < 0.16:
        return round(rng.uniform(1.2, 1.6), 3)
    return round(rng.uniform(0.001, 1.0), 3)


def plan_trial(seed: int, index: int, ledger: str) -> TrialPlan:
    """Trial ``index`` of campaign ``seed``: the scenario cycles, the rest is drawn."""
    rng = random.Random(f"{seed}:{index}")
    scenario = SCENARIOS[index % len(SCENARIOS)]
    sig = rng.choices(("KILL", "TERM", "HUP"), weights=(4, 1, 1))[0]
    if scenario == "concurrent":
        shapes = [rng.choice(SHAPES), rng.choice(SHAPES)]
        flows = tuple(
            plan_flow(rng, shape, f"{tag}-{shape}", ledger) for tag, shape in zip("ab", shapes, strict=True)
        )
    else:
        flows = (plan_flow(rng, scenario, scenario, ledger),)
    points: list[float | None] = [_point(rng) for _ in flows]
    if len(flows) == 2 and rng.random() < 0.4:
        points[rng.randrange(2)] = None  # one of the two runs goes on undisturbed
    return TrialPlan(
        index=index,
        seed=seed,
        scenario=scenario,
        flows=flows,
        signal=sig,
        points=tuple(points),
        recovery=rng.choice(RECOVERIES),
    )


# ====================================================================== squall, the database, /proc


def _as_in_a_terminal() -> None:
    """Signals as a terminal leaves them: a campaign started by ``nohup`` or a script's ``&``
    would otherwise pass SIGHUP or SIGINT ignored on to ``squall run``, which keeps them so."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def default_command() -> list[str]:
    """The ``squall`` beside this interpreter (the venv's), else ``python -m control_plane.cli``."""
    exe = Path(sys.executable).parent / "squall"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "control_plane.cli"]


class Squall:
    """Every ``squall`` command the campaign runs, on one database: the one place that calls the CLI."""

    def __init__(self, command: Sequence[str], db: Path, root: Path) -> None:
        self.command = list(command)
        self.db = db
        self.root = root
        env = {k: v for k, v in os.environ.items() if k not in ("SQUALL_DB", "SQUALL_DATA_DIR")}
        env.update(
            {TRIAL_ENV: str(root), "XDG_DATA_HOME": str(root / "xdg"), "COLUMNS": "250", "NO_COLOR": "1"}
        )
        self.env = env

    def _argv(self, *args: str) -> list[str]:
        return [*self.command, *args, "--db", str(self.db)]

    def start_run(self, flow: Path) -> subprocess.Popen[str]:
        """``squall run FLOW -q`` in a session of its own (a Ctrl-C of the campaign does not reach it)."""
        return subprocess.Popen(
            self._argv("run", str(flow), "-q"),
            cwd=self.root,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            preexec_fn=_as_in_a_terminal,
        )

    def call(self, args: Sequence[str], timeout: float) -> tuple[int | None, str]:
        """Run one command to its end; (exit code, output). None: it outlived ``timeout`` and was killed."""
        try:
            done = subprocess.run(
                self._argv(*args),
                cwd=self.root,
                env=self.env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=max(timeout, 0.1),
                start_new_session=True,
            )
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout or ""
            return None, out if isinstance(out, str) else out.decode(errors="replace")
        return done.returncode, done.stdout + done.stderr

    def resume(self, execution_id: str, timeout: float) -> tuple[int | None, str]:
        return self.call(["executions", "resume", execution_id, "-q"], timeout)

    def list_executions(self, timeout: float) -> tuple[int | None, str]:
        return self.call(["executions", "list"], timeout)

    def show(self, execution_id: str, timeout: float) -> tuple[int | None, str]:
        return self.call(["executions", "show", execution_id], timeout)

    def recover(
        self, mode: str, execution_ids: Iterable[str], timeout: float
    ) -> list[tuple[int | None, str]]:
        if mode == "list":
            return [self.list_executions(timeout)]
        act = self.resume if mode == "resume" else self.show
        return [act(execution_id, timeout) for execution_id in execution_ids]


@dataclass(frozen=True)
class ExecutionView:
    id: str
    flow_id: str
    state: str
    terminal: bool


def read_executions(db: Path) -> dict[str, ExecutionView]:
    """Every execution of the trial's database, as stored (none when the database was never created)."""
    from control_plane.store.sqlite import SqliteStore

    if not db.exists():
        return {}
    store = SqliteStore(db)
    try:
        page = store.list_executions(limit=100)
        return {
            s.id: ExecutionView(id=s.id, flow_id=s.flow_id, state=str(s.state), terminal=s.state.terminal)
            for s in page.items
        }
    finally:
        store.close()


def describe_execution(db: Path, execution_id: str) -> str:
    """Task runs (state, attempts, error) and active jobs of one execution: what a failure report shows."""
    from control_plane.store.sqlite import SqliteStore

    store = SqliteStore(db)
    try:
        execution = store.get_execution(execution_id)
        runs = []
        for tr in execution.ordered_taskruns():
            value = f"[{tr.value}]" if tr.value is not None and tr.parent_id else ""
            error = f" ({str(tr.error)[:120]})" if tr.error else ""
            runs.append(f"{tr.task_id}{value}:{tr.state}x{len(tr.attempts)}{error}")
        jobs = [
            f"{j.name.rsplit('-', 1)[0]}:{j.phase}"
            for j in store.active_jobs()
            if j.execution_id == execution_id
        ]
    finally:
        store.close()
    text = f"{execution.state}; task runs: {' '.join(runs) or '-'}"
    return text + (f"; active jobs: {' '.join(jobs)}" if jobs else "")


def read_ledger(path: Path) -> Counter[tuple[str, str]]:
    """(execution id, task key) -> how many times the task reached its last line."""
    counts: Counter[tuple[str, str]] = Counter()
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3:
                counts[(parts[0], parts[1])] += 1
    return counts


@dataclass(frozen=True)
class Proc:
    pid: int
    cmdline: str


def trial_processes(root: Path) -> list[Proc]:
    """Live processes whose cwd, command line or environment mentions ``root`` (zombies excluded)."""
    mark = str(root)
    env_mark = f"{TRIAL_ENV}={root}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        base = f"/proc/{entry.name}"
        try:
            with open(f"{base}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[-1].split()[0] in (b"Z", b"X"):
                    continue
            with open(f"{base}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        try:
            cwd = os.readlink(f"{base}/cwd")
        except OSError:
            cwd = ""
        try:
            with open(f"{base}/environ", "rb") as f:
                environ = f.read().split(b"\0")
        except OSError:
            environ = []
        if cwd == mark or cwd.startswith(mark + "/") or mark in cmdline or env_mark in environ:
            found.append(Proc(int(entry.name), cmdline))
    return found


def reap_orphans(root: Path, grace: float) -> list[Proc]:
    """The trial's processes still alive after ``grace`` seconds; each is then SIGKILLed."""
    end = time.monotonic() + grace
    while (left := trial_processes(root)) and time.monotonic() < end:
        time.sleep(0.1)
    for proc in left:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(proc.pid, signal.SIGKILL)
    return left


# ====================================================================== one trial


@dataclass(frozen=True)
class Options:
    command: tuple[str, ...] = field(default_factory=lambda: tuple(default_command()))
    recovery_deadline: float = 60.0
    timing: Timing = field(default_factory=Timing)
    workdir: Path | None = None  # None: a fresh temporary directory per campaign
    keep_failed: bool = True


@dataclass
class TrialResult:
    plan: TrialPlan
    run_twice: int = 0
    lost: int = 0
    stuck: int = 0
    orphans: int = 0
    unclean: int = 0
    wrong_end: int = 0
    errors: int = 0  # an undisturbed run that failed: the flows or the squall under test are broken
    moments: list[str] = field(default_factory=list)  # per run: before-store, mid-run, after-end, none
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    stored_after: float | None = None  # seconds from the start until an execution was seen stored
    ended_after: float | None = None  # seconds from the start until every execution was seen terminal
    description: str = ""
    kept: Path | None = None

    @property
    def ok(self) -> bool:
        return not any(getattr(self, name) for name in (*COUNTERS, *EXTRA_COUNTERS)) and not self.problems

    def line(self) -> str:
        status = "ok" if self.ok else "FAIL"
        return f"{self.description} [{' '.join(self.moments)}] {status} {self.seconds:.1f}s"


_SIGNALS = {"KILL": signal.SIGKILL, "TERM": signal.SIGTERM, "HUP": signal.SIGHUP}


def run_trial(
    plan: TrialPlan, root: Path, options: Options, stop: threading.Event | None = None
) -> TrialResult:
    """Run one planned trial in ``root`` (an empty directory) and check what is left."""
    started = time.monotonic()
    result = TrialResult(plan, description=plan.describe(options.timing))
    db = root / "squall.db"
    ledger = root / "ledger"
    squall = Squall(options.command, db, root)
    paths = []
    for flow in plan.flows:
        path = root / f"{flow.flow_id}.yaml"
        path.write_text(flow.source)
        paths.append(path)
    runs = [squall.start_run(path) for path in paths]
    t0 = time.monotonic()
    outputs: list[str] = [""] * len(runs)
    signalled = [False] * len(runs)
    try:
        # ---------------------------------------------------------------- the signal
        delays = [plan.delay(i, options.timing) for i in range(len(runs))]
        for delay, i in sorted((d, i) for i, d in enumerate(delays) if d is not None):
            time.sleep(max(0.0, t0 + delay - time.monotonic()))
            if runs[i].poll() is None:
                runs[i].send_signal(_SIGNALS[plan.signal])
                signalled[i] = True
        # ---------------------------------------------------------------- the stop
        for i, run in enumerate(runs):
            if not signalled[i]:
                continue
            try:
                outputs[i] = run.communicate(timeout=None if plan.signal == "KILL" else STOP_TIMEOUT)[0]
            except subprocess.TimeoutExpired:
                run.kill()
                outputs[i] = run.communicate()[0]
                result.unclean += 1
                result.problems.append(
                    f"{plan.flows[i].flow_id}: still running {STOP_TIMEOUT:.0f}s after SIG{plan.signal}"
                )
        for i, run in enumerate(runs):  # a kill -9 that found the process exiting on its own did nothing
            if signalled[i] and plan.signal == "KILL" and run.returncode != -signal.SIGKILL:
                signalled[i] = False
        by_flow = {e.flow_id: e for e in read_executions(db).values()}
        for i, flow in enumerate(plan.flows):
            execution = by_flow.get(flow.flow_id)
            if not signalled[i]:
                result.moments.append("none" if plan.points[i] is None else "exited")
            elif execution is None:
                result.moments.append("before-store")
            else:  # as stored once the process is gone: SUCCESS means it had finished (or was exiting)
                result.moments.append("mid-run" if execution.state != "SUCCESS" else "after-end")
            if not signalled[i] or plan.signal == "KILL" or runs[i].returncode is None:
                continue
            code = runs[i].returncode  # a SIGTERM or SIGHUP: Ctrl-C's clean stop is expected
            if execution is None:
                if code not in (130, -_SIGNALS[plan.signal]):
                    result.unclean += 1
                    result.problems.append(f"{flow.flow_id}: exit code {code} and no execution stored")
            elif (execution.state, code) not in (("KILLED", 130), ("SUCCESS", 0), ("SUCCESS", 130)):
                result.unclean += 1
                result.problems.append(
                    f"{flow.flow_id}: SIG{plan.signal} left {execution.state} with exit code {code}"
                    f" ({describe_execution(db, execution.id)}){_tail(outputs[i])}"
                )
        # ---------------------------------------------------------------- recovery
        deadline = time.monotonic() + options.recovery_deadline
        last: dict[str, str] = {}
        attempts = 0
        while True:
            executions = read_executions(db)
            pending = [e for e in executions.values() if not e.terminal]
            alive = {plan.flows[i].flow_id for i, run in enumerate(runs) if run.poll() is None}
            now = time.monotonic() - t0
            if executions and result.stored_after is None:
                result.stored_after = now
            if executions and not pending and result.ended_after is None:
                result.ended_after = now
            if (not pending and not alive) or time.monotonic() >= deadline or (stop and stop.is_set()):
                break
            ownerless = [e.id for e in pending if e.flow_id not in alive]
            if ownerless:
                attempts += 1
                left = deadline - time.monotonic()
                for code, out in squall.recover(plan.recovery, ownerless, min(left, COMMAND_TIMEOUT)):
                    if code is not None or plan.recovery not in last:  # a call cut by the deadline says less
                        last[plan.recovery] = f"exit {code}: {out.strip()[-300:]}"
            time.sleep(0.1)
        for i, run in enumerate(runs):
            if run.poll() is None:
                run.kill()
                result.problems.append(f"{plan.flows[i].flow_id}: squall run still running at the deadline")
            if run.stdout is not None and not run.stdout.closed:  # not read yet (signalled ones were)
                outputs[i] = run.communicate()[0] or ""
        # ---------------------------------------------------------------- checks
        for i, run in enumerate(runs):
            if (
                not signalled[i] and run.returncode != 0
            ):  # undisturbed, it must succeed: else the setup is wrong
                result.errors += 1
                result.problems.append(
                    f"{plan.flows[i].flow_id}: squall run exited {run.returncode} by itself"
                    + _tail(outputs[i])
                )
        counts = read_ledger(ledger)
        flows = {f.flow_id: f for f in plan.flows}
        executions = read_executions(db)
        for execution in executions.values():
            if execution.flow_id not in flows:
                result.problems.append(f"unexpected execution {execution.id} of {execution.flow_id}")
                continue
            flow = flows[execution.flow_id]
            run_index = plan.flows.index(flow)
            crashed = signalled[run_index] and plan.signal == "KILL"
            if not execution.terminal:
                result.stuck += 1
                why = f"; last {plan.recovery}: {last[plan.recovery]}" if plan.recovery in last else ""
                result.problems.append(
                    f"{flow.flow_id}: stuck {execution.state} after {attempts} recovery rounds"
                    f" ({describe_execution(db, execution.id)}){why}"
                )
            elif crashed and execution.state != "SUCCESS":
                result.wrong_end += 1
                result.problems.append(
                    f"{flow.flow_id}: ended {execution.state} after kill -9"
                    f" ({describe_execution(db, execution.id)})"
                )
            must_have_run = execution.terminal and (execution.state == "SUCCESS" or crashed)
            for key in flow.keys:
                n = counts.pop((execution.id, key), 0)
                if n >= 2:
                    result.run_twice += 1
                    result.problems.append(f"{flow.flow_id}: task {key} ran {n} times")
                elif n == 0 and must_have_run:
                    result.lost += 1
                    result.problems.append(f"{flow.flow_id}: task {key} never ran ({execution.state})")
        for (execution_id, key), n in counts.items():
            result.problems.append(f"ledger: {key} of unknown execution {execution_id} ({n}x)")
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
            with contextlib.suppress(ValueError, OSError):
                run.communicate()
        orphans = reap_orphans(root, ORPHAN_GRACE)
        result.orphans = len(orphans)
        for proc in orphans:
            result.problems.append(f"orphan pid {proc.pid}: {proc.cmdline[:160]}")
        result.seconds = time.monotonic() - started
    return result


def _tail(output: str) -> str:
    text = output.strip()
    return f"; output: {text[-200:]!r}" if text else ""


# ====================================================================== the campaign


@dataclass
class CampaignSummary:
    seed: int
    results: list[TrialResult] = field(default_factory=list)

    def total(self, name: str, results: Iterable[TrialResult] | None = None) -> int:
        return sum(getattr(r, name) for r in (self.results if results is None else results))

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def final_line(self) -> str:
        return (
            f"crash trials: {len(self.results)}, tasks run twice: {self.total('run_twice')},"
            f" lost: {self.total('lost')}, stuck: {self.total('stuck')},"
            f" orphans after recovery: {self.total('orphans')}"
        )

    def breakdown(self) -> list[str]:
        """A table: trials, failed trials and every counter, per scenario, per signal, per recovery."""
        columns = (
            ("trials", None),
            ("failed", None),
            ("twice", "run_twice"),
            ("lost", "lost"),
            ("stuck", "stuck"),
            ("orphans", "orphans"),
            ("unclean", "unclean"),
            ("not-success", "wrong_end"),
            ("errors", "errors"),
        )
        lines = [f"{'':22}" + "".join(f"{title:>12}" for title, _ in columns)]

        def row(label: str, group: list[TrialResult]) -> None:
            if group:
                values = [len(group), sum(not r.ok for r in group)]
                values += [self.total(name, group) for _, name in columns[2:] if name]
                lines.append(f"{label:22}" + "".join(f"{v:>12}" for v in values))

        for scenario in SCENARIOS:
            row(scenario, [r for r in self.results if r.plan.scenario == scenario])
        for sig in _SIGNALS:
            row(f"SIG{sig}", [r for r in self.results if r.plan.signal == sig])
        for mode in sorted(set(RECOVERIES)):
            row(f"recovery by {mode}", [r for r in self.results if r.plan.recovery == mode])
        row("all", self.results)
        moments = Counter(m for r in self.results for m in r.moments)
        kinds = ("before-store", "mid-run", "after-end", "exited", "none")
        lines.append("signal landed (per run): " + ", ".join(f"{k} {moments[k]}" for k in kinds))
        return lines


class CampaignError(Exception):
    """The squall under test cannot run the campaign's flows undisturbed: its figures would mean nothing."""


def preflight(seed: int, workdir: Path, options: Options, workers: int = 2) -> Timing:
    """One undisturbed run of each flow shape, ``workers`` at a time (the campaign's load), must
    succeed, every task once, nothing left behind. Returns the timing they show."""

    def one(shape: str) -> tuple[FlowPlan, TrialResult]:
        root = Path(tempfile.mkdtemp(prefix=f"preflight-{shape}-", dir=workdir))
        flow = plan_flow(random.Random(f"{seed}:{shape}"), shape, shape, str(root / "ledger"))
        result = run_trial(TrialPlan(-1, seed, shape, (flow,), "KILL", (None,), "resume"), root, options)
        if not result.ok or result.stored_after is None or result.ended_after is None:
            raise CampaignError(
                f"preflight: an undisturbed {shape} run failed ({'; '.join(result.problems)}); kept {root}"
            )
        shutil.rmtree(root, ignore_errors=True)
        return flow, result

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        runs = list(pool.map(one, SHAPES * 2))
    startup = statistics.median(r.stored_after or 0.0 for _, r in runs)
    scale = statistics.median(
        max(0.5, ((r.ended_after or 0.0) - (r.stored_after or 0.0)) / max(f.expected, 0.1)) for f, r in runs
    )
    return Timing(startup=round(startup, 2), scale=round(scale, 2))


def run_campaign(
    trials: int,
    *,
    seed: int,
    workers: int = 2,
    options: Options | None = None,
    only: Sequence[int] | None = None,
    progress: Callable[[str], None] | None = print,
    check_first: bool = True,
) -> CampaignSummary:
    """Run ``trials`` trials (or the ``only`` ones), ``workers`` at a time.

    With ``check_first``, :func:`preflight` runs first and raises :class:`CampaignError`.
    """
    options = options or Options()
    own_dir = options.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="squall-crash-")) if own_dir else Path(options.workdir)  # type: ignore[arg-type]
    workdir.mkdir(parents=True, exist_ok=True)
    indices = list(only) if only else list(range(trials))
    summary = CampaignSummary(seed)
    stop = threading.Event()
    say = progress or (lambda _line: None)
    say(f"seed {seed}, {len(indices)} trials, {workers} at a time, trial directories under {workdir}")
    if check_first:
        options = replace(options, timing=preflight(seed, workdir, options, workers))
        say(
            f"preflight: 6 undisturbed runs succeeded; executions stored after {options.timing.startup:.2f}s,"
            f" jobs take {options.timing.scale:.2f}x their planned time"
        )

    def one(index: int) -> TrialResult:
        root = Path(tempfile.mkdtemp(prefix=f"trial-{index:04d}-", dir=workdir))
        plan = plan_trial(seed, index, str(root / "ledger"))
        result = run_trial(plan, root, options, stop)
        if result.ok or not options.keep_failed:
            shutil.rmtree(root, ignore_errors=True)
        else:
            result.kept = root
        return result

    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    try:
        futures = [pool.submit(one, i) for i in indices]
        for done, future in enumerate(as_completed(futures), 1):
            result = future.result()
            summary.results.append(result)
            say(f"[{done:>{len(str(len(indices)))}}/{len(indices)}] #{result.plan.index} {result.line()}")
            for problem in result.problems:
                say(f"      {problem}")
            if result.kept is not None:
                say(f"      kept {result.kept}")
    except KeyboardInterrupt:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)
        if own_dir and not any(r.kept for r in summary.results):
            shutil.rmtree(workdir, ignore_errors=True)
    summary.results.sort(key=lambda r: r.plan.index)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.reliability.crash_campaign",
        description="kill -9 (or SIGTERM, SIGHUP) `squall run` at random points; count what recovery misses",
    )
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--seed", type=int, default=None, help="default: drawn and printed")
    parser.add_argument("--workers", type=int, default=2, help="trials at a time (default 2)")
    parser.add_argument("--recovery-deadline", type=float, default=60.0, help="seconds recovery may take")
    parser.add_argument("--only", type=int, action="append", help="run only trial N of the seed (repeatable)")
    parser.add_argument("--squall", default=None, help="the squall command (default: the venv's squall)")
    parser.add_argument("--workdir", type=Path, default=None, help="where trial directories go")
    parser.add_argument("--no-keep", action="store_true", help="delete the directories of failed trials too")
    args = parser.parse_args(argv)
    if sys.platform != "linux":
        parser.error("the campaign needs Linux (/proc, process groups)")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 1_000_000)
    options = Options(
        command=tuple(shlex.split(args.squall)) if args.squall else tuple(default_command()),
        recovery_deadline=args.recovery_deadline,
        workdir=args.workdir,
        keep_failed=not args.no_keep,
    )
    started = time.monotonic()
    try:
        summary = run_campaign(args.trials, seed=seed, workers=args.workers, options=options, only=args.only)
    except CampaignError as exc:
        print(exc, file=sys.stderr)
        return 2
    print()
    for line in summary.breakdown():
        print(line)
    print(f"seed {seed}, {time.monotonic() - started:.0f}s")
    signal_runs = [r for r in summary.results if r.plan.signal != "KILL"]
    print(
        f"clean stops (SIGTERM/SIGHUP trials): {len(signal_runs)}, unclean: {summary.total('unclean')};"
        f" kill -9 executions not ending SUCCESS: {summary.total('wrong_end')}"
    )
    print(summary.final_line())
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
