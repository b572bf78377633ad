"""The local subprocess runner (entry point ``process``): the embedded default.

Kestra's ``io.kestra.plugin.core.runner.Process`` runs a task's commands as a child of the
worker; so does this runner, with the same neutral contract as the cloud runners
(``runners/base.py``). Everything it knows about a job lives in one directory, so a new
``ProcessRunner`` on the same ``base_dir`` (after a restart, or from another process) can
find, poll, read and cancel it::

    <base_dir>/<spec.name>/
                    the directory itself is flock(2)ed while a submit (or cancel) works on
                    the job: the idempotency lock
        work/       fresh working directory: cwd, WORKING_DIR, input_files written here
        out/        OUTPUT_DIR
        pid         the handle id, a spec summary (env values are not stored: they may be
                    secrets), and the pid, process-group id and /proc start time of the job
                    and of its owner
        log.jsonl   stdout and stderr in arrival order, one JSON record a line {stream, text, at};
                    a line longer than MAX_LINE_BYTES is several records, all but the last
                    with "partial": true (``LogRecord.partial``)
        cancelled   present once cancel() was asked
        exit        terminal status and handle id, written once (temp file + rename) after
                    outputs are copied
        outputs/    default copy target of output files (when spec.output_prefix is None)

Theory of operation:

- ``submit`` creates the directory (``os.mkdir``) and flocks it; whoever holds the lock while
  neither ``pid`` nor ``exit`` exists prepares the directory and spawns. So two submits of
  one name (threads, instances or processes) start one process, and a submit that failed
  half-way (fork kept failing with EAGAIN, or the runner crashed) leaves a directory that
  the next submit takes over. ``pid`` is written (atomically) before the lock is released
  and before ``submit`` returns: nobody can observe a running job without it.
- The child runs in its own session (``start_new_session``), so the process group is the
  job: timeout and cancel signal the group (TERM, grace period, KILL), grandchildren included.
  Before signalling, the group leader's /proc start time is compared with the recorded one,
  so a recycled pid is never signalled.
- One pump per job owns the child, on a thread of a small pool (threads are reused: starting
  one costs more than a short job's whole bookkeeping). It reads both pipes with poll(2)
  (and a pidfd for the exit, when the kernel has them), writes each line to ``log.jsonl`` in
  arrival order, enforces the timeout, reaps the child, copies output files and finally
  writes ``exit``; the files it needs (log, the exit temp file) are created while the child
  runs. When the main process has exited, pipes still held open by leftover background
  processes are drained for one more second, then the group is killed: like a container, a
  job ends with its main process.
- ``poll`` answers from memory for a job this process supervises (RUNNING until ``exit`` is
  written, then the pump wakes :meth:`ProcessRunner.wait` at once). Otherwise it reads
  ``exit`` when it exists (one small read; the parsed status is cached by content).
  Otherwise the job is RUNNING while its owner (the runner process whose pump reads the
  pipes) is alive. When the owner is gone the job's output is lost for good: the job is
  LOST, and a still-running orphan is killed so it does not run alongside the retry that the
  control plane will submit. For the same reason an interpreter that exits (atexit) kills the
  jobs it supervises; only a hard crash leaves orphans, for the next poll to find.

Not supported: Windows (fcntl, process groups, /proc), ``image`` (ignored, as Kestra's
Process runner does), processes that leave the job's process group with ``setsid``.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import importlib
import json
import logging
import os
import queue
import re
import select
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from json.encoder import encode_basestring
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar
from urllib.parse import quote_from_bytes, unquote, urlparse

from msgspec import Struct
from pydantic import Field

from runners import retry
from runners.base import (
    Failure,
    JobHandle,
    JobNotFoundError,
    JobSpec,
    JobState,
    JobStatus,
    LogChunk,
    LogRecord,
    Resources,
    RunnerError,
    RunnerOptions,
    validate_options,
)

__all__ = [
    "LOG_CHUNK_BYTES",
    "LOG_CHUNK_LINES",
    "MAX_LINE_BYTES",
    "ProcessOptions",
    "ProcessRunner",
    "default_base_dir",
    "path_from_file_uri",
]

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 1 << 20
"""A longer line is cut into pieces of at most this many bytes (at a UTF-8 boundary)."""
LOG_CHUNK_LINES = 10_000
LOG_CHUNK_BYTES = 8 << 20
"""Bounds of one :meth:`ProcessRunner.logs` chunk (at least one record is always returned)."""

_READ_SIZE = 1 << 16
_LINGER = 1.0  # seconds to drain pipes after the main process exited, before killing leftovers
_GIVE_UP = 1.0  # then seconds to wait for EOF before abandoning pipes held outside the group
_POLL = 0.05  # exit polling interval when pidfd_open is unavailable
_NAME_MAX = 200
_POOL_IDLE = 30.0  # seconds an idle pump thread waits for another job before it ends
_AT_EXIT_WAIT = 1.0  # seconds the interpreter's exit waits for killed jobs to be recorded
_EXIT_CACHE_MAX = 4096

_JOB, _PID, _EXIT, _CANCELLED, _LOG = "job.json", "pid", "exit", "cancelled", "log.jsonl"
_WORK, _OUT, _OUTPUTS = "work", "out", "outputs"

_NAME_RE = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{_NAME_MAX - 1}}}")
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC


class ProcessOptions(RunnerOptions):
    """``taskRunner`` options of ``type: io.kestra.plugin.core.runner.Process``.

    Kestra's Process runner has no properties; ``gracePeriod`` is a Squall extra.
    """

    grace_period: timedelta | None = Field(
        default=None,
        alias="gracePeriod",
        ge=timedelta(0),
        description="Time between SIGTERM and SIGKILL on timeout or cancel (ISO-8601, e.g. PT10S).",
    )


def default_base_dir() -> Path:
    """``<user data dir>/squall/jobs``: platformdirs when installed, else the XDG rule."""
    try:  # optional: used when something else installed it, never required
        platformdirs = importlib.import_module("platformdirs")
    except ImportError:
        xdg = os.environ.get("XDG_DATA_HOME", "")
        root = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".local" / "share"  # the XDG rule
        return root / "squall" / "jobs"
    return Path(platformdirs.user_data_dir("squall")) / "jobs"


def path_from_file_uri(uri: str) -> Path:
    """The local path of a ``file://`` URI; :class:`RunnerError` for any other scheme."""
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        raise RunnerError(
            f"unsupported output prefix {uri!r}: the process runner only writes file:// URIs",
            runner=ProcessRunner.name,
        )
    if parsed.netloc not in ("", "localhost"):
        raise RunnerError(f"file URI {uri!r} names a remote host", runner=ProcessRunner.name)
    path = Path(unquote(parsed.path))
    if not path.is_absolute():
        raise RunnerError(f"file URI {uri!r} is not absolute", runner=ProcessRunner.name)
    return path


def _utcnow() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------------------
# Process-wide state: jobs supervised by this process, parsed exit files, the change
# notification, and the pool of pump threads.

_changed = threading.Condition()
_generation = 0
_active_lock = threading.Lock()
_active: dict[str, _Pump] = {}  # job directory -> its pump, from before `pid` exists until `exit` does
_exit_cache: dict[str, tuple[bytes, JobStatus, str | None]] = {}  # job directory -> (exit bytes, status, id)
_pool_lock = threading.Lock()
_pool_queue: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
_pool_idle = 0


