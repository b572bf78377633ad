"""Task-run outputs too big for an item, kept in S3: content-addressed objects per execution.

An item holds at most 400 KB; outputs over ``threshold`` bytes go to
``<prefix><execution id>/<task run id>/<digest>.json`` and the item keeps the key. This module
holds the S3 client and is the only one that talks to S3: its errors become ``StoreError``
naming the bucket, and each call is counted in the store's :class:`Capacity` as ``s3.<call>``.
"""

from __future__ import annotations

import hashlib
from typing import Any

from control_plane.errors import StoreError
from control_plane.store.codec import loads
from control_plane.store.dynamodb.table import Capacity, method_of

__all__ = ["Offload"]


class Offload:
    """Outputs of one store in one bucket (``bucket`` None: nothing is offloaded)."""

    def __init__(
        self, client: Any, bucket: str | None, prefix: str, threshold: int, capacity: Capacity
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.threshold = threshold
        self._capacity = capacity

    def s3_call(self, operation: str, key: str | None, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        method = method_of(self.client, operation)
        self._capacity.count(f"s3.{operation}")
        try:
            return method(Bucket=self.bucket, **({} if key is None else {"Key": key}), **kwargs)
        except (ClientError, BotoCoreError) as exc:
            what = key if key is not None else kwargs.get("Prefix", "")
            raise StoreError(f"S3 bucket {self.bucket}: {operation} {what} failed: {exc}") from exc

    def put(self, execution_id: str, taskrun_id: str, blob: bytes) -> str:
        """Content-addressed: writing the same outputs again (a redo, a retry) is the same object."""
        key = f"{self.prefix}{execution_id}/{taskrun_id}/{hashlib.sha256(blob).hexdigest()[:32]}.json"
        self.s3_call("PutObject", key, Body=blob, ContentType="application/json")
        return key

    def fetch(self, key: str) -> Any:
        body = self.s3_call("GetObject", key)["Body"]
        try:
            return loads(body.read())
        finally:
            body.close()

    def purge(self, execution_id: str) -> None:
        """Every object of an execution, listed rather than read from the items: a retried
        task's earlier outputs are no longer named by any item but are still stored."""
        prefix = f"{self.prefix}{execution_id}/"
        while True:
            listed = self.s3_call("ListObjectsV2", None, Prefix=prefix, MaxKeys=1000)
            objects = [{"Key": entry["Key"]} for entry in listed.get("Contents", [])]
            if not objects:
                return
            self.s3_call("DeleteObjects", None, Delete={"Objects": objects, "Quiet": True})
