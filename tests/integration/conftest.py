"""Fixtures shared by the handler tests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from control_plane.runtime import load_settings, visit_after
from control_plane.store.base import StateStore
from control_plane.store.sqlite import SqliteStore
from tests.integration.lambdas import TIMINGS


@pytest.fixture(params=["sqlite", "dynamodb"])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], StateStore]:
    """Each 'Lambda' opens its own store on the same backend: a SQLite file or a DynamoDB table.

    The DynamoDB store registers running executions the way the runtime builds it: lazily, by
    the tick's visit after ``min(submit_grace, reconcile_after)`` (120 s here).
    """
    if request.param == "sqlite":
        return lambda: SqliteStore(tmp_path / "squall.db")
    from control_plane.store.dynamodb import DynamoDBStore

    client, table = request.getfixturevalue("dynamodb_table")
    delay = visit_after(load_settings({}, **TIMINGS))
    assert delay == timedelta(seconds=120)
    return lambda: DynamoDBStore(table, client=client, visit_after=delay)
