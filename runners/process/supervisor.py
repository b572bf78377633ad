"""The in-process half of supervision: one watcher per job submitted from this process.

Theory of operation
-------------------
The job itself is owned by its shim (:mod:`.shim`), a small process of its own session that
reads the job's pipes into ``log.jsonl``, enforces the timeout, reaps the job and writes
``result``; it outlives the squall process that started it. The shim is still this
process's child, so a :class:`Watcher` on a pool thread waits for it (``waitpid``: the shim
is reaped, never a zombie), then finalizes the job (:func:`~runners.process.status.finalize`:
copy the outputs, write ``exit``, under the directory's claim) and wakes
:meth:`ProcessRunner.wait` at once. Until then, a poll in this process answers RUNNING from
memory.

Nothing here kills a job: an interpreter that exits leaves its jobs running under their
shims (the control plane decides: ``squall run`` cancels its jobs on Ctrl-C through
``cancel``), and whichever process polls a job after its shim wrote ``result`` records the
true status. Should the watcher fail, the job is not touched either: the next poll (from any
process) finalizes it from the files.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from runners.base import JobState, JobStatus
from runners.process import registry
from runners.process.forkserver import ShimProcess
from runners.process.procs import PidInfo
from runners.process.status import finalize

__all__ = ["Watcher"]

log = logging.getLogger("runners.process")  # one logger for the whole runner, as before it was a package


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

    # -- the pool thread's entry point

    def run(self) -> None:
        try:
            self.shim.wait()
            finalize(self.job_dir, self.pid_doc, self.clock)
        except BaseException:  # the files still tell: the next poll finalizes the job
            log.exception("process runner: watching job %s failed", self.job_dir)
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
