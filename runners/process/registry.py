"""Process-wide state: the jobs this process watches, parsed exit files, and change notices.

One interpreter may hold many ``ProcessRunner`` instances (on one ``base_dir`` or several);
what they share is here, keyed by job directory: the watcher of each job submitted from this
process (from its handshake with the job's shim until its ``exit`` file is written: a poll
here answers RUNNING from memory meanwhile), the parsed ``exit`` files (by content: a
rewritten file is parsed again), and a generation counter, which :meth:`ProcessRunner.wait`
waits on (:class:`Changes`).

:meth:`Changes.wait` polls the descriptors of the shims this process watches together with a
wake pipe of its own: when a shim exits, the waiting thread finalizes its job itself
(:meth:`~runners.process.supervisor.Watcher.finish_if_ended`) and returns, with no thread in
between; a change made by another thread (a submit, a cancel, a job followed by a pool thread)
writes one byte to the wake pipe of each thread waiting at that moment.

A forked child watches nothing and must not wait on locks held by the parent's threads:
everything is replaced after a fork. All access goes through the functions here, which read
the module's current objects, so the replacement reaches every caller.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
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
    "wake_waiters",
]

_EXIT_CACHE_MAX = 4096

_changed = threading.Lock()
_generation = 0
_wakers: set[int] = set()  # write ends of the wake pipes of the threads waiting now
_active_lock = threading.Lock()
_active: dict[str, Watcher] = {}  # job directory -> its watcher, until `exit` is written
_exit_cache: dict[str, tuple[bytes, JobStatus, str | None]] = {}  # job directory -> (exit bytes, status, id)


def notify() -> None:
    """Something changed (a job ended, was cancelled, could not start): wake every waiter."""
    global _generation
    with _changed:
        _generation += 1
        _wake()


def wake_waiters() -> None:
    """A job started: the threads waiting now poll its shim too (their wait goes on)."""
    with _changed:
        _wake()


def _wake() -> None:
    for fd in _wakers:
        with contextlib.suppress(OSError):  # full (it will wake anyway) or closed
            os.write(fd, b"!")


class Changes:
    """One waiter's view of the change notices: the generation it has seen, and its wake pipe."""

    def __init__(self) -> None:
        with _changed:
            self._seen = _generation
        self._pipe: tuple[int, int, int] | None = None  # (read end, write end, pid that made it)

    def wait(self, timeout: float) -> bool:
        """Block until something changed since the previous call, at most ``timeout`` s; whether it did.

        Meanwhile, a job of this process whose shim exited is finalized here, by the caller.
        """
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            wake = self._wake_pipe()
            with _changed:
                if _generation != self._seen:
                    self._seen = _generation
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                _wakers.add(wake[1])
            try:
                ready = self._poll(wake[0], left)
            finally:
                with _changed:
                    _wakers.discard(wake[1])
            for watcher in ready:
                watcher.finish_if_ended()  # notifies: the next turn returns True

    def _poll(self, wake: int, left: float) -> list[Watcher]:
        """Poll the watched shims and the wake pipe; the watchers whose descriptor is ready."""
        poller = select.poll()
        poller.register(wake, select.POLLIN)
        shims: dict[int, Watcher] = {}
        for watcher in list(_active.values()):
            fd = watcher.fileno()
            if fd is not None:
                shims[fd] = watcher
                poller.register(fd, select.POLLIN)
        ready = []
        for fd, _ in poller.poll(left * 1000):
            if fd == wake:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake, 4096)
            elif fd in shims:
                ready.append(shims[fd])
        return ready

    def _wake_pipe(self) -> tuple[int, int, int]:
        if self._pipe is None or self._pipe[2] != os.getpid():  # a forked child makes its own
            r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            self._pipe = (r, w, os.getpid())
        return self._pipe

    def __del__(self) -> None:
        if self._pipe is not None and self._pipe[2] == os.getpid():
            for fd in self._pipe[:2]:
                with contextlib.suppress(OSError):
                    os.close(fd)


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
    global _changed, _active_lock, _active, _exit_cache, _wakers
    _changed = threading.Lock()
    _wakers = set()
    _active_lock = threading.Lock()
    _active = {}
    _exit_cache = {}


os.register_at_fork(after_in_child=_after_fork_in_child)
