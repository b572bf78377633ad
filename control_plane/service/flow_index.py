"""A small index of flows with some property, kept in one versioned store record.

Written when a flow is deployed (its latest revision has the property or not), read where a
scan of every flow would be too costly: the end of each execution (flows with a Flow
trigger), each tick (flows with ``concurrency``). Writes are conditional on the version read
(``put_trigger(expected_version=...)``): of two deploys racing, the loser reads and writes
again, so no entry is lost. An entry may outlive its reason (a deleted flow): readers check
the flow itself before acting.
"""

from __future__ import annotations

from control_plane.errors import ConflictError, ServiceError
from control_plane.store.base import StateStore, TriggerRecord

__all__ = ["FlowIndex"]

MAX_CONFLICTS = 100


class FlowIndex:
    """The flows listed under one store key, each with the revision deployed last.

    The revision lets a reader use the flow it parsed before (revisions never change) instead
    of reading the latest revision of every listed flow each time.
    """

    def __init__(self, store: StateStore, key: str) -> None:
        self.store = store
        self.key = key

    def flows(self) -> list[tuple[str, str, int | None]]:
        """(namespace, flow id, revision) of every listed flow."""
        record = self.store.get_trigger(self.key)
        entries = record.data.get("flows", ()) if record else ()
        return [(e[0], e[1], e[2] if len(e) > 2 else None) for e in entries]

    def mark(self, namespace: str, flow_id: str, listed: bool, revision: int | None = None) -> None:
        """List the flow at ``revision``, or not; a no-op (no write) when it already is so."""
        entry = [namespace, flow_id, revision]
        for _ in range(MAX_CONFLICTS):
            record = self.store.get_trigger(self.key)
            flows = [list(e) for e in (record.data.get("flows", ()) if record else ())]
            if (entry in flows) == listed and (listed or not any(e[:2] == entry[:2] for e in flows)):
                return
            others = [e for e in flows if e[:2] != entry[:2]]
            flows = [*others, entry] if listed else others
            try:
                self.store.put_trigger(
                    TriggerRecord(self.key, {"flows": flows}),
                    expected_version=record.version if record else 0,
                )
                return
            except ConflictError:
                continue  # another deploy wrote it first: read again
        raise ServiceError(f"{self.key}: {MAX_CONFLICTS} conflicting writers in a row")
