"""The KV store: Kestra's namespace key-value pairs, in the deployment storage.

One layout, used by the KV API (:mod:`control_plane.api.kestra_kv`), the ``core.kv`` tasks
and the ``kv()`` expression function: one JSON object per key at ``_kv/<namespace>/<key>.json``
under the storage root (a directory locally, S3, GCS or Azure Blob in the cloud), so every
container of a deployment sees the same pairs and no flow's files can collide with them
(namespaces start with a letter or a digit). Writes are last-writer-wins, as in Kestra; each
write bumps the pair's ``revision``.

A record is ``{"type", "value", "revision", "created", "updated"}`` plus ``"expires"`` when
the pair was set with a ``ttl``. An expired pair reads as Kestra's InternalKVStore reads it:
``get`` deletes it and fails with "The requested value has expired"; listings leave it out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from control_plane.engine.model import iso
from control_plane.errors import SquallError
from control_plane.service.storage import StorageError, TaskStorage

__all__ = [
    "KEY_PATTERN",
    "MAX_VALUE_BYTES",
    "KvError",
    "KvExpired",
    "KvStore",
    "kv_type",
]

KEY_PATTERN = r"^[a-zA-Z0-9][a-zA-Z0-9._-]*$"  # Kestra's KVStore.validateKey
MAX_VALUE_BYTES = 1024 * 1024


class KvError(SquallError):
    """A KV operation that cannot be done: its message is what the task or the API reports."""


class KvExpired(KvError):
    """The pair's ``ttl`` has passed (Kestra's ResourceExpiredException)."""


def kv_type(value: Any) -> str:
    """The KV type of a value a task sets (no ``kvType``): what its JSON form is."""
    if isinstance(value, bool):
        return "BOOLEAN"
    if isinstance(value, int | float):
        return "NUMBER"
    if isinstance(value, dict | list):
        return "JSON"
    return "STRING"


class KvStore:
    """Reads and writes pairs; ``now`` is the deployment's clock (ttl, dates)."""

    def __init__(self, storage: TaskStorage, now: Callable[[], datetime]) -> None:
        self.storage = storage
        self.now = now

    @staticmethod
    def check(namespace: str, key: str | None = None) -> None:
        """KvError unless the namespace is one a flow could have and the key is Kestra's shape."""
        from control_plane.flows.models import NAMESPACE_PATTERN  # the flow language's rule only

        if not re.match(NAMESPACE_PATTERN, namespace or ""):
            raise KvError(f"invalid namespace {namespace!r}: lowercase letters, digits, . _ -")
        if key is not None and not re.match(KEY_PATTERN, key or ""):
            raise KvError(f"invalid key {key!r}: letters, digits, . _ - (not first)")

    def _uri(self, namespace: str, key: str) -> str:
        return self.storage.uri(f"_kv/{namespace}/{key}.json")

    def record(self, namespace: str, key: str) -> dict[str, Any] | None:
        """The stored record, None if absent or expired (deleted then, as Kestra does)."""
        self.check(namespace, key)
        uri = self._uri(namespace, key)
        try:
            if not self.storage.exists(uri):
                return None
            record: dict[str, Any] = json.loads(self.storage.read(uri))
        except StorageError as exc:
            if exc.transient:
                raise KvError(f"the KV store is unavailable, try again: {exc}") from None
            return None
        if self._expired(record):
            self.storage.delete([uri])
            return None
        return record

    def _expired(self, record: dict[str, Any]) -> bool:
        expires = record.get("expires")
        return expires is not None and self.now() > datetime.fromisoformat(expires)

    def get(self, namespace: str, key: str) -> Any:
        """The value; KeyError when absent, KvExpired when its ttl has passed."""
        self.check(namespace, key)
        uri = self._uri(namespace, key)
        try:
            if not self.storage.exists(uri):
                raise KeyError(key)
            record: dict[str, Any] = json.loads(self.storage.read(uri))
        except StorageError as exc:
            if exc.transient:
                raise KvError(f"the KV store is unavailable, try again: {exc}") from None
            raise KeyError(key) from None
        if self._expired(record):
            self.storage.delete([uri])
            raise KvExpired("The requested value has expired")
        return record["value"]

    def put(
        self,
        namespace: str,
        key: str,
        kind: str,
        value: Any,
        *,
        overwrite: bool = True,
        ttl: timedelta | None = None,
    ) -> dict[str, Any]:
        """Store a pair (a new revision); KvError if it exists and ``overwrite`` is false."""
        self.check(namespace, key)
        encoded = json.dumps(value)
        if len(encoded.encode()) > MAX_VALUE_BYTES:
            raise KvError(f"a KV value is at most {MAX_VALUE_BYTES} bytes")
        previous = self.record(namespace, key)
        if previous is not None and not overwrite:
            raise KvError(
                f"Cannot set value for key '{key}'. Key already exists and `overwrite` is set to `false`."
            )
        moment = self.now()
        now = iso(moment)
        record = {
            "type": kind,
            "value": value,
            "revision": int((previous or {}).get("revision", 0)) + 1,
            "created": (previous or {}).get("created", now),
            "updated": now,
        }
        if ttl is not None:
            record["expires"] = iso(moment + ttl)
        self.storage.write(self._uri(namespace, key), json.dumps(record).encode())
        return record

    def delete(self, namespace: str, key: str) -> bool:
        """Remove a pair: True if it was there (an expired one was not)."""
        if self.record(namespace, key) is None:
            return False
        self.storage.delete([self._uri(namespace, key)])
        return True

    def pairs(self, namespace: str | None = None) -> list[tuple[str, str]]:
        """(namespace, key) of every stored pair, of one namespace when given (unexpired or not)."""
        if namespace is not None:
            self.check(namespace)
        prefix = f"_kv/{namespace}/" if namespace is not None else "_kv/"
        listed = self.storage.list_prefix(self.storage.uri(prefix))
        pairs: list[tuple[str, str]] = []
        for relative in listed:
            ns, _, name = (f"{namespace}/{relative}" if namespace is not None else relative).rpartition("/")
            if name.endswith(".json") and "/" not in ns:
                pairs.append((ns, name.removesuffix(".json")))
        return pairs

    def keys(self, namespace: str) -> list[str]:
        """The keys of a namespace's live pairs (Kestra's GetKeys leaves expired ones out)."""
        return [key for ns, key in self.pairs(namespace) if self.record(ns, key) is not None]
