"""The storage seam: one small protocol over every object store a deployment may use.

Why a seam: task output files, API uploads and flow files must be readable by whichever
process needs them next (a Lambda container that did not write them, a runner in another
cloud), so they live in one deployment-wide object store addressed by URI, and every side
(control plane and runners) reads and writes it through the same five operations::

    storage = open_storage("s3://my-bucket/squall")          # runners.storage.open_storage
    uri = storage.uri("ns/flow/exec/inputs/data/report.csv")  # s3://my-bucket/squall/ns/...
    storage.write(uri, b"a,b\\n")
    storage.read(uri)                                         # b"a,b\\n"
    storage.list_prefix(storage.uri("ns/flow/exec/"))                # {"inputs/data/report.csv": uri}

URIs are RFC 3986 text: ``<scheme>://<authority>/<percent-encoded path>``; a key or a path is
the path percent-decoded, so ``s3://b/dir%20one/na%C3%AFve.txt`` is the key ``dir one/naïve.txt``
(a URI holds no whitespace, which is how :func:`is_uri` tells a URI from file content).

Every failure escapes as :class:`StorageError` naming the URI and why (a missing object,
access denied, a bad or refused URI, a backend still failing after retries).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from enum import Enum
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import quote, unquote, urlsplit

__all__ = [
    "URI_PATTERN",
    "Reason",
    "Storage",
    "StorageError",
    "is_uri",
    "join",
    "parse",
    "path_of",
    "uri_of",
]

URI_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S*")
"""A URI, as a whole value: a scheme (RFC 3986 letters), ``://``, then no whitespace at all."""


def is_uri(value: str) -> bool:
    """Whether ``value`` (surrounding whitespace stripped) is one URI token rather than text.

    ``"kestra:///t/f/x/out.csv"`` and ``"s3://bucket/key"`` are; ``"see https://example.com"``,
    a script that mentions a URL, or any text with a line break inside is not.
    """
    return URI_PATTERN.fullmatch(value.strip()) is not None


class Reason(Enum):
    """Why a storage operation failed: callers branch on this, never on message text.

    Each value reads as the end of a sentence that starts with the URI.
    """

    MISSING = "does not exist"
    DENIED = "is not accessible (access denied)"
    BAD_URI = "is not a valid storage URI"
    REFUSED = "is outside this deployment's storage"
    UNAVAILABLE = "is unreachable (storage unavailable)"
    FAILED = "failed"


class StorageError(Exception):
    """A storage operation failed; ``uri`` names the object and ``reason`` says why.

    One type for every backend, so the control plane (and a runner) handles "the file is not
    there" the same way on a local disk, S3, GCS or Azure. The message is the URI followed
    by ``detail`` (by default the reason's text): ``'s3://b/k' does not exist``.
    ``transient`` is True when the backend was still failing after the retry policy gave up:
    trying later may work.
    """

    def __init__(self, uri: str, reason: Reason, detail: str = "", *, transient: bool = False) -> None:
        self.uri = uri
        self.reason = reason
        self.detail = detail or reason.value
        self.transient = transient
        super().__init__(f"{uri!r} {self.detail}")


def parse(uri: str) -> tuple[str, str, str]:
    """``(scheme, authority, key)`` of ``uri``, the key percent-decoded and without its leading ``/``.

    A key with ``.`` or ``..`` segments is a :class:`StorageError` (BAD_URI): object stores
    keep such keys literally while every tool that shows them collapses them, so a prefix
    check over them would not mean what it says.
    """
    parts = urlsplit(uri)
    if not parts.scheme or "://" not in uri or parts.query or parts.fragment:
        raise StorageError(uri, Reason.BAD_URI, "is not a storage URI (<scheme>://<bucket>/<key>)")
    key = unquote(parts.path).lstrip("/")
    if any(segment in (".", "..") for segment in key.split("/")):
        raise StorageError(uri, Reason.BAD_URI, "has '.' or '..' segments, which a storage key may not have")
    return parts.scheme.lower(), parts.netloc, key


def join(scheme: str, authority: str, key: str) -> str:
    """The URI of ``key`` (plain text) under ``<scheme>://<authority>/``, percent-encoded."""
    return f"{scheme}://{authority}/{quote(key, safe='/')}"


def path_of(uri: str) -> Path:
    """The local path a ``file://`` URI names (not resolved: links are the caller's concern)."""
    parts = urlsplit(uri)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
        raise StorageError(uri, Reason.BAD_URI, "is not a local file:// URI")
    path = unquote(parts.path)
    if not path.startswith("/"):
        raise StorageError(uri, Reason.BAD_URI, "is not a file:// URI with an absolute path")
    return Path(path)


def uri_of(path: Path, *, directory: bool = False) -> str:
    """The ``file://`` URI of ``path`` (absolute), ending in ``/`` for a directory prefix."""
    text = "file://" + quote(str(path.absolute()))
    return text + "/" if directory and not text.endswith("/") else text


@runtime_checkable
class Storage(Protocol):
    """What every backend (``file``, ``s3``, ``gs``, ``az``) and the deployment's storage do.

    Five operations, each there for a caller that needs it::

        storage.write(uri, data)      # API uploads, runners' output files
        storage.read(uri)             # a later task's inputFiles, the API serving a file
        storage.list_prefix(prefix)          # a task run's outputFiles, whatever the runner wrote
        storage.exists(uri)           # idempotent writers and reattaching runners check first
        storage.delete(uris) / storage.delete_prefix(prefix)  # a refused upload, purges
    """

    def read(self, uri: str) -> bytes:
        """The whole object: task inputs are staged as bytes (``JobSpec.input_files``)."""
        ...

    def write(self, uri: str, data: bytes) -> None:
        """Create or replace the object: an upload or an output written twice leaves the last one."""
        ...

    def list_prefix(self, prefix: str) -> Mapping[str, str]:
        """Every object under ``prefix`` (a URI ending in ``/``) as {path relative to it: URI}.

        How a task run's output files are found whatever wrote them (the runner knows only
        the prefix it was given); every page is read, nested paths included.
        """
        ...

    def exists(self, uri: str) -> bool:
        """Whether the object is there: a cheap check that reads no content (a HEAD)."""
        ...

    def delete(self, uris: Iterable[str]) -> None:
        """Remove these objects (missing ones are fine): an API request refused after its
        uploads were written takes them back, leaving nothing behind."""
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Remove everything under ``prefix``; the number of objects removed (purges, tests)."""
        ...
