"""The control plane's view of the deployment storage (:mod:`runners.storage`).

One storage for the whole deployment (``SQUALL_STORAGE``: ``file://``, ``s3://``, ``gs://``,
``az://``) holds task output files and API uploads, so whichever container handles the next
step can read them. This module adds what only the control plane knows:

- where one task-run attempt's output files go, handed to its runner as the output prefix:
  ``<root>/<namespace>/<flow>/<execution>/<taskrun>/<attempt>/``;
- where an API upload goes: ``<root>/<namespace>/<flow>/<execution>/inputs/<input>/<file>``,
  named by its ``kestra:///`` URI (Kestra's layout; ``kestra:///a/b`` is ``<root>/a/b``
  everywhere, so the URI a client sees stays the same whichever backend holds it);
- reading a URI a flow names in ``inputFiles``.

Only URIs under the root, or under a prefix of the read allowlist (``SQUALL_STORAGE_READ``),
are ever read: a flow cannot use ``inputFiles`` to read ``file:///etc/shadow`` from the
control plane's disk or another bucket with its credentials. Which text is a URI at all is
:func:`is_uri`'s rule: one whitespace-free token ``<scheme>://...``. A URI this storage
cannot read (another scheme, outside the root, a file that is gone) is a
:class:`StorageError` that says why, never a reason to treat the text as something else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path, PurePath
from typing import Any

from runners.storage import (
    URI_PATTERN,
    DeploymentStorage,
    Reason,
    StorageError,
    is_uri,
    open_storage,
    path_of,
    uri_of,
)

__all__ = ["URI_PATTERN", "LocalStorage", "StorageError", "TaskStorage", "is_uri", "open_task_storage"]


class TaskStorage:
    """The deployment storage with the control plane's layout on top; ``storage`` does the I/O."""

    def __init__(self, storage: DeploymentStorage) -> None:
        self.storage = storage

    @property
    def url(self) -> str:
        """The root URL (ending in ``/``): where everything this deployment writes goes."""
        return self.storage.root

    def execution_prefix(self, namespace: str, flow_id: str, execution_id: str) -> str:
        """Where every file of one execution lives (outputs, uploads), as a URI ending in ``/``."""
        return self.uri(f"{namespace}/{flow_id}/{execution_id}/")

    def prefix(self, namespace: str, flow_id: str, execution_id: str, taskrun_id: str, attempt: int) -> str:
        """Where one task-run attempt's output files go, as a URI ending in ``/``."""
        return self.uri(f"{namespace}/{flow_id}/{execution_id}/{taskrun_id}/{attempt}/")

    def uri(self, relative: str | PurePath) -> str:
        """The URI of ``relative`` (a ``/``-separated path under the root, plain text)."""
        return self.storage.uri(PurePath(relative).as_posix() + ("/" if str(relative).endswith("/") else ""))

    def owns(self, value: str) -> bool:
        """Whether ``value`` is a URI this storage may read (:func:`is_uri` tells URIs from text)."""
        return self.storage.readable(value)

    def canonical(self, uri: str) -> str:
        """``uri`` as its backend spells it (``kestra:///a`` -> ``<root>/a``), if it may be read."""
        return self.storage.canonical(uri)

    def read(self, uri: str) -> bytes:
        return self.storage.read(uri)

    def write(self, uri: str, data: bytes) -> None:
        self.storage.write(uri, data)

    def list_prefix(self, prefix: str) -> Mapping[str, str]:
        return self.storage.list_prefix(prefix)

    def exists(self, uri: str) -> bool:
        return self.storage.exists(uri)

    def delete(self, uris: Iterable[str]) -> None:
        self.storage.delete(uris)

    def delete_prefix(self, prefix: str) -> int:
        return self.storage.delete_prefix(prefix)


class LocalStorage(TaskStorage):
    """A deployment storage in a directory of this machine (``squall run``, ``squall server``).

    ``root`` is that directory. Removing a prefix also removes the directories it alone
    kept (an object store has no directories to leave behind), never the root itself.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        read: Iterable[str] = (),
        options: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.root = Path(root).resolve()
        super().__init__(open_storage(uri_of(self.root, directory=True), read=read, options=options))

    def uri(self, relative: str | PurePath) -> str:
        """As :meth:`TaskStorage.uri`; an absolute path inside the root is accepted as well."""
        if isinstance(relative, Path) and relative.is_absolute():
            resolved = relative.resolve()
            if not resolved.is_relative_to(self.root):
                where = f"is outside the storage directory {self.root}"
                raise StorageError(str(relative), Reason.REFUSED, where)
            return uri_of(resolved)
        return super().uri(relative)

    def delete_prefix(self, prefix: str) -> int:
        removed = super().delete_prefix(prefix)
        directory = path_of(self.storage.canonical(prefix if prefix.endswith("/") else prefix + "/"))
        for parent in (directory, *directory.parents):
            if parent == self.root or not parent.is_relative_to(self.root):
                break
            try:
                parent.rmdir()  # only when empty: other executions' files stay
            except FileNotFoundError:
                continue
            except OSError:
                break
        return removed


def open_task_storage(
    url: str, *, read: Iterable[str] = (), options: Mapping[str, Mapping[str, Any]] | None = None
) -> TaskStorage:
    """The deployment storage at ``url`` (a :class:`LocalStorage` for a ``file://`` root).

    ``options`` are per-scheme backend options (``{"s3": {"endpoint_url": ...}}``). A
    malformed ``url`` or allowlist entry is a :class:`StorageError` naming it.
    """
    read = tuple(read)
    if url.startswith("file:"):
        storage = open_storage(url, read=read, options=options)  # validates the URL and the list
        assert storage.local_root is not None
        return LocalStorage(storage.local_root, read=read, options=options)
    return TaskStorage(open_storage(url, read=read, options=options))
