"""The ``sweeper`` Lambda: DynamoDB Streams records of expired executions become a full purge.

TTL removes the items a finishing step wrote it on. A split-mode execution (ADR 0004) also
has task runs and log items written earlier and never touched again; without this function
they would stay in the table for ever. The table's stream reports every removal; this
function acts only on those DynamoDB's TTL made (``userIdentity`` is the DynamoDB service) of
an execution's ``META`` item, and deletes the rest of that execution and its offloaded
outputs (:meth:`DynamoDBStore.purge_execution`).

The event source mapping should filter on the same pattern (the Terraform module does), so
the function is invoked for expiries only; the check here keeps it safe without the filter.
A failure raises, and Lambda retries the batch: purging is idempotent.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from control_plane.handlers import handler_logger
from control_plane.handlers.container import runtime
from control_plane.store.dynamodb_schema import HASH_KEY, RANGE_KEY

__all__ = ["expired_executions", "handler"]

logger = handler_logger("sweeper")

TTL_PRINCIPAL = "dynamodb.amazonaws.com"
"""``userIdentity.principalId`` of a stream record written by a TTL deletion."""


def expired_executions(event: Any) -> Iterator[str]:
    """Ids of executions whose ``META`` item TTL deleted, in record order, once each."""
    seen: set[str] = set()
    records = event.get("Records") if isinstance(event, Mapping) else None
    for record in records if isinstance(records, list) else ():
        if not isinstance(record, Mapping) or record.get("eventName") != "REMOVE":
            continue
        identity = record.get("userIdentity") or {}
        if identity.get("type") != "Service" or identity.get("principalId") != TTL_PRINCIPAL:
            continue  # a delete by a caller (squall itself, an operator): not an expiry
        keys = (record.get("dynamodb") or {}).get("Keys") or {}
        pk = (keys.get(HASH_KEY) or {}).get("S", "")
        sk = (keys.get(RANGE_KEY) or {}).get("S", "")
        if sk == "META" and pk.startswith("EXEC#"):
            execution_id = pk.removeprefix("EXEC#")
            if execution_id not in seen:
                seen.add(execution_id)
                yield execution_id


def handler(event: Any, context: Any) -> dict[str, Any]:
    store = runtime().store
    purge = getattr(store, "purge_execution", None)
    if purge is None:
        raise TypeError(f"the sweeper needs the DynamoDB store, not {type(store).__name__}")
    purged: dict[str, int] = {}
    for execution_id in expired_executions(event):
        purged[execution_id] = purge(execution_id)
    if purged:
        logger.info("purged expired executions", extra={"items": purged})
    return {"purged": purged}
