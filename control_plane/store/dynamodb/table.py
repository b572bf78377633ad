"""The one door to DynamoDB: every call of the store goes through :class:`Table`.

It holds the client, the thread pool batches run on, and the :class:`Capacity` counters.
botocore is imported only here (and in :mod:`~control_plane.store.dynamodb.offload`, for S3),
inside the functions that need it, and its errors do not get past this module: they become
``StoreError`` naming the table and the operation; a failed condition becomes
:class:`Refused`, which the caller reads reason by reason.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from control_plane.errors import StoreError
from control_plane.store.dynamodb.items import Item
from control_plane.store.dynamodb.items import names as placeholders

__all__ = ["Capacity", "Refused", "Table", "boto_client"]

_READS = frozenset({"GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"})


def boto_client(service: str, endpoint_url: str | None, region: str | None) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=5,
        read_timeout=30,
        max_pool_connections=32,
    )
    return boto3.client(service, endpoint_url=endpoint_url, region_name=region, config=config)


def method_of(client: Any, operation: str) -> Any:
    """The client's method for an API operation name (``PutItem`` -> ``put_item``)."""
    return getattr(client, re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower())


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

    def count(self, operation: str) -> None:
        """A call that consumes no DynamoDB capacity (S3)."""
        with self._lock:
            self.calls[operation] += 1

    def __repr__(self) -> str:
        return f"Capacity(read_units={self.read_units}, write_units={self.write_units}, calls={self.calls})"


class Refused(Exception):
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


class Table:
    """One table through one client: calls, batches (in parallel on a small pool) and their capacity."""

    def __init__(self, name: str, client: Any, capacity: Capacity) -> None:
        self.name = name
        self.client = client
        self.capacity = capacity
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        """One DynamoDB call: capacity counted, failed conditions as ``Refused``, else StoreError."""
        from botocore.exceptions import BotoCoreError, ClientError

        method = method_of(self.client, operation)
        try:
            response: dict[str, Any] = method(ReturnConsumedCapacity="TOTAL", **kwargs)
        except ClientError as exc:
            self.capacity.add(operation, None, read=operation in _READS)
            error = exc.response.get("Error", {})
            code = error.get("Code", "")
            if code in ("ConditionalCheckFailedException", "TransactionCanceledException"):
                raise Refused(exc.response) from None
            hint = ": the table does not exist" if code == "ResourceNotFoundException" else ""
            raise StoreError(
                f"DynamoDB table {self.name}: {operation} failed{hint} ({code}: {error.get('Message', exc)})"
            ) from exc
        except BotoCoreError as exc:
            self.capacity.add(operation, None, read=operation in _READS)
            raise StoreError(f"DynamoDB table {self.name}: {operation} failed: {exc}") from exc
        self.capacity.add(operation, response.get("ConsumedCapacity"), read=operation in _READS)
        return response

    def query(self, **kwargs: Any) -> Iterator[Item]:
        while True:
            response = self.call("Query", TableName=self.name, **kwargs)
            yield from response.get("Items", [])
            last = response.get("LastEvaluatedKey")
            if not last:
                return
            kwargs["ExclusiveStartKey"] = last

    def collect(self, kwargs: dict[str, Any], wanted: int) -> list[Item]:
        """Query pages until ``wanted`` items passed the filter (or the range ends)."""
        found: list[Item] = []
        while len(found) < wanted:
            response = self.call("Query", **kwargs)
            found += response.get("Items", [])
            last = response.get("LastEvaluatedKey")
            if not last:
                break
            kwargs["ExclusiveStartKey"] = last
        return found[:wanted]

    def get(self, key: Item, *, projection: str | None = None) -> Item | None:
        kwargs: dict[str, Any] = {"TableName": self.name, "Key": key, "ConsistentRead": True}
        if projection:
            kwargs["ProjectionExpression"] = projection
            kwargs["ExpressionAttributeNames"] = placeholders(projection)
        item: Item | None = self.call("GetItem", **kwargs).get("Item")
        return item

    def update(
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
            "TableName": self.name,
            "Key": key,
            "UpdateExpression": expr.strip(),
            "ExpressionAttributeNames": placeholders(expr, condition) | dict(names or {}),
        }
        all_values = {f":{name}": value for name, value in sets.items()} | dict(values or {})
        if all_values:
            args["ExpressionAttributeValues"] = all_values
        if condition:
            args["ConditionExpression"] = condition
        return args

    def send(self, ops: list[dict[str, Any]]) -> None:
        """One item: a plain conditional write (half the cost of a transaction). More: a transaction."""
        if len(ops) > 1:
            self.call("TransactWriteItems", TransactItems=ops)
            return
        [(kind, args)] = ops[0].items()
        args = (
            {**args, "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}
            if "ConditionExpression" in args
            else args
        )
        self.call({"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem"}[kind], **args)

    def batch_write(self, requests: Sequence[dict[str, Any]]) -> None:
        """Puts and deletes, 25 per call, in parallel; unprocessed items are sent again."""

        def send(chunk: Sequence[dict[str, Any]]) -> None:
            pending: dict[str, Any] = {self.name: list(chunk)}
            for attempt in range(12):
                pending = self.call("BatchWriteItem", RequestItems=pending).get("UnprocessedItems") or {}
                if not pending:
                    return
                time.sleep(min(0.02 * 2**attempt, 1.0))  # throttled: back off before resending
            raise StoreError(f"DynamoDB table {self.name}: BatchWriteItem kept leaving items unprocessed")

        self.parallel(send, [requests[i : i + 25] for i in range(0, len(requests), 25)])

    def batch_get(
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
                    "ExpressionAttributeNames": placeholders(projection),
                }
            pending: dict[str, Any] = {self.name: request}
            for attempt in range(12):
                response = self.call("BatchGetItem", RequestItems=pending)
                for item in response.get("Responses", {}).get(self.name, []):
                    found[item[by]["S"]] = item
                pending = response.get("UnprocessedKeys") or {}
                if not pending:
                    break
                time.sleep(min(0.02 * 2**attempt, 1.0))  # throttled: back off before asking again
            else:
                raise StoreError(f"DynamoDB table {self.name}: BatchGetItem kept leaving keys unprocessed")
        return found

    def parallel(self, fn: Callable[[Any], None], work: Sequence[Any]) -> None:
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
