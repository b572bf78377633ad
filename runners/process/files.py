"""Small file helpers on plain descriptors and str paths: no buffering layers, no Path objects.

A short job's whole bookkeeping is a handful of small files; building ``Path`` objects and
buffered file objects for each costs more than the job. Status files are replaced
atomically (temp file + rename), so a reader sees the old file or the new one, never half.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote_from_bytes

__all__ = [
    "CREATE",
    "READ_SIZE",
    "dumps",
    "file_uri",
    "mkdir_fresh",
    "nonempty_dir",
    "parse_json",
    "read_bytes",
    "read_json",
    "remove_tree",
    "write_all",
    "write_atomic",
]

READ_SIZE = 1 << 16
CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def dumps(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode("utf-8")


def write_atomic(path: str, data: bytes) -> None:
    """Readers see the old file or the new one, never half of it (temp file + rename).

    No fsync: after a power loss the jobs are gone anyway, and a status file lost with them
    reads as "no exit recorded", which ``poll`` reports as LOST: the safe answer.
    """
    head, name = os.path.split(path)
    tmp = f"{head}/.{name}.{os.getpid()}.{threading.get_ident()}.tmp"
    fd = os.open(tmp, CREATE, 0o644)
    try:
        write_all(fd, data)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)


def read_bytes(path: str) -> bytes | None:
    """A small file's content, or None when it cannot be read (missing...)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, READ_SIZE)
        if len(data) == READ_SIZE:  # rare: status files are small
            chunks = [data]
            while chunk := os.read(fd, READ_SIZE):
                chunks.append(chunk)
            data = b"".join(chunks)
        return data
    except OSError:
        return None
    finally:
        os.close(fd)


def parse_json(raw: bytes | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def read_json(path: str) -> dict[str, Any] | None:
    return parse_json(read_bytes(path))


def mkdir_fresh(path: str) -> None:
    """An empty directory at ``path``: whatever an abandoned attempt left there is removed."""
    try:
        os.mkdir(path)
    except FileExistsError:
        remove_tree(path)
        with contextlib.suppress(FileExistsError):  # made again meanwhile, empty: a called-off shim's
            os.mkdir(path)


def remove_tree(path: str) -> None:
    """``rm -rf path`` (errors ignored), with a one-syscall fast path for an empty directory."""
    try:
        os.rmdir(path)
    except FileNotFoundError:
        return
    except NotADirectoryError:  # a file, or a symlink (rmtree refuses those)
        with contextlib.suppress(OSError):
            os.unlink(path)
    except OSError:  # not empty
        shutil.rmtree(path, ignore_errors=True)


def file_uri(path: str | Path) -> str:
    """``Path(path).as_uri()`` for an absolute path, without building a Path."""
    return "file://" + quote_from_bytes(os.fsencode(path))


def nonempty_dir(path: str) -> bool:
    try:
        with os.scandir(path) as entries:
            return next(entries, None) is not None
    except OSError:
        return False
