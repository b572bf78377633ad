"""``ProcessRunner``: the Runner protocol over the job directories, the launcher and the watchers.

Each method resolves a handle to its job directory and hands the work to the module that
holds the state involved: :mod:`~runners.process.launch` (submit), :mod:`~runners.process.status`
(poll, find, orphans), :mod:`~runners.process.capture` (logs), :mod:`~runners.process.registry`
(wait). What it keeps itself is only its configuration and what ``wait`` has seen.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from runners import retry
from runners.base import (
    Failure,
    JobHandle,
    JobNotFoundError,
    JobSpec,
    JobStatus,
    LogChunk,
    RunnerError,
    RunnerOptions,
)
from runners.process import disposal, registry, status
from runners.process.capture import read_records
from runners.process.files import read_json
from runners.process.launch import Launcher, Ready, make_handle
from runners.process.layout import (
    CANCELLED,
    EXIT,
    LOG,
    NAME,
    PID,
    WORK,
    Claim,
    check_name,
    default_base_dir,
    started,
)
from runners.process.options import ProcessOptions
from runners.process.procs import PidInfo, terminate, wait_exited

__all__ = ["ProcessRunner"]

_SHIM_WAIT = 10.0  # seconds cancel waits for a stopped job's shim to finish (it may drain leftovers)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _make_dir(base: str, job_dir: str) -> bool:
    """The job's directory; whether this call created it (empty, then)."""
    try:
        os.mkdir(job_dir)
    except FileExistsError:
        return False
    except FileNotFoundError:  # base_dir was removed since
        os.makedirs(base, exist_ok=True)
        try:
            os.mkdir(job_dir)
        except FileExistsError:
            return False
    return True


class _Readied:
    """A start :meth:`ProcessRunner.prepare` readied: the spec it is for, the job's claim (held),
    the launcher's ready shim."""

    __slots__ = ("claim", "ready", "spec")

    def __init__(self, spec: JobSpec, claim: Claim, ready: Ready) -> None:
        self.spec, self.claim, self.ready = spec, claim, ready


