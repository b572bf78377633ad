"""One local executor that every cloud fake uses to really run a job's command.

A fake (moto's Batch, and later Google Batch, Cloud Run, Azure Batch, Kubernetes) speaks its
service's wire protocol and keeps its job states; this module plays the container: the job's
argv runs as a local process, its output comes back line by line, its exit code comes back
as a shell reports it, and a kill really stops it. One copy of that logic, so every fake's
logs, exit codes, cancels and timeouts behave the same and are genuine.

::

    executor = LocalExecutor(tmp_path)
    job = executor.start(
        "job-1", ["sh", "-c", "echo hi; exit 3"], {},
        on_line=lines.append, on_exit=codes.append,
    )
    assert job.wait(10) == 3
    executor.stop()

Theory of operation. Each job gets four threads: a supervisor (fills the mounts, spawns the
process in a new session, waits for it, kills what it left behind, syncs the mounts back),
two readers (stdout and stderr, each assembled into lines on its own, as a container runtime
does) and a deliverer, the only thread that calls ``on_line`` and, without ``log_lag``,
``on_exit``, so a fake never sees two callbacks of one job at once.

- A line is stamped (``time.time()``) as it is read, under the job's lock, so the stamps of
  one job never go backwards in delivery order; its stream is kept with it.
- ``on_exit`` is called exactly once, after both pipes hit end-of-file, the mounts were
  synced back and (with ``log_lag == 0``) every line was delivered: a fake that marks the
  job ended in ``on_exit`` has all its logs already.
- ``log_lag > 0`` delays each line by that many seconds after it was read, and ``on_exit``
  does *not* wait for them: cloud log services ingest after the job ended, and a runner must
  cope with logs that arrive after the terminal state. Then ``on_exit`` may run while lines
  are still being delivered (from another thread).
- When the main process exits, the rest of its process group is killed, as a container's
  processes die with its PID 1; so a background child cannot hold the pipes open.
- A process killed by signal N reports ``128 + N`` (SIGKILL: 137). Failures to start are
  data too: the reason goes to stderr as a line and the exit code is 125 (a mount could not
  be filled or synced back, like ``docker run`` failing) or 127 (argv[0] cannot be run).
- An exception raised by a fake's callback is printed at once and raised again, grouped, by
  :meth:`LocalExecutor.stop`: a fake's bug fails the test that owns the executor instead of
  vanishing in a thread.
"""

from __future__ import annotations

import contextlib
import enum
import itertools
import os
import queue
import re
import signal as signals
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

__all__ = ["LocalExecutor", "LogLine", "Mount", "RunningJob", "Stream"]

MINIMAL_PATH = "/usr/local/bin:/usr/bin:/bin"
START_FAILED = 125  # the container runtime failed before or after the command (docker's code)
NOT_RUNNABLE = 127  # argv[0] is missing or cannot be executed (the shell's code)


class Stream(enum.Enum):
    STDOUT = "stdout"
    STDERR = "stderr"


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line as the job wrote it, without its newline; ``at`` is when it was read (epoch seconds)."""

    stream: Stream
    text: str
    at: float


@dataclass(frozen=True, slots=True)
class Mount:
    """A directory the job sees at ``path_in_job``, backed by storage (a "mounted bucket").

    ``download(dir)`` fills a fresh empty directory before the command starts; ``upload(dir)``
    syncs it back after the command exited (``None``: a read-only mount). The executor cannot
    mount anything at ``path_in_job`` itself, so it substitutes the local directory for that
    path wherever it appears, as a whole path component, in argv, the env's values and cwd;
    a fake chooses how the job learns the path by putting it there (``DATA=/mnt/data``, or a
    command reading ``/mnt/data/in.txt``). Storage bindings live elsewhere
    (:mod:`tests.emulators.mounts`): anything with these two callables fits.
    """

    path_in_job: str
    download: Callable[[Path], None]
    upload: Callable[[Path], None] | None = None


@dataclass(frozen=True, slots=True)
class _Exit:
    """The deliverer's cue to call ``on_exit`` (after the lines queued before it)."""

    code: int


class _End:
    """The deliverer's cue to return."""


