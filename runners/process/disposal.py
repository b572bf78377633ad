"""Removing job directories off the critical path: renamed aside at once, deleted on a pool thread.

A finished job's directory holds a handful of files; deleting them is a dozen metadata
operations, each a journal write on the machine's disk, and on a busy virtual disk these
cost milliseconds: more than the rest of a short task's bookkeeping. ``dispose`` only
needs the directory gone *by its name* (nobody may find it any more), so :func:`discard`
renames it to ``<base_dir>/.disposed-<name>-<random>`` (one operation; ``.`` starts no job
name, so no job can be found there) and a pool thread deletes it.

Deletions still pending when the interpreter exits are done then (``atexit``); those of a
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
import threading

from runners.process import pool
from runners.process.files import remove_tree

__all__ = ["TRASH_PREFIX", "discard", "discard_later", "drain", "sweep"]

TRASH_PREFIX = ".disposed-"

_lock = threading.Lock()
_pending: set[str] = set()
_swept: set[str] = set()


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
    with _lock:
        _pending.add(path)
    try:
        pool.dispatch(functools.partial(_remove, path))
    except BaseException:  # no thread to be had: delete now
        _remove(path)
        raise


def _remove(trash: str) -> None:
    try:
        remove_tree(trash)
    finally:
        with _lock:
            _pending.discard(trash)


def drain() -> None:
    """Delete what is still pending (at exit: a daemon pool thread would not finish it)."""
    with _lock:
        left = list(_pending)
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
    global _lock, _pending
    _lock = threading.Lock()
    _pending = set()  # the parent's to delete, not this child's


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(drain)
