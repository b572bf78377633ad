"""The storage contract (runners/testing/storage_contract.py) on every backend, each real.

``file`` on a temporary directory; ``s3`` on moto's server; ``gs`` on fake-gcs-server;
``az`` on Azurite. Faults are injected through each SDK's own transport seam (a botocore
``before-send`` hook, a requests adapter under google-cloud-storage, an azure-core
transport), so a 503 comes back through the SDK's real error parsing and our classifier.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runners.retry import RetryPolicy
from runners.storage import Storage
from runners.storage.base import uri_of
from runners.storage.file import FileStorage
from runners.testing import CallCounter, StorageContract
from tests.emulators.azurite import ACCOUNT, Azurite
from tests.emulators.fake_gcs import FakeGcs

FAST = RetryPolicy(attempts=4, initial_delay=0.0, jitter=0.0)
_names = itertools.count()


def _no_sleep(_seconds: float) -> None:
    return None


def fresh(kind: str) -> str:
    """A bucket or container name no other test (nor worker) of the session uses."""
    return f"squall-{kind}-{os.getpid()}-{next(_names)}"


class TestFileStorage(StorageContract):
    @pytest.fixture
    def backend(self) -> Storage:
        return FileStorage()

    @pytest.fixture
    def root(self, tmp_path: Path) -> str:
        return uri_of(tmp_path / "storage", directory=True)

    @pytest.fixture
    def foreign(self, tmp_path: Path) -> str:
        return uri_of(tmp_path / "elsewhere", directory=True)

    def test_a_symlink_inside_the_root_leading_out_is_refused(self, tmp_path: Path, root: str) -> None:
        from runners.storage import DeploymentStorage, StorageError

        secret = tmp_path / "secret.txt"
        secret.write_text("s3cr3t")
        (tmp_path / "storage").mkdir()
        (tmp_path / "storage" / "link.txt").symlink_to(secret)
        storage = DeploymentStorage(root, {"file": FileStorage()})
        with pytest.raises(StorageError, match="outside the storage directory"):
            storage.read("kestra:///link.txt")


# ---------------------------------------------------------------------------------- S3 (moto)


class _Raw:
    """The raw body botocore reads from an injected response."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_kwargs: Any) -> Iterator[bytes]:
        yield self.body


def s3_client(endpoint: str, hook: Callable[..., Any] | None = None) -> Any:
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    if hook is not None:
        session.events.register("before-send.s3", hook)
    config = Config(retries={"total_max_attempts": 1, "mode": "standard"})
    return session.client("s3", endpoint_url=endpoint, config=config)


@pytest.mark.xdist_group("storage-s3")
class TestS3Storage(StorageContract):
    @pytest.fixture
    def backend(self, moto_server: str) -> Storage:
        from runners.storage.s3 import S3Storage

        return S3Storage(client=s3_client(moto_server))

    def _bucket(self, moto_server: str) -> str:
        name = fresh("s3")
        s3_client(moto_server).create_bucket(Bucket=name)
        return name

    @pytest.fixture
    def root(self, moto_server: str) -> str:
        return f"s3://{self._bucket(moto_server)}/squall/"

    @pytest.fixture
    def foreign(self, moto_server: str) -> str:
        return f"s3://{self._bucket(moto_server)}/"

    @pytest.fixture
    def many(self) -> int:
        return 1100  # S3 pages hold 1,000 keys at most: two pages

    @pytest.fixture
    def faulty_backend(self, moto_server: str) -> Callable[[int], tuple[Storage, CallCounter]]:
        from botocore.awsrequest import AWSResponse

        from runners.storage.s3 import S3Storage

        def make(failures: int) -> tuple[Storage, CallCounter]:
            counter = CallCounter()

            def before_send(request: Any, **_kwargs: Any) -> Any:
                if counter.hit() <= failures:
                    return AWSResponse(request.url, 503, {}, _Raw(b""))
                return None

            client = s3_client(moto_server, before_send)
            return S3Storage(client=client, policy=FAST, sleep=_no_sleep), counter

        return make


# ---------------------------------------------------------------------------------- GCS (fake-gcs-server)


@pytest.mark.xdist_group("storage-gcs")
class TestGcsStorage(StorageContract):
    @pytest.fixture
    def backend(self, fake_gcs: FakeGcs) -> Storage:
        from runners.storage.gcs import GcsStorage

        return GcsStorage(client=fake_gcs.client(), page_size=7)  # small pages: listing pages

    def _bucket(self, fake_gcs: FakeGcs) -> str:
        name = fresh("gs")
        fake_gcs.client().create_bucket(name)
        return name

    @pytest.fixture
    def root(self, fake_gcs: FakeGcs) -> str:
        return f"gs://{self._bucket(fake_gcs)}/squall/"

    @pytest.fixture
    def foreign(self, fake_gcs: FakeGcs) -> str:
        return f"gs://{self._bucket(fake_gcs)}/"

    @pytest.fixture
    def faulty_backend(self, fake_gcs: FakeGcs) -> Callable[[int], tuple[Storage, CallCounter]]:
        import requests
        from requests.adapters import HTTPAdapter

        from runners.storage.gcs import GcsStorage

        def make(failures: int) -> tuple[Storage, CallCounter]:
            counter = CallCounter()

            class Failing(HTTPAdapter):
                def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
                    if counter.hit() > failures:
                        return super().send(request, *args, **kwargs)
                    response = requests.Response()
                    response.status_code = 503
                    response._content = b'{"error": {"code": 503, "message": "injected"}}'
                    response.headers["Content-Type"] = "application/json"
                    response.request, response.url = request, request.url
                    return response

            session = requests.Session()
            session.mount("http://", Failing())
            client = fake_gcs.client(_http=session)
            return GcsStorage(client=client, policy=FAST, sleep=_no_sleep), counter

        return make


# ---------------------------------------------------------------------------------- Azure (Azurite)


@pytest.mark.xdist_group("storage-azure")
class TestAzureBlobStorage(StorageContract):
    @pytest.fixture
    def backend(self, azurite: Azurite) -> Storage:
        from runners.storage.azure_blob import AzureBlobStorage

        return AzureBlobStorage(endpoint=azurite.endpoint, credential=azurite.credential, page_size=7)

    def _container(self, azurite: Azurite) -> str:
        name = fresh("az")
        azurite.service().create_container(name)
        return name

    @pytest.fixture
    def root(self, azurite: Azurite) -> str:
        return f"az://{ACCOUNT}/{self._container(azurite)}/squall/"

    @pytest.fixture
    def foreign(self, azurite: Azurite) -> str:
        return f"az://{ACCOUNT}/{self._container(azurite)}/"

    @pytest.fixture
    def faulty_backend(self, azurite: Azurite) -> Callable[[int], tuple[Storage, CallCounter]]:
        from azure.core.pipeline.transport import RequestsTransport

        from runners.storage.azure_blob import AzureBlobStorage

        def make(failures: int) -> tuple[Storage, CallCounter]:
            counter = CallCounter()

            class Failing(RequestsTransport):  # type: ignore[misc]
                """Azurite answers, but the first ``failures`` answers reach the SDK as 503s."""

                def send(self, request: Any, **kwargs: Any) -> Any:
                    response = super().send(request, **kwargs)
                    if counter.hit() <= failures:
                        response.status_code = response.internal_response.status_code = 503
                        response.headers["x-ms-error-code"] = "ServerBusy"
                    return response

            backend = AzureBlobStorage(
                endpoint=azurite.endpoint,
                credential=azurite.credential,
                transport=Failing(),
                policy=FAST,
                sleep=_no_sleep,
            )
            return backend, counter

        return make
