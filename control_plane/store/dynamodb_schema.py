"""The DynamoDB table of the cloud store, as data: the one place its keys and indexes are defined.

The ``control_plane/store/dynamodb/`` package reads and writes by these names, :func:`create_table`
builds a table from them (tests, ``squall`` tooling), and the Terraform module (``infra/``)
renders the same constants, so the three cannot drift. Everything here is a plain constant:
import it without boto3.

Layout (see ``docs/dynamodb.md`` for item shapes)::

    PK               SK                        what
    EXEC#<id>        META                      a small execution, whole ("document mode": body,
                                               jobs, inline logs), or the meta of a big one
                                               ("split mode", the rows below)
    EXEC#<id>        TR#<taskrun id>           one task run
    EXEC#<id>        LOG#<version>#...         the log lines of one write, as one JSON list
    EXEC#<id>        DUE#<key>                 a pending timer (sparse index TIMERS)
    EXEC#<id>        JOURNAL#<token>#<n>       redo chunks of a step too big for a transaction
    JOB#<name>       JOB                       job outbox record (sparse index ACTIVE_JOBS)
    FLOW#<ns>#<id>   REV#<n:08d> / LATEST      flow revisions; LATEST is in index FLOWS
    TRIGGER#<key>    STATE                     trigger state
    VISIT            STATE                     watermark of the tick's visit (active-executions)

``META`` and ``TR#`` are adjacent in sort-key order with nothing between them (timers are
``DUE#``, redo chunks ``JOURNAL#``), so one ``Query`` reads an execution and nothing else.
"""

from __future__ import annotations

import time
from typing import Any, Final

__all__ = [
    "ATTRIBUTE_DEFINITIONS",
    "BILLING_MODE",
    "GLOBAL_SECONDARY_INDEXES",
    "GSI_ACTIVE_EXECUTIONS",
    "GSI_ACTIVE_JOBS",
    "GSI_EXECUTIONS",
    "GSI_FLOWS",
    "GSI_TIMERS",
    "HASH_KEY",
    "ITEM_LIMIT_BYTES",
    "KEY_SCHEMA",
    "RANGE_KEY",
    "STREAM_VIEW_TYPE",
    "TRANSACTION_ITEM_LIMIT",
    "TTL_ATTRIBUTE",
    "create_table",
    "table_definition",
]

HASH_KEY: Final = "PK"
"""Partition key of the table: the record's kind and id (``EXEC#<id>``, ``JOB#<name>``...)."""

RANGE_KEY: Final = "SK"
"""Sort key: which part of the record (``META``, ``TR#<id>``, ``LOG#...``)."""

TTL_ATTRIBUTE: Final = "ttl"
"""Epoch seconds after which DynamoDB deletes the item: set on finished executions' items,
DONE jobs and leftover redo chunks. A reserved word in expressions: always alias it."""

BILLING_MODE: Final = "PAY_PER_REQUEST"
"""On-demand: an idle installation costs nothing but storage."""

STREAM_VIEW_TYPE: Final = "KEYS_ONLY"
"""The table's stream: the ``sweeper`` handler needs only the keys of the ``META`` items TTL
removed, to purge the rest of those executions (split mode writes items TTL never reaches).
Writing to a stream costs nothing; Lambda reads it for free."""

ITEM_LIMIT_BYTES: Final = 400 * 1024
"""DynamoDB's hard item size limit (names + values, UTF-8)."""

TRANSACTION_ITEM_LIMIT: Final = 100
"""At most this many items in one ``TransactWriteItems``; bigger steps take the redo path."""

GSI_EXECUTIONS: Final = "executions"
"""Every committed execution, newest first: hash ``xg`` (constant ``EXEC``), range ``xc``
(``<created epoch µs, 17 digits>#<id>``), projecting only ``xn`` (namespace) and ``xf`` (flow
id). All four attributes are immutable, so the entry is written once, when the execution is
created (1 WRU), and no later step writes to this index. Listings filter namespace and flow on
the index entries and read state and summary from the items with ``BatchGetItem``. It is the
only listing index: a second one by namespace would double that write for every execution
(ADR 0005, point 4)."""

GSI_TIMERS: Final = "timers"
"""Sparse: only ``DUE#`` items. Hash ``tq`` (constant ``T``), range ``ta``
(``<epoch µs, 17 digits>#<execution id>#<key>``): due timers are a range read, earliest first."""

