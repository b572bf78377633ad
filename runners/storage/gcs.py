"""``gs://<bucket>/<key>`` storage over google-cloud-storage (imported on first use).

The library's own retries are off (``retry=None`` on every call): :mod:`runners.retry`
retries under ``runner="storage-gcs"`` with :mod:`runners.google_errors`, which knows
google-api-core's and the HTTP stack's errors by class module and name. ``endpoint`` points
the client at another implementation (fake-gcs-server) and then, unless ``credentials`` are
given, signs nothing (an emulator wants no token, and fetching one would reach Google);
``client`` replaces the whole client (tests inject a failing HTTP session through it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from runners import google_errors, retry
from runners.storage.base import Reason, StorageError, join, parse
from runners.storage.calls import SdkCalls

__all__ = ["RUNNER", "GcsStorage", "classify"]

RUNNER = "storage-gcs"

retry.register_classifier(google_errors.classify, runner=RUNNER)
classify = google_errors.classify


def _explain(exc: BaseException) -> Reason | None:
    api = google_errors.api_error_names(exc)
    if "NotFound" in api:
        return Reason.MISSING
    if api & {"Forbidden", "Unauthorized"}:
        return Reason.DENIED
    return None


class GcsStorage:
    """:class:`~runners.storage.base.Storage` over Google Cloud Storage."""

    scheme = "gs"

    def __init__(
        self,
        *,
        client: Any = None,
        endpoint: str | None = None,
        project: str | None = None,
        credentials: Any = None,
        page_size: int = 1000,
        policy: retry.RetryPolicy = retry.DEFAULT_POLICY,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._endpoint = endpoint
        self._project = project
        self._credentials = credentials
        self._lock = threading.Lock()
        self.page_size = page_size
        self.calls = SdkCalls(RUNNER, _explain, policy, sleep)

    @property
    def client(self) -> Any:
        """Built on first use: a control plane that never touches GCS never imports its SDK."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = make_client(self._endpoint, self._project, self._credentials)
        return self._client

    def _blob(self, uri: str) -> Any:
        scheme, bucket, key = parse(uri)
        if scheme != "gs" or not bucket or not key:
            raise StorageError(uri, Reason.BAD_URI, "is not a gs://<bucket>/<key> URI")
        return self.client.bucket(bucket).blob(key)

    def read(self, uri: str) -> bytes:
        blob = self._blob(uri)
        data: bytes = self.calls(uri, blob.download_as_bytes, retry=None)
        return data

    def write(self, uri: str, data: bytes) -> None:
        blob = self._blob(uri)
        self.calls(uri, blob.upload_from_string, data, content_type="application/octet-stream", retry=None)

    def list_prefix(self, prefix: str) -> dict[str, str]:
        scheme, bucket, key = parse(prefix)
        if scheme != "gs" or not bucket:
            raise StorageError(prefix, Reason.BAD_URI, "is not a gs://<bucket>/<prefix> URI")
        return {name[len(key) :]: join("gs", bucket, name) for name in self._names(prefix, bucket, key)}

    def _names(self, prefix: str, bucket: str, key: str) -> list[str]:
        found: list[str] = []
        token: str | None = None
        while True:
            names, token = self.calls(prefix, self._page, bucket, key, token)
            found += names
            if not token:
                return found

    def _page(self, bucket: str, key: str, token: str | None) -> tuple[list[str], str | None]:
        """One page of names: each page is its own request, so a retry repeats just that page."""
        blobs = self.client.list_blobs(
            bucket, prefix=key, page_size=self.page_size, page_token=token, retry=None
        )
        page = next(blobs.pages, None)
        names = [blob.name for blob in page] if page is not None else []
        return names, blobs.next_page_token

    def exists(self, uri: str) -> bool:
        blob = self._blob(uri)
        found: bool = self.calls(uri, blob.exists, retry=None)
        return found

    def delete(self, uris: Iterable[str]) -> None:
        for uri in uris:
            self._delete(uri, self._blob(uri))

    def _delete(self, uri: str, blob: Any) -> None:
        try:
            self.calls(uri, blob.delete, retry=None)
        except StorageError as exc:
            if exc.reason is not Reason.MISSING:  # already gone: what delete wanted
                raise

    def delete_prefix(self, prefix: str) -> int:
        uris = list(self.list_prefix(prefix).values())
        self.delete(uris)
        return len(uris)


def make_client(endpoint: str | None, project: str | None, credentials: Any = None, **options: Any) -> Any:
    """A ``google.cloud.storage.Client``; with ``endpoint`` and no ``credentials``, an anonymous one."""
    import google.cloud.storage as storage  # this form: mypy finds no attribute "storage" on the namespace

    if endpoint is not None and credentials is None:
        from google.auth.credentials import AnonymousCredentials

        credentials = AnonymousCredentials()
    client_options = {"api_endpoint": endpoint} if endpoint is not None else None
    return storage.Client(
        project=project or "squall", credentials=credentials, client_options=client_options, **options
    )
