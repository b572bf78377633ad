"""The cloud store: one DynamoDB table (on-demand), large outputs in S3.

Theory of operation
-------------------
The table layout lives in :mod:`control_plane.store.dynamodb_schema` (one place, as data). An
execution is a partition ``EXEC#<id>``: a ``META`` item (version ``v``, state, the meta body
from the shared codec) and one ``TR#<taskrun>`` item per task run, plus its log items (all
the lines of one write in one item), its timers and, while a big step is in flight, its redo
journal. Job outbox records, flows and triggers have partitions of their own.

Document mode (ADR 0005). A new small execution is ONE item, ``META`` with ``md = "d"``: the
execution and its task runs as one zlib body, its jobs as a map of entries (each with its own
version, so ``update_job`` and ``save_execution`` never lose each other's updates), its log
lines inline. A step is one conditional ``UpdateItem`` (1-2 WRU instead of a transaction);
job names carry the execution id, so ``get_job`` finds the item from the name. A write that
would pass a threshold (``DOCUMENT_MAX_*``) converts the execution to split mode, below,
once and for good. ``docs/dynamodb.md`` has both item shapes.

Writes (split mode). Every execution write is conditional on ``v = expected_version`` and on no big step
holding the execution (``attribute_not_exists(ls)``):

* small step (the common case: one job ends, the next is submitted): META + changed task runs
  + log item + timers + job records in ONE ``TransactWriteItems`` (<= 100 items, < 4 MB); a
  write of one item is a plain conditional ``PutItem``/``UpdateItem``. A cancelled
  transaction is read reason by reason: META failed -> ``ConflictError`` (or
  ``NotFoundError``), a new SUBMITTING job whose name exists -> ``ConflictError``, an update
  of a job that does not exist is dropped (SQLite's ``UPDATE`` of no row) and the
  transaction sent again.
* big step (a 1,000-lane fan-out, a wide kill or restart, a 5,000-task-run create):
  (1) the change set is written as ``JOURNAL#<token>#<n>`` chunks; (2) a lease ``ls`` is
  taken on META with the version condition (for a create: a META placeholder is put with
  ``attribute_not_exists``, invisible to listings); (3) new jobs are put, each conditional
  on the name being free or already ours (``lt = token``), a taken name rolls the step back;
  (4) items are written with ``BatchWriteItem`` (idempotent overwrites and deletes); (5) job
  updates, idempotent through ``lt``; (6) META is committed conditional on holding the lease,
  which removes it; (7) the journal is deleted (it also carries a one-day TTL). Whoever meets
  an *expired* lease (reader or writer) runs (3)-(7) again from the journal before anything
  else, so a crash at any point leaves either the old execution or the new one, never a mix.
  A live lease makes writers fail with ``ConflictError`` (they reload) and readers wait.

Reads. ``get_execution`` is one strongly consistent ``Query`` over ``META`` .. ``TR#``
(adjacent in sort-key order) followed by a ``GetItem`` of META. Queries are only
read-committed, so a write may land between the two: if META moved by exactly one write, the
task runs that write changed (META keeps their ids in ``ch`` and the version it replaced in
``pv``) are fetched again and META checked again; anything else is read again from the
start. A reader therefore never returns a torn execution and, under a busy writer, catches
up instead of starving. Listings, due timers and active jobs read GSIs (eventually
consistent: a stale answer there is harmless); ``get_execution``, ``get_job``,
``get_trigger``, ``get_flow`` and logs are strongly consistent.

Cost. Every call passes ``ReturnConsumedCapacity=TOTAL`` and adds to :attr:`capacity`
(read/write units and calls per operation) for the cost benchmark. Items are small (codec
JSON, short attribute names), the listing indexes project only summary attributes that change
with the state, and task-run outputs over ``offload_bytes`` go to S3.

Errors. botocore errors never leave this module: they become ``StoreError`` naming the table
and the operation; failed conditions become ``ConflictError`` / ``NotFoundError``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import random
import re
import secrets
import threading
import time
import zlib
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import immutables
from msgspec import Struct, field
from msgspec.structs import asdict, replace

from control_plane.engine.ids import execution_of_job
from control_plane.engine.model import Execution, LogLine, TaskRun
from control_plane.engine.states import State
from control_plane.errors import ConflictError, NotFoundError, StoreError
from control_plane.store.base import (
    ExecutionSummary,
    FlowRecord,
    JobPhase,
    JobRecord,
    Page,
    TimerRecord,
    TriggerRecord,
)
from control_plane.store.codec import (
    dumps,
    execution_from_json,
    execution_meta,
    loads,
    log_from_json,
    log_to_json,
    taskrun_from_json,
    taskrun_to_json,
)
from control_plane.store.dynamodb_schema import (
    GSI_ACTIVE_EXECUTIONS,
    GSI_ACTIVE_JOBS,
    GSI_EXECUTIONS,
    GSI_FLOWS,
    GSI_TIMERS,
    ITEM_LIMIT_BYTES,
    TRANSACTION_ITEM_LIMIT,
    TTL_ATTRIBUTE,
)

__all__ = [
    "DOCUMENT_LOG_BYTES",
    "DOCUMENT_MAX_BYTES",
    "DOCUMENT_MAX_TASKRUNS",
    "DOCUMENT_MODE",
    "Capacity",
    "DynamoDBStore",
]

Item = dict[str, Any]  # one item in DynamoDB's wire format: {"attr": {"S": "..."}}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_CHAR = "\U0010ffff"  # the greatest code point: the top of a prefix range
_META = "META"
_TR = "TR#"
# A loop's values, written once per execution and value set: ``TRV#`` sorts after every ``TR#``
# key ('V' > '#'), so an execution read (``META``..``TR#<max>``) does not return them.
_VALUES = "TRV#"
_VALUES_INLINE_BYTES = 512  # below this, a ForEach's values stay in its task run's body
_TRANSACTION_BYTES = 3_500_000  # TransactWriteItems takes 4 MB; keep a margin for overhead
_LOG_CHUNK_BYTES = 300_000  # one log item, well under the 400 KB item limit
_JOURNAL_CHARS = 80_000  # one redo chunk: at most 320 KB of UTF-8
_JOURNAL_TTL = 86_400  # a leftover redo chunk disappears after a day
_CH_SLOTS = 8  # META remembers the task runs changed by its last 8 writes (a ring, slot = version % 8)
_CH_MAX_CHARS = 120  # ...unless a write changed more: then "*" (read everything again)
_CACHE_SIZE = 32  # executions whose last consistent snapshot a store instance keeps
_READ_ATTEMPTS = 200
_CONSISTENT_ATTEMPTS = 40


def _read_backoff(attempt: int) -> None:
    """Full-jitter backoff before reading a busy execution again.

    A reader needs a moment with no write between its META read and its catch-up; when many
    writers hammer one execution (a wide fan-in), re-reading at once only races them again.
    Readers here are also the writers (load, plan, save), so pausing them lets the others
    finish: the execution settles and the read goes through.
    """
    time.sleep(random.uniform(0.0, min(0.1, 0.001 * 2 ** min(attempt, 7))))


DOCUMENT_MODE = True
"""New small executions are one item (ADR 0005). False: every execution is split, as in ADR 0004."""
DOCUMENT_MAX_TASKRUNS = 32
"""A document holds at most this many task runs; the write that adds one more switches to split mode."""
DOCUMENT_MAX_BYTES = 3_000
"""...and its item stays at most this big (compressed body, jobs, inline logs, keys). A write
costs 1 WRU per started KB of the larger of the old and the new item: past about 3 KB, split
mode (which writes only what changed) is cheaper per step."""
DOCUMENT_LOG_BYTES = 1_500
"""Compressed log lines kept inline in a document; more switches the execution to split mode."""
_DOC = "d"  # the value of ``md`` on a document-mode item (split-mode META has no ``md``)
_DOC_ATTRS = ("md", "d", "j", "lg", "lb", "aq", "ar")  # removed from META by the switch to split mode
_INLINE_LOGS = "LOG#"  # the pseudo sort key of a document's inline log lines: before every log item
_VISIT_KEY = {"PK": {"S": "VISIT"}, "SK": {"S": "STATE"}}  # the watermark of ``visit``
_FIRST_VISIT = timedelta(days=1)  # how far back a visit with no watermark yet looks
_VISIT_ATTEMPTS = 5  # registrations of one document refused by concurrent steps before giving up

# Condition clauses (each one a reason a write may be refused).
_IS_NEW = "attribute_not_exists(PK)"  # create: nothing with this key yet
_EXISTS = "attribute_exists(PK)"  # update: the record must be there (UpdateItem would create it)
_AT_VERSION = "#v = :expected"  # the writer read this version: no lost update
_NO_LEASE = "attribute_not_exists(#ls)"  # no big step holds the execution
_HOLDS_LEASE = "#ls.#tk = :token"  # this big step still holds it (nobody rolled it forward)
_FREE_OR_OURS = "(attribute_not_exists(PK) OR #lt = :token)"  # a job name not taken by another step
_NOT_APPLIED = "(attribute_not_exists(#lt) OR #lt <> :token)"  # this job update not applied yet


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: int | float) -> dict[str, str]:
    return {"N": str(value)}


def _us(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _from_us(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def _names(*expressions: str | None) -> dict[str, str]:
    """``#name`` placeholders for every attribute an expression mentions (all of them aliased:
    ``ttl`` and others are reserved words, and DynamoDB refuses unused placeholders)."""
    found: dict[str, str] = {}
    for expr in expressions:
        for name in re.findall(r"#(\w+)", expr or ""):
            found[f"#{name}"] = name
    return found


def _size(value: Any) -> int:
    """An upper bound of DynamoDB's size of an attribute value (UTF-8 bytes, as it counts them)."""
    if "S" in value:
        return len(value["S"].encode())
    if "N" in value:
        return len(value["N"])
    if "M" in value:
        return 3 + sum(len(k.encode()) + 1 + _size(v) for k, v in value["M"].items())
    if "L" in value:
        return 3 + sum(1 + _size(v) for v in value["L"])
    if "B" in value:
        return len(value["B"])
    return 1


def item_size(item: Item) -> int:
    return sum(len(name.encode()) + _size(value) for name, value in item.items())


def _cursor_encode(*parts: Any) -> str:
    return base64.urlsafe_b64encode(dumps(list(parts)).encode()).decode()


def _cursor_decode(cursor: str, kinds: Sequence[type]) -> list[Any]:
    try:
        parts = loads(base64.urlsafe_b64decode(cursor.encode()))
    except ValueError as exc:
        raise StoreError(f"invalid page cursor {cursor!r}") from exc
    if (
        not isinstance(parts, list)
        or len(parts) != len(kinds)
        or not all(isinstance(p, k) for p, k in zip(parts, kinds, strict=True))
    ):
        raise StoreError(f"invalid page cursor {cursor!r}")
    return parts


K = TypeVar("K")
V = TypeVar("V")


def _lru_put(cache: OrderedDict[K, V], key: K, value: V, size: int) -> None:
    """Insert as most recent and drop the least recent beyond ``size`` (callers hold the lock)."""
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > size:
        cache.popitem(last=False)