GSI_ACTIVE_JOBS: Final = "active-jobs"
"""Sparse: job records not DONE. Hash ``jq`` (constant ``ACTIVE``), range ``jr``
(``<0 SUBMITTING | 1 SUBMITTED>#<runner>#<name>``): SUBMITTING first, a runner is a prefix.
The keys are removed when a job becomes DONE, which drops it from the index."""

GSI_ACTIVE_EXECUTIONS: Final = "active-executions"
"""Sparse, KEYS_ONLY: document-mode executions that have jobs not DONE. Hash ``aq`` (constant
``A``), range ``ar`` (the execution id). In production (``visit_after`` set) the keys are set
by the tick's watermark visit, for documents still running ``visit_after`` after their creation
(or by a step adding a job once the visit may have passed), so a short execution never enters
the index; in eager mode by the write that adds an active job. They are removed by the write
that leaves no active job (or lazily, by ``active_jobs``), in the same ``UpdateItem`` as the
rest of the step; jobs of split-mode executions stay in :data:`GSI_ACTIVE_JOBS`."""

GSI_FLOWS: Final = "flows"
"""Sparse: the LATEST item of each live flow. Hash ``fg`` (constant ``FLOW``), range ``fk``
(``<namespace> <flow id>``: the space sorts below every namespace character, so the order is
(namespace, id))."""

KEY_SCHEMA: Final[list[dict[str, str]]] = [
    {"AttributeName": HASH_KEY, "KeyType": "HASH"},
    {"AttributeName": RANGE_KEY, "KeyType": "RANGE"},
]
"""The table's primary key."""

ATTRIBUTE_DEFINITIONS: Final[list[dict[str, str]]] = [
    {"AttributeName": name, "AttributeType": "S"}
    for name in (HASH_KEY, RANGE_KEY, "xg", "xc", "tq", "ta", "jq", "jr", "aq", "ar", "fg", "fk")
]
"""Every key attribute of the table and its indexes (all strings)."""


def _index(name: str, hash_key: str, range_key: str, projection: dict[str, Any]) -> dict[str, Any]:
    return {
        "IndexName": name,
        "KeySchema": [
            {"AttributeName": hash_key, "KeyType": "HASH"},
            {"AttributeName": range_key, "KeyType": "RANGE"},
        ],
        "Projection": projection,
    }


GLOBAL_SECONDARY_INDEXES: Final[list[dict[str, Any]]] = [
    _index(GSI_EXECUTIONS, "xg", "xc", {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["xn", "xf"]}),
    _index(GSI_TIMERS, "tq", "ta", {"ProjectionType": "KEYS_ONLY"}),
    _index(GSI_ACTIVE_JOBS, "jq", "jr", {"ProjectionType": "ALL"}),
    _index(GSI_ACTIVE_EXECUTIONS, "aq", "ar", {"ProjectionType": "KEYS_ONLY"}),
    _index(GSI_FLOWS, "fg", "fk", {"ProjectionType": "ALL"}),
]
"""Every global secondary index, in ``CreateTable`` form (on-demand: no throughput)."""


def table_definition(name: str, *, stream: bool = True) -> dict[str, Any]:
    """The ``CreateTable`` arguments for a table called ``name``.

    ``stream=False`` leaves the stream out: only for a benchmark that writes millions of items
    to DynamoDB Local, which looks its stream up on every write (the sweeper, its only reader,
    is not part of such a run). Deployed tables always have it (``infra/modules/squall``).
    """
    definition: dict[str, Any] = {
        "TableName": name,
        "BillingMode": BILLING_MODE,
        "KeySchema": KEY_SCHEMA,
        "AttributeDefinitions": ATTRIBUTE_DEFINITIONS,
        "GlobalSecondaryIndexes": GLOBAL_SECONDARY_INDEXES,
    }
    if stream:
        definition["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": STREAM_VIEW_TYPE}
    return definition


def create_table(client: Any, name: str, *, timeout: float = 60.0, stream: bool = True) -> None:
    """Create the table, wait until it is ACTIVE, and turn TTL on where the endpoint supports it.

    An emulator without TTL support must not stop tests or local use: the attribute is still
    written, it just never expires there.
    """
    from botocore.exceptions import ClientError

    client.create_table(**table_definition(name, stream=stream))
    deadline = time.monotonic() + timeout
    while client.describe_table(TableName=name)["Table"]["TableStatus"] != "ACTIVE":
        if time.monotonic() > deadline:
            raise TimeoutError(f"DynamoDB table {name} not ACTIVE after {timeout}s")
        time.sleep(0.1)  # polling the table status until the deadline
    try:
        client.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE}
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in (
            "ValidationException",
            "UnknownOperationException",
        ):
            raise