class RunningJob:
    """What :meth:`LocalExecutor.start` returns: the job's process and its outcome as they happen."""

    def __init__(self, job_id: str, directory: Path) -> None:
        self.job_id = job_id
        self.directory = directory  # cwd (unless given) and mount directories live under it
        self.pid: int | None = None  # set once the process started
        self._exit_code: int | None = None
        self._killed_with: int | None = None  # a kill before the process exists
        self._reaped = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._done = threading.Event()  # on_exit was called

    @property
    def exit_code(self) -> int | None:
        """The exit code once ``on_exit`` was called, else ``None``."""
        return self._exit_code if self._done.is_set() else None

    def wait(self, timeout: float) -> int | None:
        """Block until ``on_exit`` was called (the exit code) or ``timeout`` seconds passed (``None``)."""
        self._done.wait(timeout)
        return self.exit_code

    def kill(self, signal: int = signals.SIGKILL) -> None:
        """Send ``signal`` to the job's whole process group; before it started, it never will."""
        with self._lock:
            if self._proc is None:
                if self._killed_with is None:
                    self._killed_with = signal
                return
            if not self._reaped:  # the group leader is unreaped: its pgid cannot be reused
                _killpg(self._proc.pid, signal)


class LocalExecutor:
    """Runs jobs as local process groups under ``workdir``; thread-safe. See the module docstring."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._jobs: dict[str, RunningJob] = {}
        self._threads: list[threading.Thread] = []
        self._errors: list[Exception] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._seq = itertools.count()

    def start(
        self,
        job_id: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        on_line: Callable[[LogLine], None],
        on_exit: Callable[[int], None],
        cwd: str | None = None,
        log_lag: float = 0.0,
        mounts: Sequence[Mount] = (),
    ) -> RunningJob:
        """Start ``argv`` with exactly ``env`` (plus a minimal ``PATH`` if it has none); return at once.

        The process starts on the job's own thread, after its mounts were filled; ``cwd``
        defaults to a fresh directory of the job. A ``job_id`` may be reused once its job ended.
        """
        if not argv:
            raise ValueError("argv is empty")
        if log_lag < 0:
            raise ValueError("log_lag must be >= 0")
        with self._lock:
            if self._stopping.is_set():
                raise RuntimeError("the executor is stopped")
            live = self._jobs.get(job_id)
            if live is not None and live.exit_code is None:
                raise ValueError(f"job {job_id!r} is still running")
            safe = re.sub(r"[^A-Za-z0-9_.-]", "_", job_id)[:80]
            job = RunningJob(job_id, self.workdir / f"{next(self._seq):05d}-{safe}")
            self._jobs[job_id] = job
        job.directory.mkdir(parents=True)
        run = _Run(self, job, list(argv), dict(env), cwd, on_line, on_exit, log_lag, tuple(mounts))
        run._thread(run.supervise, "supervise")
        return job

    def job(self, job_id: str) -> RunningJob:
        """The job last started under ``job_id`` (``KeyError`` if none)."""
        with self._lock:
            return self._jobs[job_id]

    def kill(self, job_id: str, signal: int = signals.SIGKILL) -> None:
        """Send ``signal`` to the job's whole process group (``KeyError`` for an unknown job)."""
        self.job(job_id).kill(signal)

    def stop(self, timeout: float = 10.0) -> None:
        """Kill every job, wait for their threads (lines still held back by ``log_lag`` are dropped).

        Raises the callbacks' exceptions, if any, as one ``ExceptionGroup``.
        """
        with self._lock:
            self._stopping.set()
            jobs = list(self._jobs.values())
            threads = list(self._threads)
        for job in jobs:
            job.kill()
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            errors, self._errors = self._errors, []
        if errors:
            raise ExceptionGroup("a cloud fake's executor callback failed", errors)

    # -- for _Run

    def _spawned(self, thread: threading.Thread) -> None:
        with self._lock:
            if len(self._threads) > 256:  # forget the ended ones; stop() joins the rest
                self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)

    def _failed(self, exc: Exception) -> None:
        traceback.print_exception(exc, file=sys.stderr)
        with self._lock:
            self._errors.append(exc)


