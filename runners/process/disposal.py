"""Removing job directories off the critical path: renamed aside at once, deleted by a helper process.

A finished job's directory holds a handful of files; deleting them is a dozen metadata
operations, each a journal write on the machine's disk, and on a busy virtual disk these
cost milliseconds: more than the rest of a short task's bookkeeping. ``dispose`` only
needs the directory gone *by its name* (nobody may find it any more), so :func:`discard`
renames it to ``<base_dir>/.disposed-<name>-<random>`` (one operation; ``.`` starts no job
name, so no job can be found there) and a *deleter* deletes it: one small process per squall
process (``python -I -S``, stdlib only), fed the paths through a pipe, NUL-separated. A
deletion is then one ``write`` in this process. It used to be a pool thread of this process,
which took the GIL from the control plane and woke twice per job (the work directory, then
the job's directory): ~0.8 ms of this process's CPU and 6 context switches per task in
``benchmarks/local.py``. Where the deleter cannot be started, a pool thread deletes, as before.

Deletions still pending when the interpreter exits are done then (``atexit``: the deleter
gets end of file, finishes its list and exits, and this process waits for it); those of a
process killed first are left as ``.disposed-*`` directories, which the next runner on the
same ``base_dir`` deletes in the background (:func:`sweep`). A finished job's working
directory (``cleanup``) is deleted in place in the background (:func:`discard_later`): nothing
reads it any more, and its removal would otherwise be one more operation on the way to the
next task.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import subprocess
import sys
import threading

from runners.process import pool
from runners.process import shim as _shim
from runners.process.files import remove_tree, write_all

__all__ = ["TRASH_PREFIX", "discard", "discard_later", "drain", "sweep"]

TRASH_PREFIX = ".disposed-"

_SHIM_DIR = os.path.dirname(_shim.__file__)
_EXIT_WAIT = 30.0  # seconds the exiting interpreter waits for its deleter to finish its list

_lock = threading.Lock()
_pending: set[str] = set()  # given to pool threads (no deleter), not deleted yet
_swept: set[str] = set()


class _Deleter:
    """This process's deleter: its process and the write end of its stdin."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _shim.DELETE, _SHIM_DIR],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd="/",  # holds no directory of the caller's
            start_new_session=True,  # a Ctrl-C to the terminal's group does not stop it half-way
            close_fds=True,
        )
        assert self.process.stdin is not None
        self.fd = self.process.stdin.fileno()
        self.pid = os.getpid()

    def send(self, path: str) -> None:
        write_all(self.fd, os.fsencode(path) + b"\0")

    def close(self, wait: float) -> None:
        """End of file: it deletes what it was given, then exits; wait that long for it."""
        assert self.process.stdin is not None
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=wait)


_deleter: _Deleter | None = None
_no_deleter = False  # it could not be started (or died): pool threads delete


def discard(path: str, base: str) -> None:
    """Make ``path`` (a job's directory) disappear now by its name; what it held is deleted in
    the background, from under ``base`` (the runner's base directory)."""
    name = os.path.relpath(path, base).replace("/", "-")
    trash = f"{base}/{TRASH_PREFIX}{name}-{os.urandom(6).hex()}"
    try:
        os.rename(path, trash)  # one operation; a job directory is never empty (its log)
    except FileNotFoundError:
        return
    except OSError:  # cannot rename (a mount point, permissions): delete in place
        remove_tree(path)
        return
    _later(trash)


def discard_later(path: str) -> None:
    """Delete ``path`` in the background, in place: for what may stay visible a little longer
    (a finished job's working directory, which nothing reads any more)."""
    _later(path)


def _later(path: str) -> None:
    if _to_deleter(path):
        return
    with _lock:
        _pending.add(path)
    try:
        pool.dispatch(functools.partial(_remove, path))
    except BaseException:  # no thread to be had: delete now
        _remove(path)
        raise


def _to_deleter(path: str) -> bool:
    """Hand ``path`` to this process's deleter (started on first use); False if there is none."""
    global _deleter, _no_deleter
    with _lock:
        if _no_deleter:
            return False
        try:
            if _deleter is None or _deleter.pid != os.getpid():
                _deleter = _Deleter()
            _deleter.send(path)
            return True
        except OSError:  # cannot start one, or it died (EPIPE): pool threads delete from now on
            _no_deleter = True
            return False


def _remove(trash: str) -> None:
    try:
        remove_tree(trash)
    finally:
        with _lock:
            _pending.discard(trash)


def drain() -> None:
    """Delete what is still pending (at exit: a daemon pool thread would not finish it, and the
    deleter is waited for)."""
    global _deleter
    with _lock:
        deleter, _deleter = _deleter, None
        left = list(_pending)
    if deleter is not None and deleter.pid == os.getpid():
        deleter.close(_EXIT_WAIT)
    for trash in left:
        _remove(trash)


def sweep(base: str) -> None:
    """Delete, in the background, what a process that exited before its deletions left under ``base``."""
    with _lock:
        if base in _swept:
            return
        _swept.add(base)
    pool.dispatch(functools.partial(_sweep, base))


def _sweep(base: str) -> None:
    with contextlib.suppress(OSError), os.scandir(base) as entries:
        left = [entry.path for entry in entries if entry.name.startswith(TRASH_PREFIX)]
    with _lock:
        left = [path for path in left if path not in _pending]  # this process's own: already queued
    for path in left:
        remove_tree(path)


def _after_fork_in_child() -> None:
    global _lock, _pending, _deleter, _no_deleter
    _lock = threading.Lock()
    _pending = set()  # the parent's to delete, not this child's
    if _deleter is not None and _deleter.process.stdin is not None:
        with contextlib.suppress(OSError):  # the parent's: its end of file must not wait for this child
            _deleter.process.stdin.close()
    _deleter = None
    _no_deleter = False


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(drain)
