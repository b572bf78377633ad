"""Process-wide state: the jobs this process watches, parsed exit files, and change notices.

One interpreter may hold many ``ProcessRunner`` instances (on one ``base_dir`` or several);
what they share is here, keyed by job directory: the watcher of each job submitted from this
process (from its handshake with the job's shim until its ``exit`` file is written: a poll
here answers RUNNING from memory meanwhile), the parsed ``exit`` files (by content: a
rewritten file is parsed again), and a generation counter with a condition, which
:meth:`ProcessRunner.wait` blocks on.

A forked child watches nothing and must not wait on locks held by the parent's threads:
everything is replaced after a fork. All access goes through the functions here, which read
the module's current objects, so the replacement reaches every caller.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from runners.base import JobStatus

if TYPE_CHECKING:
    from runners.process.supervisor import Watcher

__all__ = [
    "Changes",
    "active_watcher",
    "cache_exit",
    "cached_exit",
    "notify",
    "register",
    "unregister",
]

_EXIT_CACHE_MAX = 4096

_changed = threading.Condition()
_generation = 0
_active_lock = threading.Lock()
_active: dict[str, Watcher] = {}  # job directory -> its watcher, until `exit` is written
_exit_cache: dict[str, tuple[bytes, JobStatus, str | None]] = {}  # job directory -> (exit bytes, status, id)


def notify() -> None:
    """Something changed (a job started, ended, was cancelled): wake every waiter."""
    global _generation
    with _changed:
        _generation += 1
        _changed.notify_all()


class Changes:
    """One waiter's view of the change notices: the generation it has seen."""

    def __init__(self) -> None:
        with _changed:
            self._seen = _generation

    def wait(self, timeout: float) -> bool:
        """Block until something changed since the previous call, at most ``timeout`` s; whether it did."""
        with _changed:
            _changed.wait_for(lambda: _generation != self._seen, timeout=max(timeout, 0.0))
            changed = _generation != self._seen
            self._seen = _generation
            return changed


def active_watcher(job_dir: str) -> Watcher | None:
    return _active.get(job_dir)  # a single dict lookup is atomic


def register(job_dir: str, watcher: Watcher) -> None:
    with _active_lock:
        _active[job_dir] = watcher


def unregister(job_dir: str, watcher: Watcher | None) -> None:
    """Forget ``watcher`` if it is still the one registered for ``job_dir`` (None: a no-op)."""
    if watcher is None:
        return
    with _active_lock:
        if _active.get(job_dir) is watcher:
            del _active[job_dir]


def cache_exit(job_dir: str, raw: bytes, status: JobStatus, token: str | None) -> None:
    with _active_lock:
        _exit_cache.pop(job_dir, None)
        if len(_exit_cache) >= _EXIT_CACHE_MAX:
            del _exit_cache[next(iter(_exit_cache))]  # the oldest entry
        _exit_cache[job_dir] = (raw, status, token)


def cached_exit(job_dir: str) -> tuple[bytes, JobStatus, str | None] | None:
    return _exit_cache.get(job_dir)  # a single dict lookup is atomic


def _after_fork_in_child() -> None:
    global _changed, _active_lock, _active, _exit_cache
    _changed = threading.Condition()
    _active_lock = threading.Lock()
    _active = {}
    _exit_cache = {}


os.register_at_fork(after_in_child=_after_fork_in_child)