class ProcessRunner:
    """Runs each job's ``command`` as a local subprocess; state lives under ``base_dir``.

    ``spawn`` (``subprocess.Popen``-compatible: when given, it starts each job's shim as an
    interpreter of its own; by default shims are forked by :mod:`~runners.process.forkserver`), ``policy``
    and ``sleep`` are the seams for tests: a fake ``spawn`` that raises
    ``BlockingIOError(EAGAIN)`` exercises the retry path; ``sleep`` is handed to the retry
    loop only. ``grace`` is the default time between SIGTERM and SIGKILL (the
    ``gracePeriod`` option overrides it per job). ``clock`` stamps what this process records
    (submit and cancel times, START_FAILED, LOST); log records and a started job's start and
    end times come from its shim's wall clock.

    Example::

        runner = ProcessRunner(base_dir=tmp)
        handle = runner.submit(JobSpec(name="demo-1", command=("sh", "-c", "echo hi")))
        while not runner.poll([handle])["demo-1"].terminal:
            runner.wait(1.0)
        assert [r.text for r in runner.logs(handle, None).lines] == ["hi"]
    """

    name: ClassVar[str] = NAME
    Options: ClassVar[type[RunnerOptions]] = ProcessOptions
    failures: ClassVar[frozenset[Failure]] = frozenset(
        {Failure.USER, Failure.CONFIG, Failure.TIMEOUT, Failure.CANCELLED, Failure.LOST}
    )
    storage_schemes: ClassVar[frozenset[str]] = frozenset({"file"})
    poll_batch: ClassVar[int] = 1_000_000
    """Polling reads local files: no backend call at all."""

    def __init__(
        self,
        base_dir: Path | None = None,
        *,
        spawn: Callable[..., subprocess.Popen[bytes]] | None = None,
        policy: retry.RetryPolicy = retry.DEFAULT_POLICY,
        sleep: Callable[[float], None] = time.sleep,
        grace: timedelta = timedelta(seconds=5),
        clock: Callable[[], datetime] = _utcnow,
        keep_jobs: bool = False,
    ) -> None:
        self.keep_jobs = keep_jobs
        self.base_dir = Path(base_dir if base_dir is not None else default_base_dir()).expanduser().resolve()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self._base = str(self.base_dir)
        self._grace = grace
        self._clock = clock
        self._launcher = Launcher(
            type(self), self._base, spawn=spawn, policy=policy, sleep=sleep, grace=grace, clock=clock
        )
        self._changes = registry.Changes()
        self._readied: dict[str, _Readied] = {}  # job name -> a start readied by prepare()
        self._readied_lock = threading.Lock()
        disposal.sweep(self._base)  # what a process killed before its deletions left here

    # -- Runner protocol

    def submit(self, spec: JobSpec) -> JobHandle:
        """Start ``spec`` once per name; a second submit returns the first job's handle.

        Raises :class:`RunnerError` for an invalid spec (nothing is created),
        :class:`~runners.base.RunnerOptionsError` for bad options and
        :class:`~runners.base.TransientRunnerError` when spawning kept failing transiently
        (the job directory is then left for a later submit to take over).
        """
        with self._readied_lock:
            readied = self._readied.pop(spec.name, None)
        if readied is not None:
            if readied.spec == spec:
                return self._go(readied)
            self._abort(readied)
        plan = self._launcher.plan(spec)
        job_dir = plan.job_dir
        fresh = _make_dir(self._base, job_dir)
        with Claim(job_dir):
            if started(job_dir):
                return self._handle(job_dir)
            return self._launcher.start(plan, fresh)

    # -- Preparable

    def prepare(self, spec: JobSpec) -> None:
        """Ready ``spec``'s start ahead of its :meth:`submit`, which then only says go.

        The control plane calls this before the store write that records the job, so laying
        out its directory and forking and configuring its shim happen while that write is
        made durable; nothing runs until the submit (the shim waits for a go byte on its
        stdin; end of file calls the start off, so a crash of this process starts nothing).
        The job's claim is held from here to the submit or :meth:`unprepare`: nobody else
        can start the job meanwhile. Anything that goes wrong here is left for the submit
        to do again and report.
        """
        with self._readied_lock:
            if spec.name in self._readied:
                return
        try:
            plan = self._launcher.plan(spec)
            fresh = _make_dir(self._base, plan.job_dir)
            claim = Claim(plan.job_dir).__enter__()
        except (OSError, RunnerError):
            return
        try:
            ready = None if started(plan.job_dir) else self._launcher.ready(plan, fresh)
        except Exception:  # the submit does it all again, and reports what fails
            ready = None
        except BaseException:
            claim.__exit__()
            raise
        if ready is None:
            claim.__exit__()
            return
        with self._readied_lock:
            self._readied[spec.name] = _Readied(spec, claim, ready)

    def go(self, spec: JobSpec, meanwhile: Callable[[], None]) -> JobHandle:
        """:meth:`submit`, calling ``meanwhile`` while a readied start starts (after its go,
        before its answer is awaited; first, for a start that was not readied)."""
        with self._readied_lock:
            readied = self._readied.pop(spec.name, None)
        if readied is not None and readied.spec == spec:
            return self._go(readied, meanwhile)
        if readied is not None:
            self._abort(readied)
        meanwhile()
        return self.submit(spec)

    def unprepare(self) -> None:
        """Call off every start :meth:`prepare` readied that no submit took (their shims exit
        without starting anything; the job directories stay unstarted, for a later submit)."""
        with self._readied_lock:
            readied, self._readied = list(self._readied.values()), {}
        for one in readied:
            self._abort(one)

    def _go(self, readied: _Readied, meanwhile: Callable[[], None] | None = None) -> JobHandle:
        try:
            return self._launcher.go(readied.ready, meanwhile)
        finally:
            readied.claim.__exit__()  # held since prepare(): released once the job runs

    def _abort(self, readied: _Readied) -> None:
        try:
            self._launcher.abort(readied.ready)
        finally:
            readied.claim.__exit__()

    def find(self, spec: JobSpec) -> JobHandle | None:
        """The handle of the job submitted under ``spec.name``, or None if it never started."""
        check_name(spec.name)
        with self._readied_lock:
            if spec.name in self._readied:
                return None  # readied here, not started: its claim is ours until the submit
        job_dir = f"{self._base}/{spec.name}"
        if not os.path.isdir(job_dir):
            return None
        with Claim(job_dir):  # waits for a submit in progress to finish
            if started(job_dir):
                return self._handle(job_dir)
        return None

    def poll(self, handles: Sequence[JobHandle]) -> Mapping[str, JobStatus]:
        return {handle.name: self._status(handle) for handle in handles}

    def cancel(self, handle: JobHandle) -> None:
        """Stop the job's whole process group (TERM, grace, KILL) and record CANCELLED.

        Works from any process (the job's shim records the job as cancelled when it reaps
        it). Idempotent; a no-op for a finished job or a job directory that no longer exists.
        Returns once the processes are gone and the terminal status is recorded (unless the
        shim takes longer than a few seconds to finish: then the next poll records it).
        """
        job_dir = self._dir(handle)
        with self._readied_lock:
            readied = self._readied.pop(handle.name, None)
        if readied is not None:  # never started: called off, and its claim released for _cancel
            self._abort(readied)
        try:
            self._cancel(job_dir)
        except (FileNotFoundError, NotADirectoryError):
            if os.path.isdir(job_dir):
                raise
            # Removed meanwhile: another process (``squall executions kill``) stopped the job
            # and cleaned it up between our check and our write. Nothing runs.

    def _cancel(self, job_dir: str) -> None:
        if not os.path.isdir(job_dir) or os.path.exists(f"{job_dir}/{EXIT}"):
            return
        with (
            contextlib.suppress(FileExistsError),
            open(f"{job_dir}/{CANCELLED}", "x", encoding="utf-8") as f,
        ):
            f.write(self._clock().isoformat())
        with Claim(job_dir):
            if os.path.exists(f"{job_dir}/{EXIT}"):
                return
            raw = read_json(f"{job_dir}/{PID}")
            if raw is None:  # never started: make sure it never will
                status.record_cancelled_before_start(job_dir, self._clock)
                return
            info = PidInfo.from_json(raw)
            terminate(info, status.recorded_grace(job_dir, raw, self._grace.total_seconds()))
        watcher = registry.active_watcher(job_dir)
        if watcher is not None:
            watcher.finish(timeout=30.0)
        else:
            if raw.get("shim"):  # it writes `result` and exits as soon as the job is reaped
                wait_exited(info.owner_pid, info.owner_start, info.boot, _SHIM_WAIT)
            if not status.owner_alive(info):
                status.finalize(job_dir, raw, self._clock)
        registry.notify()

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
            fd = os.open(f"{job_dir}/{LOG}", os.O_RDONLY | os.O_CLOEXEC)
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
            lines, consumed, at_end = read_records(fd, offset)
        finally:
            os.close(fd)
        return LogChunk(lines, str(offset + consumed), complete=terminal and at_end)

    def cleanup(self, handle: JobHandle) -> None:
        """Remove a terminal job's work directory, in the background (logs, status, OUTPUT_DIR and
        outputs stay); idempotent."""
        job_dir = self._dir(handle)
        found = self._status(handle)  # LOST when the directory is gone: then nothing to do
        if not found.terminal:
            if not os.path.isdir(job_dir):
                return
            raise RunnerError(
                f"job {handle.name!r} is {found.state.value}: cancel it before cleaning up", runner=self.name
            )
        disposal.discard_later(f"{job_dir}/{WORK}")

    def dispose(self, handle: JobHandle) -> None:
        """Remove the whole job directory once the control plane stored the job's end, log and
        outputs (``keep_jobs`` keeps it, for looking at a job's files afterwards).

        The directory is gone by its name on return; its files are deleted in the background
        (:mod:`~runners.process.disposal`), off the path from one task to the next.
        """
        if self.keep_jobs or not self._status(handle).terminal:
            return
        disposal.discard(self._dir(handle), self._base)

    @property
    def option_defaults(self) -> Mapping[str, Any]:
        """Local jobs have no deployment-wide options."""
        return {}

    # -- Waitable

    def wait(self, timeout: float) -> bool:
        """Block until a job submitted in this process ended (or was cancelled, or could not
        start), at most ``timeout`` s.

        Returns True when something changed since the previous call on this instance (even if
        that happened before this call: no wakeup is lost), False on timeout. A job that
        started is not a change (submit said so already). Jobs submitted by another process
        do not notify: callers poll anyway after a False. A job whose shim exits is finalized
        by the waiting thread itself (:mod:`~runners.process.registry`), which then returns.
        """
        return self._changes.wait(timeout)

    # -- handles

    def _dir(self, handle: JobHandle) -> str:
        if handle.runner != self.name:
            raise RunnerError(f"handle of runner {handle.runner!r} given to {self.name!r}", runner=self.name)
        raw = handle.data.get("dir") if handle.data else None
        if isinstance(raw, str) and os.path.isabs(raw):
            # The usual handle (from this base_dir) is already normal: skip normpath.
            return raw if raw == f"{self._base}/{handle.name}" else os.path.normpath(raw)
        check_name(handle.name)
        return f"{self._base}/{handle.name}"

    def _handle(self, job_dir: str) -> JobHandle:
        return make_handle(self.name, job_dir, status.job_id(job_dir))

    def _status(self, handle: JobHandle) -> JobStatus:
        return status.status(self._dir(handle), handle, self._clock)