class Capacity:
    """Capacity units consumed through one store, as DynamoDB reports them, and calls made.

    The cost benchmark reads it: at on-demand prices a write unit is $0.625 and a read unit
    $0.125 per million. ``calls`` counts by operation name (``s3.PutObject`` for S3) and
    ``units_by_call`` adds up the units of each operation, so a cost figure can be broken down
    (which calls a step makes, and what each one costs).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.read_units = 0.0
        self.write_units = 0.0
        self.calls: Counter[str] = Counter()
        self.units_by_call: defaultdict[str, float] = defaultdict(float)

    def reset(self) -> None:
        with self._lock:
            self.read_units = 0.0
            self.write_units = 0.0
            self.calls = Counter()
            self.units_by_call = defaultdict(float)

    def add(self, operation: str, consumed: Any, *, read: bool) -> None:
        units = 0.0
        for entry in consumed if isinstance(consumed, list) else [consumed] if consumed else []:
            units += float(entry.get("CapacityUnits", 0.0))
        with self._lock:
            self.calls[operation] += 1
            self.units_by_call[operation] += units
            if read:
                self.read_units += units
            else:
                self.write_units += units

    def __repr__(self) -> str:
        return f"Capacity(read_units={self.read_units}, write_units={self.write_units}, calls={self.calls})"


_READS = frozenset({"GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"})


class _Refused(Exception):
    """A condition failed (ConditionalCheckFailed or TransactionCanceled); ``response`` says why."""

    def __init__(self, response: Mapping[str, Any]) -> None:
        super().__init__(response.get("Error", {}).get("Message", "refused"))
        self.response = response

    def reasons(self, count: int) -> list[Mapping[str, Any]]:
        """One reason per item of the write (a single-item write has one)."""
        found = self.response.get("CancellationReasons")
        if found is not None:
            return list(found)
        item = self.response.get("Item")
        return [{"Code": "ConditionalCheckFailed", **({"Item": item} if item else {})}] * max(count, 1)


class _Step(Struct):
    """One execution write, in wire format: what a transaction or the redo journal carries."""

    execution_id: str
    create: bool
    version: int
    expected: int
    meta: Item  # attributes SET on META (not its key)
    meta_remove: list[str] = field(default_factory=list)
    puts: list[Item] = field(default_factory=list)
    deletes: list[Item] = field(default_factory=list)
    new_jobs: list[Item] = field(default_factory=list)
    job_updates: list[dict[str, Any]] = field(default_factory=list)  # {"key", "set", "remove"}
    slot: list[str] | None = None  # [ring slot name, "<version>|<previous>|<ids or *>"]
    # Extra META condition of a switch to split mode: the document's job versions and inline log
    # size it copied, so an ``update_job`` or ``append_logs`` landing meanwhile is not lost.
    guard: dict[str, Any] | None = None  # {"expr": "...", "names": {...}, "values": {...}}
    values_written: list[str] = field(default_factory=list)  # digests of ``TRV#`` items in ``puts``

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> _Step:
        return cls(**raw)

    @property
    def operations(self) -> int:
        return 1 + len(self.puts) + len(self.deletes) + len(self.new_jobs) + len(self.job_updates)


class _Doc(Struct, frozen=True):
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

    @classmethod
    def of(cls, item: Item) -> _Doc:
        body = loads(_decompress(item["d"]["B"]))
        return cls(
            int(item["v"]["N"]),
            dict(item.get("j", {}).get("M", {})),
            int(item.get("lb", {}).get("N", "0")),
            "aq" in item,
            {raw["id"]: raw for raw in body["t"]},
        )


class DynamoDBStore:
    """A :class:`~control_plane.store.base.StateStore` on one DynamoDB table (and S3 for big outputs).

    ``fault`` is a test seam: it is called with the name of each stage of a big step
    (``journal``, ``lease``, ``jobs``, ``apply``, ``commit``) and may raise to simulate a crash
    there. ``clock`` (epoch seconds) decides when a lease has expired and when TTLs fall.

    ``visit_after`` chooses how documents enter the ``active-executions`` index. None (eager):
    the write that adds an unfinished job sets the keys, 1 WRU to enter and 1 to leave. A
    duration (the watermark visit, ADR 0005 point 5): creates and steps do not set them, and
    :meth:`visit` (the tick) registers the documents created more than ``visit_after`` ago
    that still have unfinished jobs, so a task that ends sooner costs no index write at all.
    It must not exceed the tick's ``submit_grace`` nor ``reconcile_after``: the tick needs a
    job only once it is that old. ``visit_overlap`` is how far back of its watermark a visit
    reads again (index propagation, clock skew); ``visit_limit`` bounds the executions one
    visit reads.
    """

    def __init__(
        self,
        table: str,
        *,
        client: Any = None,
        endpoint_url: str | None = None,
        region: str | None = None,
        s3_client: Any = None,
        bucket: str | None = None,
        s3_prefix: str = "squall/outputs/",
        offload_bytes: int = 100_000,
        finished_ttl: timedelta | None = timedelta(days=30),
        lease_seconds: float = 60.0,
        clock: Callable[[], float] = time.time,
        fault: Callable[[str], None] | None = None,
        visit_after: timedelta | None = None,
        visit_overlap: timedelta = timedelta(seconds=10),
        visit_limit: int = 1000,
    ) -> None:
        self.table = table
        self.visit_after = visit_after
        self.visit_overlap = visit_overlap
        self.visit_limit = visit_limit
        self.bucket = bucket
        self.s3_prefix = s3_prefix
        self.offload_bytes = offload_bytes
        self.finished_ttl = finished_ttl
        self.lease_seconds = lease_seconds
        self.capacity = Capacity()
        self._clock = clock
        self._fault = fault
        self._owned: list[Any] = []
        self._lock = threading.Lock()
        self._last_ns = 0
        self._pool: ThreadPoolExecutor | None = None
        self._cache: OrderedDict[str, tuple[int, dict[str, TaskRun]]] = OrderedDict()
        # Loop values by (execution, digest): immutable, so never stale (see ``_split_values``).
        self._values: OrderedDict[tuple[str, str], list[Any]] = OrderedDict()
        self._docs: OrderedDict[str, _Doc] = OrderedDict()  # documents' jobs, as last read or written
        # Executions seen in split mode: that is for good, so their jobs are looked up as JOB# directly.
        self._split: OrderedDict[str, None] = OrderedDict()
        if client is None:
            client = self._boto_client("dynamodb", endpoint_url, region)
            self._owned.append(client)
        self._client = client
        self._s3 = s3_client
        if bucket is not None and s3_client is None:
            self._s3 = self._boto_client("s3", None, region)
            self._owned.append(self._s3)

    @staticmethod
    def _boto_client(service: str, endpoint_url: str | None, region: str | None) -> Any:
        import boto3
        from botocore.config import Config

        config = Config(
            retries={"mode": "standard", "max_attempts": 5},
            connect_timeout=5,
            read_timeout=30,
            max_pool_connections=32,
        )
        return boto3.client(service, endpoint_url=endpoint_url, region_name=region, config=config)

    def close(self) -> None:
        with self._lock:
            owned, self._owned = self._owned, []
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        for client in owned:
            client.close()

    # ------------------------------------------------------------------ plumbing

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        """One DynamoDB call: capacity counted, failed conditions as ``_Refused``, else StoreError."""
        from botocore.exceptions import BotoCoreError, ClientError

        method = getattr(self._client, re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower())
        try:
            response: dict[str, Any] = method(ReturnConsumedCapacity="TOTAL", **kwargs)
        except ClientError as exc:
            self.capacity.add(operation, None, read=operation in _READS)
            error = exc.response.get("Error", {})
            code = error.get("Code", "")
            if code in ("ConditionalCheckFailedException", "TransactionCanceledException"):
                raise _Refused(exc.response) from None
            hint = ": the table does not exist" if code == "ResourceNotFoundException" else ""
            raise StoreError(
                f"DynamoDB table {self.table}: {operation} failed{hint} ({code}: {error.get('Message', exc)})"
            ) from exc
        except BotoCoreError as exc:
            self.capacity.add(operation, None, read=operation in _READS)
            raise StoreError(f"DynamoDB table {self.table}: {operation} failed: {exc}") from exc
        self.capacity.add(operation, response.get("ConsumedCapacity"), read=operation in _READS)
        return response

    def _query(self, **kwargs: Any) -> Iterator[Item]:
        while True:
            response = self._call("Query", TableName=self.table, **kwargs)
            yield from response.get("Items", [])
            last = response.get("LastEvaluatedKey")
            if not last:
                return
            kwargs["ExclusiveStartKey"] = last

    def _get(self, key: Item, *, projection: str | None = None) -> Item | None:
        kwargs: dict[str, Any] = {"TableName": self.table, "Key": key, "ConsistentRead": True}
        if projection:
            kwargs["ProjectionExpression"] = projection
            kwargs["ExpressionAttributeNames"] = _names(projection)
        item: Item | None = self._call("GetItem", **kwargs).get("Item")
        return item

    def _update(
        self,
        key: Item,
        sets: Mapping[str, Any],
        *,
        remove: Sequence[str] = (),
        extra: Sequence[str] = (),
        condition: str | None = None,
        values: Mapping[str, Any] | None = None,
        names: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """``Update`` arguments: SET ``sets`` (``#a = :a``) and ``extra`` clauses, REMOVE ``remove``.

        ``names`` adds placeholders that are not attribute names as written (job names have dashes).
        """
        parts = [f"#{name} = :{name}" for name in sets] + list(extra)
        expr = ("SET " + ", ".join(parts)) if parts else ""
        if remove:
            expr += " REMOVE " + ", ".join(f"#{name}" for name in remove)
        args: dict[str, Any] = {
            "TableName": self.table,
            "Key": key,
            "UpdateExpression": expr.strip(),
            "ExpressionAttributeNames": _names(expr, condition) | dict(names or {}),
        }
        all_values = {f":{name}": value for name, value in sets.items()} | dict(values or {})
        if all_values:
            args["ExpressionAttributeValues"] = all_values
        if condition:
            args["ConditionExpression"] = condition
        return args

    def _batch_write(self, requests: Sequence[dict[str, Any]]) -> None:
        """Puts and deletes, 25 per call, in parallel; unprocessed items are sent again."""

        def send(chunk: Sequence[dict[str, Any]]) -> None:
            pending: dict[str, Any] = {self.table: list(chunk)}
            for attempt in range(12):
                pending = self._call("BatchWriteItem", RequestItems=pending).get("UnprocessedItems") or {}
                if not pending:
                    return
                time.sleep(min(0.02 * 2**attempt, 1.0))  # throttled: back off before resending
            raise StoreError(f"DynamoDB table {self.table}: BatchWriteItem kept leaving items unprocessed")

        self._parallel(send, [requests[i : i + 25] for i in range(0, len(requests), 25)])

    def _parallel(self, fn: Callable[[Any], None], work: Sequence[Any]) -> None:
        if len(work) <= 1:
            for one in work:
                fn(one)
            return
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="squall-ddb")
            pool = self._pool
        for future in [pool.submit(fn, one) for one in work]:
            future.result()

    def _at(self, stage: str) -> None:
        if self._fault is not None:
            self._fault(stage)

    def _expiry(self) -> int | None:
        if self.finished_ttl is None:
            return None
        return int(self._clock() + self.finished_ttl.total_seconds())

    # ------------------------------------------------------------------ S3 offload

    def _s3_call(self, operation: str, key: str | None, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        method = getattr(self._s3, re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower())
        with self._lock:
            self.capacity.calls[f"s3.{operation}"] += 1
        try:
            return method(Bucket=self.bucket, **({} if key is None else {"Key": key}), **kwargs)
        except (ClientError, BotoCoreError) as exc:
            what = key if key is not None else kwargs.get("Prefix", "")
            raise StoreError(f"S3 bucket {self.bucket}: {operation} {what} failed: {exc}") from exc

    def _offload(self, execution_id: str, taskrun_id: str, blob: bytes) -> str:
        """Content-addressed: writing the same outputs again (a redo, a retry) is the same object."""
        key = f"{self.s3_prefix}{execution_id}/{taskrun_id}/{hashlib.sha256(blob).hexdigest()[:32]}.json"
        self._s3_call("PutObject", key, Body=blob, ContentType="application/json")
        return key

    def _fetch_outputs(self, key: str) -> Any:
        body = self._s3_call("GetObject", key)["Body"]
        try:
            return loads(body.read())
        finally:
            body.close()

    # ------------------------------------------------------------------ item shapes

    @staticmethod
    def _exec_key(execution_id: str, sk: str = _META) -> Item:
        return {"PK": _s(f"EXEC#{execution_id}"), "SK": _s(sk)}

    def _meta_attrs(self, ex: Execution, ttl: int | None) -> Item:
        summary = {
            "r": ex.flow_revision,
            "c": ex.created.isoformat(),
            "e": None if ex.ended is None else ex.ended.isoformat(),
            "l": ex.labels,
            "p": (ex.parent or {}).get("id"),
        }
        attrs: Item = {
            "v": _n(ex.version),
            "b": _s(dumps(execution_meta(ex))),
            "st": _s(ex.state.value),
            "sm": _s(dumps(summary)),
            "xg": _s("EXEC"),
            "xn": _s(ex.namespace),
            "xc": _s(f"{_us(ex.created):017d}#{ex.id}"),
            "xf": _s(ex.flow_id),
        }
        if ttl is not None:
            attrs[TTL_ATTRIBUTE] = _n(ttl)
        return attrs

    def _taskrun_item(
        self, execution_id: str, tr: TaskRun, ttl: int | None, step: _Step | None = None
    ) -> Item:
        raw = taskrun_to_json(tr)
        item: Item = self._exec_key(execution_id, _TR + tr.id)
        progress = raw.get("progress")
        if step is not None and isinstance(progress, dict) and progress.get("values"):
            self._split_values(execution_id, item, progress, ttl, step)
        if raw.get("outputs") is not None and self.bucket is not None:
            blob = dumps(raw["outputs"]).encode()
            if len(blob) > self.offload_bytes:
                item["o"] = _s(self._offload(execution_id, tr.id, blob))
                del raw["outputs"]
        item["b"] = _s(dumps(raw))
        if ttl is not None:
            item[TTL_ATTRIBUTE] = _n(ttl)
        size = item_size(item)
        if size > ITEM_LIMIT_BYTES:
            raise StoreError(
                f"execution {execution_id}, task run {tr.id} ({tr.task_id}): the item is {size:,} bytes,"
                f" over DynamoDB's 400 KB item limit; configure an S3 bucket for large outputs"
                f" (DynamoDBStore(bucket=...)) in table {self.table}"
            )
        return item

    def _split_values(
        self, execution_id: str, item: Item, progress: dict[str, Any], ttl: int | None, step: _Step
    ) -> None:
        """Keep a wide loop's values out of its task run, which every child's end rewrites.

        A ForEach over N values keeps them in its progress to start its lanes; inline, each
        completion would rewrite all N (units per task growing with N). They go to a
        content-addressed ``TRV#<digest>`` item instead, written in the same step only when
        this store has not written or read that digest yet: the task run keeps the digest.
        """
        blob = dumps(progress["values"])
        if len(blob) <= _VALUES_INLINE_BYTES:
            return
        digest = hashlib.blake2b(blob.encode(), digest_size=12).hexdigest()
        del progress["values"]
        item["pv"] = _s(digest)
        if (execution_id, digest) in self._values or digest in step.values_written:
            return
        side: Item = {**self._exec_key(execution_id, _VALUES + digest), "d": {"B": _compress(blob)}}
        if ttl is not None:
            side[TTL_ATTRIBUTE] = _n(ttl)
        step.puts.append(side)
        step.values_written.append(digest)

    def _loop_values(self, execution_id: str, digest: str) -> list[Any]:
        with self._lock:
            known = self._values.get((execution_id, digest))
        if known is not None:
            return known
        found = self._get(self._exec_key(execution_id, _VALUES + digest))
        if found is None:
            raise StoreError(
                f"execution {execution_id}: loop values {digest} are missing from table {self.table}"
            )
        values: list[Any] = loads(_decompress(found["d"]["B"]))
        self._know_values(execution_id, digest, values)
        return values

    def _know_values(self, execution_id: str, digest: str, values: list[Any]) -> None:
        with self._lock:
            _lru_put(self._values, (execution_id, digest), values, _CACHE_SIZE)

    def _log_items(
        self, execution_id: str, prefix: str, logs: Sequence[LogLine], ttl: int | None
    ) -> list[Item]:
        """All the lines of one write in as few items as fit (one, nearly always)."""
        chunks: list[list[str]] = [[]]
        size = 0
        for line in logs:
            encoded = dumps(log_to_json(line))
            if len(encoded.encode()) > _LOG_CHUNK_BYTES:
                encoded = dumps(log_to_json(_truncated(line)))
            length = len(encoded.encode()) + 1
            if chunks[-1] and size + length > _LOG_CHUNK_BYTES:
                chunks.append([])
                size = 0
            chunks[-1].append(encoded)
            size += length
        items = []
        for n, chunk in enumerate(chunks):
            item = self._exec_key(execution_id, f"{prefix}#{n:04d}")
            item["l"] = _s("[" + ",".join(chunk) + "]")
            if ttl is not None:
                item[TTL_ATTRIBUTE] = _n(ttl)
            items.append(item)
        return items

    @staticmethod
    def _timer_item(timer: TimerRecord) -> Item:
        return {
            "PK": _s(f"EXEC#{timer.execution_id}"),
            "SK": _s(f"DUE#{timer.key}"),
            "tq": _s("T"),
            "ta": _s(f"{_us(timer.at):017d}#{timer.execution_id}#{timer.key}"),
        }

    @staticmethod
    def _job_key(name: str) -> Item:
        return {"PK": _s(f"JOB#{name}"), "SK": _s("JOB")}

    @staticmethod
    def _active_key(phase: JobPhase, runner: str, name: str) -> str:
        return f"{0 if phase is JobPhase.SUBMITTING else 1}#{runner}#{name}"

    def _job_attrs(self, job: JobRecord, version: int) -> tuple[Item, list[str]]:
        """What an insert or a full update writes, and what it removes."""
        attrs: Item = {"p": _s(job.phase.value), "s": _s(dumps(job.spec)), "v": _n(version)}
        remove = []
        if job.handle is not None:
            attrs["h"] = _s(dumps(job.handle))
        else:
            remove.append("h")
        if job.updated is not None:
            attrs["u"] = _s(job.updated.isoformat())
        else:
            remove.append("u")
        if job.phase is JobPhase.DONE:
            remove += ["jq", "jr"]
            if (ttl := self._expiry()) is not None:
                attrs[TTL_ATTRIBUTE] = _n(ttl)
        else:
            attrs["jq"] = _s("ACTIVE")
            attrs["jr"] = _s(self._active_key(job.phase, job.runner, job.name))
        return attrs, remove

    def _job_item(self, job: JobRecord) -> Item:
        attrs, _ = self._job_attrs(job, 1)
        item = {
            **self._job_key(job.name),
            "e": _s(job.execution_id),
            "t": _s(job.taskrun_id),
            "a": _n(job.attempt),
            "r": _s(job.runner),
            **attrs,
        }
        size = item_size(item)
        if size > ITEM_LIMIT_BYTES:
            raise StoreError(
                f"job {job.name}: the record is {size:,} bytes, over DynamoDB's 400 KB item limit"
            )
        return item

    def _job_update(self, job: JobRecord) -> dict[str, Any]:
        """A later phase, as SQLite's ``UPDATE``: keep the handle when none is given, version + 1."""
        sets: Item = {"p": _s(job.phase.value)}
        remove: list[str] = []
        if job.handle is not None:
            sets["h"] = _s(dumps(job.handle))
        if job.updated is not None:
            sets["u"] = _s(job.updated.isoformat())
        else:
            remove.append("u")
        if job.phase is JobPhase.DONE:
            remove += ["jq", "jr"]
            if (ttl := self._expiry()) is not None:
                sets[TTL_ATTRIBUTE] = _n(ttl)
        else:
            sets["jq"] = _s("ACTIVE")
            sets["jr"] = _s(self._active_key(job.phase, job.runner, job.name))
        return {"name": job.name, "key": self._job_key(job.name), "set": sets, "remove": remove}

    @staticmethod
    def _job(item: Item) -> JobRecord:
        return JobRecord(
            name=item["PK"]["S"].removeprefix("JOB#"),
            execution_id=item["e"]["S"],
            taskrun_id=item["t"]["S"],
            attempt=int(item["a"]["N"]),
            runner=item["r"]["S"],
            phase=JobPhase(item["p"]["S"]),
            spec=loads(item["s"]["S"]),
            handle=loads(item["h"]["S"]) if "h" in item else None,
            version=int(item["v"]["N"]),
            updated=datetime.fromisoformat(item["u"]["S"]) if "u" in item else None,
        )

    # ------------------------------------------------------------------ flows

    @staticmethod
    def _flow_pk(namespace: str, flow_id: str) -> dict[str, str]:
        return _s(f"FLOW#{namespace}#{flow_id}")

    def save_flow(self, namespace: str, flow_id: str, source: str, *, at: datetime) -> FlowRecord:
        for _ in range(20):
            latest = self._get({"PK": self._flow_pk(namespace, flow_id), "SK": _s("LATEST")})
            if latest is not None and latest["src"]["S"] == source and "del" not in latest:
                return self._flow(latest)
            try:
                return self._new_revision(namespace, flow_id, source, at, latest, deleted=False)
            except _Refused:
                continue  # another writer took this revision number: read the latest again
        raise ConflictError(f"flow {namespace}.{flow_id}: too many concurrent saves")

    def _new_revision(
        self, namespace: str, flow_id: str, source: str, at: datetime, latest: Item | None, *, deleted: bool
    ) -> FlowRecord:
        revision = 1 if latest is None else int(latest["r"]["N"]) + 1
        pk = self._flow_pk(namespace, flow_id)
        body: Item = {"src": _s(source), "u": _s(at.isoformat()), "fn": _s(namespace), "fi": _s(flow_id)}
        if deleted:
            body["del"] = {"BOOL": True}
        head: Item = {"PK": pk, "SK": _s("LATEST"), "r": _n(revision), **body}
        if not deleted:  # only live flows are in the listing index
            head |= {"fg": _s("FLOW"), "fk": _s(f"{namespace} {flow_id}")}
        if latest is None:
            head_put: dict[str, Any] = {"TableName": self.table, "Item": head, "ConditionExpression": _IS_NEW}
        else:
            head_put = {
                "TableName": self.table,
                "Item": head,
                "ConditionExpression": "#r = :seen",  # LATEST is still the revision we read
                "ExpressionAttributeNames": {"#r": "r"},
                "ExpressionAttributeValues": {":seen": latest["r"]},
            }
        revision_put = {
            "TableName": self.table,
            "Item": {"PK": pk, "SK": _s(f"REV#{revision:08d}"), **body},
            "ConditionExpression": _IS_NEW,
        }
        self._call("TransactWriteItems", TransactItems=[{"Put": revision_put}, {"Put": head_put}])
        return FlowRecord(namespace, flow_id, revision, source, at, deleted)

    @staticmethod
    def _flow(item: Item) -> FlowRecord:
        revision = int(item["r"]["N"]) if "r" in item else int(item["SK"]["S"].removeprefix("REV#"))
        return FlowRecord(
            item["fn"]["S"],
            item["fi"]["S"],
            revision,
            item["src"]["S"],
            datetime.fromisoformat(item["u"]["S"]),
            "del" in item,
        )

    def get_flow(self, namespace: str, flow_id: str, revision: int | None = None) -> FlowRecord:
        sk = "LATEST" if revision is None else f"REV#{revision:08d}"
        item = self._get({"PK": self._flow_pk(namespace, flow_id), "SK": _s(sk)})
        if item is None or (revision is None and "del" in item):
            at = "" if revision is None else f" revision {revision}"
            raise NotFoundError(f"flow {namespace}.{flow_id}{at} not found")
        return self._flow(item)

    def list_flows(
        self, namespace: str | None = None, *, limit: int = 100, cursor: str | None = None
    ) -> Page[FlowRecord]:
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": GSI_FLOWS,
            "Limit": limit + 1,
        }
        values: dict[str, Any] = {":g": _s("FLOW")}
        condition = "#fg = :g"
        if namespace is not None:
            # The key range holds the namespace and its sub-namespaces, plus names in between such
            # as `team-x` for `team`: the filter keeps exact matches and `<namespace>.` prefixes.
            condition += " AND #fk BETWEEN :lo AND :hi"
            values |= {":lo": _s(f"{namespace} "), ":hi": _s(f"{namespace}.{_MAX_CHAR}")}
            values |= {":ns": _s(namespace), ":sub": _s(f"{namespace}.")}
            kwargs["FilterExpression"] = "#fn = :ns OR begins_with(#fn, :sub)"
        kwargs["KeyConditionExpression"] = condition
        kwargs["ExpressionAttributeNames"] = _names(condition, kwargs.get("FilterExpression"))
        kwargs["ExpressionAttributeValues"] = values
        if cursor:
            ns, fid = _cursor_decode(cursor, (str, str))
            kwargs["ExclusiveStartKey"] = {
                "PK": self._flow_pk(ns, fid),
                "SK": _s("LATEST"),
                "fg": _s("FLOW"),
                "fk": _s(f"{ns} {fid}"),
            }
        found = self._collect(kwargs, limit + 1)
        items = [self._flow(x) for x in found[:limit]]
        more = len(found) > limit
        return Page(items, _cursor_encode(items[-1].namespace, items[-1].id) if more else None)

    def _collect(self, kwargs: dict[str, Any], wanted: int) -> list[Item]:
        """Query pages until ``wanted`` items passed the filter (or the range ends)."""
        found: list[Item] = []
        while len(found) < wanted:
            response = self._call("Query", **kwargs)
            found += response.get("Items", [])
            last = response.get("LastEvaluatedKey")
            if not last:
                break
            kwargs["ExclusiveStartKey"] = last
        return found[:wanted]

    def flow_revisions(self, namespace: str, flow_id: str) -> list[int]:
        items = self._query(
            KeyConditionExpression="PK = :pk AND begins_with(SK, :rev)",
            ExpressionAttributeValues={":pk": self._flow_pk(namespace, flow_id), ":rev": _s("REV#")},
            ProjectionExpression="SK, #del",
            ExpressionAttributeNames={"#del": "del"},
            ConsistentRead=True,
        )
        return [int(x["SK"]["S"].removeprefix("REV#")) for x in items if "del" not in x]

    def delete_flow(self, namespace: str, flow_id: str, *, at: datetime) -> None:
        for _ in range(20):
            latest = self._get({"PK": self._flow_pk(namespace, flow_id), "SK": _s("LATEST")})
            if latest is None or "del" in latest:
                raise NotFoundError(f"flow {namespace}.{flow_id} not found")
            try:
                self._new_revision(namespace, flow_id, latest["src"]["S"], at, latest, deleted=True)
                return
            except _Refused:
                continue
        raise ConflictError(f"flow {namespace}.{flow_id}: too many concurrent saves")

    # ------------------------------------------------------------------ executions: writes

    def create_execution(
        self,
        execution: Execution,
        *,
        logs: Sequence[LogLine] = (),
        timers: Sequence[TimerRecord] = (),
        jobs: Sequence[JobRecord] = (),
    ) -> None:
        if DOCUMENT_MODE and self._doc_write(execution, None, logs, timers, jobs) == "done":
            return
        step = self._step(execution, None, execution.taskruns.keys(), logs, timers, jobs)
        self._write(step)
        self._remember(execution.id, execution.version, dict(execution.taskruns))

    def save_execution(
        self,
        execution: Execution,
        *,
        expected_version: int,
        logs: Sequence[LogLine] = (),
        timers: Sequence[TimerRecord] = (),
        jobs: Sequence[JobRecord] = (),
    ) -> None:
        mode = self._doc_write(execution, expected_version, logs, timers, jobs)
        if mode == "done":
            return
        if mode == "switch":
            self._switch(execution, expected_version, logs, timers, jobs)
            return
        step = self._step(execution, expected_version, execution.changed, logs, timers, jobs)
        self._write(step)
        with self._lock:
            cached = self._cache.get(execution.id)
        if cached is not None and cached[0] == expected_version:
            # What is stored now is the snapshot we had plus exactly the changed task runs.
            taskruns = dict(cached[1])
            for tr_id in execution.changed:
                if tr_id in execution.taskruns:
                    taskruns[tr_id] = execution.taskruns[tr_id]
                else:
                    taskruns.pop(tr_id, None)
            self._remember(execution.id, execution.version, taskruns)

    # ------------------------------------------------------------------ document mode (ADR 0005)

    def _doc_write(
        self,
        ex: Execution,
        expected: int | None,
        logs: Sequence[LogLine],
        timers: Sequence[TimerRecord],
        jobs: Sequence[JobRecord],
    ) -> str:
        """Write ``ex`` as one document item if it is (and stays) one.

        Returns ``done``; ``split`` when the execution is stored split (or a big step holds it:
        the split path knows leases); ``switch`` when this write would outgrow the document
        (the caller converts it). A create that does not fit returns ``split``.
        """
        key = self._exec_key(ex.id)
        for _ in range(_READ_ATTEMPTS):
            if expected is None:
                doc: _Doc | None = _Doc(-1, {}, 0, False, {}) if DOCUMENT_MODE else None
            else:
                doc = self._doc_state(ex.id, expected)
            if doc is None:
                return "split"
            entries = dict(doc.jobs)
            changed: dict[str, Item] = {}
            for job in jobs:
                if job.phase is JobPhase.SUBMITTING:
                    if job.name in entries:
                        raise ConflictError(f"job {job.name} already exists")
                    entries[job.name] = changed[job.name] = self._doc_job_entry(job, 1)
                elif job.name in entries:  # else SQLite's UPDATE of no row: dropped
                    entries[job.name] = changed[job.name] = self._doc_job_update(entries[job.name], job)
            # Only the changed task runs are taken from ``ex``: the others stay as stored.
            raws = dict(doc.taskruns)
            for tr_id in ex.taskruns.keys() if expected is None else ex.changed:
                tr = ex.taskruns.get(tr_id)
                if tr is None:
                    raws.pop(tr_id, None)
                else:
                    raws[tr_id] = taskrun_to_json(tr)
            log_chunk = _inline_logs(logs) if logs else None
            log_bytes = doc.log_bytes + (len(log_chunk) if log_chunk else 0)
            ttl = self._expiry() if ex.state.terminal else None
            attrs = self._doc_attrs(ex, raws, ttl)
            active = any(e["M"]["p"]["S"] != JobPhase.DONE.value for e in entries.values())
            fits = (
                len(raws) <= DOCUMENT_MAX_TASKRUNS
                and log_bytes <= DOCUMENT_LOG_BYTES
                and all(execution_of_job(name) == ex.id for name in entries)
                and all(
                    raw.get("outputs") is None or len(dumps(raw["outputs"]).encode()) <= self.offload_bytes
                    for raw in raws.values()
                )
            )
            if fits:
                size = (
                    item_size({**key, **attrs, "j": {"M": entries}, "xg": _s("EXEC"), "xc": _s("x" * 40)})
                    + log_bytes
                    + 60
                )
                fits = size <= DOCUMENT_MAX_BYTES
            if not fits:
                return "split" if expected is None else "switch"
            try:
                late = self._late(ex, jobs)
                if expected is None:
                    self._doc_create(ex, attrs, entries, log_chunk, timers, active and late)
                else:
                    self._doc_update(ex, expected, doc, attrs, changed, log_chunk, timers, active, ttl, late)
            except _Refused as refused:
                reason = refused.reasons(1)[0]
                if reason.get("Code") != "ConditionalCheckFailed":
                    codes = [r.get("Code") for r in refused.reasons(1)]
                    if "TransactionConflict" in codes:
                        raise ConflictError(
                            f"execution {ex.id}: a concurrent write touched the same items: reload and retry"
                        ) from None
                    raise StoreError(
                        f"DynamoDB table {self.table}: the write of execution {ex.id} was cancelled: {codes}"
                    ) from None
                old = reason.get("Item")
                if expected is None:
                    raise ConflictError(f"execution {ex.id} already exists") from None
                with self._lock:
                    self._docs.pop(ex.id, None)
                if old is None:
                    raise NotFoundError(f"execution {ex.id} not found") from None
                if old.get("md", {}).get("S") != _DOC or "ls" in old:
                    return "split"
                if int(old["v"]["N"]) != expected:
                    raise ConflictError(
                        f"execution {ex.id} is at version {old['v']['N']}, not {expected}: reload and retry"
                    ) from None
                continue  # a job entry or the inline logs moved (update_job, append_logs): again
            with self._lock:
                self._cache.pop(ex.id, None)
            self._know(ex.id, _Doc(ex.version, entries, log_bytes, active, raws))
            return "done"
        raise ConflictError(f"execution {ex.id}: its jobs kept changing during the write: reload and retry")

    def _doc_state(self, execution_id: str, version: int) -> _Doc | None:
        """What a document write must know besides the execution: its jobs and inline log size.

        From this instance's last read or write when that was at ``version`` (the common case:
        the service read the execution it now saves), else one strongly consistent read.
        None: the execution is not (or no longer) a document, or a big step holds it.
        """
        with self._lock:
            known = self._docs.get(execution_id)
        if known is not None and known.version == version:
            return known
        with self._lock:
            if execution_id in self._split:
                return None  # seen split, and split is for good
        item = self._get(self._exec_key(execution_id))  # a read unit covers 4 KB: the body is free
        if item is None:
            raise NotFoundError(f"execution {execution_id} not found")
        if item.get("md", {}).get("S") != _DOC or "ls" in item:
            return None
        if int(item["v"]["N"]) != version:
            raise ConflictError(
                f"execution {execution_id} is at version {item['v']['N']}, not {version}: reload and retry"
            )
        doc = _Doc.of(item)
        self._know(execution_id, doc)
        return doc

    def _know(self, execution_id: str, doc: _Doc) -> None:
        with self._lock:
            _lru_put(self._docs, execution_id, doc, _CACHE_SIZE * 8)

    def _doc_attrs(self, ex: Execution, raws: Mapping[str, Any], ttl: int | None) -> Item:
        """The attributes every document write sets: version, compressed body, state and summary."""
        body = {"m": execution_meta(ex), "t": list(raws.values())}
        attrs: Item = {"v": _n(ex.version), "d": {"B": _compress(dumps(body))}}
        summary = self._meta_attrs(ex, ttl)
        attrs |= {name: summary[name] for name in ("st", "sm")}
        if ttl is not None:
            attrs[TTL_ATTRIBUTE] = _n(ttl)
        return attrs

    @staticmethod
    def _doc_job_entry(job: JobRecord, version: int) -> Item:
        entry: Item = {
            "v": _n(version),
            "p": _s(job.phase.value),
            "t": _s(job.taskrun_id),
            "a": _n(job.attempt),
            "r": _s(job.runner),
        }
        if job.phase is not JobPhase.DONE:
            entry["s"] = {"B": _compress(dumps(job.spec))}
        if job.handle is not None:
            entry["h"] = _s(dumps(job.handle))
        if job.updated is not None:
            entry["u"] = _s(job.updated.isoformat())
        return {"M": entry}

    @staticmethod
    def _doc_job_update(old: Item, job: JobRecord) -> Item:
        """A later phase, as SQLite's ``UPDATE``: the handle kept when none is given, version + 1."""
        entry = dict(old["M"])
        entry["p"] = _s(job.phase.value)
        entry["v"] = _n(int(entry["v"]["N"]) + 1)
        if job.phase is JobPhase.DONE:
            # A finished job is never submitted, found or cancelled again: its spec is dead
            # weight in every later write of the document (it made a 1-task completion cost
            # 2 write units instead of 1). The handle stays: it says which backend job ran.
            entry.pop("s", None)
        if job.handle is not None:
            entry["h"] = _s(dumps(job.handle))
        entry.pop("u", None)
        if job.updated is not None:
            entry["u"] = _s(job.updated.isoformat())
        return {"M": entry}

    @staticmethod
    def _doc_job(name: str, execution_id: str, entry: Item) -> JobRecord:
        raw = entry["M"]
        return JobRecord(
            name=name,
            execution_id=execution_id,
            taskrun_id=raw["t"]["S"],
            attempt=int(raw["a"]["N"]),
            runner=raw["r"]["S"],
            phase=JobPhase(raw["p"]["S"]),
            spec=loads(_decompress(raw["s"]["B"])) if "s" in raw else {},
            handle=loads(raw["h"]["S"]) if "h" in raw else None,
            version=int(raw["v"]["N"]),
            updated=datetime.fromisoformat(raw["u"]["S"]) if "u" in raw else None,
        )

    def _active_keys(self, execution_id: str) -> Item:
        return {"aq": _s("A"), "ar": _s(execution_id)}

    def _late(self, ex: Execution, jobs: Sequence[JobRecord]) -> bool:
        """Whether this write must set the active keys itself instead of leaving it to :meth:`visit`.

        Always in eager mode. With the visit, when it adds a job once the visit may already
        have passed the execution: ``visit_after`` (less the overlap, for skew) after its
        creation, by the job's own timestamp (the service's clock, the one the tick's
        ``now`` and ``created`` come from). A retry or the next task of a long flow is such a
        job; without its keys it would never be recovered nor reconciled.
        """
        if self.visit_after is None:
            return True
        threshold = _us(ex.created) + (self.visit_after - self.visit_overlap) // timedelta(microseconds=1)
        for job in jobs:
            if job.phase is JobPhase.SUBMITTING:
                at = job.updated or datetime.fromtimestamp(self._clock(), UTC)
                if _us(at) >= threshold:
                    return True
        return False

    def _doc_create(
        self,
        ex: Execution,
        attrs: Item,
        entries: Mapping[str, Item],
        log_chunk: bytes | None,
        timers: Sequence[TimerRecord],
        active: bool,
    ) -> None:
        """One ``PutItem`` (a transaction only when the execution starts with timers)."""
        item: Item = {
            **self._exec_key(ex.id),
            **attrs,
            "md": _s(_DOC),
            "j": {"M": dict(entries)},
            "lg": {"L": [{"B": log_chunk}] if log_chunk else []},
            "lb": _n(len(log_chunk) if log_chunk else 0),
            "xg": _s("EXEC"),
            "xc": _s(f"{_us(ex.created):017d}#{ex.id}"),
            "xn": _s(ex.namespace),
            "xf": _s(ex.flow_id),
        }
        if active:
            item |= self._active_keys(ex.id)
        ops = [{"Put": {"TableName": self.table, "Item": item, "ConditionExpression": _IS_NEW}}]
        ops += [{"Put": {"TableName": self.table, "Item": self._timer_item(t)}} for t in _unique(timers)]
        self._send(ops)

    def _doc_update(
        self,
        ex: Execution,
        expected: int,
        doc: _Doc,
        attrs: Item,
        changed: Mapping[str, Item],
        log_chunk: bytes | None,
        timers: Sequence[TimerRecord],
        active: bool,
        ttl: int | None,
        late: bool,
    ) -> None:
        """One conditional ``UpdateItem`` on ``v``: only the changed job entries are set, each
        conditional on the version this write read, so a concurrent ``update_job`` of another
        entry is kept and one of the same entry refuses the write (which is then done again).

        Active keys, eager mode: set when a job becomes active, removed when none is left.
        With the visit: set only by a ``late`` job (see :meth:`_late`); removed whenever no
        job is left, whatever this instance knows, since a visit may have set them without
        moving ``v`` (removing absent keys writes nothing to the index)."""
        names: dict[str, str] = {}
        values: Item = {":expected": _n(expected), ":doc": _s(_DOC)}
        extra: list[str] = []
        condition = f"{_AT_VERSION} AND #md = :doc AND {_NO_LEASE}"
        for i, (name, entry) in enumerate(changed.items()):
            names[f"#j{i}"] = name
            extra.append(f"#j.#j{i} = :j{i}")
            values[f":j{i}"] = entry
            if name in doc.jobs:
                condition += f" AND #j.#j{i}.#v = :jv{i}"
                values[f":jv{i}"] = doc.jobs[name]["M"]["v"]
            else:
                condition += f" AND attribute_not_exists(#j.#j{i})"
        if log_chunk:
            extra += ["#lg = list_append(#lg, :lg)", "#lb = #lb + :lbn"]
            values |= {":lg": {"L": [{"B": log_chunk}]}, ":lbn": _n(len(log_chunk))}
            condition += " AND #lb <= :room"
            values[":room"] = _n(DOCUMENT_LOG_BYTES - len(log_chunk))
        remove = [] if ttl is not None else [TTL_ATTRIBUTE]
        sets = dict(attrs)
        visiting = self.visit_after is not None
        if active and (late if visiting else not doc.active):
            sets |= self._active_keys(ex.id)
        elif not active and (visiting or doc.active):
            remove += ["aq", "ar"]
            # Leaving the active index: every other job must still be DONE (phases only move on).
            for i, (name, entry) in enumerate(doc.jobs.items()):
                if name not in changed:
                    names[f"#k{i}"] = name
                    condition += f" AND #j.#k{i}.#v = :kv{i}"
                    values[f":kv{i}"] = entry["M"]["v"]
        args = self._update(
            self._exec_key(ex.id),
            sets,
            remove=remove,
            extra=extra,
            condition=condition,
            values=values,
            names=names,
        )
        ops = [{"Update": {**args, "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}}]
        ops += [{"Put": {"TableName": self.table, "Item": self._timer_item(t)}} for t in _unique(timers)]
        self._send(ops)

    def _switch(
        self,
        ex: Execution,
        expected: int,
        logs: Sequence[LogLine],
        timers: Sequence[TimerRecord],
        jobs: Sequence[JobRecord],
    ) -> None:
        """Convert a document to split mode, once and for good, in the write that outgrew it.

        The whole execution becomes ADR 0004 items in one step: every task run, the inline log
        lines (as the first log item, ``LOG#0000000000#0``), every job as a ``JOB#`` record with
        its version, plus this write's own records. It is a transaction when it fits and the
        redo path otherwise, conditional on the version and on the job versions and inline log
        size it copied (``guard``), so nothing written meanwhile is lost.
        """
        item = self._get(self._exec_key(ex.id))
        if item is None:
            raise NotFoundError(f"execution {ex.id} not found")
        if item.get("md", {}).get("S") != _DOC or "ls" in item or int(item["v"]["N"]) != expected:
            with self._lock:
                self._docs.pop(ex.id, None)
            raise ConflictError(f"execution {ex.id} changed while switching to split mode: reload and retry")
        records = {
            name: self._doc_job(name, ex.id, entry) for name, entry in item.get("j", {}).get("M", {}).items()
        }
        guard_names: dict[str, str] = {}
        guard_values: Item = {":glb": item.get("lb", _n(0))}
        expr = " AND #lb = :glb"
        for i, (name, record) in enumerate(records.items()):
            guard_names[f"#g{i}"] = name
            expr += f" AND #j.#g{i}.#v = :gv{i}"
            guard_values[f":gv{i}"] = _n(record.version)
        for job in jobs:
            if job.phase is JobPhase.SUBMITTING:
                if job.name in records:
                    raise ConflictError(f"job {job.name} already exists")
                records[job.name] = replace(job, version=1)
            elif job.name in records:
                old = records[job.name]
                records[job.name] = replace(
                    old,
                    phase=job.phase,
                    handle=job.handle if job.handle is not None else old.handle,
                    updated=job.updated,
                    version=old.version + 1,
                )
        stored = _Doc.of(item).taskruns
        taskruns = {tr_id: taskrun_from_json(raw) for tr_id, raw in stored.items()}
        for tr_id in ex.changed:  # only the changed task runs come from ``ex``, as in every write
            tr = ex.taskruns.get(tr_id)
            if tr is None:
                taskruns.pop(tr_id, None)
            else:
                taskruns[tr_id] = tr
        ex = ex.evolve(taskruns=immutables.Map(sorted(taskruns.items(), key=lambda x: x[1].seq)))
        inline = [
            line for chunk in item.get("lg", {}).get("L", []) for line in loads(_decompress(chunk["B"]))
        ]
        step = self._step(ex, expected, ex.taskruns.keys(), logs, timers, [])
        step.slot = None
        step.meta["ch"] = {"M": {}}  # no reader can catch up across the switch: they read it all
        step.meta_remove += list(_DOC_ATTRS)
        step.guard = {"expr": expr, "names": guard_names, "values": guard_values}
        if inline:
            ttl = self._expiry() if ex.state.terminal else None
            step.puts += self._log_items(ex.id, f"LOG#{0:010d}#0", [log_from_json(x) for x in inline], ttl)
        for record in records.values():
            job_item = self._job_item(record)
            job_item["v"] = _n(record.version)
            step.new_jobs.append(job_item)
        self._write(step)
        with self._lock:
            self._docs.pop(ex.id, None)
        self._remember(ex.id, ex.version, dict(ex.taskruns))

    def _step(
        self,
        ex: Execution,
        expected: int | None,
        changed: Any,
        logs: Sequence[LogLine],
        timers: Sequence[TimerRecord],
        jobs: Sequence[JobRecord],
    ) -> _Step:
        """Every item of the write, built (and size-checked) before anything is sent."""
        ttl = self._expiry() if ex.state.terminal else None
        meta = self._meta_attrs(ex, ttl)
        size = item_size(meta) + 20
        if size > ITEM_LIMIT_BYTES:
            raise StoreError(
                f"execution {ex.id}: its meta item is {size:,} bytes, over DynamoDB's 400 KB item limit"
                f" (inputs, labels or outputs too large) in table {self.table}"
            )
        step = _Step(ex.id, expected is None, ex.version, -1 if expected is None else expected, meta)
        if ttl is None:
            step.meta_remove.append(TTL_ATTRIBUTE)
        ids = sorted(changed)
        if expected is None:
            meta["ch"] = {"M": {}}
        else:  # what a reader holding version `expected` must fetch again to catch up with this write
            listed = ",".join(ids)
            if len(listed) > _CH_MAX_CHARS or any(("," in i or "|" in i) for i in ids):
                listed = "*"
            step.slot = [f"s{ex.version % _CH_SLOTS}", f"{ex.version}|{expected}|{listed}"]
        for tr_id in ids:
            tr = ex.taskruns.get(tr_id)
            if tr is not None:
                step.puts.append(self._taskrun_item(ex.id, tr, ttl, step))
            elif expected is not None:
                step.deletes.append(self._exec_key(ex.id, _TR + tr_id))
        if logs:
            step.puts += self._log_items(ex.id, f"LOG#{ex.version:010d}#0", logs, ttl)
        step.puts += [self._timer_item(t) for t in {(t.execution_id, t.key): t for t in timers}.values()]
        names: set[str] = set()
        updates: dict[str, dict[str, Any]] = {}
        for job in jobs:
            if job.phase is JobPhase.SUBMITTING:
                if job.name in names:
                    raise ConflictError(f"job {job.name} already exists")
                names.add(job.name)
                step.new_jobs.append(self._job_item(job))
            else:
                updates[job.name] = self._job_update(job)
        step.job_updates = list(updates.values())
        return step

    def _write(self, step: _Step) -> None:
        size = sum(item_size(x) for x in step.puts) + sum(item_size(x) for x in step.new_jobs)
        if step.operations <= TRANSACTION_ITEM_LIMIT and size <= _TRANSACTION_BYTES:
            self._small_step(step)
        else:
            self._big_step(step)
        for side in step.puts:  # committed: later steps of this store need not write them again
            if side["SK"]["S"].startswith(_VALUES):
                self._know_values(
                    step.execution_id, side["SK"]["S"][len(_VALUES) :], loads(_decompress(side["d"]["B"]))
                )

    def _meta_write(self, step: _Step) -> dict[str, Any]:
        """META's part of a small step: ``(op, args)`` for a transaction or a single call."""
        key = self._exec_key(step.execution_id)
        if step.create:
            return {
                "Put": {"TableName": self.table, "Item": {**key, **step.meta}, "ConditionExpression": _IS_NEW}
            }
        guard = step.guard or {"expr": "", "names": {}, "values": {}}
        args = self._update(
            key,
            step.meta,
            remove=step.meta_remove,
            extra=[] if step.slot is None else [f"#ch.#{step.slot[0]} = :slot"],
            condition=f"{_AT_VERSION} AND {_NO_LEASE}{guard['expr']}",
            values={":expected": _n(step.expected), **guard["values"]}
            | ({} if step.slot is None else {":slot": _s(step.slot[1])}),
            names=guard["names"],
        )
        # On refusal, return the stored META: tells "not found", "newer version" and "leased" apart.
        return {"Update": {**args, "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}}

    def _small_step(self, step: _Step) -> None:
        updates = list(step.job_updates)
        while True:
            ops: list[dict[str, Any]] = [self._meta_write(step)]
            ops += [{"Put": {"TableName": self.table, "Item": item}} for item in step.puts]
            ops += [{"Delete": {"TableName": self.table, "Key": key}} for key in step.deletes]
            ops += [
                {"Put": {"TableName": self.table, "Item": item, "ConditionExpression": _IS_NEW}}
                for item in step.new_jobs
            ]
            ops += [
                {
                    "Update": self._update(
                        u["key"],
                        u["set"],
                        remove=u["remove"],
                        extra=["#v = #v + :one"],
                        condition=_EXISTS,
                        values={":one": _n(1)},
                    )
                }
                for u in updates
            ]
            try:
                self._send(ops)
                return
            except _Refused as refused:
                reasons = refused.reasons(len(ops))
            self._meta_refused(step, reasons[0])
            first_job = 1 + len(step.puts) + len(step.deletes)
            for item, reason in zip(step.new_jobs, reasons[first_job:], strict=False):
                if reason.get("Code") == "ConditionalCheckFailed":
                    raise ConflictError(f"job {item['PK']['S'].removeprefix('JOB#')} already exists")
            missing = {
                u["name"]
                for u, reason in zip(updates, reasons[first_job + len(step.new_jobs) :], strict=False)
                if reason.get("Code") == "ConditionalCheckFailed"
            }
            codes = {r.get("Code") for r in reasons} - {"None", "ConditionalCheckFailed", None}
            if codes == {"TransactionConflict"}:
                raise ConflictError(
                    f"execution {step.execution_id}: a concurrent write touched the same items:"
                    " reload and retry"
                )
            if codes or not missing:
                raise StoreError(
                    f"DynamoDB table {self.table}: the write of execution {step.execution_id} was cancelled:"
                    f" {[r.get('Code') for r in reasons]}"
                )
            updates = [u for u in updates if u["name"] not in missing]  # SQLite's UPDATE of no row

    def _send(self, ops: list[dict[str, Any]]) -> None:
        """One item: a plain conditional write (half the cost of a transaction). More: a transaction."""
        if len(ops) > 1:
            self._call("TransactWriteItems", TransactItems=ops)
            return
        [(kind, args)] = ops[0].items()
        args = (
            {**args, "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}
            if "ConditionExpression" in args
            else args
        )
        self._call({"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem"}[kind], **args)

    def _meta_refused(self, step: _Step, reason: Mapping[str, Any]) -> None:
        """Raise what a refused META condition means; return if META was not the cause."""
        if reason.get("Code") != "ConditionalCheckFailed":
            return
        if step.create:
            raise ConflictError(f"execution {step.execution_id} already exists")
        old = reason.get("Item")
        if old is None:
            old = self._get(self._exec_key(step.execution_id))  # a transaction without ALL_OLD
        if old is None:
            raise NotFoundError(f"execution {step.execution_id} not found")
        if "ls" in old:
            lease = old["ls"]["M"]
            if float(lease["ex"]["N"]) <= self._clock():
                self._recover(step.execution_id, lease)
            raise ConflictError(
                f"execution {step.execution_id} is being written by a big step: reload and retry"
            )
        version = old.get("v", {}).get("N", "?")
        raise ConflictError(
            f"execution {step.execution_id} is at version {version}, not {step.expected}: reload and retry"
        )

    # ------------------------------------------------------------------ big steps

    def _big_step(self, step: _Step) -> None:
        step.meta["ch"] = {"M": {}}  # readers cannot catch up across a big step: they read it all
        step.slot = None
        token = secrets.token_hex(12)
        journal = dumps(step.to_json())
        chunks = [journal[i : i + _JOURNAL_CHARS] for i in range(0, len(journal), _JOURNAL_CHARS)]
        expires = int(self._clock()) + _JOURNAL_TTL
        self._batch_write(
            [
                {
                    "PutRequest": {
                        "Item": {
                            **self._exec_key(step.execution_id, f"JOURNAL#{token}#{n:05d}"),
                            "d": _s(chunk),
                            TTL_ATTRIBUTE: _n(expires),
                        }
                    }
                }
                for n, chunk in enumerate(chunks)
            ]
        )
        self._at("journal")
        lease = {
            "tk": _s(token),
            "ex": _n(self._clock() + self.lease_seconds),
            "nv": _n(step.version),
            "n": _n(len(chunks)),
        }
        key = self._exec_key(step.execution_id)
        try:
            if step.create:  # a placeholder: no listing keys, so nobody lists a half-made execution
                self._call(
                    "PutItem",
                    TableName=self.table,
                    Item={**key, "ls": {"M": lease}},
                    ConditionExpression=_IS_NEW,
                )
            else:
                guard = step.guard or {"expr": "", "names": {}, "values": {}}
                args = self._update(
                    key,
                    {"ls": {"M": lease}},
                    condition=f"{_AT_VERSION} AND {_NO_LEASE}{guard['expr']}",
                    values={":expected": _n(step.expected), **guard["values"]},
                    names=guard["names"],
                )
                self._call("UpdateItem", ReturnValuesOnConditionCheckFailure="ALL_OLD", **args)
        except _Refused as refused:
            self._delete_journal(step.execution_id, token, len(chunks))
            self._meta_refused(step, refused.reasons(1)[0])
            raise StoreError(f"execution {step.execution_id}: the lease was refused") from None
        self._at("lease")
        self._roll_forward(step, token, len(chunks))

    def _roll_forward(self, step: _Step, token: str, chunks: int) -> None:
        """Stages (3)-(7): safe to run again, by anyone, from the journal."""
        values = {":token": _s(token)}
        refused: list[str] = []

        def put_jobs(group: list[Item]) -> None:
            # 100 conditional puts per transaction: ten calls for a 1,000-lane start, not 1,000.
            ops = [
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": {**item, "lt": _s(token)},
                        "ConditionExpression": _FREE_OR_OURS,
                        "ExpressionAttributeNames": _names(_FREE_OR_OURS),
                        "ExpressionAttributeValues": values,
                    }
                }
                for item in group
            ]
            try:
                self._send(ops)
            except _Refused as exc:
                reasons = exc.reasons(len(ops))
                taken = [
                    item["PK"]["S"].removeprefix("JOB#")
                    for item, reason in zip(group, reasons, strict=False)
                    if reason.get("Code") == "ConditionalCheckFailed"
                ]
                if not taken:
                    raise StoreError(
                        f"DynamoDB table {self.table}: job records of execution {step.execution_id}"
                        f" were refused: {[r.get('Code') for r in reasons]}"
                    ) from None
                refused.extend(taken)

        self._parallel(put_jobs, [step.new_jobs[i : i + 100] for i in range(0, len(step.new_jobs), 100)])
        if refused:
            self._roll_back(step, token, chunks)
            raise ConflictError(f"job {sorted(refused)[0]} already exists")
        self._at("jobs")
        self._batch_write(
            [{"PutRequest": {"Item": item}} for item in step.puts]
            + [{"DeleteRequest": {"Key": key}} for key in step.deletes]
        )
        self._at("apply")

        def update_job(update: dict[str, Any]) -> None:
            args = self._update(
                update["key"],
                {**update["set"], "lt": _s(token)},
                remove=update["remove"],
                extra=["#v = #v + :one"],
                condition=f"{_EXISTS} AND {_NOT_APPLIED}",
                values={**values, ":one": _n(1)},
            )
            with contextlib.suppress(_Refused):  # no such job, or this step already updated it
                self._call("UpdateItem", **args)

        self._parallel(update_job, step.job_updates)
        args = self._update(
            self._exec_key(step.execution_id),
            step.meta,
            remove=[*step.meta_remove, "ls"],
            condition=_HOLDS_LEASE,
            values=values,
        )
        try:
            self._call("UpdateItem", **args)
        except _Refused:
            now = self._get(self._exec_key(step.execution_id), projection="#v, #ls")
            if now is None or "ls" in now or int(now.get("v", {}).get("N", "-1")) != step.version:
                raise StoreError(
                    f"execution {step.execution_id}: lost the lease of a big step and nobody completed it"
                ) from None
            # someone found our lease expired and rolled this very step forward: done
        self._at("commit")
        self._delete_journal(step.execution_id, token, chunks)

    def _roll_back(self, step: _Step, token: str, chunks: int) -> None:
        """Undo a big step refused at stage (3): only its own job records were written."""
        values = {":token": _s(token)}

        def delete_job(item: Item) -> None:
            with contextlib.suppress(_Refused):  # not ours: the record that took the name stays
                self._call(
                    "DeleteItem",
                    TableName=self.table,
                    Key=self._job_key(item["PK"]["S"].removeprefix("JOB#")),
                    ConditionExpression="#lt = :token",
                    ExpressionAttributeNames={"#lt": "lt"},
                    ExpressionAttributeValues=values,
                )

        self._parallel(delete_job, step.new_jobs)
        key = self._exec_key(step.execution_id)
        try:
            if step.create:
                self._call(
                    "DeleteItem",
                    TableName=self.table,
                    Key=key,
                    ConditionExpression=_HOLDS_LEASE,
                    ExpressionAttributeNames=_names(_HOLDS_LEASE),
                    ExpressionAttributeValues=values,
                )
            else:
                self._call(
                    "UpdateItem",
                    **self._update(key, {}, remove=["ls"], condition=_HOLDS_LEASE, values=values),
                )
        except _Refused:
            pass  # someone else already rolled it back
        self._delete_journal(step.execution_id, token, chunks)

    def _delete_journal(self, execution_id: str, token: str, chunks: int) -> None:
        self._batch_write(
            [
                {"DeleteRequest": {"Key": self._exec_key(execution_id, f"JOURNAL#{token}#{n:05d}")}}
                for n in range(chunks)
            ]
        )

    def _recover(self, execution_id: str, lease: Mapping[str, Any]) -> None:
        """Finish (or roll back) the big step whose lease expired, from its journal."""
        token = lease["tk"]["S"]
        chunks = int(lease["n"]["N"])
        found = list(
            self._query(
                KeyConditionExpression="PK = :pk AND begins_with(SK, :j)",
                ExpressionAttributeValues={
                    ":pk": _s(f"EXEC#{execution_id}"),
                    ":j": _s(f"JOURNAL#{token}#"),
                },
                ConsistentRead=True,
            )
        )
        if len(found) != chunks:
            raise StoreError(
                f"execution {execution_id}: the journal of big step {token} has {len(found)} of {chunks}"
                f" chunks in table {self.table}; it cannot be rolled forward"
            )
        step = _Step.from_json(loads("".join(x["d"]["S"] for x in found)))
        with contextlib.suppress(ConflictError):  # a job name was taken: it was rolled back instead
            self._roll_forward(step, token, chunks)

    # ------------------------------------------------------------------ executions: reads

    def get_execution(self, execution_id: str) -> Execution:
        started = time.monotonic()
        key = self._exec_key(execution_id)
        with self._lock:
            base = self._cache.get(execution_id)
        # Invariant: `base` = (version, task runs) is right for every task run except those that
        # writes after `version` changed; META's ring names them, so reading them again is enough.
        meta_seen: Item | None = None
        for attempt in range(_READ_ATTEMPTS):
            if attempt >= 2:
                _read_backoff(attempt)
            if attempt >= _CONSISTENT_ATTEMPTS and base is not None and meta_seen is not None:
                return self._settle_for_stale(execution_id, meta_seen, base)
            meta = self._get(key) if base is not None else None  # nothing cached: go to the query
            meta_seen = meta if meta is not None else meta_seen
            if meta is None and base is not None:
                with self._lock:
                    self._cache.pop(execution_id, None)
                raise NotFoundError(f"execution {execution_id} not found")
            if meta is not None and "ls" in meta:
                self._await_lease(execution_id, meta, started)
                continue
            if meta is not None and meta.get("md", {}).get("S") == _DOC:
                return self._from_doc(execution_id, meta)
            if meta is not None and base is not None and base[0] == int(meta["v"]["N"]):
                # No write since the snapshot (or since catching up): it is consistent with META.
                execution = self._build(execution_id, meta, base[1])
                self._remember(execution_id, base[0], base[1])
                return execution
            if meta is not None and base is not None:
                caught = self._catch_up(execution_id, base, meta)
                if caught is not None:
                    base = (int(meta["v"]["N"]), caught)
                    continue  # read META again: nothing may have been written meanwhile
            items = list(
                self._query(
                    KeyConditionExpression="PK = :pk AND SK BETWEEN :lo AND :hi",
                    ExpressionAttributeValues={
                        ":pk": key["PK"],
                        ":lo": _s(_META),
                        ":hi": _s(_TR + _MAX_CHAR),
                    },
                    ConsistentRead=True,
                )
            )
            if not items or items[0]["SK"]["S"] != _META:
                raise NotFoundError(f"execution {execution_id} not found")
            if "ls" in items[0]:
                self._await_lease(execution_id, items[0], started)
                continue
            if items[0].get("md", {}).get("S") == _DOC:  # one item: consistent by itself
                return self._from_doc(execution_id, items[0])
            # META is read first in sort-key order, every task run after it: a write that lands
            # during the query is at a later version, which the next META read shows.
            base = (int(items[0]["v"]["N"]), {tr.id: tr for tr in self._parse(execution_id, items[1:])})
            meta_seen = items[0]
        raise StoreError(f"execution {execution_id} kept changing while being read from table {self.table}")

    def _settled_meta(self, execution_id: str) -> Item | None:
        """META once no big step holds the execution (None when absent)."""
        started = time.monotonic()
        while True:
            meta = self._get(self._exec_key(execution_id))
            if meta is None or "ls" not in meta:
                return meta
            self._await_lease(execution_id, meta, started)

    def get_execution_meta(self, execution_id: str) -> Execution:
        meta = self._settled_meta(execution_id)
        if meta is None:
            raise NotFoundError(f"execution {execution_id} not found")
        if meta.get("md", {}).get("S") == _DOC:
            try:
                body = loads(_decompress(meta["d"]["B"]))
                return execution_from_json(body["m"], int(meta["v"]["N"]), [])
            except (ValueError, KeyError, TypeError, zlib.error) as exc:
                raise StoreError(
                    f"execution {execution_id} is unreadable in DynamoDB table {self.table}: {exc!r}"
                ) from exc
        return self._build(execution_id, meta, {})

    def list_taskruns(
        self, execution_id: str, *, after: str | None = None, limit: int = 100
    ) -> list[TaskRun]:
        meta = self._settled_meta(execution_id)
        if meta is None or limit <= 0:
            return []
        if meta.get("md", {}).get("S") == _DOC:  # one item, small by construction: sort and slice it
            taskruns = sorted(
                self._from_doc(execution_id, meta).taskruns.values(), key=lambda tr: tr.id.encode()
            )
            start = after.encode() if after is not None else b""
            return [tr for tr in taskruns if tr.id.encode() > start][:limit]
        key = self._exec_key(execution_id)
        query: dict[str, Any] = {
            "KeyConditionExpression": "PK = :pk AND SK BETWEEN :lo AND :hi",
            "ExpressionAttributeValues": {":pk": key["PK"], ":lo": _s(_TR), ":hi": _s(_TR + _MAX_CHAR)},
            "ConsistentRead": True,
            "Limit": limit,
        }
        if after is not None:
            query["ExclusiveStartKey"] = self._exec_key(execution_id, _TR + after)
        items = list(itertools.islice(self._query(**query), limit))
        return self._parse(execution_id, items)

    def _settle_for_stale(
        self, execution_id: str, meta: Item, base: tuple[int, dict[str, TaskRun]]
    ) -> Execution:
        """A busy execution that never held still for a consistent read: a view that cannot be saved.

        Writers hammering one execution (a wide fan-in) can keep a reader from ever seeing
        META unchanged across its catch-up. Rather than fail, return what was read, labelled
        with the *oldest* version it is built from (``base``'s): every task run is at least
        that new, and any save made from this view names that version, so the store refuses
        it (META has moved on) and the writer reloads. Only a read-only caller can see the
        mix, and only while the execution is that busy.
        """
        execution = self._build(execution_id, meta, base[1])
        return replace(execution, version=base[0]) if execution.version != base[0] else execution

    def _from_doc(self, execution_id: str, item: Item) -> Execution:
        with self._lock:
            self._cache.pop(execution_id, None)
        self._know(execution_id, _Doc.of(item))
        try:
            body = loads(_decompress(item["d"]["B"]))
            taskruns = [taskrun_from_json(raw) for raw in body["t"]]
            return execution_from_json(body["m"], int(item["v"]["N"]), taskruns)
        except (ValueError, KeyError, TypeError, zlib.error) as exc:
            raise StoreError(
                f"execution {execution_id} is unreadable in DynamoDB table {self.table}: {exc!r}"
            ) from exc

    def _catch_up(
        self, execution_id: str, base: tuple[int, dict[str, TaskRun]], meta: Item
    ) -> dict[str, TaskRun] | None:
        """``base``'s task runs brought to META's version, or None when the ring does not reach back."""
        ring = meta.get("ch", {}).get("M", {})
        ids: set[str] = set()
        version = int(meta["v"]["N"])
        for _ in range(_CH_SLOTS):
            if version == base[0]:
                break
            entry = ring.get(f"s{version % _CH_SLOTS}", {}).get("S", "")
            parts = entry.split("|", 2)
            if len(parts) != 3 or parts[0] != str(version) or parts[2] == "*":
                return None
            ids.update(x for x in parts[2].split(",") if x)
            version = int(parts[1])
        else:
            return None
        if version != base[0]:
            return None
        taskruns = dict(base[1])
        fetched = self._batch_get([self._exec_key(execution_id, _TR + i) for i in sorted(ids)])
        for tr in self._parse(execution_id, list(fetched.values())):
            taskruns[tr.id] = tr
        for tr_id in ids:
            if _TR + tr_id not in fetched:
                taskruns.pop(tr_id, None)  # deleted by that write (a restart dropping a branch)
        return taskruns

    def _remember(self, execution_id: str, version: int, taskruns: dict[str, TaskRun]) -> None:
        with self._lock:
            _lru_put(self._split, execution_id, None, _CACHE_SIZE * 32)
            _lru_put(self._cache, execution_id, (version, taskruns), _CACHE_SIZE)

    def _batch_get(
        self, keys: Sequence[Item], *, consistent: bool = True, projection: str | None = None
    ) -> dict[str, Item]:
        """Items by sort key when ``consistent`` (one execution's task runs), else by partition key."""
        found: dict[str, Item] = {}
        by = "SK" if consistent else "PK"
        for i in range(0, len(keys), 100):
            request: dict[str, Any] = {"Keys": list(keys[i : i + 100]), "ConsistentRead": consistent}
            if projection:
                request |= {
                    "ProjectionExpression": projection,
                    "ExpressionAttributeNames": _names(projection),
                }
            pending: dict[str, Any] = {self.table: request}
            for attempt in range(12):
                response = self._call("BatchGetItem", RequestItems=pending)
                for item in response.get("Responses", {}).get(self.table, []):
                    found[item[by]["S"]] = item
                pending = response.get("UnprocessedKeys") or {}
                if not pending:
                    break
                time.sleep(min(0.02 * 2**attempt, 1.0))  # throttled: back off before asking again
            else:
                raise StoreError(f"DynamoDB table {self.table}: BatchGetItem kept leaving keys unprocessed")
        return found

    def _await_lease(self, execution_id: str, meta: Item, started: float) -> None:
        """A big step holds the execution: roll it forward if its lease expired, else wait a little."""
        lease = meta["ls"]["M"]
        if float(lease["ex"]["N"]) <= self._clock():
            self._recover(execution_id, lease)
            return
        if time.monotonic() - started > self.lease_seconds + 10:
            raise StoreError(f"execution {execution_id}: a big step held it for over {self.lease_seconds}s")
        time.sleep(0.05)  # the holder is working: poll META again until it commits or expires

    def _parse(self, execution_id: str, items: list[Item]) -> list[TaskRun]:
        try:
            taskruns = []
            for item in items:
                raw = loads(item["b"]["S"])
                if "o" in item:
                    raw["outputs"] = self._fetch_outputs(item["o"]["S"])
                if "pv" in item:
                    values = self._loop_values(execution_id, item["pv"]["S"])
                    raw.setdefault("progress", {})["values"] = values
                taskruns.append(taskrun_from_json(raw))
            return taskruns
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(
                f"execution {execution_id} has an unreadable task run in DynamoDB table {self.table}: {exc!r}"
            ) from exc

    def _build(self, execution_id: str, meta: Item, taskruns: dict[str, TaskRun]) -> Execution:
        try:
            return execution_from_json(loads(meta["b"]["S"]), int(meta["v"]["N"]), list(taskruns.values()))
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(
                f"execution {execution_id} is unreadable in DynamoDB table {self.table}: {exc!r}"
            ) from exc

    def list_executions(
        self,
        *,
        namespace: str | None = None,
        flow_id: str | None = None,
        states: Sequence[State] | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[ExecutionSummary]:
        """Newest first, from the write-once ``executions`` index plus a ``BatchGetItem``.

        The index holds only immutable attributes, so namespace and flow are filtered there
        (index entries are about 100 bytes: an eventually consistent read unit covers about 40)
        and state and summary come from the items themselves (eventually consistent,
        ``ceil(item KB / 4) / 2`` RRU each: about 0.5 per document or META). A state filter is
        applied after that fetch, so the store keeps paging until it has ``limit + 1`` matches
        or the index ends: a rare state costs the reads of every execution it skips.
        """
        condition, values = "#xg = :h", {":h": _s("EXEC")}
        if cursor:
            [after] = _cursor_decode(cursor, (str,))
            condition += " AND #xc < :after"
            values[":after"] = _s(after)
        filters = []
        if namespace is not None:
            filters.append("#xn = :ns")
            values[":ns"] = _s(namespace)
        if flow_id is not None:
            filters.append("#xf = :f")
            values[":f"] = _s(flow_id)
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": GSI_EXECUTIONS,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": False,
            "Limit": min(max(2 * (limit + 1), 20), 1000),
        }
        if filters:
            kwargs["FilterExpression"] = " AND ".join(filters)
        kwargs["ExpressionAttributeNames"] = _names(condition, kwargs.get("FilterExpression"))
        wanted = {State(x).value for x in states} if states else None
        found: list[Item] = []
        while len(found) <= limit:
            response = self._call("Query", **kwargs)
            entries = response.get("Items", [])
            items = self._batch_get(
                [{"PK": x["PK"], "SK": x["SK"]} for x in entries],
                consistent=False,
                projection="PK, #st, #sm, #xn, #xf, #xc",
            )
            for entry in entries:  # the index's order, newest first
                item = items.get(entry["PK"]["S"])
                if item is None or "st" not in item:
                    continue  # deleted meanwhile (TTL), or not readable yet (eventual consistency)
                if wanted is None or item["st"]["S"] in wanted:
                    found.append(item)
                    if len(found) > limit:
                        break
            last = response.get("LastEvaluatedKey")
            if not last:
                break
            kwargs["ExclusiveStartKey"] = last
        page = [self._summary(x) for x in found[:limit]]
        more = len(found) > limit
        return Page(page, _cursor_encode(found[limit - 1]["xc"]["S"]) if more else None)

    @staticmethod
    def _summary(item: Item) -> ExecutionSummary:
        summary = loads(item["sm"]["S"])
        return ExecutionSummary(
            id=item["xc"]["S"].split("#", 1)[1],
            namespace=item["xn"]["S"],
            flow_id=item["xf"]["S"],
            flow_revision=summary.get("r"),
            state=State(item["st"]["S"]),
            created=datetime.fromisoformat(summary["c"]),
            ended=datetime.fromisoformat(summary["e"]) if summary.get("e") else None,
            labels=summary.get("l") or {},
            parent_id=summary.get("p"),
        )

    # ------------------------------------------------------------------ logs

    def append_logs(self, execution_id: str, logs: Sequence[LogLine]) -> None:
        """Lines sort after those of the version they follow: ``LOG#<v>#1#<time ns>...``."""
        if not logs:
            return
        meta = self._get(self._exec_key(execution_id), projection=f"#v, #{TTL_ATTRIBUTE}, #md")
        if (
            meta is not None
            and meta.get("md", {}).get("S") == _DOC
            and self._append_inline(execution_id, logs)
        ):
            return
        version = int(meta["v"]["N"]) if meta and "v" in meta else 0
        ttl = int(meta[TTL_ATTRIBUTE]["N"]) if meta and TTL_ATTRIBUTE in meta else None
        with self._lock:
            self._last_ns = max(self._last_ns + 1, time.time_ns())
            stamp = self._last_ns
        prefix = f"LOG#{version:010d}#1#{stamp:020d}{secrets.token_hex(3)}"
        items = self._log_items(execution_id, prefix, logs, ttl)
        if len(items) == 1:
            self._call("PutItem", TableName=self.table, Item=items[0])
        else:  # over 300 KB of lines: several items (sort order keeps them in sequence)
            self._batch_write([{"PutRequest": {"Item": x}} for x in items])

    def _append_inline(self, execution_id: str, logs: Sequence[LogLine]) -> bool:
        """Lines appended to a document's inline logs (one ``UpdateItem``), or its switch to split
        mode when they would pass :data:`DOCUMENT_LOG_BYTES`. False: it is split now, the caller
        writes a log item."""
        chunk = _inline_logs(logs)
        args = self._update(
            self._exec_key(execution_id),
            {},
            extra=["#lg = list_append(#lg, :lg)", "#lb = #lb + :lbn"],
            condition=f"#md = :doc AND #lb <= :room AND {_NO_LEASE}",
            values={
                ":lg": {"L": [{"B": chunk}]},
                ":lbn": _n(len(chunk)),
                ":doc": _s(_DOC),
                ":room": _n(DOCUMENT_LOG_BYTES - len(chunk)),
            },
        )
        for _ in range(_READ_ATTEMPTS):
            try:
                self._call("UpdateItem", ReturnValuesOnConditionCheckFailure="ALL_OLD", **args)
                with self._lock:
                    self._docs.pop(execution_id, None)  # its inline log size moved
                return True
            except _Refused as refused:
                old = refused.reasons(1)[0].get("Item")
            if old is None or old.get("md", {}).get("S") != _DOC:
                return False
            if "ls" in old:
                self._await_lease(execution_id, old, time.monotonic())
                continue
            # Too many lines for the document: switch it (at the same version) and write them there.
            ex = self.get_execution(execution_id)
            try:
                self._switch(ex, ex.version, logs, [], [])
                return True
            except ConflictError:
                continue  # written meanwhile: read it again
        raise ConflictError(f"execution {execution_id}: kept changing while its logs were appended")

    def read_logs(
        self,
        execution_id: str,
        *,
        taskrun_id: str | None = None,
        limit: int = 1000,
        cursor: str | None = None,
    ) -> Page[LogLine]:
        start_sk, start_index = _cursor_decode(cursor, (str, int)) if cursor else ("LOG#", 0)
        if not start_sk.startswith("LOG#"):
            raise StoreError(f"invalid page cursor {cursor!r}")
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "PK = :pk AND SK BETWEEN :lo AND :hi",
            "ExpressionAttributeValues": {
                ":pk": _s(f"EXEC#{execution_id}"),
                ":lo": _s(start_sk),
                ":hi": _s("LOG#" + _MAX_CHAR),
            },
            "ConsistentRead": True,
            "Limit": 4,
        }
        lines: list[tuple[LogLine, str, int]] = []
        if start_sk == _INLINE_LOGS:  # a document's lines come first (pseudo sort key "LOG#")
            doc = self._get(self._exec_key(execution_id), projection="#md, #lg")
            inline = [] if doc is None else doc.get("lg", {}).get("L", [])
            entries = [entry for chunk in inline for entry in loads(_decompress(chunk["B"]))]
            for index, entry in enumerate(entries):
                if index >= start_index and (taskrun_id is None or entry.get("taskrun_id") == taskrun_id):
                    lines.append((log_from_json(entry), _INLINE_LOGS, index))
        while len(lines) <= limit:
            response = self._call("Query", **kwargs)
            for item in response.get("Items", []):
                sk = item["SK"]["S"]
                try:
                    raw = loads(item["l"]["S"])
                except (ValueError, KeyError) as exc:
                    raise StoreError(
                        f"execution {execution_id}: log item {sk} is unreadable: {exc!r}"
                    ) from exc
                for index, entry in enumerate(raw):
                    if sk == start_sk and index < start_index:
                        continue
                    if taskrun_id is not None and entry.get("taskrun_id") != taskrun_id:
                        continue
                    lines.append((log_from_json(entry), sk, index))
            last = response.get("LastEvaluatedKey")
            if not last:
                break
            kwargs["ExclusiveStartKey"] = last
            kwargs["Limit"] = min(kwargs["Limit"] * 2, 64)
        more = len(lines) > limit
        page = lines[:limit]
        return Page([x[0] for x in page], _cursor_encode(page[-1][1], page[-1][2] + 1) if more else None)

    # ------------------------------------------------------------------ timers

    def due_timers(self, now: datetime, *, limit: int = 100) -> list[TimerRecord]:
        response = self._call(
            "Query",
            TableName=self.table,
            IndexName=GSI_TIMERS,
            KeyConditionExpression="#tq = :t AND #ta < :bound",
            ExpressionAttributeNames={"#tq": "tq", "#ta": "ta"},
            ExpressionAttributeValues={":t": _s("T"), ":bound": _s(f"{_us(now) + 1:017d}")},
            Limit=limit,
        )
        return [self._timer(x) for x in response.get("Items", [])]

    @staticmethod
    def _timer(item: Item) -> TimerRecord:
        return TimerRecord(
            item["PK"]["S"].removeprefix("EXEC#"),
            item["SK"]["S"].removeprefix("DUE#"),
            _from_us(int(item["ta"]["S"].split("#", 1)[0])),
        )

    def next_timer(self) -> datetime | None:
        response = self._call(
            "Query",
            TableName=self.table,
            IndexName=GSI_TIMERS,
            KeyConditionExpression="#tq = :t",
            ExpressionAttributeNames={"#tq": "tq"},
            ExpressionAttributeValues={":t": _s("T")},
            Limit=1,
        )
        items = response.get("Items", [])
        return self._timer(items[0]).at if items else None

    def delete_timer(self, execution_id: str, key: str) -> None:
        self._call("DeleteItem", TableName=self.table, Key=self._exec_key(execution_id, f"DUE#{key}"))

    # ------------------------------------------------------------------ jobs

    def get_job(self, name: str) -> JobRecord | None:
        """A job of a document is an entry of its execution's item, found from the name alone."""
        execution_id = execution_of_job(name)
        with self._lock:
            split = execution_id in self._split
        if execution_id is not None and not split:
            doc = self._doc_entry(execution_id, name)
            if doc is not None:
                return doc
        item = self._get(self._job_key(name))
        return None if item is None else self._job(item)

    def _doc_entry(self, execution_id: str, name: str) -> JobRecord | None:
        response = self._call(
            "GetItem",
            TableName=self.table,
            Key=self._exec_key(execution_id),
            ConsistentRead=True,
            ProjectionExpression="#md, #j.#n",
            ExpressionAttributeNames={"#md": "md", "#j": "j", "#n": name},
        )
        item = response.get("Item")
        if item is None or item.get("md", {}).get("S") != _DOC:
            return None
        entry = item.get("j", {}).get("M", {}).get(name)
        return None if entry is None else self._doc_job(name, execution_id, entry)

    def update_job(self, job: JobRecord, *, expected_version: int) -> JobRecord:
        written = replace(job, version=expected_version + 1)
        if execution_of_job(job.name) == job.execution_id and self._update_doc_job(job, expected_version):
            return written
        sets, remove = self._job_attrs(job, expected_version + 1)
        args = self._update(
            self._job_key(job.name),
            sets,
            remove=remove,
            condition=_AT_VERSION,
            values={":expected": _n(expected_version)},
        )
        try:
            self._call("UpdateItem", ReturnValuesOnConditionCheckFailure="ALL_OLD", **args)
        except _Refused as refused:
            if "Item" not in refused.response:
                raise NotFoundError(f"job {job.name} not found") from None
            raise ConflictError(f"job {job.name} changed since version {expected_version}") from None
        return written

    def _update_doc_job(self, job: JobRecord, expected_version: int) -> bool:
        """``SET j.<name>``, conditional on that entry's version only: it never conflicts with a
        ``save_execution`` of other entries (which conditions on ``v``). False: not a document."""
        with self._lock:
            if job.execution_id in self._split:
                return False  # seen split, and split is for good
        entry = self._doc_job_entry(job, expected_version + 1)
        args = self._update(
            self._exec_key(job.execution_id),
            {},
            extra=["#j.#n = :rec"],
            condition=f"#md = :doc AND #j.#n.#v = :expected AND {_NO_LEASE}",
            values={":rec": entry, ":doc": _s(_DOC), ":expected": _n(expected_version)},
            names={"#n": job.name},
        )
        started = time.monotonic()
        for _ in range(_READ_ATTEMPTS):
            try:
                self._call("UpdateItem", ReturnValuesOnConditionCheckFailure="ALL_OLD", **args)
            except _Refused as refused:
                old = refused.reasons(1)[0].get("Item")
                if old is None or old.get("md", {}).get("S") != _DOC:
                    return False
                if "ls" in old:  # switching to split mode: wait, then write wherever it went
                    self._await_lease(job.execution_id, old, started)
                    continue
                stored = old.get("j", {}).get("M", {}).get(job.name)
                if stored is None:
                    return False  # not in this document: the JOB# record, if any, answers
                raise ConflictError(f"job {job.name} changed since version {expected_version}") from None
            with self._lock:
                known = self._docs.get(job.execution_id)
                if known is not None:
                    known.jobs[job.name] = entry
            return True
        raise StoreError(f"job {job.name}: its execution stayed leased in table {self.table}")

    def active_jobs(self, *, runner: str | None = None, limit: int = 1000) -> list[JobRecord]:
        """Jobs not DONE, SUBMITTING first: split-mode records from ``active-jobs``, documents' from
        ``active-executions`` (every active document is read, eventually consistent, about 0.5 RRU
        each; one whose jobs all ended meanwhile leaves the index here)."""
        if limit <= 0:
            return []
        documents = self._active_doc_jobs(runner)
        prefixes = [None] if runner is None else [f"0#{runner}#", f"1#{runner}#"]
        found: list[Item] = []
        for prefix in prefixes:
            condition = "#jq = :a" + ("" if prefix is None else " AND begins_with(#jr, :p)")
            values = {":a": _s("ACTIVE")} | ({} if prefix is None else {":p": _s(prefix)})
            kwargs = {
                "TableName": self.table,
                "IndexName": GSI_ACTIVE_JOBS,
                "KeyConditionExpression": condition,
                "ExpressionAttributeNames": _names(condition),
                "ExpressionAttributeValues": values,
                "Limit": limit - len(found),
            }
            found += self._collect(kwargs, limit - len(found))
            if len(found) >= limit:
                break
        split = [self._job(x) for x in found]
        first = [j for j in split if j.phase is JobPhase.SUBMITTING]
        first += [j for j in documents if j.phase is JobPhase.SUBMITTING]
        rest = [j for j in split if j.phase is not JobPhase.SUBMITTING]
        rest += [j for j in documents if j.phase is not JobPhase.SUBMITTING]
        return (first + rest)[:limit]

    def _active_doc_jobs(self, runner: str | None) -> list[JobRecord]:
        keys = [
            {"PK": x["PK"], "SK": x["SK"]}
            for x in self._query(
                IndexName=GSI_ACTIVE_EXECUTIONS,
                KeyConditionExpression="#aq = :a",
                ExpressionAttributeNames={"#aq": "aq"},
                ExpressionAttributeValues={":a": _s("A")},
            )
        ]
        jobs: list[JobRecord] = []
        for pk, item in sorted(self._batch_get(keys, consistent=False, projection="PK, #v, #md, #j").items()):
            if item.get("md", {}).get("S") != _DOC:
                continue
            execution_id = pk.removeprefix("EXEC#")
            entries = item.get("j", {}).get("M", {})
            mine = [
                self._doc_job(name, execution_id, entry)
                for name, entry in sorted(entries.items())
                if entry["M"]["p"]["S"] != JobPhase.DONE.value
            ]
            if not mine:
                self._leave_active_index(execution_id, item)
            jobs += [j for j in mine if runner is None or j.runner == runner]
        return jobs

    def _leave_active_index(self, execution_id: str, item: Item) -> None:
        """Remove the active keys of a document whose jobs all ended through ``update_job``
        (which does not know the other jobs), if nothing was written since it was read."""
        condition = f"{_AT_VERSION} AND #md = :doc"
        values: Item = {":expected": item["v"], ":doc": _s(_DOC)}
        names: dict[str, str] = {}
        for i, (name, entry) in enumerate(item.get("j", {}).get("M", {}).items()):
            names[f"#k{i}"] = name
            condition += f" AND #j.#k{i}.#v = :kv{i}"
            values[f":kv{i}"] = entry["M"]["v"]
        args = self._update(
            self._exec_key(execution_id),
            {},
            remove=["aq", "ar"],
            condition=condition,
            values=values,
            names=names,
        )
        with contextlib.suppress(_Refused):  # written meanwhile: the next call looks again
            self._call("UpdateItem", **args)
        with self._lock:
            self._docs.pop(execution_id, None)

    def visit(self, now: datetime) -> None:
        """Register the documents created more than ``visit_after`` before ``now`` that still
        have unfinished jobs in ``active-executions`` (ADR 0005, point 5; no-op when eager).

        Reads the watermark (``VISIT``/``STATE``: ``w`` the created µs visited up to, ``c`` the
        listing key a bounded visit stopped at, ``v`` its version), queries the ``executions``
        index for ``(w - visit_overlap, now - visit_after]`` (or after ``c``), reads those
        items eventually consistent (about 0.5 RRU each) and sets the keys of each document
        that has an unfinished job and none yet, conditional on its version and its jobs'
        versions as read: a step or ``update_job`` landing meanwhile refuses it, and the
        returned item is looked at again. A finished execution costs no write. Split-mode
        executions need nothing: their jobs are in ``active-jobs``. At most ``visit_limit``
        executions are read per call; the watermark then keeps where it stopped. It is
        advanced with a version check: a concurrent tick that got there first did the same.
        """
        if self.visit_after is None:
            return
        upto = _us(now - self.visit_after)
        state = self._get(_VISIT_KEY)
        version = int(state["v"]["N"]) if state else 0
        mark = int(state["w"]["N"]) if state else upto - _FIRST_VISIT // timedelta(microseconds=1)
        resume = state["c"]["S"] if state and "c" in state else None
        if resume is None and state is not None and mark >= upto:
            return
        low = resume or f"{mark - self.visit_overlap // timedelta(microseconds=1) + 1:017d}"
        entries: list[Item] = []
        for entry in self._query(
            IndexName=GSI_EXECUTIONS,
            KeyConditionExpression="#xg = :h AND #xc BETWEEN :lo AND :hi",
            ExpressionAttributeNames={"#xg": "xg", "#xc": "xc"},
            ExpressionAttributeValues={
                ":h": _s("EXEC"),
                ":lo": _s(low),
                ":hi": _s(f"{upto:017d}#{_MAX_CHAR}"),
            },
            Limit=min(self.visit_limit + 1, 1000),
        ):
            if entry["xc"]["S"] == resume:
                continue  # the last one the bounded visit before did
            entries.append(entry)
            if len(entries) > self.visit_limit:
                break
        bounded = len(entries) > self.visit_limit
        entries = entries[: self.visit_limit]
        keys = [{"PK": x["PK"], "SK": x["SK"]} for x in entries]
        items = self._batch_get(keys, consistent=False, projection="PK, #v, #md, #j, #aq, #ls")
        for pk, item in items.items():
            self._register(pk.removeprefix("EXEC#"), item)
        new: Item = {**_VISIT_KEY, "v": _n(version + 1), "w": _n(upto)}
        if bounded:
            new |= {"w": _n(mark), "c": entries[-1]["xc"]}
        check: dict[str, Any] = {"ConditionExpression": _IS_NEW}
        if state is not None:
            check = {
                "ConditionExpression": _AT_VERSION,
                "ExpressionAttributeNames": {"#v": "v"},
                "ExpressionAttributeValues": {":expected": _n(version)},
            }
        with contextlib.suppress(_Refused):  # another tick moved it: it visited the same executions
            self._call("PutItem", TableName=self.table, Item=new, **check)

    def _register(self, execution_id: str, item: Item | None) -> None:
        """Set one document's active keys if it still has an unfinished job and none yet."""
        for _ in range(_VISIT_ATTEMPTS):
            if item is None or item.get("md", {}).get("S") != _DOC or "ls" in item or "aq" in item:
                return  # gone, split (its jobs are in active-jobs), switching, or registered
            entries = item.get("j", {}).get("M", {})
            open_ = {n: e for n, e in entries.items() if e["M"]["p"]["S"] != JobPhase.DONE.value}
            if not open_:
                return  # finished within the delay: no index write at all
            # Not registered meanwhile by a concurrent tick (that would write the index again).
            condition = f"{_AT_VERSION} AND #md = :doc AND {_NO_LEASE} AND attribute_not_exists(#aq)"
            values: Item = {":expected": item["v"], ":doc": _s(_DOC)}
            names: dict[str, str] = {}
            for i, (name, entry) in enumerate(open_.items()):
                names[f"#k{i}"] = name
                condition += f" AND #j.#k{i}.#v = :kv{i}"
                values[f":kv{i}"] = entry["M"]["v"]
            args = self._update(
                self._exec_key(execution_id),
                self._active_keys(execution_id),
                condition=condition,
                values=values,
                names=names,
            )
            try:
                self._call("UpdateItem", ReturnValuesOnConditionCheckFailure="ALL_OLD", **args)
            except _Refused as refused:
                item = refused.reasons(1)[0].get("Item")  # as it is now: look again
                continue
            with self._lock:
                known = self._docs.get(execution_id)
                if known is not None and known.version == int(item["v"]["N"]):
                    self._docs[execution_id] = replace(known, active=True)
            return

    # ------------------------------------------------------------------ expiry

    def purge_execution(self, execution_id: str) -> int:
        """Delete what is left of an execution whose ``META`` item TTL removed; the item count.

        TTL is written on every item a finishing step touches, which is the whole execution in
        document mode. A split-mode execution also has task runs and log items written earlier
        and never touched again; DynamoDB Streams report the ``META`` removal, and the
        ``sweeper`` handler calls this. Its offloaded outputs go too (no S3 lifecycle rule can
        know when an execution ends). Nothing happens while ``META`` exists: an execution is
        only purged once DynamoDB itself has expired it, so a stray or replayed stream record
        cannot delete a live one. Idempotent: a second call finds nothing.
        """
        if self._get(self._exec_key(execution_id), projection="#v") is not None:
            return 0
        keys = [
            {"PK": item["PK"], "SK": item["SK"]}
            for item in self._query(
                KeyConditionExpression="PK = :pk",
                ExpressionAttributeValues={":pk": _s(f"EXEC#{execution_id}")},
                ProjectionExpression="PK, SK",
            )
        ]
        if self.bucket is not None:
            self._purge_objects(f"{self.s3_prefix}{execution_id}/")
        self._batch_write([{"DeleteRequest": {"Key": key}} for key in keys])
        return len(keys)

    def _purge_objects(self, prefix: str) -> None:
        """Every object under ``prefix``, listed rather than read from the items: a retried
        task's earlier outputs are no longer named by any item but are still stored."""
        while True:
            listed = self._s3_call("ListObjectsV2", None, Prefix=prefix, MaxKeys=1000)
            objects = [{"Key": entry["Key"]} for entry in listed.get("Contents", [])]
            if not objects:
                return
            self._s3_call("DeleteObjects", None, Delete={"Objects": objects, "Quiet": True})

    # ------------------------------------------------------------------ triggers

    def get_trigger(self, key: str) -> TriggerRecord | None:
        item = self._get({"PK": _s(f"TRIGGER#{key}"), "SK": _s("STATE")})
        return None if item is None else TriggerRecord(key, loads(item["d"]["S"]), int(item["v"]["N"]))

    def put_trigger(self, trigger: TriggerRecord, *, expected_version: int) -> TriggerRecord:
        key = {"PK": _s(f"TRIGGER#{trigger.key}"), "SK": _s("STATE")}
        data = _s(dumps(trigger.data))
        try:
            if expected_version == 0:
                self._call(
                    "PutItem",
                    TableName=self.table,
                    Item={**key, "d": data, "v": _n(1)},
                    ConditionExpression=_IS_NEW,
                )
            else:
                args = self._update(
                    key,
                    {"d": data, "v": _n(expected_version + 1)},
                    condition=_AT_VERSION,
                    values={":expected": _n(expected_version)},
                )
                self._call("UpdateItem", **args)
        except _Refused:
            if expected_version == 0:
                raise ConflictError(f"trigger {trigger.key} already exists") from None
            raise ConflictError(f"trigger {trigger.key} changed since version {expected_version}") from None
        return TriggerRecord(trigger.key, trigger.data, expected_version + 1)


def _compress(text: str) -> bytes:
    return zlib.compress(text.encode(), 6)


def _decompress(blob: bytes) -> str:
    return zlib.decompress(blob).decode()


def _inline_logs(logs: Sequence[LogLine]) -> bytes:
    """A document's chunk of log lines: compressed, each line cut as a log item would cut it."""
    encoded = []
    for line in logs:
        one = dumps(log_to_json(line))
        if len(one.encode()) > _LOG_CHUNK_BYTES:
            one = dumps(log_to_json(_truncated(line)))
        encoded.append(one)
    return _compress("[" + ",".join(encoded) + "]")


def _unique(timers: Sequence[TimerRecord]) -> list[TimerRecord]:
    """One timer per (execution, key), the last one written winning (as a rewrite would)."""
    return list({(t.execution_id, t.key): t for t in timers}.values())


def _truncated(line: LogLine) -> LogLine:
    """A line too long for one item keeps its head and says how much was cut."""
    data = line.message.encode()
    budget = _LOG_CHUNK_BYTES - 2_000
    while True:  # JSON escapes can make the encoded line longer than the raw bytes: shrink to fit
        head = data[:budget].decode(errors="ignore")
        note = f" ... [truncated by the store: {len(data) - len(head.encode()):,} more bytes]"
        cut = LogLine(line.at, line.level, head + note, line.task_id, line.taskrun_id, line.attempt)
        if len(dumps(log_to_json(cut)).encode()) <= _LOG_CHUNK_BYTES:
            return cut
        budget //= 2
