"""The in-process half of supervision: one watcher per job submitted from this process.

Theory of operation
-------------------
The job itself is owned by its shim (:mod:`.shim`), a small process of its own session that
reads the job's pipes into ``log.jsonl``, enforces the timeout, reaps the job and writes
``result``; it outlives the squall process that started it. A :class:`Watcher` follows the
shim from this process and, once it exited, finalizes the job
(:func:`~runners.process.status.finalize`: copy the outputs, write ``exit``, under the
directory's claim) and wakes :meth:`ProcessRunner.wait`. Until then, a poll in this process
answers RUNNING from memory.

Who finalizes: a shim forked by the fork server (the usual case) is followed through a
descriptor (:meth:`Watcher.fileno`: its pidfd, or its answer pipe's end of file), which
:meth:`ProcessRunner.wait` polls itself; the thread that waits or polls (:meth:`finish_if_ended`)
finalizes the job, so a job's end reaches the control plane with no thread hop. A watcher
thread used to wait for each shim: its wakeup and its GIL handoff to the control plane's thread
were two more context switches per job, on the way from one task to the next. A shim started
as an interpreter of its own (the ``spawn`` seam, or no descriptor passing) is this process's
child and is still waited for on a pool thread (:meth:`run`), which reaps it.

Nothing here kills a job: an interpreter that exits leaves its jobs running under their
shims (the control plane decides: ``squall run`` cancels its jobs on Ctrl-C through
``cancel``), and whichever process polls a job after its shim wrote ``result`` records the
true status. Should finalizing fail, the job is not touched either: the next poll (from any
process) finalizes it from the files.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from runners.base import JobState, JobStatus
from runners.process import registry
from runners.process.forkserver import ForkedShim, ShimProcess
from runners.process.procs import PidInfo
from runners.process.shim import RESULT
from runners.process.status import finalize

__all__ = ["Watcher"]

log = logging.getLogger("runners.process")  # one logger for the whole runner, as before it was a package

_DEATH_WAIT = 5.0  # seconds a dead shim (end of file, no `result`) gets to be torn down


class Watcher:
    """Waits for a job's shim to exit, then finalizes the job (outputs, ``exit``) and notifies."""

    def __init__(
        self,
        *,
        job_dir: str,
        shim: ShimProcess,
        pid_doc: Mapping[str, Any],
        clock: Callable[[], datetime],
    ) -> None:
        self.job_dir = job_dir
        self.shim = shim
        self.pid_doc = pid_doc
        self.info = PidInfo.from_json(pid_doc)
        self.token = str(pid_doc.get("id") or "")
        self.clock = clock
        self.running = JobStatus(JobState.RUNNING, started=self.info.started)
        self.dispatched = False
        self.done = threading.Event()
        self._finishing = threading.Lock()
        # A shim forked by the server is followed through a descriptor; an interpreter of its
        # own is this process's child: a pool thread waits for it (it must be reaped).
        self.polled = isinstance(shim, ForkedShim)

    def fileno(self) -> int | None:
        """What becomes readable when the shim exited (None: nothing to poll, or it is done)."""
        if not self.polled or self.done.is_set():
            return None
        assert isinstance(self.shim, ForkedShim)
        fd = self.shim.fileno()
        return fd if fd >= 0 else None

    # -- in the thread that waits or polls

    def finish_if_ended(self) -> bool:
        """Finalize the job now if its shim exited (never blocks for the shim); whether it is done."""
        if self.done.is_set():
            return True
        if not self.polled or not self._finishing.acquire(blocking=False):
            return False  # a pool thread follows it, or another thread is finishing it now
        try:
            if self.done.is_set():
                return True
            assert isinstance(self.shim, ForkedShim)
            if not self.shim.ended():  # `result` written (or the shim died): finalize now
                return False
            if not os.path.exists(f"{self.job_dir}/{RESULT}"):
                # It died (its descriptors close before it is gone): the job is LOST once the
                # shim is really gone, never while it may still be exiting.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.shim.wait(timeout=_DEATH_WAIT)
            self._finish()
            return True
        finally:
            self._finishing.release()

    def finish(self, timeout: float) -> bool:
        """Wait at most ``timeout`` s for the shim, then finalize; whether the job is done."""
        if not self.polled or self.done.is_set():
            return self.done.wait(timeout)
        with self._finishing:
            if not self.done.is_set():
                try:
                    self.shim.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    return False
                self._finish()
        return True

    # -- the pool thread's entry point (a shim that is this process's child)

    def run(self) -> None:
        try:
            self.shim.wait()
        except BaseException:  # the files still tell: the next poll finalizes the job
            log.exception("process runner: watching job %s failed", self.job_dir)
        self._finish()

    def _finish(self) -> None:
        try:
            finalize(self.job_dir, self.pid_doc, self.clock)
        except Exception:  # the files still tell: the next poll finalizes the job
            log.exception("process runner: finalizing job %s failed", self.job_dir)
        finally:
            with contextlib.suppress(BaseException):
                self.release()
            registry.unregister(self.job_dir, self)
            self.done.set()
            registry.notify()

    def release(self) -> None:
        """Close the pipes to the shim (idempotent): no ResourceWarning."""
        for pipe in (self.shim.stdin, self.shim.stdout, self.shim.stderr):
            if pipe is not None:
                pipe.close()
