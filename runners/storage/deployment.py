"""The deployment's one storage: a root URL that every write goes under, and a read allowlist.

Why a guard in front of the backends: a flow chooses the URIs its ``inputFiles`` name, and
the control plane reads them with *its* credentials and *its* disk. So the deployment reads
only what it is meant to share: anything under its root (``SQUALL_STORAGE``), and anything
under a prefix listed on purpose (``SQUALL_STORAGE_READ``); never ``file:///etc/shadow``,
never another tenant's bucket. A refused URI is refused before any I/O. Writes go under the
root only. ``kestra:///a/b`` (Kestra's own storage URIs, which flows pass along) is
``<root>/a/b`` whatever the backend::

    storage = open_storage("s3://squall-data/prod", read=["gs://shared-datasets/public/"])
    storage.root                          # 's3://squall-data/prod/'
    storage.uri("ns/f/e/inputs/a b.csv")  # 's3://squall-data/prod/ns/f/e/inputs/a%20b.csv'
    storage.read("kestra:///ns/f/e/inputs/a%20b.csv")   # the same object
    storage.read("s3://other-bucket/x")   # StorageError: REFUSED, no request sent

Root URL forms: ``file:///abs/dir``, ``s3://<bucket>[/<prefix>]``, ``gs://<bucket>[/<prefix>]``,
``az://<account>/<container>[/<prefix>]``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from runners.storage.base import Reason, Storage, StorageError, join, parse, path_of, uri_of

__all__ = ["SCHEMES", "DeploymentStorage", "check_root", "make_backend", "open_storage"]

SCHEMES = ("file", "s3", "gs", "az")
"""The schemes a root or an allowlist entry may have (``kestra://`` maps onto the root)."""


class _Area:
    """One readable area (the root or an allowlist prefix): a containment test over URIs."""

    def __init__(self, url: str) -> None:
        self.url = url if url.endswith("/") else url + "/"
        self.scheme, self.authority, self.key = check_root(self.url)
        self.path = path_of(self.url).resolve() if self.scheme == "file" else None

    def holds(self, scheme: str, uri: str) -> str | None:
        """The canonical form of ``uri`` when it lies in this area, else None.

        A file URI is resolved first (symbolic links included), so a link inside the root
        that leads out of it is outside; the resolved path is what gets read.
        """
        if scheme != self.scheme:
            return None
        if self.path is not None:
            resolved = path_of(uri).resolve()
            return uri_of(resolved) if resolved.is_relative_to(self.path) else None
        _, authority, key = parse(uri)
        if authority != self.authority or not key.startswith(self.key):
            return None
        return join(scheme, authority, key)


def check_root(url: str) -> tuple[str, str, str]:
    """``(scheme, authority, key)`` of a root or allowlist URL; StorageError (BAD_URI) saying what is wrong.

    Cheap and free of I/O and SDKs: settings are checked with it when they are loaded.
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme not in SCHEMES:
        known = ", ".join(f"{s}://" for s in SCHEMES)
        raise StorageError(url, Reason.BAD_URI, f"has an unknown storage scheme {scheme!r} (known: {known})")
    if scheme == "file":
        path_of(url)  # absolute, no host
        return scheme, "", ""
    _, authority, key = parse(url)
    if not authority:
        what = "storage account" if scheme == "az" else "bucket"
        raise StorageError(url, Reason.BAD_URI, f"names no {what} ({scheme}://<{what}>/...)")
    if scheme == "az" and not key.strip("/"):
        raise StorageError(url, Reason.BAD_URI, "names no container (az://<account>/<container>/...)")
    return scheme, authority, key


class DeploymentStorage:
    """:class:`~runners.storage.base.Storage` confined to a root (writes) and an allowlist (reads).

    ``backends`` maps a scheme to the backend that does the I/O (one per scheme in use).
    """

    def __init__(self, root: str, backends: Mapping[str, Storage], *, read: Iterable[str] = ()) -> None:
        self._root = _Area(root)
        self._allowed = tuple(_Area(prefix) for prefix in read)
        self.backends = dict(backends)
        for area in (self._root, *self._allowed):
            if area.scheme not in self.backends:
                raise StorageError(area.url, Reason.BAD_URI, f"has no {area.scheme}:// backend configured")

    @property
    def root(self) -> str:
        """The root URL, ending in ``/``."""
        return self._root.url

    @property
    def read_allowlist(self) -> tuple[str, ...]:
        return tuple(area.url for area in self._allowed)

    @property
    def local_root(self) -> Path | None:
        """The root directory when the storage is on this machine's disk, else None."""
        return self._root.path

    def uri(self, relative: str = "") -> str:
        """The URI of ``relative`` (a plain ``/``-separated path, not encoded) under the root."""
        relative = relative.lstrip("/")  # always under the root, never an absolute path
        if any(part in (".", "..") for part in relative.split("/")):
            raise StorageError(relative, Reason.BAD_URI, "has '.' or '..' segments")
        if self._root.path is not None:
            return uri_of(self._root.path / relative) + ("/" if relative.endswith("/") else "")
        return self.root + quote(relative, safe="/")

    # ------------------------------------------------------------ the guard

    def _canonical(self, uri: str, areas: tuple[_Area, ...]) -> tuple[Storage, str]:
        """(backend, canonical URI) for a URI inside one of ``areas``; StorageError otherwise."""
        given = uri
        scheme = urlsplit(uri).scheme.lower()
        if scheme == "kestra":
            uri, scheme = self._from_kestra(uri), self._root.scheme
        if scheme not in {area.scheme for area in areas}:
            readable = ", ".join(sorted({f"{area.scheme}://" for area in areas} | {"kestra://"}))
            raise StorageError(
                given,
                Reason.REFUSED,
                f"has the scheme {scheme!r}, which this deployment's storage does not read"
                f" (it reads {readable} URIs under {self._describe(areas)})",
            )
        for area in areas:
            canonical = area.holds(scheme, uri)
            if canonical is not None:
                return self.backends[scheme], canonical
        raise StorageError(given, Reason.REFUSED, f"is outside {self._describe(areas)}")

    def _from_kestra(self, uri: str) -> str:
        parts = urlsplit(uri)
        relative = unquote(parts.netloc + parts.path).lstrip("/")
        if any(part == ".." for part in relative.split("/")):
            where = "the storage directory" if self._root.path is not None else "the storage root"
            raise StorageError(uri, Reason.REFUSED, f"is outside {where} {self._root.url}")
        return self.uri(relative)

    def _describe(self, areas: tuple[_Area, ...]) -> str:
        root = self._root
        text = (
            f"the storage directory {root.path}" if root.path is not None else f"the storage root {root.url}"
        )
        others = [area.url for area in areas if area is not root]
        return text + (f" and the read allowlist ({', '.join(others)})" if others else "")

    def _readable(self, uri: str) -> tuple[Storage, str]:
        return self._canonical(uri, (self._root, *self._allowed))

    def _writable(self, uri: str) -> tuple[Storage, str]:
        return self._canonical(uri, (self._root,))

    def readable(self, uri: str) -> bool:
        """Whether ``uri`` may be read here (checked without I/O beyond resolving a local path)."""
        try:
            self._readable(uri)
        except StorageError:
            return False
        return True

    def canonical(self, uri: str) -> str:
        """The URI that ``uri`` names, as the backend spells it (``kestra:///a`` -> ``<root>/a``)."""
        return self._readable(uri)[1]

    # ------------------------------------------------------------ Storage

    def read(self, uri: str) -> bytes:
        backend, target = self._readable(uri)
        return _renamed(uri, target, backend.read)

    def write(self, uri: str, data: bytes) -> None:
        backend, target = self._writable(uri)
        _renamed(uri, target, backend.write, data)

    def list_prefix(self, prefix: str) -> dict[str, str]:
        backend, target = self._readable(prefix if prefix.endswith("/") else prefix + "/")
        return dict(_renamed(prefix, target, backend.list_prefix))

    def exists(self, uri: str) -> bool:
        backend, target = self._readable(uri)
        return bool(_renamed(uri, target, backend.exists))

    def delete(self, uris: Iterable[str]) -> None:
        chosen: dict[int, tuple[Storage, list[str]]] = {}
        for uri in uris:  # every URI is checked before anything is deleted
            backend, target = self._writable(uri)
            chosen.setdefault(id(backend), (backend, []))[1].append(target)
        for backend, targets in chosen.values():
            backend.delete(targets)

    def delete_prefix(self, prefix: str) -> int:
        backend, target = self._writable(prefix if prefix.endswith("/") else prefix + "/")
        return int(_renamed(prefix, target, backend.delete_prefix))


def _renamed(given: str, target: str, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(target, *args)``, its StorageError naming the URI the caller gave (a kestra:// one)."""
    try:
        return fn(target, *args)
    except StorageError as exc:
        if exc.uri == target and given != target:
            raise StorageError(given, exc.reason, exc.detail, transient=exc.transient) from exc
        raise


def make_backend(scheme: str, **options: Any) -> Storage:
    """The backend of ``scheme``; ``options`` go to its constructor (``endpoint_url``, ``client``...)."""
    if scheme == "file":
        from runners.storage.file import FileStorage

        return FileStorage(**options)
    if scheme == "s3":
        from runners.storage.s3 import S3Storage

        return S3Storage(**options)
    if scheme == "gs":
        from runners.storage.gcs import GcsStorage

        return GcsStorage(**options)
    if scheme == "az":
        from runners.storage.azure_blob import AzureBlobStorage

        return AzureBlobStorage(**options)
    raise StorageError(f"{scheme}://", Reason.BAD_URI, f"has an unknown storage scheme {scheme!r}")


def open_storage(
    url: str,
    *,
    read: Iterable[str] = (),
    backends: Mapping[str, Storage] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> DeploymentStorage:
    """The deployment storage rooted at ``url``, also reading under each prefix in ``read``.

    Every scheme in use gets its backend from ``backends`` (seams: an already built one) or
    :func:`make_backend` with ``options[scheme]`` (``{"s3": {"endpoint_url": ...}}``). No
    SDK is imported here: each backend imports its own on first use. A malformed URL (an
    unknown scheme, no bucket) is a :class:`StorageError` (BAD_URI) naming it.
    """
    read = tuple(read)
    schemes = {check_root(url)[0]} | {check_root(prefix)[0] for prefix in read}
    chosen = dict(backends or {})
    for scheme in sorted(schemes - chosen.keys()):
        chosen[scheme] = make_backend(scheme, **dict((options or {}).get(scheme, {})))
    return DeploymentStorage(url, chosen, read=read)