class _Run:
    """One job's threads and what they share (see "Theory of operation")."""

    def __init__(
        self,
        executor: LocalExecutor,
        job: RunningJob,
        argv: list[str],
        env: dict[str, str],
        cwd: str | None,
        on_line: Callable[[LogLine], None],
        on_exit: Callable[[int], None],
        log_lag: float,
        mounts: tuple[Mount, ...],
    ) -> None:
        self.executor = executor
        self.job = job
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.on_line = on_line
        self.on_exit = on_exit
        self.log_lag = log_lag
        self.mounts = mounts
        self.queue: queue.SimpleQueue[LogLine | _Exit | _End] = queue.SimpleQueue()

    def supervise(self) -> None:
        deliverer = self._thread(self.deliver, "deliver")
        code = self._run()
        self.job._exit_code = code
        if self.log_lag:
            self._exited(code)
        else:
            self.queue.put(_Exit(code))
        self.queue.put(_End())
        deliverer.join()

    def _exited(self, code: int) -> None:
        self._call(self.on_exit, code)
        self.job._done.set()

    def _run(self) -> int:
        directories = [self.job.directory / f"mount-{i}" for i in range(len(self.mounts))]
        for mount, directory in zip(self.mounts, directories, strict=True):
            directory.mkdir()
            if not self._storage(mount.download, directory, f"mount {mount.path_in_job}: download"):
                return START_FAILED
        local = {mount.path_in_job: str(d) for mount, d in zip(self.mounts, directories, strict=True)}
        substitute = _substitution(local)
        env = {name: substitute(value) for name, value in self.env.items()}
        env.setdefault("PATH", MINIMAL_PATH)
        if self.cwd is None:
            cwd = self.job.directory / "work"
            cwd.mkdir()
        else:
            cwd = Path(substitute(self.cwd))
        code = self._process([substitute(arg) for arg in self.argv], env, cwd)
        for mount, directory in zip(self.mounts, directories, strict=True):
            if mount.upload is not None and not self._storage(
                mount.upload, directory, f"mount {mount.path_in_job}: upload"
            ):
                code = code or START_FAILED
        return code

    def _process(self, argv: list[str], env: dict[str, str], cwd: Path) -> int:
        job = self.job
        with job._lock:
            if job._killed_with is not None:
                return 128 + job._killed_with
            try:
                proc = subprocess.Popen(
                    argv,
                    env=env,
                    cwd=cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    start_new_session=True,  # its own process group: a kill reaches its children
                )
            except OSError as exc:
                failure: OSError | None = exc
            else:
                failure = None
                job._proc = proc
                job.pid = proc.pid
        if failure is not None:
            self._line(Stream.STDERR, f"cannot run {argv[0]!r}: {failure.strerror or failure}")
            return NOT_RUNNABLE
        assert proc.stdout is not None and proc.stderr is not None
        readers = [
            self._thread(lambda: self._read(proc.stdout, Stream.STDOUT), "stdout"),
            self._thread(lambda: self._read(proc.stderr, Stream.STDERR), "stderr"),
        ]
        # Wait without reaping, so the group's id stays ours while we kill what is left of it.
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        with job._lock:
            _killpg(proc.pid, signals.SIGKILL)
            code = proc.wait()
            job._reaped = True
        for reader in readers:
            reader.join()
        return 128 - code if code < 0 else code

    def _read(self, pipe: IO[bytes] | None, stream: Stream) -> None:
        assert pipe is not None
        with pipe:
            for raw in iter(pipe.readline, b""):
                text = raw.decode("utf-8", "replace")
                self._line(stream, text[:-1] if text.endswith("\n") else text)

    def _line(self, stream: Stream, text: str) -> None:
        with self.job._lock:  # stamps and queue order agree: a job's stamps never go backwards
            self.queue.put(LogLine(stream, text, time.time()))

    def deliver(self) -> None:
        stopping = self.executor._stopping
        while True:
            item = self.queue.get()
            match item:
                case LogLine():
                    if self.log_lag:
                        due = item.at + self.log_lag - time.time()
                        if due > 0 and stopping.wait(due):
                            continue  # stopped: drop the late line, still honour the cues after it
                    self._call(self.on_line, item)
                case _Exit(code):
                    self._exited(code)
                case _End():
                    return

    def _storage(self, sync: Callable[[Path], None], directory: Path, what: str) -> bool:
        try:
            sync(directory)
        except Exception as exc:  # the job fails as a container whose volume failed would
            self._line(Stream.STDERR, f"{what} failed: {exc!r}")
            return False
        return True

    def _call(self, callback: Callable[..., None], arg: object) -> None:
        try:
            callback(arg)
        except Exception as exc:
            self.executor._failed(exc)

    def _thread(self, target: Callable[[], None], role: str) -> threading.Thread:
        thread = threading.Thread(target=target, name=f"executor-{self.job.job_id}-{role}", daemon=True)
        self.executor._spawned(thread)
        thread.start()
        return thread


def _killpg(pgid: int, signal: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # the whole group is gone already
        os.killpg(pgid, signal)


def _substitution(paths: Mapping[str, str]) -> Callable[[str], str]:
    """Replace each ``path_in_job`` by its directory where it is a whole path (``/mnt/database`` stays)."""
    targets = {path.rstrip("/") or "/": local for path, local in paths.items()}
    if not targets:
        return lambda text: text
    alternatives = "|".join(re.escape(path) for path in sorted(targets, key=len, reverse=True))
    pattern = re.compile(rf"(?<![\w.-])(?:{alternatives})(?![\w.-])")
    return lambda text: pattern.sub(lambda match: targets[match.group(0)], text)