def _notify() -> None:
    global _generation
    with _changed:
        _generation += 1
        _changed.notify_all()


def _active_pump(job_dir: str) -> _Pump | None:
    return _active.get(job_dir)  # a single dict lookup is atomic


def _cache_exit(job_dir: str, raw: bytes, status: JobStatus, token: str | None) -> None:
    with _active_lock:
        _exit_cache.pop(job_dir, None)
        if len(_exit_cache) >= _EXIT_CACHE_MAX:
            del _exit_cache[next(iter(_exit_cache))]  # the oldest entry
        _exit_cache[job_dir] = (raw, status, token)


def _dispatch(task: Callable[[], None]) -> None:
    """Run ``task`` (a pump's ``run``) on an idle pool thread, or on a new one."""
    global _pool_idle
    with _pool_lock:
        if _pool_idle > 0:
            _pool_idle -= 1
            _pool_queue.put(task)
            return
    threading.Thread(target=_pool_worker, args=(task,), name="squall-process-pool", daemon=True).start()


def _pool_worker(task: Callable[[], None] | None) -> None:
    """Run tasks one after the other; end after ``_POOL_IDLE`` seconds without one.

    ``_pool_idle`` counts the workers waiting for a task that no dispatcher has claimed yet;
    a dispatcher claims one (decrement) and queues the task under the same lock, so a worker
    that times out finds that task in the queue instead of leaving it behind.
    """
    global _pool_idle
    while task is not None:
        try:
            task()
        except BaseException:  # a pump never raises; should one, the thread lives on
            log.exception("process runner: background task failed")
        task = None
        with _pool_lock:
            _pool_idle += 1
        try:
            task = _pool_queue.get(timeout=_POOL_IDLE)
        except queue.Empty:
            with _pool_lock:
                try:
                    task = _pool_queue.get_nowait()  # claimed by a dispatcher just before the timeout
                except queue.Empty:
                    _pool_idle -= 1


def _after_fork_in_child() -> None:
    """A forked child supervises nothing, and must not wait on locks held by the parent's threads."""
    global _changed, _active_lock, _active, _exit_cache, _pool_lock, _pool_queue, _pool_idle
    _changed = threading.Condition()
    _active_lock = threading.Lock()
    _active = {}
    _exit_cache = {}
    _pool_lock = threading.Lock()
    _pool_queue = queue.SimpleQueue()
    _pool_idle = 0


os.register_at_fork(after_in_child=_after_fork_in_child)


# --------------------------------------------------------------------------------------
# /proc helpers: is this exact process (pid + start time) alive, is its group empty.


class _Stat(Struct, frozen=True):
    state: str
    pgrp: int
    start: int


_HAS_PROC = os.path.exists("/proc/self/stat")


def _has_proc() -> bool:
    return _HAS_PROC


def _proc_stat(pid: int) -> _Stat | None:
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        raw = os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        # The command name (field 2) may hold spaces and parentheses: split after the last ")".
        fields = raw[raw.rindex(b")") + 2 :].split()
        return _Stat(state=fields[0].decode(), pgrp=int(fields[2]), start=int(fields[19]))
    except (ValueError, IndexError):
        return None


def _read_boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return None


_BOOT_ID = _read_boot_id()  # constant while this process lives


def _boot_id() -> str | None:
    return _BOOT_ID


class _PidInfo(Struct, frozen=True):
    """What the ``pid`` file records: the job's process (group) and the runner process owning it."""

    pid: int
    start: int | None
    boot: str | None
    owner_pid: int
    owner_start: int | None
    started: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "pgid": self.pid,
            "start": self.start,
            "boot": self.boot,
            "owner_pid": self.owner_pid,
            "owner_start": self.owner_start,
            "started": self.started.isoformat(),
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> _PidInfo:
        return cls(
            pid=int(raw["pid"]),
            start=raw.get("start"),
            boot=raw.get("boot"),
            owner_pid=int(raw["owner_pid"]),
            owner_start=raw.get("owner_start"),
            started=datetime.fromisoformat(raw["started"]),
        )


def _same_boot(boot: str | None) -> bool:
    return boot is None or boot == _boot_id()


def _alive(pid: int, start: int | None, boot: str | None) -> bool:
    """Whether the process ``pid`` that started at ``start`` (clock ticks) still runs."""
    if not _same_boot(boot):
        return False
    if not _has_proc():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    stat = _proc_stat(pid)
    if stat is None or stat.state in ("Z", "X"):
        return False
    return start is None or stat.start == start


def _group_alive(pgid: int) -> bool:
    """Whether some non-zombie process is still in process group ``pgid``."""
    if not _has_proc():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    with os.scandir("/proc") as entries:
        for entry in entries:
            if entry.name.isdigit():
                stat = _proc_stat(int(entry.name))
                if stat is not None and stat.pgrp == pgid and stat.state not in ("Z", "X"):
                    return True
    return False


