"""``file://`` storage: a directory on this machine (``squall run``, ``squall server``, tests).

A URI is ``file://`` + the percent-encoded absolute path (``file:///data/storage/a%20b.txt``),
the form the process runner reports its output files in. Writes are atomic (a temporary
file renamed into place), so a reader never sees half a file. This backend reads any path
the process may read: confining it to a root is :class:`~runners.storage.deployment.DeploymentStorage`'s
job, which also resolves symbolic links before it lets a read through.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from runners import retry
from runners.storage.base import Reason, path_of, uri_of
from runners.storage.calls import SdkCalls

__all__ = ["FileStorage", "path_of", "uri_of"]

RUNNER = "storage-file"


def _explain(exc: BaseException) -> Reason | None:
    if isinstance(exc, FileNotFoundError | NotADirectoryError | IsADirectoryError):
        return Reason.MISSING
    if isinstance(exc, PermissionError):
        return Reason.DENIED
    return None


class FileStorage:
    """:class:`~runners.storage.base.Storage` over the local file system."""

    scheme = "file"

    def __init__(
        self, *, policy: retry.RetryPolicy = retry.DEFAULT_POLICY, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.calls = SdkCalls(RUNNER, _explain, policy, sleep)

    def read(self, uri: str) -> bytes:
        return self.calls(uri, path_of(uri).read_bytes)

    def write(self, uri: str, data: bytes) -> None:
        self.calls(uri, _write_atomic, path_of(uri), data)

    def list_prefix(self, prefix: str) -> dict[str, str]:
        base = path_of(prefix)
        found = self.calls(prefix, _walk, base)
        return {rel: uri_of(base / rel) for rel in found}

    def exists(self, uri: str) -> bool:
        return self.calls(uri, path_of(uri).is_file)

    def delete(self, uris: Iterable[str]) -> None:
        for uri in uris:
            self.calls(uri, path_of(uri).unlink, missing_ok=True)

    def delete_prefix(self, prefix: str) -> int:
        base = path_of(prefix)
        count = len(self.calls(prefix, _walk, base))
        if base.is_dir():
            self.calls(prefix, shutil.rmtree, base)
        return count


def _walk(base: Path) -> list[str]:
    if not base.is_dir():
        return []
    return sorted(p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file())


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
