"""The cloud store: one DynamoDB table (on-demand), large outputs in S3.

Theory of operation
-------------------
The table layout lives in :mod:`control_plane.store.dynamodb_schema` (one place, as data,
shared with Terraform and the sweeper, importable without this package). An execution is a
partition ``EXEC#<id>``: a ``META`` item (version ``v``, state, the meta body from the shared
codec) and, in split mode, one ``TR#<taskrun>`` item per task run, plus its log items (all
the lines of one write in one item), its timers and, while a big step is in flight, its redo
journal. Job outbox records, flows and triggers have partitions of their own.

An execution is stored in one of two modes. Document mode (ADR 0005,
:mod:`.documents`): a new small execution is ONE item and a step one conditional
``UpdateItem``. Split mode (ADR 0004, :mod:`.steps`): META plus an item per task run, a step
one ``TransactWriteItems``, or a big step through a redo journal and a lease
(:mod:`.bigstep`) when it is larger than a transaction takes. A document that outgrows its
thresholds switches to split mode once and for good. Every execution write is conditional on
the version the writer read (no lost update) and on no big step holding the execution.

Reads (:mod:`.reads`) never return a torn execution: a write landing mid-read is caught up
from the task runs META says it changed. ``get_execution``, ``get_job``, ``get_trigger``,
``get_flow`` and logs are strongly consistent; listings, due timers and active jobs read GSIs
(eventually consistent: a stale answer there is harmless).

Cost. Every call passes ``ReturnConsumedCapacity=TOTAL`` and adds to
:attr:`DynamoDBStore.capacity` (read/write units and calls per operation) for the cost
benchmark. Items are small (codec JSON, short attribute names), the listing indexes project
only summary attributes that change with the state, and task-run outputs over
``offload_bytes`` go to S3.

Errors. botocore errors never leave :mod:`.table` and :mod:`.offload`: they become
``StoreError`` naming the table (or bucket) and the operation; failed conditions become
``ConflictError`` / ``NotFoundError`` in the module that wrote.

Modules, one concern (and the state it holds) each, lowest first:

=================  =========================================================================
``items``          wire format: attribute values, keys, sizes, compression (pure)
``records``        records <-> items: META, jobs, document job entries, timers, logs (pure)
``conditions``     the named condition clauses of the writes (pure)
``table``          the client: calls, batches, thread pool, :class:`Capacity`, ``Refused``
``offload``        the S3 client: large outputs, purged with their execution
``memory``         what a store instance remembers: split snapshots, document states
``values``         a wide loop's values, written once (``TRV#`` items), and their cache
``bigstep``        the redo journal and the lease: writes too big for a transaction
``steps``          split-mode writes: a step built, then one transaction (or a big step)
``reads``          consistent execution reads with catch-up
``active``         the ``active-executions`` index and the tick's watermark visit
``documents``      document mode, its :class:`WriteMode`, and the switch to split mode
``jobs``           the job outbox: reads, single-job updates, active jobs
``logs``           log lines appended after a step, and read back page by page
``timers``         due timers
``flows``          flow revisions
``triggers``       trigger state
``pages``          page cursors and the executions listing
``store``          :class:`DynamoDBStore`: the parts assembled behind the protocol
=================  =========================================================================
"""

from control_plane.store.dynamodb.documents import (
    DOCUMENT_LOG_BYTES,
    DOCUMENT_MAX_BYTES,
    DOCUMENT_MAX_TASKRUNS,
    DOCUMENT_MODE,
    WriteMode,
)
from control_plane.store.dynamodb.store import DynamoDBStore
from control_plane.store.dynamodb.table import Capacity

__all__ = [
    "DOCUMENT_LOG_BYTES",
    "DOCUMENT_MAX_BYTES",
    "DOCUMENT_MAX_TASKRUNS",
    "DOCUMENT_MODE",
    "Capacity",
    "DynamoDBStore",
    "WriteMode",
]
