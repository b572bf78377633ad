"""The threads watchers run on: reused, because starting a thread costs more than a short
job's whole bookkeeping.

A worker runs tasks one after the other and ends after ``_POOL_IDLE`` seconds without one.
Process-wide state, replaced in a forked child (whose copies of the parent's threads do not
exist, and whose locks they may hold).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable

__all__ = ["dispatch"]

log = logging.getLogger("runners.process")  # one logger for the whole runner, as before it was a package

_POOL_IDLE = 30.0  # seconds an idle watcher thread waits for another job before it ends

_pool_lock = threading.Lock()
_pool_queue: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
_pool_idle = 0


def dispatch(task: Callable[[], None]) -> None:
    """Run ``task`` (a watcher's ``run``) on an idle pool thread, or on a new one."""
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
        except BaseException:  # a watcher never raises; should one, the thread lives on
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
    global _pool_lock, _pool_queue, _pool_idle
    _pool_lock = threading.Lock()
    _pool_queue = queue.SimpleQueue()
    _pool_idle = 0


os.register_at_fork(after_in_child=_after_fork_in_child)
