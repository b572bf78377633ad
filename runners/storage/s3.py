"""``s3://<bucket>/<key>`` storage over boto3 (imported on first use, never at import).

botocore's own retries are off (``total_max_attempts=1``): :mod:`runners.retry` retries
under ``runner="storage-s3"`` with the classifier below, which knows botocore's errors by
class module and name. ``endpoint_url`` points at another S3 implementation (moto, MinIO);
``client`` replaces the whole client (tests inject fault hooks through a boto3 session).
Listing reads every page (``page_size`` keys each, S3's maximum 1,000 by default).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from runners import botocore_errors, retry
from runners.storage.base import Reason, StorageError, join, parse
from runners.storage.calls import SdkCalls

__all__ = ["RUNNER", "S3Storage", "classify"]

RUNNER = "storage-s3"

_MISSING_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "404", "NotFound"})
_DENIED_CODES = frozenset({"AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch"})


classify = retry.register_classifier(botocore_errors.classify, runner=RUNNER)
"""botocore's errors (:mod:`runners.botocore_errors`), asked about S3 storage calls only."""
_botocore_names = botocore_errors.botocore_names
_code_and_status = botocore_errors.code_and_status


def _explain(exc: BaseException) -> Reason | None:
    if "ClientError" not in _botocore_names(exc):
        return None
    code, status = _code_and_status(exc)
    if code in _MISSING_CODES or status == 404:
        return Reason.MISSING
    if code in _DENIED_CODES or status == 403:
        return Reason.DENIED
    return None


def _client(endpoint_url: str | None, region: str | None) -> Any:
    import boto3
    from botocore.config import Config

    # One retry policy (ours): botocore's own retries would multiply attempts.
    retries = {"total_max_attempts": 1, "mode": "standard"}
    config = Config(retries=retries, connect_timeout=10, read_timeout=60)
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url, region_name=region, config=config)


class S3Storage:
    """:class:`~runners.storage.base.Storage` over Amazon S3 (or an S3-compatible endpoint)."""

    scheme = "s3"

    def __init__(
        self,
        *,
        client: Any = None,
        endpoint_url: str | None = None,
        region: str | None = None,
        page_size: int = 1000,
        policy: retry.RetryPolicy = retry.DEFAULT_POLICY,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._endpoint_url = endpoint_url
        self._region = region
        self._lock = threading.Lock()
        self.page_size = page_size
        self.calls = SdkCalls(RUNNER, _explain, policy, sleep)

    @property
    def client(self) -> Any:
        """Built on first use: a control plane that never touches S3 never imports boto3."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = _client(self._endpoint_url, self._region)
        return self._client

    def _where(self, uri: str) -> tuple[str, str]:
        scheme, bucket, key = parse(uri)
        if scheme != "s3" or not bucket:
            raise StorageError(uri, Reason.BAD_URI, "is not an s3://<bucket>/<key> URI")
        return bucket, key

    def read(self, uri: str) -> bytes:
        bucket, key = self._where(uri)

        def get() -> bytes:  # the body is read inside the retried call: a reset mid-body retries
            body: bytes = self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
            return body

        return self.calls(uri, get)

    def write(self, uri: str, data: bytes) -> None:
        bucket, key = self._where(uri)
        self.calls(uri, self.client.put_object, Bucket=bucket, Key=key, Body=data)

    def list_prefix(self, prefix: str) -> dict[str, str]:
        bucket, key = self._where(prefix)
        return {rel: join("s3", bucket, key + rel) for rel in self._keys(prefix, bucket, key)}

    def _keys(self, prefix: str, bucket: str, key: str) -> list[str]:
        found: list[str] = []
        token: str | None = None
        while True:
            request: dict[str, Any] = {"Bucket": bucket, "Prefix": key, "MaxKeys": self.page_size}
            if token:
                request["ContinuationToken"] = token
            page = self.calls(prefix, self.client.list_objects_v2, **request)
            found += [item["Key"][len(key) :] for item in page.get("Contents", ())]
            token = page.get("NextContinuationToken") if page.get("IsTruncated") else None
            if not token:
                return found

    def exists(self, uri: str) -> bool:
        bucket, key = self._where(uri)
        try:
            self.calls(uri, self.client.head_object, Bucket=bucket, Key=key)
        except StorageError as exc:
            if exc.reason is Reason.MISSING:
                return False
            raise
        return True

    def delete(self, uris: Iterable[str]) -> None:
        by_bucket: dict[str, list[str]] = {}
        for uri in uris:
            bucket, key = self._where(uri)
            by_bucket.setdefault(bucket, []).append(key)
        for bucket, keys in by_bucket.items():
            self._delete_keys(join("s3", bucket, ""), bucket, keys)

    def delete_prefix(self, prefix: str) -> int:
        bucket, key = self._where(prefix)
        keys = [key + rel for rel in self._keys(prefix, bucket, key)]
        self._delete_keys(prefix, bucket, keys)
        return len(keys)

    def _delete_keys(self, where: str, bucket: str, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):  # DeleteObjects takes 1,000 keys a call
            batch = {"Objects": [{"Key": k} for k in keys[start : start + 1000]], "Quiet": True}
            answer = self.calls(where, self.client.delete_objects, Bucket=bucket, Delete=batch)
            errors = answer.get("Errors") or []
            if errors:
                first = errors[0]
                raise StorageError(
                    join("s3", bucket, first.get("Key", "")),
                    Reason.DENIED if first.get("Code") == "AccessDenied" else Reason.FAILED,
                    f"could not be deleted: {first.get('Code')}: {first.get('Message')}"
                    f" ({len(errors)} object(s) not deleted)",
                )