def _signal_group(info: _PidInfo, sig: int) -> bool:
    """Signal the job's process group unless its id may have been recycled; False if nothing to signal.

    A process-group id cannot be reused as a pid while the group has members, so the only
    unsafe case is a *different* process now holding the leader's pid (start time differs,
    or another boot): then our group is empty anyway and we must not signal.
    """
    if not _same_boot(info.boot):
        return False
    stat = _proc_stat(info.pid)
    if stat is not None and info.start is not None and stat.start != info.start:
        return False
    try:
        os.killpg(info.pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _wait_group_gone(pgid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    pause = 0.005
    while _group_alive(pgid):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(pause, remaining))  # waiting on the kernel, not a test: no event to wait on
        pause = min(pause * 2, 0.05)
    return True


def _terminate(info: _PidInfo, grace: float) -> None:
    """SIGTERM the job's group, wait up to ``grace`` seconds, then SIGKILL what is left."""
    if not _signal_group(info, signal.SIGTERM):
        return
    if _wait_group_gone(info.pid, grace):
        return
    _signal_group(info, signal.SIGKILL)
    _wait_group_gone(info.pid, 5.0)


_exiting = threading.Event()


@atexit.register
def _stop_supervised_jobs() -> None:
    """When this interpreter exits, kill the jobs it supervises instead of leaving orphans.

    Their pumps then record them LOST (waited for a short while: they die with the
    interpreter); whatever is not recorded by then, the next ``poll`` (from any process)
    reports LOST too, the same as after a crash, minus processes left running beside the retry.
    """
    _exiting.set()
    with _active_lock:
        pumps = list(_active.values())
    for pump in pumps:
        _signal_group(pump.info, signal.SIGKILL)
    deadline = time.monotonic() + _AT_EXIT_WAIT
    for pump in pumps:
        if pump.dispatched:
            pump.done.wait(max(deadline - time.monotonic(), 0.0))


_owner_cache: tuple[int, int | None] | None = None


def _self_start() -> int | None:
    global _owner_cache
    pid = os.getpid()
    if _owner_cache is None or _owner_cache[0] != pid:  # recomputed after a fork
        stat = _proc_stat(pid)
        _owner_cache = (pid, stat.start if stat else None)
    return _owner_cache[1]


# --------------------------------------------------------------------------------------
# Small file helpers: plain descriptors (no buffering layers) on str paths.


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _dumps(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode("utf-8")


def _write_atomic(path: str, data: bytes) -> None:
    """Readers see the old file or the new one, never half of it (temp file + rename).

    No fsync: after a power loss the jobs are gone anyway, and a status file lost with them
    reads as "no exit recorded", which ``poll`` reports as LOST: the safe answer.
    """
    head, name = os.path.split(path)
    tmp = f"{head}/.{name}.{os.getpid()}.{threading.get_ident()}.tmp"
    fd = os.open(tmp, _CREATE, 0o644)
    try:
        _write_all(fd, data)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)


def _read_bytes(path: str) -> bytes | None:
    """A small file's content, or None when it cannot be read (missing...)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, _READ_SIZE)
        if len(data) == _READ_SIZE:  # rare: status files are small
            chunks = [data]
            while chunk := os.read(fd, _READ_SIZE):
                chunks.append(chunk)
            data = b"".join(chunks)
        return data
    except OSError:
        return None
    finally:
        os.close(fd)


def _parse_json(raw: bytes | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _read_json(path: str) -> dict[str, Any] | None:
    return _parse_json(_read_bytes(path))


def _mkdir_fresh(path: str) -> None:
    """An empty directory at ``path``: whatever an abandoned attempt left there is removed."""
    try:
        os.mkdir(path)
    except FileExistsError:
        _remove_tree(path)
        os.mkdir(path)


def _remove_tree(path: str) -> None:
    """``rm -rf path`` (errors ignored), with a one-syscall fast path for an empty directory."""
    try:
        os.rmdir(path)
    except FileNotFoundError:
        return
    except NotADirectoryError:  # a file, or a symlink (rmtree refuses those)
        with contextlib.suppress(OSError):
            os.unlink(path)
    except OSError:  # not empty
        shutil.rmtree(path, ignore_errors=True)


def _file_uri(path: str | Path) -> str:
    """``Path(path).as_uri()`` for an absolute path, without building a Path."""
    return "file://" + quote_from_bytes(os.fsencode(path))


def _child_env(extra: Mapping[str, str], work: str, out: str) -> dict[bytes, bytes]:
    """This process's environment plus the job's, as bytes: what Popen hands to exec anyway
    (it encodes every str variable of a str environment on each spawn)."""
    # os.environb's own dict when it has one (CPython: a plain C-level copy, where copying
    # the mapping goes through Python methods per variable); equal content either way.
    data = getattr(os.environb, "_data", None)
    env = data.copy() if isinstance(data, dict) else os.environb.copy()
    for key, value in extra.items():
        env[os.fsencode(key)] = os.fsencode(str(value))
    env[b"WORKING_DIR"] = os.fsencode(work)
    env[b"OUTPUT_DIR"] = os.fsencode(out)
    return env


def _nonempty_dir(path: str) -> bool:
    try:
        with os.scandir(path) as entries:
            return next(entries, None) is not None
    except OSError:
        return False


class _Claim:
    """An flock(2) on the job directory: serialises submit/cancel/find of one job across processes."""

    def __init__(self, job_dir: str, *, blocking: bool = True) -> None:
        self.path = job_dir
        self.blocking = blocking
        self.fd: int | None = None
        self.held = False

    def __enter__(self) -> _Claim:
        # O_CLOEXEC matters: a spawned job must never inherit the lock.
        self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | (0 if self.blocking else fcntl.LOCK_NB))
            self.held = True
        except BlockingIOError:
            self.held = False
        except BaseException:
            os.close(self.fd)
            self.fd = None
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the lock
            self.fd = None


def _claim_busy(job_dir: str) -> bool:
    """Whether someone holds the job's claim right now (a submit is preparing or spawning)."""
    try:
        with _Claim(job_dir, blocking=False) as claim:
            return not claim.held
    except OSError:
        return False


def _started(job_dir: str) -> bool:
    """Whether a submit went through: ``pid`` (spawned) or ``exit`` (ended without a process) exists."""
    return os.path.exists(f"{job_dir}/{_PID}") or os.path.exists(f"{job_dir}/{_EXIT}")


# --------------------------------------------------------------------------------------
# Status documents.


def _exit_doc(
    state: JobState,
    failure: Failure | None,
    exit_code: int | None,
    reason: str | None,
    started: datetime | None,
    ended: datetime | None,
    output_files: Mapping[str, str] | None = None,
    *,
    token: str | None,
) -> dict[str, Any]:
    return {
        "id": token,
        "state": state.value,
        "failure": failure.value if failure else None,
        "exit_code": exit_code,
        "reason": reason,
        "started": started.isoformat() if started else None,
        "ended": ended.isoformat() if ended else None,
        "output_files": dict(output_files or {}),
    }


def _status_from_exit(doc: Mapping[str, Any]) -> JobStatus:
    started = datetime.fromisoformat(doc["started"]) if doc.get("started") else None
    ended = datetime.fromisoformat(doc["ended"]) if doc.get("ended") else None
    wall = max((ended - started).total_seconds(), 0.0) if started and ended else 0.0
    return JobStatus(
        state=JobState(doc["state"]),
        failure=Failure(doc["failure"]) if doc.get("failure") else None,
        exit_code=doc.get("exit_code"),
        reason=doc.get("reason"),
        output_files=dict(doc.get("output_files") or {}),
        resources=Resources(vcpu_seconds=wall),
        started=started,
        ended=ended,
    )


def _write_exit(job_dir: str, doc: Mapping[str, Any]) -> JobStatus:
    """Record a terminal status (atomically) and remember it parsed; returns it."""
    raw = _dumps(doc)
    _write_atomic(f"{job_dir}/{_EXIT}", raw)
    status = _status_from_exit(doc)
    _cache_exit(job_dir, raw, status, doc.get("id"))
    return status


def _describe_exit(code: int) -> tuple[int, str]:
    """Popen's returncode as a shell would report it: -9 becomes 137 "killed by signal SIGKILL"."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return 128 - code, f"killed by signal {name}"
    return code, f"exit code {code}"


# --------------------------------------------------------------------------------------
# Validation of a spec before anything touches the disk.


class _Plan(Struct, frozen=True):
    spec: JobSpec
    job_dir: str
    grace: float
    prefix_dir: Path | None  # None: <job_dir>/outputs
    inputs: tuple[tuple[PurePosixPath, bytes], ...]


def _check_name(name: str) -> None:
    if not (isinstance(name, str) and _NAME_RE.fullmatch(name)):
        raise RunnerError(
            f"invalid job name {name!r}: use at most {_NAME_MAX} ASCII letters, digits, '.', '_' "
            "or '-', starting with a letter or digit",
            runner=ProcessRunner.name,
        )


def _relative(path: str, what: str) -> PurePosixPath:
    pure = PurePosixPath(path)
    if not path or "\0" in path or pure.is_absolute() or ".." in pure.parts or pure == PurePosixPath("."):
        raise RunnerError(
            f"{what} {path!r} must be a relative path inside the working directory",
            runner=ProcessRunner.name,
        )
    return pure


# --------------------------------------------------------------------------------------
# The pump: one per job, on a pool thread, supervising the child.


class _StartFailure(Struct, frozen=True):
    exit_code: int
    reason: str


class _Pump:
    """Reads the child's pipes into the log, enforces the timeout, reaps it, records the exit."""

    def __init__(
        self,
        *,
        job_dir: str,
        proc: subprocess.Popen[bytes],
        info: _PidInfo,
        token: str,
        spec: JobSpec,
        grace: float,
        prefix_dir: Path | None,
        clock: Callable[[], datetime],
        dir_id: tuple[int, int] | None = None,
    ) -> None:
        self.job_dir = job_dir
        self.dir_id = dir_id  # (st_dev, st_ino) of job_dir: the files written at the end go there only
        self.proc = proc
        self.info = info
        self.token = token
        self.spec = spec
        self.grace = grace
        self.prefix_dir = prefix_dir
        self.clock = clock
        self.running = JobStatus(JobState.RUNNING, started=info.started)
        self.started_mono = time.monotonic()
        self.timed_out = False
        self.dispatched = False
        self.done = threading.Event()
        self._poller = select.poll()
        self._splitters: dict[int, _LineSplitter] = {}
        self._streams: dict[int, str] = {}
        self._timers: dict[str, float] = {}  # name -> monotonic deadline: timeout, kill, linger, give_up
        self._returncode: int | None = None
        self._ended: datetime | None = None
        self._cancelled = False
        self._interpreter_exiting = False
        self._exit_tmp: str | None = None
        self._exit_fd: int | None = None

    # -- the pool thread's entry point

    def run(self) -> None:
        try:
            returncode, ended = self._supervise()
            self._finish(returncode, ended)
        except BaseException as exc:  # never die silently: the job would look RUNNING forever
            log.exception("process runner: supervising job %s failed", self.spec.name)
            with contextlib.suppress(BaseException):
                self._record_lost(f"the runner failed while supervising the job: {exc!r}")
        finally:
            with contextlib.suppress(BaseException):
                self._release()
            self._drop_exit_tmp()
            with _active_lock:
                if _active.get(self.job_dir) is self:
                    del _active[self.job_dir]
            self.done.set()
            _notify()

    def _supervise(self) -> tuple[int, datetime]:
        """Pump until the child is reaped and both pipes are closed; returns (returncode, ended)."""
        proc = self.proc
        assert proc.stdout is not None and proc.stderr is not None
        if self.spec.timeout is not None:
            self._timers["timeout"] = self.started_mono + self.spec.timeout.total_seconds()
        # Only this pump ever writes the log: truncating drops nothing (an abandoned attempt
        # never had a pump).
        out = os.open(f"{self.job_dir}/{_LOG}", _CREATE | os.O_APPEND, 0o644)
        try:
            self._precreate_exit_file()
            poller = self._poller
            for stream, pipe in (("stdout", proc.stdout), ("stderr", proc.stderr)):
                fd = pipe.fileno()
                self._streams[fd] = stream
                self._splitters[fd] = _LineSplitter()
                poller.register(fd, select.POLLIN)
            pidfd = self._open_pidfd()
            if pidfd is not None:
                poller.register(pidfd, select.POLLIN)
            try:
                while self._returncode is None or self._streams:
                    wait = self._next_wakeup(polling=pidfd is None)
                    events = poller.poll(None if wait is None else wait * 1000)  # ms, rounded up
                    at = self.clock().isoformat() if events else ""
                    for fd, _ in events:
                        if fd == pidfd:
                            poller.unregister(fd)
                            os.close(fd)
                            pidfd = None
                            self._reaped(proc.wait())
                        elif fd in self._streams:
                            self._read(fd, out, at)
                    if pidfd is None and self._returncode is None and (code := proc.poll()) is not None:
                        self._reaped(code)
                    if self._timers:
                        self._fire_timers(out, time.monotonic())
            finally:
                if pidfd is not None:
                    os.close(pidfd)
        finally:
            os.close(out)
        assert self._returncode is not None and self._ended is not None
        return self._returncode, self._ended

    def _precreate_exit_file(self) -> None:
        """Create the exit file's temp file while the job runs: creating a file (an inode) is
        the slowest step of recording the exit, and the job's end is what callers wait for."""
        tmp = f"{self.job_dir}/.{_EXIT}.{self.token}.tmp"
        try:
            self._exit_fd = os.open(tmp, _CREATE, 0o644)
        except OSError:
            return  # written the ordinary way at the end
        self._exit_tmp = tmp

    def _reaped(self, returncode: int) -> None:
        self._returncode = returncode
        self._ended = self.clock()
        # Decided now, not when the exit is recorded: a cancel that comes while the outputs
        # are drained or copied finds a job that already ended on its own (a no-op).
        self._cancelled = os.path.exists(f"{self.job_dir}/{_CANCELLED}")
        self._interpreter_exiting = _exiting.is_set()
        self._timers.pop("timeout", None)
        if self._streams:  # something still holds a pipe: drain it for a while, then stop it
            self._timers["linger"] = time.monotonic() + _LINGER

    def _next_wakeup(self, *, polling: bool) -> float | None:
        wait = max(min(self._timers.values()) - time.monotonic(), 0.0) if self._timers else None
        if polling and self._returncode is None:
            wait = _POLL if wait is None else min(wait, _POLL)
        return wait

    def _fire_timers(self, out: int, now: float) -> None:
        due = {name for name, at in self._timers.items() if at <= now}
        for name in due:
            del self._timers[name]
        if "timeout" in due:
            self.timed_out = True
            _signal_group(self.info, signal.SIGTERM)
            self._timers["kill"] = now + self.grace
        if "kill" in due:
            _signal_group(self.info, signal.SIGKILL)
        if "linger" in due and self._streams:
            # The main process is gone but leftovers (background children) hold a pipe open.
            _signal_group(self.info, signal.SIGKILL)
            self._timers["give_up"] = now + _GIVE_UP
        if "give_up" in due and self._streams:
            log.warning("job %s: a process outside its group keeps its output open", self.spec.name)
            for fd in list(self._streams):
                self._eof(fd, out, self.clock().isoformat())

    def _open_pidfd(self) -> int | None:
        opener = getattr(os, "pidfd_open", None)
        if opener is None:
            return None
        try:
            return int(opener(self.proc.pid))
        except OSError:
            return None

    # -- lines

    def _read(self, fd: int, out: int, at: str) -> None:
        try:
            data = os.read(fd, _READ_SIZE)
        except BlockingIOError:
            return
        if not data:
            self._eof(fd, out, at)
            return
        if records := _records(self._streams[fd], *self._splitters[fd].feed(data), at):
            _write_all(out, records)

    def _eof(self, fd: int, out: int, at: str) -> None:
        stream = self._streams.pop(fd)
        if records := _records(stream, *self._splitters.pop(fd).close(), at):
            _write_all(out, records)
        self._poller.unregister(fd)

    # -- the end

    def _finish(self, returncode: int, ended: datetime) -> None:
        self._release()
        exit_code, why = _describe_exit(returncode)
        if self._cancelled:
            state, failure, reason = JobState.CANCELLED, Failure.CANCELLED, "cancelled"
        elif self._interpreter_exiting:
            state, failure, reason = JobState.LOST, Failure.LOST, "the runner exited while the job ran"
        elif self.timed_out:
            state, failure = JobState.FAILED, Failure.TIMEOUT
            reason = f"timed out after {self.spec.timeout}"
        elif returncode == 0:
            state, failure, reason = JobState.SUCCEEDED, None, None
        else:
            state, failure, reason = JobState.FAILED, Failure.USER, why
        try:
            outputs = _copy_outputs(self.job_dir, self.spec.output_files, self.prefix_dir)
        except OSError as exc:
            outputs = {}
            if state is JobState.SUCCEEDED:
                state, failure = JobState.FAILED, Failure.USER
            reason = f"{reason + '; ' if reason else ''}could not copy output files: {exc}"
        doc = _exit_doc(
            state, failure, exit_code, reason, self.info.started, ended, outputs, token=self.token
        )
        raw = _dumps(doc)
        path = f"{self.job_dir}/{_EXIT}"
        fd, tmp = self._exit_fd, self._exit_tmp
        self._exit_fd = self._exit_tmp = None
        try:
            if fd is None or tmp is None:
                raise FileNotFoundError(errno.ENOENT, "no exit temp file")
            try:
                _write_all(fd, raw)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError:  # the job removed the temp file, or it could never be created
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            if not self._still_ours():
                log.warning(
                    "job %s: its directory was removed or replaced, exit not recorded", self.spec.name
                )
                return
            _write_atomic(path, raw)
        _cache_exit(self.job_dir, raw, _status_from_exit(doc), self.token)

    def _still_ours(self) -> bool:
        try:
            st = os.stat(self.job_dir)
        except OSError:
            return False
        return self.dir_id is None or (st.st_dev, st.st_ino) == self.dir_id

    def _record_lost(self, reason: str) -> None:
        if self._still_ours() and not os.path.exists(f"{self.job_dir}/{_EXIT}"):
            doc = _exit_doc(
                JobState.LOST, Failure.LOST, None, reason, self.info.started, self.clock(), token=self.token
            )
            _write_exit(self.job_dir, doc)

    def _drop_exit_tmp(self) -> None:
        fd, tmp = self._exit_fd, self._exit_tmp
        self._exit_fd = self._exit_tmp = None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def _release(self) -> None:
        """Reap the child and close its pipes (idempotent): no zombie, no ResourceWarning."""
        proc = self.proc
        if proc.poll() is None:
            _signal_group(self.info, signal.SIGKILL)
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


_WHOLE: frozenset[int] = frozenset()
"""No line was cut (the usual case): see :class:`_LineSplitter`."""


class _LineSplitter:
    """Cuts one stream's bytes into lines: split on ``\\n``, a trailing ``\\r`` dropped, and a
    line longer than MAX_LINE_BYTES cut into pieces, so memory stays bounded whatever the job prints.

    ``feed`` and ``close`` return the lines and the indexes of the pieces that do not end their
    line (the next line of this stream continues them): their records say ``partial``, so the
    reader can join them again (an outputs marker longer than MAX_LINE_BYTES is still one marker).
    """

    def __init__(self) -> None:
        self.pending = b""

    def feed(self, data: bytes) -> tuple[list[bytes], frozenset[int] | set[int]]:
        parts = (self.pending + data if self.pending else data).split(b"\n")
        self.pending = parts.pop()
        lines: list[bytes] = []
        cut: frozenset[int] | set[int] = _WHOLE
        for part in parts:
            pieces = _pieces(part[:-1] if part.endswith(b"\r") else part)
            if len(pieces) > 1:
                cut = {*cut, *range(len(lines), len(lines) + len(pieces) - 1)}
            lines.extend(pieces)
        while len(self.pending) > MAX_LINE_BYTES:
            cut = {*cut, len(lines)}
            at = _utf8_cut(self.pending, MAX_LINE_BYTES)
            lines.append(self.pending[:at])
            self.pending = self.pending[at:]
        return lines, cut

    def close(self) -> tuple[list[bytes], frozenset[int]]:
        """The last line, even without a trailing newline."""
        last, self.pending = self.pending, b""
        if not last:
            return [], _WHOLE
        pieces = _pieces(last[:-1] if last.endswith(b"\r") else last)
        return pieces, frozenset(range(len(pieces) - 1))


def _pieces(line: bytes) -> list[bytes]:
    if len(line) <= MAX_LINE_BYTES:
        return [line]
    pieces = []
    while len(line) > MAX_LINE_BYTES:
        cut = _utf8_cut(line, MAX_LINE_BYTES)
        pieces.append(line[:cut])
        line = line[cut:]
    pieces.append(line)
    return pieces


def _utf8_cut(buf: bytes, limit: int) -> int:
    """A cut position <= limit that does not split a UTF-8 sequence (when the data is UTF-8)."""
    cut = limit
    while cut > limit - 3 and (buf[cut] & 0xC0) == 0x80:
        cut -= 1
    return cut


def _records(stream: str, lines: list[bytes], cut: frozenset[int] | set[int], at: str) -> bytes:
    """Log records as JSON lines ``{"stream", "text", "at"}`` (plus ``"partial": true`` for the
    indexes in ``cut``), built by hand: json.dumps per line costs twice as much, and 100 MB of
    output is 100,000 lines or more."""
    if not lines:
        return b""
    head = '{"stream":' + encode_basestring(stream) + ',"text":'
    tail = ',"at":' + encode_basestring(at) + "}\n"
    if not cut:
        return "".join(
            head + encode_basestring(line.decode("utf-8", errors="replace")) + tail for line in lines
        ).encode("utf-8")
    partial = ',"partial":true' + tail
    return "".join(
        head + encode_basestring(line.decode("utf-8", errors="replace")) + (partial if i in cut else tail)
        for i, line in enumerate(lines)
    ).encode("utf-8")


def _copy_outputs(job_dir: str, patterns: Sequence[str], prefix_dir: Path | None) -> dict[str, str]:
    """Copy matching files of work/ and everything under out/ below ``prefix_dir``; name -> URI.

    Only regular files whose real path stays inside work/ (or out/) are copied: a symlink to
    elsewhere is skipped. A name found in both places takes the OUTPUT_DIR file.
    """
    if not patterns and not _nonempty_dir(f"{job_dir}/{_OUT}"):
        return {}  # the usual case: nothing to look for
    work, out = Path(job_dir, _WORK), Path(job_dir, _OUT)
    if prefix_dir is None:
        prefix_dir = Path(job_dir, _OUTPUTS)
    found: dict[str, Path] = {}
    if patterns and work.is_dir():
        root = work.resolve()
        for pattern in patterns:
            for path in sorted(work.glob(pattern)):
                if path.is_file() and path.resolve().is_relative_to(root):
                    found[path.relative_to(work).as_posix()] = path
    if out.is_dir():
        root = out.resolve()
        for path in sorted(out.rglob("*")):
            if path.is_file() and path.resolve().is_relative_to(root):
                found[path.relative_to(out).as_posix()] = path
    copied: dict[str, str] = {}
    for name, source in found.items():
        target = prefix_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        copied[name] = target.as_uri()
    return copied


# --------------------------------------------------------------------------------------
# The runner.


class ProcessRunner:
    """Runs each job's ``command`` as a local subprocess; state lives under ``base_dir``.

    ``spawn`` (``subprocess.Popen``-compatible), ``policy`` and ``sleep`` are the seams for
    tests: a fake ``spawn`` that raises ``BlockingIOError(EAGAIN)`` exercises the retry
    path; ``sleep`` is handed to the retry loop only. ``grace`` is the default time between
    SIGTERM and SIGKILL (the ``gracePeriod`` option overrides it per job). ``clock`` stamps
    log records and start/end times.

    Example::

        runner = ProcessRunner(base_dir=tmp)
        handle = runner.submit(JobSpec(name="demo-1", command=("sh", "-c", "echo hi")))
        while not runner.poll([handle])["demo-1"].terminal:
            runner.wait(1.0)
        assert [r.text for r in runner.logs(handle, None).lines] == ["hi"]
    """

    name: ClassVar[str] = "process"
    Options: ClassVar[type[RunnerOptions]] = ProcessOptions

    def __init__(
        self,
        base_dir: Path | None = None,
        *,
        spawn: Callable[..., subprocess.Popen[bytes]] = subprocess.Popen,
        policy: retry.RetryPolicy = retry.DEFAULT_POLICY,
        sleep: Callable[[float], None] = time.sleep,
        grace: timedelta = timedelta(seconds=5),
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.base_dir = Path(base_dir if base_dir is not None else default_base_dir()).expanduser().resolve()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self._base = str(self.base_dir)
        self._spawn = spawn
        self._policy = policy
        self._sleep = sleep
        self._grace = grace
        self._clock = clock
        self._defaults = validate_options(type(self), {})
        with _changed:
            self._seen = _generation

    # -- Runner protocol

    def submit(self, spec: JobSpec) -> JobHandle:
        """Start ``spec`` once per name; a second submit returns the first job's handle.

        Raises :class:`RunnerError` for an invalid spec (nothing is created),
        :class:`~runners.base.RunnerOptionsError` for bad options and
        :class:`~runners.base.TransientRunnerError` when spawning kept failing transiently
        (the job directory is then left for a later submit to take over).
        """
        plan = self._plan(spec)
        job_dir = plan.job_dir
        try:
            os.mkdir(job_dir)
        except FileExistsError:
            pass
        except FileNotFoundError:  # base_dir was removed since
            os.makedirs(self._base, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.mkdir(job_dir)
        with _Claim(job_dir) as claim:
            if _started(job_dir):
                return self._handle(job_dir)
            assert claim.fd is not None
            return self._start(plan, os.fstat(claim.fd))

    def find(self, spec: JobSpec) -> JobHandle | None:
        """The handle of the job submitted under ``spec.name``, or None if it never started."""
        _check_name(spec.name)
        job_dir = f"{self._base}/{spec.name}"
        if not os.path.isdir(job_dir):
            return None
        with _Claim(job_dir):  # waits for a submit in progress to finish
            if _started(job_dir):
                return self._handle(job_dir)
        return None

    def poll(self, handles: Sequence[JobHandle]) -> Mapping[str, JobStatus]:
        return {handle.name: self._status(handle) for handle in handles}

    def cancel(self, handle: JobHandle) -> None:
        """Stop the job's whole process group (TERM, grace, KILL) and record CANCELLED.

        Idempotent; a no-op for a finished job or a job directory that no longer exists.
        Returns once the processes are gone and, when this process supervises the job, once
        its terminal status is recorded.
        """
        job_dir = self._dir(handle)
        if not os.path.isdir(job_dir) or os.path.exists(f"{job_dir}/{_EXIT}"):
            return
        with (
            contextlib.suppress(FileExistsError),
            open(f"{job_dir}/{_CANCELLED}", "x", encoding="utf-8") as f,
        ):
            f.write(self._clock().isoformat())
        with _Claim(job_dir):
            if os.path.exists(f"{job_dir}/{_EXIT}"):
                return
            raw = _read_json(f"{job_dir}/{_PID}")
            if raw is None:  # never started: make sure it never will
                self._record_cancelled_before_start(job_dir)
                return
            info = _PidInfo.from_json(raw)
            _terminate(info, self._job_grace(job_dir, raw))
        pump = _active_pump(job_dir)
        if pump is not None:
            pump.done.wait(timeout=30.0)
        elif not self._owner_alive(info):
            self._finalize_orphan(job_dir, info, self._token_of(job_dir, raw))
        _notify()

    def logs(self, handle: JobHandle, cursor: str | None) -> LogChunk:
        """Records after ``cursor`` (a byte offset), at most LOG_CHUNK_LINES / LOG_CHUNK_BYTES.

        ``complete`` is True once the job is terminal and the end of its log was reached.
        """
        job_dir = self._dir(handle)
        try:
            offset = int(cursor) if cursor else 0
        except ValueError:
            offset = -1
        terminal = self._status(handle).terminal  # before reading: a terminal log no longer grows
        try:
            fd = os.open(f"{job_dir}/{_LOG}", os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            fd = -1
        if fd < 0 and not os.path.isdir(job_dir):
            raise JobNotFoundError(f"no job {handle.name!r} under {self.base_dir}", runner=self.name)
        if offset < 0:
            if fd >= 0:
                os.close(fd)
            raise RunnerError(f"invalid log cursor {cursor!r}", runner=self.name)
        if fd < 0:  # nothing written yet (or never: the job could not start)
            return LogChunk((), str(offset), complete=terminal)
        try:
            size = os.fstat(fd).st_size  # read no more than there is: no 8 MiB buffer for one line
            data = os.pread(fd, min(max(size - offset, 0), LOG_CHUNK_BYTES), offset)
            end = data.rfind(b"\n") + 1  # a last record without its newline is still being written
            while not end and len(data) >= LOG_CHUNK_BYTES:  # one record longer than a chunk
                more = os.pread(fd, LOG_CHUNK_BYTES, offset + len(data))
                if not more:
                    break
                if (newline := more.find(b"\n")) >= 0:
                    end = len(data) + newline + 1
                data += more
            records = data[:end].split(b"\n")
            records.pop()  # what follows the last newline
            del records[LOG_CHUNK_LINES:]
            consumed = end if len(records) < LOG_CHUNK_LINES else sum(len(r) + 1 for r in records)
            at_end = offset + consumed >= size  # terminal: the log no longer grows
        finally:
            os.close(fd)
        lines = tuple(record for raw in records if (record := _parse_record(raw)) is not None)
        return LogChunk(lines, str(offset + consumed), complete=terminal and at_end)

    def cleanup(self, handle: JobHandle) -> None:
        """Remove a terminal job's work directory (logs, status, OUTPUT_DIR and outputs stay); idempotent."""
        job_dir = self._dir(handle)
        status = self._status(handle)  # LOST when the directory is gone: then nothing to do
        if not status.terminal:
            if not os.path.isdir(job_dir):
                return
            raise RunnerError(
                f"job {handle.name!r} is {status.state.value}: cancel it before cleaning up", runner=self.name
            )
        _remove_tree(f"{job_dir}/{_WORK}")

    def parse_event(self, event: Mapping[str, Any]) -> tuple[str, JobStatus] | None:
        """Local jobs have no push events: :meth:`wait` and :meth:`poll` are the way."""
        return None

    # -- Waitable

    def wait(self, timeout: float) -> bool:
        """Block until a job supervised in this process changed state, at most ``timeout`` s.

        Returns True when something changed since the previous call on this instance (even if
        that happened before this call: no wakeup is lost), False on timeout. Jobs owned by
        another process do not notify: callers poll anyway after a False. A job's end is
        notified as soon as its ``exit`` file is written.
        """
        with _changed:
            _changed.wait_for(lambda: _generation != self._seen, timeout=max(timeout, 0.0))
            changed = _generation != self._seen
            self._seen = _generation
            return changed

    # -- submit internals

    def _plan(self, spec: JobSpec) -> _Plan:
        _check_name(spec.name)
        options = validate_options(type(self), spec.options) if spec.options else self._defaults
        assert isinstance(options, ProcessOptions)
        if not spec.command or not all(isinstance(a, str) and "\0" not in a for a in spec.command):
            raise RunnerError("command must be a non-empty argv of strings without NUL", runner=self.name)
        for key, value in spec.env.items():
            if not key or "=" in key or "\0" in key or "\0" in str(value):
                raise RunnerError(f"invalid environment variable {key!r}", runner=self.name)
        inputs = tuple((_relative(name, "input file"), data) for name, data in spec.input_files.items())
        for name, data in spec.input_files.items():
            if not isinstance(data, bytes | bytearray):
                kind = type(data).__name__
                raise RunnerError(f"input file {name!r} must be bytes, not {kind}", runner=self.name)
        for pattern in spec.output_files:
            _relative(pattern, "output file pattern")
        if spec.timeout is not None and spec.timeout <= timedelta(0):
            raise RunnerError(f"timeout must be positive, got {spec.timeout}", runner=self.name)
        job_dir = f"{self._base}/{spec.name}"
        prefix_dir = path_from_file_uri(spec.output_prefix) if spec.output_prefix is not None else None
        grace = options.grace_period if options.grace_period is not None else self._grace
        return _Plan(spec, job_dir, grace.total_seconds(), prefix_dir, inputs)

    def _start(self, plan: _Plan, dir_stat: os.stat_result) -> JobHandle:
        """Prepare the (claimed, unstarted) job directory and spawn; called under the claim."""
        spec, job_dir = plan.spec, plan.job_dir
        submitted = self._clock()
        token = os.urandom(16).hex()
        handle = self._handle(job_dir, token)
        if os.path.exists(f"{job_dir}/{_CANCELLED}"):  # cancelled while a previous submit was failing
            self._record_cancelled_before_start(job_dir, token)
            return handle
        work, out = f"{job_dir}/{_WORK}", f"{job_dir}/{_OUT}"
        _mkdir_fresh(work)
        _mkdir_fresh(out)
        try:
            for rel, data in plan.inputs:
                target = f"{work}/{rel}"
                if len(rel.parts) > 1:
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                with open(target, "wb") as f:
                    f.write(data)
        except OSError as exc:
            raise RunnerError(f"cannot write input files: {exc}", runner=self.name) from exc
        env = _child_env(spec.env, work, out)
        result = self._spawn_retrying(spec.command, work, env)
        started = self._clock()
        if isinstance(result, _StartFailure):
            doc = _exit_doc(
                JobState.FAILED,
                Failure.START_FAILED,
                result.exit_code,
                result.reason,
                started,
                started,
                token=token,
            )
            _write_exit(job_dir, doc)
        else:
            summary = self._summary(plan, token, submitted)
            self._supervise(plan, result, started, summary, (dir_stat.st_dev, dir_stat.st_ino))
        _notify()
        return handle

    def _summary(self, plan: _Plan, token: str, submitted: datetime) -> dict[str, Any]:
        """What ``pid`` records about the job besides its processes (no env values: secrets)."""
        spec = plan.spec
        return {
            "id": token,
            "name": spec.name,
            "command": list(spec.command),
            "image": spec.image,
            "env_keys": sorted(spec.env),
            "input_files": sorted(spec.input_files),
            "output_files": list(spec.output_files),
            "output_prefix": _file_uri(plan.prefix_dir or f"{plan.job_dir}/{_OUTPUTS}") + "/",
            "timeout": spec.timeout.total_seconds() if spec.timeout is not None else None,
            "grace": plan.grace,
            "labels": dict(spec.labels),
            "submitted": submitted.isoformat(),
        }

    def _supervise(
        self,
        plan: _Plan,
        proc: subprocess.Popen[bytes],
        started: datetime,
        summary: dict[str, Any],
        dir_id: tuple[int, int],
    ) -> None:
        """Record the pid and hand the child to a pump (which creates its files while the job runs)."""
        job_dir = plan.job_dir
        pump: _Pump | None = None
        try:
            stat = _proc_stat(proc.pid)
            info = _PidInfo(
                pid=proc.pid,
                start=stat.start if stat else None,
                boot=_boot_id(),
                owner_pid=os.getpid(),
                owner_start=_self_start(),
                started=started,
            )
            pump = _Pump(
                job_dir=job_dir,
                proc=proc,
                info=info,
                token=summary["id"],
                spec=plan.spec,
                grace=plan.grace,
                prefix_dir=plan.prefix_dir,
                clock=self._clock,
                dir_id=dir_id,
            )
            # Registered before the pid file exists, unregistered after the exit file exists: a
            # poll in this process never sees a pid file without a live pump or an exit file.
            with _active_lock:
                _active[job_dir] = pump
            _write_atomic(f"{job_dir}/{_PID}", _dumps({**summary, **info.to_json()}))
            _dispatch(pump.run)
            pump.dispatched = True
        except BaseException as exc:
            # Even a KeyboardInterrupt here must not leave an unsupervised child behind: stop it
            # and leave the directory as "never started", for a later submit to take over.
            if pump is None or not pump.dispatched:
                with _active_lock:
                    if _active.get(job_dir) is pump:
                        del _active[job_dir]
                with contextlib.suppress(OSError):
                    os.killpg(proc.pid, signal.SIGKILL)  # not reaped yet: the pid is still ours
                proc.wait()
                for pipe in (proc.stdout, proc.stderr):
                    if pipe is not None:
                        pipe.close()
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{job_dir}/{_PID}")
            if isinstance(exc, Exception) and not isinstance(exc, RunnerError):
                raise RunnerError(f"cannot start supervising the job: {exc}", runner=self.name) from exc
            raise

    def _record_cancelled_before_start(self, job_dir: str, token: str | None = None) -> None:
        now = self._clock()
        token = token or self._legacy_id(job_dir) or os.urandom(16).hex()
        doc = _exit_doc(
            JobState.CANCELLED, Failure.CANCELLED, None, "cancelled before start", now, now, token=token
        )
        _write_exit(job_dir, doc)
        _notify()

    def _spawn_retrying(
        self, command: Sequence[str], cwd: str, env: Mapping[bytes, bytes]
    ) -> subprocess.Popen[bytes] | _StartFailure:
        """:meth:`_spawn_once` under the retry policy; the first attempt skips the retry machinery."""
        try:
            return self._spawn_once(command, cwd, env)
        except Exception as exc:
            first: Exception | None = exc

        def attempt(*args: Any) -> subprocess.Popen[bytes] | _StartFailure:
            nonlocal first
            if first is not None:  # the attempt above, replayed: same count, same messages
                failed, first = first, None
                raise failed
            return self._spawn_once(*args)

        return retry.call(
            attempt,
            command,
            cwd,
            env,
            policy=self._policy,
            sleep=self._sleep,
            runner=self.name,
            what=f"spawning {command[0]!r}",
        )

    def _spawn_once(
        self, command: Sequence[str], cwd: str, env: Mapping[bytes, bytes]
    ) -> subprocess.Popen[bytes] | _StartFailure:
        """One spawn attempt. A job that cannot start is data (START_FAILED), not an exception;
        transient errors (EAGAIN from fork...) propagate to the retry loop."""
        try:
            return self._spawn(
                list(command),
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                close_fds=True,
            )
        except FileNotFoundError:
            return _StartFailure(127, f"command not found: {command[0]}")
        except PermissionError as exc:
            return _StartFailure(126, f"command not executable: {command[0]} ({exc.strerror})")
        except OSError as exc:
            if retry.is_transient(exc):
                raise
            return _StartFailure(126, f"cannot execute {command[0]}: {exc.strerror or exc}")

    # -- status internals

    def _dir(self, handle: JobHandle) -> str:
        if handle.runner != self.name:
            raise RunnerError(f"handle of runner {handle.runner!r} given to {self.name!r}", runner=self.name)
        raw = handle.data.get("dir") if handle.data else None
        if isinstance(raw, str) and os.path.isabs(raw):
            # The usual handle (from this base_dir) is already normal: skip normpath.
            return raw if raw == f"{self._base}/{handle.name}" else os.path.normpath(raw)
        _check_name(handle.name)
        return f"{self._base}/{handle.name}"

    def _handle(self, job_dir: str, token: str | None = None) -> JobHandle:
        if token is None:
            token = self._job_id(job_dir)
        return JobHandle(name=os.path.basename(job_dir), runner=self.name, id=token, data={"dir": job_dir})

    def _job_id(self, job_dir: str) -> str:
        """The id of the job that was started in ``job_dir`` ("" if none)."""
        pump = _active_pump(job_dir)
        if pump is not None:
            return pump.token
        for name in (_PID, _EXIT):
            doc = _read_json(f"{job_dir}/{name}")
            if doc is not None and doc.get("id"):
                return str(doc["id"])
        return self._legacy_id(job_dir) or ""

    @staticmethod
    def _legacy_id(job_dir: str) -> str | None:
        """The id recorded by earlier versions, in ``job.json`` rather than in ``pid`` and ``exit``."""
        job = _read_json(f"{job_dir}/{_JOB}")
        return str(job["id"]) if job and job.get("id") else None

    def _token_of(self, job_dir: str, doc: Mapping[str, Any]) -> str | None:
        token = doc.get("id")
        return str(token) if token else self._legacy_id(job_dir)

    def _job_grace(self, job_dir: str, pid_doc: Mapping[str, Any]) -> float:
        grace = pid_doc.get("grace")
        if not isinstance(grace, int | float):
            grace = (_read_json(f"{job_dir}/{_JOB}") or {}).get("grace")  # written by earlier versions
        return float(grace) if isinstance(grace, int | float) else self._grace.total_seconds()

    def _another_job(self, job_dir: str) -> JobStatus:
        return JobStatus(JobState.LOST, Failure.LOST, reason=f"job directory {job_dir} now holds another job")

    def _from_pump(self, pump: _Pump, handle: JobHandle) -> JobStatus:
        if handle.id and handle.id != pump.token:
            return self._another_job(pump.job_dir)
        return pump.running

    def _from_exit(self, job_dir: str, raw: bytes, handle: JobHandle) -> JobStatus | None:
        """The status an ``exit`` file holds (parsed once per content), or None if unreadable."""
        cached = _exit_cache.get(job_dir)
        if cached is not None and cached[0] == raw:
            status, token = cached[1], cached[2]
        else:
            doc = _parse_json(raw)
            if doc is None:
                return None
            status = _status_from_exit(doc)
            token = self._token_of(job_dir, doc)
            _cache_exit(job_dir, raw, status, token)
        if handle.id and token and token != handle.id:
            return self._another_job(job_dir)
        return status

    def _status(self, handle: JobHandle) -> JobStatus:
        job_dir = self._dir(handle)
        if (pump := _active_pump(job_dir)) is not None:  # supervised here: answered from memory
            return self._from_pump(pump, handle)
        exit_path = f"{job_dir}/{_EXIT}"
        if (raw := _read_bytes(exit_path)) is not None and (status := self._from_exit(job_dir, raw, handle)):
            return status
        if not os.path.isdir(job_dir):
            return JobStatus(JobState.LOST, Failure.LOST, reason=f"job directory {job_dir} not found")
        doc = _read_json(f"{job_dir}/{_PID}")
        if doc is None:
            if _claim_busy(job_dir):
                return JobStatus(JobState.STARTING)
            if (raw := _read_bytes(exit_path)) is not None and (
                status := self._from_exit(job_dir, raw, handle)
            ):
                return status
            return JobStatus(
                JobState.LOST, Failure.LOST, reason="the job never started (its submit did not complete)"
            )
        # Look again: a pump of this process registers before writing `pid` and unregisters
        # after writing `exit`, and either may have happened since the first look.
        if (pump := _active_pump(job_dir)) is not None:
            return self._from_pump(pump, handle)
        if (raw := _read_bytes(exit_path)) is not None and (status := self._from_exit(job_dir, raw, handle)):
            return status
        token = self._token_of(job_dir, doc)
        if handle.id and token and token != handle.id:
            return self._another_job(job_dir)
        info = _PidInfo.from_json(doc)
        if self._owner_alive(info):
            return JobStatus(JobState.RUNNING, started=info.started)
        return self._finalize_orphan(job_dir, info, token)

    @staticmethod
    def _owner_alive(info: _PidInfo) -> bool:
        """Whether another live process supervises the job (this process would be in ``_active``)."""
        if info.owner_pid == os.getpid():
            return False
        return _alive(info.owner_pid, info.owner_start, info.boot)

    def _finalize_orphan(self, job_dir: str, info: _PidInfo, token: str | None) -> JobStatus:
        """The owner is gone without recording an exit: stop what is left and record LOST/CANCELLED."""
        with _Claim(job_dir):
            if (doc := _read_json(f"{job_dir}/{_EXIT}")) is not None:
                return _status_from_exit(doc)
            still_running = _alive(info.pid, info.start, info.boot) or _group_alive(info.pid)
            if still_running:
                _terminate(info, 0.0)
            now = self._clock()
            if os.path.exists(f"{job_dir}/{_CANCELLED}"):
                doc = _exit_doc(
                    JobState.CANCELLED, Failure.CANCELLED, None, "cancelled", info.started, now, token=token
                )
            elif still_running:
                reason = (
                    f"the runner process (pid {info.owner_pid}) supervising this job is gone, so its "
                    "output can no longer be captured; the orphaned process was stopped"
                )
                doc = _exit_doc(JobState.LOST, Failure.LOST, None, reason, info.started, now, token=token)
            else:
                reason = (
                    f"the job's process vanished without an exit status (its runner process, "
                    f"pid {info.owner_pid}, is gone)"
                )
                doc = _exit_doc(JobState.LOST, Failure.LOST, None, reason, info.started, now, token=token)
            status = _write_exit(job_dir, doc)
        _notify()
        return status


def _parse_record(raw: bytes) -> LogRecord | None:
    try:
        data = json.loads(raw)
        at = data.get("at")
        return LogRecord(
            stream=str(data["stream"]),
            text=str(data["text"]),
            at=datetime.fromisoformat(at) if at else None,
            partial=data.get("partial") is True,
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
