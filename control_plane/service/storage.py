"""The local object store: a directory that holds task output files under stable URIs.

Runners copy a task's ``outputFiles`` under the prefix this gives them
(``file://<root>/<namespace>/<flow>/<execution>/<taskrun>/<attempt>/``) and report a
``file://`` URI per file. A later task may name such a URI as an ``inputFiles`` value; it is
read back from here. Kestra's ``kestra:///...`` URIs map onto the same root, so flows that pass
``{{ outputs.x.outputFiles['a.csv'] }}`` along work unchanged.

Only URIs inside the root are ever read: a flow cannot use ``inputFiles`` to read
``file:///etc/shadow`` from the control plane's disk. Which text is a URI at all is
:func:`is_uri`'s rule: one whitespace-free token ``<scheme>://...``. A URI this store cannot
read (another scheme, outside the root, a file that is gone) is a :class:`StorageError` that
says why, never a reason to treat the text as something else.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

__all__ = ["SCHEMES", "URI_PATTERN", "LocalStorage", "StorageError", "is_uri"]

URI_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S*")
"""A URI, as a whole value: a scheme (RFC 3986 letters), ``://``, then no whitespace at all."""

SCHEMES = ("file", "kestra")
"""The schemes this store reads (``kestra:///a/b`` is ``<root>/a/b``)."""


def is_uri(value: str) -> bool:
    """Whether ``value`` (surrounding whitespace stripped) is one URI token rather than text.

    ``"kestra:///t/f/x/out.csv"`` and ``"s3://bucket/key"`` are; ``"see https://example.com"``,
    a script that mentions a URL, or any text with a line break inside is not.
    """
    return URI_PATTERN.fullmatch(value.strip()) is not None


class StorageError(ValueError):
    """A URI that is not in this store, or a file that is gone."""


class LocalStorage:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def prefix(self, namespace: str, flow_id: str, execution_id: str, taskrun_id: str, attempt: int) -> str:
        """Where one task-run attempt's output files go, as a ``file://`` URI ending in ``/``."""
        path = self.root / namespace / flow_id / execution_id / taskrun_id / str(attempt)
        return path.as_uri() + "/"

    def owns(self, value: str) -> bool:
        """Whether ``value`` is a URI this store can read (:func:`is_uri` tells URIs from text)."""
        try:
            self.path(value)
        except StorageError:
            return False
        return True

    def path(self, uri: str) -> Path:
        parts = urlsplit(uri)
        if parts.scheme == "file":
            path = Path(unquote(parts.path))
        elif parts.scheme == "kestra":
            path = self.root / unquote(parts.path).lstrip("/")
        else:
            readable = " and ".join(f"{s}://" for s in SCHEMES)
            raise StorageError(
                f"{uri!r} has the scheme {parts.scheme!r}, which this deployment's storage cannot read"
                f" (it reads {readable} URIs inside its storage directory)"
            )
        resolved = path.resolve()
        if not resolved.is_relative_to(self.root):
            raise StorageError(f"{uri!r} is outside the storage directory {self.root}")
        return resolved

    def read(self, uri: str) -> bytes:
        path = self.path(uri)
        try:
            return path.read_bytes()
        except OSError as exc:
            raise StorageError(f"cannot read {uri}: {exc.strerror or exc}") from exc

    def uri(self, path: Path) -> str:
        return "file://" + quote(str(path.resolve()))
