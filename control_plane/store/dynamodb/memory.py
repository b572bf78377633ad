"""What one store instance remembers of the executions it read or wrote, and why that is safe.

A warm Lambda container keeps its store: remembering saves reads, never correctness.

* Split snapshots: ``(version, task runs)`` of an execution as last read or written. A read
  checks META's version first and fetches only the task runs changed since (META's ring
  names them), so a snapshot is only ever a starting point.
* Documents (:class:`DocState`): a document's job entries, inline log size and task runs at
  one version, so the service's save of what it just read needs no extra read; every write
  is conditional on that version (and on each job entry's), so a stale one is refused.
* Seen split: an execution seen in split mode stays split for good, so its jobs are looked
  up as ``JOB#`` records directly.

Loop values (immutable) are cached apart, in :mod:`~control_plane.store.dynamodb.values`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

from msgspec import Struct
from msgspec.structs import replace

from control_plane.engine.model import TaskRun
from control_plane.store.codec import loads
from control_plane.store.dynamodb.items import Item, decompress
from control_plane.store.dynamodb.records import JOBS_VERSION, doc_jobs

__all__ = ["CACHE_SIZE", "DocState", "Memory", "lru_put"]

CACHE_SIZE = 32  # executions whose last consistent snapshot a store instance keeps

K = TypeVar("K")
V = TypeVar("V")


def lru_put(cache: OrderedDict[K, V], key: K, value: V, size: int) -> None:
    """Insert as most recent and drop the least recent beyond ``size`` (callers hold the lock)."""
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > size:
        cache.popitem(last=False)


class DocState(Struct, frozen=True):
    """What a store instance knows of a document beyond the execution, at one version.

    ``jobs`` maps job names to their entries (wire format) as read or written at ``version``;
    ``update_job`` may have moved them on since (only forward), which the entry conditions of
    the next write detect. ``active`` is whether the item has its active-index keys.
    """

    version: int
    jobs: dict[str, Item]
    log_bytes: int
    active: bool
    taskruns: dict[str, dict[str, Any]]  # the stored task runs, as ``taskrun_to_json`` dicts by id
    jobs_version: int = -1
    """Of the entries' blob (``records.JOBS_VERSION``); -1: a document that keeps them in a map."""

    @classmethod
    def of(cls, item: Item) -> DocState:
        body = loads(decompress(item["d"]["B"]))
        return cls(
            int(item["v"]["N"]),
            doc_jobs(item),
            int(item.get("lb", {}).get("N", "0")),
            "aq" in item,
            {raw["id"]: raw for raw in body["t"]},
            int(item[JOBS_VERSION]["N"]) if JOBS_VERSION in item else -1,
        )


class Memory:
    """The per-instance caches of executions (thread-safe, bounded, least recently used out)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshots: OrderedDict[str, tuple[int, dict[str, TaskRun]]] = OrderedDict()
        self._docs: OrderedDict[str, DocState] = OrderedDict()  # documents' jobs, as last read or written
        # Executions seen in split mode: that is for good, so their jobs are looked up as JOB# directly.
        self._split: OrderedDict[str, None] = OrderedDict()

    # -- split mode

    def snapshot(self, execution_id: str) -> tuple[int, dict[str, TaskRun]] | None:
        with self._lock:
            return self._snapshots.get(execution_id)

    def remember(self, execution_id: str, version: int, taskruns: dict[str, TaskRun]) -> None:
        """A consistent split snapshot (which also says the execution is split, for good)."""
        with self._lock:
            lru_put(self._split, execution_id, None, CACHE_SIZE * 32)
            lru_put(self._snapshots, execution_id, (version, taskruns), CACHE_SIZE)

    def forget_snapshot(self, execution_id: str) -> None:
        with self._lock:
            self._snapshots.pop(execution_id, None)

    def is_split(self, execution_id: str | None) -> bool:
        with self._lock:
            return execution_id in self._split

    # -- document mode

    def document(self, execution_id: str) -> DocState | None:
        with self._lock:
            return self._docs.get(execution_id)

    def know(self, execution_id: str, doc: DocState) -> None:
        with self._lock:
            lru_put(self._docs, execution_id, doc, CACHE_SIZE * 8)

    def forget_document(self, execution_id: str) -> None:
        with self._lock:
            self._docs.pop(execution_id, None)

    def job_written(
        self, execution_id: str, name: str, written: Callable[[Item], Item], jobs_version: int = -1
    ) -> None:
        """``update_job`` moved one entry on (``written`` maps the entry known to the one stored
        now): the next write conditions on its new version. ``jobs_version``: the entries' blob
        is now at this version (-1: a map's entry was written); known at any other, it is dropped."""
        with self._lock:
            known = self._docs.get(execution_id)
            if known is None:
                return
            if name in known.jobs and (jobs_version < 0 or known.jobs_version == jobs_version - 1):
                known.jobs[name] = written(known.jobs[name])
                if jobs_version >= 0:
                    self._docs[execution_id] = replace(known, jobs_version=jobs_version)
            else:
                self._docs.pop(execution_id)  # an entry it never saw, or a blob moved: read it again

    def registered(self, execution_id: str, version: int) -> None:
        """The visit set a document's active keys without moving its version."""
        with self._lock:
            known = self._docs.get(execution_id)
            if known is not None and known.version == version:
                self._docs[execution_id] = replace(known, active=True)
