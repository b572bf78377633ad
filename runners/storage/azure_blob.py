"""``az://<account>/<container>/<blob>`` storage over azure-storage-blob (imported on first use).

Why that URI form: a blob is only unique with its storage account (containers are named per
account), and the account is what picks the endpoint and the credential. The endpoint comes
from configuration, a template with ``{account}``: by default Azure's public cloud,
``https://{account}.blob.core.windows.net``; Azurite's is ``http://127.0.0.1:10000/{account}``
(a sovereign cloud's, a private endpoint's, likewise). The credential too: anything
azure-storage-blob accepts (an account key dict, a SAS, a ``TokenCredential``), by default
azure-identity's ``DefaultAzureCredential`` (managed identity, workload identity, the CLI).

azure-core's retries are off (``retry_total=0``): :mod:`runners.retry` retries under
``runner="storage-azure"`` with the classifier below (azure-core's errors by class module
and name). ``transport`` is azure-core's transport seam (tests inject failing answers).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from runners import retry
from runners.storage.base import Reason, StorageError, join, parse
from runners.storage.calls import SdkCalls

__all__ = ["DEFAULT_ENDPOINT", "RUNNER", "AzureBlobStorage", "classify"]

RUNNER = "storage-azure"
DEFAULT_ENDPOINT = "https://{account}.blob.core.windows.net"


def _azure(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__ if cls.__module__.partition(".")[0] == "azure"}


@retry.register_classifier(runner=RUNNER)
def classify(exc: BaseException) -> bool | None:
    """Connection failures, 408, 429 and 5xx answers are transient; other answers are not."""
    names = _azure(exc)
    if not names:
        return None
    if names & {"ServiceRequestError", "ServiceResponseError"}:
        return True
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status in (408, 429) or status >= 500
    return False


def _explain(exc: BaseException) -> Reason | None:
    names = _azure(exc)
    status = getattr(exc, "status_code", None)
    if "ResourceNotFoundError" in names or status == 404:
        return Reason.MISSING
    if "ClientAuthenticationError" in names or status in (401, 403):
        return Reason.DENIED
    return None


class AzureBlobStorage:
    """:class:`~runners.storage.base.Storage` over Azure Blob Storage (or Azurite)."""

    scheme = "az"

    def __init__(
        self,
        *,
        endpoint: str = DEFAULT_ENDPOINT,
        credential: Any = None,
        transport: Any = None,
        page_size: int = 5000,
        policy: retry.RetryPolicy = retry.DEFAULT_POLICY,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.endpoint = endpoint
        self._credential = credential
        self._transport = transport
        self._services: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.page_size = page_size
        self.calls = SdkCalls(RUNNER, _explain, policy, sleep)

    def _service(self, account: str) -> Any:
        """One client per account, built on first use (the SDK is imported only then)."""
        with self._lock:
            if account not in self._services:
                from azure.storage.blob import BlobServiceClient

                credential = self._credential
                if credential is None:
                    from azure.identity import DefaultAzureCredential

                    credential = self._credential = DefaultAzureCredential()
                options: dict[str, Any] = {"retry_total": 0}
                if self._transport is not None:
                    options["transport"] = self._transport
                url = self.endpoint.format(account=account)
                self._services[account] = BlobServiceClient(url, credential=credential, **options)
            return self._services[account]

    def _where(self, uri: str, *, blob: bool = True) -> tuple[str, str, str]:
        scheme, account, path = parse(uri)
        container, _, name = path.partition("/")
        if scheme != "az" or not account or not container or (blob and not name):
            raise StorageError(uri, Reason.BAD_URI, "is not an az://<account>/<container>/<blob> URI")
        return account, container, name

    def _blob(self, uri: str) -> Any:
        account, container, name = self._where(uri)
        return self._service(account).get_blob_client(container, name)

    def read(self, uri: str) -> bytes:
        blob = self._blob(uri)

        def download() -> bytes:  # the body is read inside the retried call
            data: bytes = blob.download_blob().readall()
            return data

        return self.calls(uri, download)

    def write(self, uri: str, data: bytes) -> None:
        blob = self._blob(uri)
        self.calls(uri, blob.upload_blob, data, overwrite=True)

    def list_prefix(self, prefix: str) -> dict[str, str]:
        account, container, key = self._where(prefix, blob=False)
        client = self._service(account).get_container_client(container)
        found: dict[str, str] = {}
        token: str | None = None
        while True:
            names, token = self.calls(prefix, self._page, client, key, token)
            found.update({n[len(key) :]: join("az", account, f"{container}/{n}") for n in names})
            if not token:
                return found

    def _page(self, client: Any, key: str, token: str | None) -> tuple[list[str], str | None]:
        """One page of names: each page is its own request, so a retry repeats just that page."""
        pages = client.list_blobs(name_starts_with=key or None, results_per_page=self.page_size).by_page(
            continuation_token=token
        )
        page = next(pages, None)
        names = [item.name for item in page] if page is not None else []
        return names, pages.continuation_token

    def exists(self, uri: str) -> bool:
        blob = self._blob(uri)
        found: bool = self.calls(uri, blob.exists)
        return found

    def delete(self, uris: Iterable[str]) -> None:
        for uri in uris:
            blob = self._blob(uri)
            try:
                self.calls(uri, blob.delete_blob)
            except StorageError as exc:
                if exc.reason is not Reason.MISSING:  # already gone: what delete wanted
                    raise

    def delete_prefix(self, prefix: str) -> int:
        uris = list(self.list_prefix(prefix).values())
        self.delete(uris)
        return len(uris)
