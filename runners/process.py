"""The local subprocess runner (entry point ``process``): the embedded default.

Kestra's ``io.kestra.plugin.core.runner.Process`` runs a task's commands as a child of the
worker; so does this runner, with the same neutral contract as the cloud runners
(``runners/base.py``). Everything it knows about a job lives in one directory, so a new
``ProcessRunner`` on the same ``base_dir`` (after a restart, or from another process) can
find, poll, read and cancel it::

    <base_dir>/<spec.name>/
        claim       flock(2)ed while a submit (or cancel) works on the job: the idempotency lock
        job.json    spec summary and the handle id (env values are not stored: they may be secrets)
        work/       fresh working directory: cwd, WORKING_DIR, input_files written here
        out/        OUTPUT_DIR
        log.jsonl   stdout and stderr in arrival order, one JSON record a line {stream, text, at}
        pid         pid, process-group id and /proc start time of the job and of its owner
        cancelled   present once cancel() was asked
        exit        terminal status, written once (temp file + rename) after outputs are copied
        outputs/    default copy target of output files (when spec.output_prefix is None)

Theory of operation:

- ``submit`` creates the directory (``os.mkdir``) and takes the ``claim`` lock; whoever holds
  the lock while neither ``pid`` nor ``exit`` exists prepares the directory and spawns. So two
  submits of one name (threads, instances or processes) start one process, and a submit that
  failed half-way (fork kept failing with EAGAIN, or the runner crashed) leaves a directory
  that the next submit takes over.
- The child runs in its own session (``start_new_session``), so the process group is the
  job: timeout and cancel signal the group (TERM, grace period, KILL), grandchildren included.
  Before signalling, the group leader's /proc start time is compared with the recorded one,
  so a recycled pid is never signalled.
- One pump thread per job owns the child: it reads both pipes with a selector (and a pidfd
  for the exit, when the kernel has them), writes each line to ``log.jsonl`` in arrival order,
  enforces the timeout, reaps the child, copies output files and finally writes ``exit``.
  When the main process has exited, pipes still held open by leftover background processes
  are drained for one more second, then the group is killed: like a container, a job ends
  with its main process.
- ``poll`` reads ``exit`` when it exists. Otherwise the job is RUNNING while its owner (the
  runner process whose pump reads the pipes) is alive. When the owner is gone the job's
  output is lost for good: the job is LOST, and a still-running orphan is killed so it does
  not run alongside the retry that the control plane will submit.

Not supported: Windows (fcntl, process groups, /proc), ``image`` (ignored, as Kestra's
Process runner does), processes that leave the job's process group with ``setsid``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import selectors
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from json.encoder import encode_basestring
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, ClassVar
from urllib.parse import unquote, urlparse

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

_JOB, _PID, _EXIT, _CANCELLED, _CLAIM, _LOG = "job.json", "pid", "exit", "cancelled", "claim", "log.jsonl"
_WORK, _OUT, _OUTPUTS = "work", "out", "outputs"


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
    try:
        import platformdirs  # optional: only used when something else installed it
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
# Process-wide state: jobs supervised by this process, and the change notification.

_changed = threading.Condition()
_generation = 0
_active_lock = threading.Lock()
_active: dict[str, _Pump] = {}


def _notify() -> None:
    global _generation
    with _changed:
        _generation += 1
        _changed.notify_all()


def _active_pump(job_dir: Path) -> _Pump | None:
    with _active_lock:
        return _active.get(str(job_dir))


# --------------------------------------------------------------------------------------
# /proc helpers: is this exact process (pid + start time) alive, is its group empty.


@dataclass(frozen=True, slots=True)
class _Stat:
    state: str
    pgrp: int
    start: int


def _has_proc() -> bool:
    return os.path.exists("/proc/self/stat")


def _proc_stat(pid: int) -> _Stat | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    try:
        # The command name (field 2) may hold spaces and parentheses: split after the last ")".
        fields = raw[raw.rindex(b")") + 2 :].split()
        return _Stat(state=fields[0].decode(), pgrp=int(fields[2]), start=int(fields[19]))
    except (ValueError, IndexError):
        return None


def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return None


@dataclass(frozen=True, slots=True)
class _PidInfo:
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


_owner_cache: tuple[int, int | None] | None = None


def _self_start() -> int | None:
    global _owner_cache
    pid = os.getpid()
    if _owner_cache is None or _owner_cache[0] != pid:  # recomputed after a fork
        stat = _proc_stat(pid)
        _owner_cache = (pid, stat.start if stat else None)
    return _owner_cache[1]


# --------------------------------------------------------------------------------------
# Small file helpers.


def _write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Readers see the old file or the new one, never half of it (temp file + rename).

    No fsync: after a power loss the jobs are gone anyway, and a status file lost with them
    reads as "no exit recorded", which ``poll`` reports as LOST: the safe answer.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class _Claim:
    """An flock(2) on ``<job>/claim``: serialises submit/cancel/find of one job across processes."""

    def __init__(self, job_dir: Path, *, blocking: bool = True) -> None:
        self.path = job_dir / _CLAIM
        self.blocking = blocking
        self.fd: int | None = None
        self.held = False

    def __enter__(self) -> _Claim:
        # O_CLOEXEC (PEP 446 default) matters: a spawned job must never inherit the lock.
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | (0 if self.blocking else fcntl.LOCK_NB))
            self.held = True
        except BlockingIOError:
            self.held = False
        except BaseException:
            os.close(self.fd)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the lock
            self.fd = None


def _claim_busy(job_dir: Path) -> bool:
    """Whether someone holds the job's claim right now (a submit is preparing or spawning)."""
    try:
        with _Claim(job_dir, blocking=False) as claim:
            return not claim.held
    except OSError:
        return False


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
) -> dict[str, Any]:
    return {
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


@dataclass(frozen=True, slots=True)
class _Plan:
    spec: JobSpec
    job_dir: Path
    grace: float
    prefix_dir: Path
    inputs: tuple[tuple[PurePosixPath, bytes], ...]


def _check_name(name: str) -> None:
    ok = (
        0 < len(name) <= _NAME_MAX
        and name[0].isascii()
        and name[0].isalnum()
        and all(c.isascii() and (c.isalnum() or c in "._-") for c in name)
    )
    if not ok:
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
# The pump: one thread per job supervising the child.


@dataclass(frozen=True, slots=True)
class _StartFailure:
    exit_code: int
    reason: str


class _Pump(threading.Thread):
    """Reads the child's pipes into the log, enforces the timeout, reaps it, records the exit."""

    def __init__(
        self,
        *,
        job_dir: Path,
        proc: subprocess.Popen[bytes],
        info: _PidInfo,
        spec: JobSpec,
        grace: float,
        prefix_dir: Path,
        clock: Callable[[], datetime],
    ) -> None:
        super().__init__(name=f"squall-process-{spec.name}", daemon=True)
        self.job_dir = job_dir
        self.proc = proc
        self.info = info
        self.spec = spec
        self.grace = grace
        self.prefix_dir = prefix_dir
        self.clock = clock
        self.started_mono = time.monotonic()
        self.timed_out = False
        self.done = threading.Event()
        self._splitters: dict[int, _LineSplitter] = {}
        self._streams: dict[int, str] = {}
        self._timers: dict[str, float] = {}  # name -> monotonic deadline: timeout, kill, linger, give_up
        self._returncode: int | None = None
        self._ended: datetime | None = None

    # -- the thread

    def run(self) -> None:
        try:
            returncode, ended = self._supervise()
            self._finish(returncode, ended)
        except BaseException as exc:  # never die silently: the job would look RUNNING forever
            log.exception("process runner: supervising job %s failed", self.spec.name)
            with contextlib.suppress(BaseException):
                self._record_lost(f"the runner failed while supervising the job: {exc!r}")
        finally:
            self._release()
            with _active_lock:
                _active.pop(str(self.job_dir), None)
            self.done.set()
            _notify()

    def _supervise(self) -> tuple[int, datetime]:
        """Pump until the child is reaped and both pipes are closed; returns (returncode, ended)."""
        proc = self.proc
        assert proc.stdout is not None and proc.stderr is not None
        if self.spec.timeout is not None:
            self._timers["timeout"] = self.started_mono + self.spec.timeout.total_seconds()
        with selectors.DefaultSelector() as sel, open(self.job_dir / _LOG, "ab") as out:
            for stream, pipe in (("stdout", proc.stdout), ("stderr", proc.stderr)):
                fd = pipe.fileno()
                self._streams[fd] = stream
                self._splitters[fd] = _LineSplitter()
                sel.register(fd, selectors.EVENT_READ, stream)
            pidfd = self._open_pidfd()
            if pidfd is not None:
                sel.register(pidfd, selectors.EVENT_READ, "exit")
            try:
                while self._returncode is None or self._streams:
                    events = sel.select(self._next_wakeup(polling=pidfd is None))
                    at = self.clock().isoformat() if events else ""
                    for key, _ in events:
                        if key.data == "exit":
                            sel.unregister(key.fd)
                            os.close(key.fd)
                            pidfd = None
                            self._reaped(proc.wait())
                        else:
                            self._read(sel, int(key.fd), out, at)
                    if pidfd is None and self._returncode is None and (code := proc.poll()) is not None:
                        self._reaped(code)
                    out.flush()
                    self._fire_timers(sel, out, time.monotonic())
            finally:
                if pidfd is not None:
                    os.close(pidfd)
        assert self._returncode is not None and self._ended is not None
        return self._returncode, self._ended

    def _reaped(self, returncode: int) -> None:
        self._returncode = returncode
        self._ended = self.clock()
        self._timers.pop("timeout", None)
        if self._streams:  # something still holds a pipe: drain it for a while, then stop it
            self._timers["linger"] = time.monotonic() + _LINGER

    def _next_wakeup(self, *, polling: bool) -> float | None:
        now = time.monotonic()
        wait = max(min(self._timers.values()) - now, 0.0) if self._timers else None
        if polling and self._returncode is None:
            wait = _POLL if wait is None else min(wait, _POLL)
        return wait

    def _fire_timers(self, sel: selectors.BaseSelector, out: BinaryIO, now: float) -> None:
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
                self._eof(sel, fd, out, self.clock().isoformat())

    def _open_pidfd(self) -> int | None:
        opener = getattr(os, "pidfd_open", None)
        if opener is None:
            return None
        try:
            return int(opener(self.proc.pid))
        except OSError:
            return None

    # -- lines

    def _read(self, sel: selectors.BaseSelector, fd: int, out: BinaryIO, at: str) -> None:
        try:
            data = os.read(fd, _READ_SIZE)
        except BlockingIOError:
            return
        if not data:
            self._eof(sel, fd, out, at)
            return
        out.write(_records(self._streams[fd], self._splitters[fd].feed(data), at))

    def _eof(self, sel: selectors.BaseSelector, fd: int, out: BinaryIO, at: str) -> None:
        stream = self._streams.pop(fd)
        out.write(_records(stream, self._splitters.pop(fd).close(), at))
        sel.unregister(fd)

    # -- the end

    def _finish(self, returncode: int, ended: datetime) -> None:
        self._release()
        exit_code, why = _describe_exit(returncode)
        if (self.job_dir / _CANCELLED).exists():
            state, failure, reason = JobState.CANCELLED, Failure.CANCELLED, "cancelled"
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
        doc = _exit_doc(state, failure, exit_code, reason, self.info.started, ended, outputs)
        _write_json_atomic(self.job_dir / _EXIT, doc)

    def _record_lost(self, reason: str) -> None:
        if not (self.job_dir / _EXIT).exists():
            doc = _exit_doc(JobState.LOST, Failure.LOST, None, reason, self.info.started, self.clock())
            _write_json_atomic(self.job_dir / _EXIT, doc)

    def _release(self) -> None:
        """Reap the child and close its pipes (idempotent): no zombie, no ResourceWarning."""
        proc = self.proc
        if proc.poll() is None:
            _signal_group(self.info, signal.SIGKILL)
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


class _LineSplitter:
    """Cuts one stream's bytes into lines: split on ``\\n``, a trailing ``\\r`` dropped, and a
    line longer than MAX_LINE_BYTES cut into pieces, so memory stays bounded whatever the job prints."""

    def __init__(self) -> None:
        self.pending = b""

    def feed(self, data: bytes) -> list[bytes]:
        parts = (self.pending + data if self.pending else data).split(b"\n")
        self.pending = parts.pop()
        lines: list[bytes] = []
        for part in parts:
            lines.extend(_pieces(part[:-1] if part.endswith(b"\r") else part))
        while len(self.pending) > MAX_LINE_BYTES:
            cut = _utf8_cut(self.pending, MAX_LINE_BYTES)
            lines.append(self.pending[:cut])
            self.pending = self.pending[cut:]
        return lines

    def close(self) -> list[bytes]:
        """The last line, even without a trailing newline."""
        last, self.pending = self.pending, b""
        if not last:
            return []
        return _pieces(last[:-1] if last.endswith(b"\r") else last)


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


def _records(stream: str, lines: list[bytes], at: str) -> bytes:
    """Log records as JSON lines ``{"stream", "text", "at"}``, built by hand: json.dumps per
    line costs twice as much, and 100 MB of output is 100,000 lines or more."""
    if not lines:
        return b""
    head = '{"stream":' + encode_basestring(stream) + ',"text":'
    tail = ',"at":' + encode_basestring(at) + "}\n"
    return "".join(
        head + encode_basestring(line.decode("utf-8", errors="replace")) + tail for line in lines
    ).encode("utf-8")


def _copy_outputs(job_dir: Path, patterns: Sequence[str], prefix_dir: Path) -> dict[str, str]:
    """Copy matching files of work/ and everything under out/ below ``prefix_dir``; name -> URI.

    Only regular files whose real path stays inside work/ (or out/) are copied: a symlink to
    elsewhere is skipped. A name found in both places takes the OUTPUT_DIR file.
    """
    work, out = job_dir / _WORK, job_dir / _OUT
    found: dict[str, Path] = {}
    if work.is_dir():
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
        self._spawn = spawn
        self._policy = policy
        self._sleep = sleep
        self._grace = grace
        self._clock = clock
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
        self.base_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(plan.job_dir)
        with _Claim(plan.job_dir):
            if (plan.job_dir / _PID).exists() or (plan.job_dir / _EXIT).exists():
                return self._handle(plan.job_dir)
            return self._start(plan)

    def find(self, spec: JobSpec) -> JobHandle | None:
        """The handle of the job submitted under ``spec.name``, or None if it never started."""
        _check_name(spec.name)
        job_dir = self.base_dir / spec.name
        if not job_dir.is_dir():
            return None
        with _Claim(job_dir):  # waits for a submit in progress to finish
            if (job_dir / _PID).exists() or (job_dir / _EXIT).exists():
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
        if not job_dir.is_dir() or (job_dir / _EXIT).exists():
            return
        with contextlib.suppress(FileExistsError), open(job_dir / _CANCELLED, "x", encoding="utf-8") as f:
            f.write(self._clock().isoformat())
        with _Claim(job_dir):
            if (job_dir / _EXIT).exists():
                return
            raw = _read_json(job_dir / _PID)
            if raw is None:  # never started: make sure it never will
                self._record_cancelled_before_start(job_dir)
                return
            info = _PidInfo.from_json(raw)
            _terminate(info, self._job_grace(job_dir))
        pump = _active_pump(job_dir)
        if pump is not None:
            pump.done.wait(timeout=30.0)
        elif not self._owner_alive(info):
            self._finalize_orphan(job_dir, info)
        _notify()

    def logs(self, handle: JobHandle, cursor: str | None) -> LogChunk:
        """Records after ``cursor`` (a byte offset), at most LOG_CHUNK_LINES / LOG_CHUNK_BYTES.

        ``complete`` is True once the job is terminal and the end of its log was reached.
        """
        job_dir = self._dir(handle)
        if not job_dir.is_dir():
            raise JobNotFoundError(f"no job {handle.name!r} under {self.base_dir}", runner=self.name)
        try:
            offset = int(cursor) if cursor else 0
        except ValueError:
            offset = -1
        if offset < 0:
            raise RunnerError(f"invalid log cursor {cursor!r}", runner=self.name)
        terminal = self._status(handle).terminal  # before reading: a terminal log no longer grows
        lines: list[LogRecord] = []
        if not (job_dir / _LOG).exists():
            return LogChunk((), str(offset), complete=terminal)
        with open(job_dir / _LOG, "rb") as f:
            f.seek(offset)
            consumed = 0
            while len(lines) < LOG_CHUNK_LINES and consumed < LOG_CHUNK_BYTES:
                raw = f.readline()
                if not raw.endswith(b"\n"):  # end of file, or a record still being written
                    break
                consumed += len(raw)
                record = _parse_record(raw)
                if record is not None:
                    lines.append(record)
            f.seek(offset + consumed)
            at_end = not f.read(1)
        return LogChunk(tuple(lines), str(offset + consumed), complete=terminal and at_end)

    def cleanup(self, handle: JobHandle) -> None:
        """Remove a terminal job's work directory (logs, status, OUTPUT_DIR and outputs stay); idempotent."""
        job_dir = self._dir(handle)
        if not job_dir.is_dir():
            return
        status = self._status(handle)
        if not status.terminal:
            raise RunnerError(
                f"job {handle.name!r} is {status.state.value}: cancel it before cleaning up", runner=self.name
            )
        shutil.rmtree(job_dir / _WORK, ignore_errors=True)

    def parse_event(self, event: Mapping[str, Any]) -> tuple[str, JobStatus] | None:
        """Local jobs have no push events: :meth:`wait` and :meth:`poll` are the way."""
        return None

    # -- Waitable

    def wait(self, timeout: float) -> bool:
        """Block until a job supervised in this process changed state, at most ``timeout`` s.

        Returns True when something changed since the previous call on this instance (even if
        that happened before this call: no wakeup is lost), False on timeout. Jobs owned by
        another process do not notify: callers poll anyway after a False.
        """
        with _changed:
            _changed.wait_for(lambda: _generation != self._seen, timeout=max(timeout, 0.0))
            changed = _generation != self._seen
            self._seen = _generation
            return changed

    # -- submit internals

    def _plan(self, spec: JobSpec) -> _Plan:
        _check_name(spec.name)
        options = validate_options(type(self), spec.options)
        assert isinstance(options, ProcessOptions)
        if not spec.command or not all(isinstance(a, str) and "\0" not in a for a in spec.command):
            raise RunnerError("command must be a non-empty argv of strings without NUL", runner=self.name)
        for key, value in spec.env.items():
            if not key or "=" in key or "\0" in key or "\0" in str(value):
                raise RunnerError(f"invalid environment variable {key!r}", runner=self.name)
        inputs = tuple((_relative(name, "input file"), data) for name, data in spec.input_files.items())
        for pattern in spec.output_files:
            _relative(pattern, "output file pattern")
        if spec.timeout is not None and spec.timeout <= timedelta(0):
            raise RunnerError(f"timeout must be positive, got {spec.timeout}", runner=self.name)
        job_dir = self.base_dir / spec.name
        prefix_dir = (
            path_from_file_uri(spec.output_prefix) if spec.output_prefix is not None else job_dir / _OUTPUTS
        )
        grace = options.grace_period if options.grace_period is not None else self._grace
        return _Plan(spec, job_dir, grace.total_seconds(), prefix_dir, inputs)

    def _start(self, plan: _Plan) -> JobHandle:
        """Prepare the (claimed, unstarted) job directory and spawn; called under the claim."""
        spec, job_dir = plan.spec, plan.job_dir
        previous = _read_json(job_dir / _JOB)  # an abandoned attempt: keep its id
        token = str(previous["id"]) if previous and previous.get("id") else uuid.uuid4().hex
        _write_json_atomic(
            job_dir / _JOB,
            {
                "id": token,
                "name": spec.name,
                "command": list(spec.command),
                "image": spec.image,
                "env_keys": sorted(spec.env),
                "input_files": sorted(spec.input_files),
                "output_files": list(spec.output_files),
                "output_prefix": plan.prefix_dir.as_uri() + "/",
                "timeout": spec.timeout.total_seconds() if spec.timeout is not None else None,
                "grace": plan.grace,
                "labels": dict(spec.labels),
                "submitted": self._clock().isoformat(),
            },
        )
        work, out = job_dir / _WORK, job_dir / _OUT
        for sub in (work, out):
            shutil.rmtree(sub, ignore_errors=True)
            sub.mkdir()
        open(job_dir / _LOG, "wb").close()  # truncate whatever an abandoned attempt left
        try:
            for rel, data in plan.inputs:
                target = work / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
        except OSError as exc:
            raise RunnerError(f"cannot write input files: {exc}", runner=self.name) from exc
        handle = self._handle(job_dir)
        if (job_dir / _CANCELLED).exists():  # cancelled while a previous submit was failing
            self._record_cancelled_before_start(job_dir)
            return handle
        env = {**os.environ, **{k: str(v) for k, v in spec.env.items()}}
        env.update(WORKING_DIR=str(work), OUTPUT_DIR=str(out))
        result = retry.call(
            self._spawn_once,
            spec.command,
            work,
            env,
            policy=self._policy,
            sleep=self._sleep,
            runner=self.name,
            what=f"spawning {spec.command[0]!r}",
        )
        started = self._clock()
        if isinstance(result, _StartFailure):
            doc = _exit_doc(
                JobState.FAILED, Failure.START_FAILED, result.exit_code, result.reason, started, started
            )
            _write_json_atomic(job_dir / _EXIT, doc)
            _notify()
            return handle
        proc = result
        key = str(job_dir)
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
                spec=spec,
                grace=plan.grace,
                prefix_dir=plan.prefix_dir,
                clock=self._clock,
            )
            # Registered before the pid file exists, unregistered after the exit file exists: a
            # poll in this process never sees a pid file without a live pump or an exit file.
            with _active_lock:
                _active[key] = pump
            _write_json_atomic(job_dir / _PID, info.to_json())
            pump.start()
        except BaseException as exc:
            # Even a KeyboardInterrupt here must not leave an unsupervised child behind: stop it
            # and leave the directory as "never started", for a later submit to take over.
            if pump is None or not pump.is_alive():
                with _active_lock:
                    _active.pop(key, None)
                with contextlib.suppress(OSError):
                    os.killpg(proc.pid, signal.SIGKILL)  # not reaped yet: the pid is still ours
                proc.wait()
                for pipe in (proc.stdout, proc.stderr):
                    if pipe is not None:
                        pipe.close()
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(job_dir / _PID)
            if isinstance(exc, Exception) and not isinstance(exc, RunnerError):
                raise RunnerError(f"cannot start supervising the job: {exc}", runner=self.name) from exc
            raise
        _notify()
        return handle

    def _record_cancelled_before_start(self, job_dir: Path) -> None:
        now = self._clock()
        doc = _exit_doc(JobState.CANCELLED, Failure.CANCELLED, None, "cancelled before start", now, now)
        _write_json_atomic(job_dir / _EXIT, doc)
        _notify()

    def _spawn_once(
        self, command: Sequence[str], cwd: Path, env: Mapping[str, str]
    ) -> subprocess.Popen[bytes] | _StartFailure:
        """One spawn attempt. A job that cannot start is data (START_FAILED), not an exception;
        transient errors (EAGAIN from fork...) propagate to the retry loop."""
        try:
            return self._spawn(
                list(command),
                cwd=cwd,
                env=dict(env),
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

    def _dir(self, handle: JobHandle) -> Path:
        if handle.runner != self.name:
            raise RunnerError(f"handle of runner {handle.runner!r} given to {self.name!r}", runner=self.name)
        raw = handle.data.get("dir") if handle.data else None
        if isinstance(raw, str) and os.path.isabs(raw):
            return Path(raw)
        _check_name(handle.name)
        return self.base_dir / handle.name

    def _handle(self, job_dir: Path) -> JobHandle:
        job = _read_json(job_dir / _JOB) or {}
        return JobHandle(
            name=job_dir.name, runner=self.name, id=str(job.get("id", "")), data={"dir": str(job_dir)}
        )

    def _job_grace(self, job_dir: Path) -> float:
        job = _read_json(job_dir / _JOB) or {}
        grace = job.get("grace")
        return float(grace) if isinstance(grace, int | float) else self._grace.total_seconds()

    def _status(self, handle: JobHandle) -> JobStatus:
        job_dir = self._dir(handle)
        if not job_dir.is_dir():
            return JobStatus(JobState.LOST, Failure.LOST, reason=f"job directory {job_dir} not found")
        job = _read_json(job_dir / _JOB)
        if job is not None and handle.id and job.get("id") != handle.id:
            return JobStatus(
                JobState.LOST, Failure.LOST, reason=f"job directory {job_dir} now holds another job"
            )
        if (doc := _read_json(job_dir / _EXIT)) is not None:
            return _status_from_exit(doc)
        pump = _active_pump(job_dir)
        if pump is not None:
            return JobStatus(JobState.RUNNING, started=pump.info.started)
        raw = _read_json(job_dir / _PID)
        if raw is None:
            if _claim_busy(job_dir):
                return JobStatus(JobState.STARTING)
            if (doc := _read_json(job_dir / _EXIT)) is not None:
                return _status_from_exit(doc)
            return JobStatus(
                JobState.LOST, Failure.LOST, reason="the job never started (its submit did not complete)"
            )
        # Read again: the pump may have written it and unregistered since the first look.
        if (doc := _read_json(job_dir / _EXIT)) is not None:
            return _status_from_exit(doc)
        info = _PidInfo.from_json(raw)
        if self._owner_alive(info):
            return JobStatus(JobState.RUNNING, started=info.started)
        return self._finalize_orphan(job_dir, info)

    @staticmethod
    def _owner_alive(info: _PidInfo) -> bool:
        """Whether another live process supervises the job (this process would be in ``_active``)."""
        if info.owner_pid == os.getpid():
            return False
        return _alive(info.owner_pid, info.owner_start, info.boot)

    def _finalize_orphan(self, job_dir: Path, info: _PidInfo) -> JobStatus:
        """The owner is gone without recording an exit: stop what is left and record LOST/CANCELLED."""
        with _Claim(job_dir):
            if (doc := _read_json(job_dir / _EXIT)) is not None:
                return _status_from_exit(doc)
            still_running = _alive(info.pid, info.start, info.boot) or _group_alive(info.pid)
            if still_running:
                _terminate(info, 0.0)
            now = self._clock()
            if (job_dir / _CANCELLED).exists():
                doc = _exit_doc(JobState.CANCELLED, Failure.CANCELLED, None, "cancelled", info.started, now)
            elif still_running:
                reason = (
                    f"the runner process (pid {info.owner_pid}) supervising this job is gone, so its "
                    "output can no longer be captured; the orphaned process was stopped"
                )
                doc = _exit_doc(JobState.LOST, Failure.LOST, None, reason, info.started, now)
            else:
                reason = (
                    f"the job's process vanished without an exit status (its runner process, "
                    f"pid {info.owner_pid}, is gone)"
                )
                doc = _exit_doc(JobState.LOST, Failure.LOST, None, reason, info.started, now)
            _write_json_atomic(job_dir / _EXIT, doc)
        _notify()
        return _status_from_exit(doc)


def _parse_record(raw: bytes) -> LogRecord | None:
    try:
        data = json.loads(raw)
        at = data.get("at")
        return LogRecord(
            stream=str(data["stream"]),
            text=str(data["text"]),
            at=datetime.fromisoformat(at) if at else None,
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
