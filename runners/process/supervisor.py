"""The supervisor: one pump per job, on a pool thread, owning the child from spawn to ``exit``.

Theory of operation
-------------------
The child runs in its own session (``start_new_session``), so the process group is the job:
timeout and cancel signal the group (TERM, grace period, KILL), grandchildren included.
Before signalling, the group leader's /proc start time is compared with the recorded one, so
a recycled pid is never signalled. The :class:`Pump` reads both pipes with poll(2) (and a
pidfd for the exit, when the kernel has them), writes each line to ``log.jsonl`` in arrival
order, enforces the timeout, reaps the child, copies output files and finally writes
``exit``; the files it needs (log, the exit temp file) are created while the child runs.
When the main process has exited, pipes still held open by leftover background processes
are drained for one more second, then the group is killed: like a container, a job ends with
its main process.

An interpreter that exits (atexit) kills the jobs it supervises rather than leave orphans
whose output nobody captures; only a hard crash leaves orphans, for the next poll to find
(:func:`~runners.process.status.finalize_orphan`).
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import logging
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from runners.base import Failure, JobSpec, JobState, JobStatus
from runners.process import registry
from runners.process.capture import LineSplitter, records
from runners.process.files import CREATE, READ_SIZE, dumps, write_all, write_atomic
from runners.process.layout import CANCELLED, EXIT, LOG, copy_outputs
from runners.process.procs import PidInfo, signal_group
from runners.process.status import describe_exit, exit_doc, status_from_exit, write_exit

__all__ = ["Pump"]

log = logging.getLogger("runners.process")  # one logger for the whole runner, as before it was a package

_LINGER = 1.0  # seconds to drain pipes after the main process exited, before killing leftovers
_GIVE_UP = 1.0  # then seconds to wait for EOF before abandoning pipes held outside the group
_POLL = 0.05  # exit polling interval when pidfd_open is unavailable
_AT_EXIT_WAIT = 1.0  # seconds the interpreter's exit waits for killed jobs to be recorded

_exiting = threading.Event()


class Pump:
    """Reads the child's pipes into the log, enforces the timeout, reaps it, records the exit."""

    def __init__(
        self,
        *,
        job_dir: str,
        proc: subprocess.Popen[bytes],
        info: PidInfo,
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
        self._splitters: dict[int, LineSplitter] = {}
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
            registry.unregister(self.job_dir, self)
            self.done.set()
            registry.notify()

    def _supervise(self) -> tuple[int, datetime]:
        """Pump until the child is reaped and both pipes are closed; returns (returncode, ended)."""
        proc = self.proc
        assert proc.stdout is not None and proc.stderr is not None
        if self.spec.timeout is not None:
            self._timers["timeout"] = self.started_mono + self.spec.timeout.total_seconds()
        # Only this pump ever writes the log: truncating drops nothing (an abandoned attempt
        # never had a pump).
        out = os.open(f"{self.job_dir}/{LOG}", CREATE | os.O_APPEND, 0o644)
        try:
            self._precreate_exit_file()
            poller = self._poller
            for stream, pipe in (("stdout", proc.stdout), ("stderr", proc.stderr)):
                fd = pipe.fileno()
                self._streams[fd] = stream
                self._splitters[fd] = LineSplitter()
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
        tmp = f"{self.job_dir}/.{EXIT}.{self.token}.tmp"
        try:
            self._exit_fd = os.open(tmp, CREATE, 0o644)
        except OSError:
            return  # written the ordinary way at the end
        self._exit_tmp = tmp

    def _reaped(self, returncode: int) -> None:
        self._returncode = returncode
        self._ended = self.clock()
        # Decided now, not when the exit is recorded: a cancel that comes while the outputs
        # are drained or copied finds a job that already ended on its own (a no-op).
        self._cancelled = os.path.exists(f"{self.job_dir}/{CANCELLED}")
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
            signal_group(self.info, signal.SIGTERM)
            self._timers["kill"] = now + self.grace
        if "kill" in due:
            signal_group(self.info, signal.SIGKILL)
        if "linger" in due and self._streams:
            # The main process is gone but leftovers (background children) hold a pipe open.
            signal_group(self.info, signal.SIGKILL)
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
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return
        if not data:
            self._eof(fd, out, at)
            return
        if lines := records(self._streams[fd], *self._splitters[fd].feed(data), at):
            write_all(out, lines)

    def _eof(self, fd: int, out: int, at: str) -> None:
        stream = self._streams.pop(fd)
        if lines := records(stream, *self._splitters.pop(fd).close(), at):
            write_all(out, lines)
        self._poller.unregister(fd)

    # -- the end

    def _finish(self, returncode: int, ended: datetime) -> None:
        self._release()
        exit_code, why = describe_exit(returncode)
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
            outputs = copy_outputs(self.job_dir, self.spec.output_files, self.prefix_dir)
        except OSError as exc:
            outputs = {}
            if state is JobState.SUCCEEDED:
                state, failure = JobState.FAILED, Failure.USER
            reason = f"{reason + '; ' if reason else ''}could not copy output files: {exc}"
        doc = exit_doc(state, failure, exit_code, reason, self.info.started, ended, outputs, token=self.token)
        raw = dumps(doc)
        path = f"{self.job_dir}/{EXIT}"
        fd, tmp = self._exit_fd, self._exit_tmp
        self._exit_fd = self._exit_tmp = None
        try:
            if fd is None or tmp is None:
                raise FileNotFoundError(errno.ENOENT, "no exit temp file")
            try:
                write_all(fd, raw)
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
            write_atomic(path, raw)
        registry.cache_exit(self.job_dir, raw, status_from_exit(doc), self.token)

    def _still_ours(self) -> bool:
        try:
            st = os.stat(self.job_dir)
        except OSError:
            return False
        return self.dir_id is None or (st.st_dev, st.st_ino) == self.dir_id

    def _record_lost(self, reason: str) -> None:
        if self._still_ours() and not os.path.exists(f"{self.job_dir}/{EXIT}"):
            doc = exit_doc(
                JobState.LOST, Failure.LOST, None, reason, self.info.started, self.clock(), token=self.token
            )
            write_exit(self.job_dir, doc)

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
            signal_group(self.info, signal.SIGKILL)
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


@atexit.register
def _stop_supervised_jobs() -> None:
    """When this interpreter exits, kill the jobs it supervises instead of leaving orphans.

    Their pumps then record them LOST (waited for a short while: they die with the
    interpreter); whatever is not recorded by then, the next ``poll`` (from any process)
    reports LOST too, the same as after a crash, minus processes left running beside the retry.
    """
    _exiting.set()
    pumps = registry.active_pumps()
    for pump in pumps:
        signal_group(pump.info, signal.SIGKILL)
    deadline = time.monotonic() + _AT_EXIT_WAIT
    for pump in pumps:
        if pump.dispatched:
            pump.done.wait(max(deadline - time.monotonic(), 0.0))
