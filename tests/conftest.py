"""Every test gets its own Squall data directory: nothing touches the user's real store.

The suite runs in parallel (pytest-xdist, ``-n auto`` in pyproject.toml): each worker is a
process of its own with its own emulators (``tests/emulators``), temporary directories and
environment. Tests that must not overlap with others share an ``xdist_group``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

pytest_plugins = ["tests.emulators.fixtures"]

# Rich wraps the CLI's output at the terminal's width, which its consoles read when the CLI is
# imported; an xdist worker has COLUMNS=80, and its temporary paths are longer (popen-gwN): a
# path in a message would be cut in two. A wide "terminal" keeps every message on its line, in
# the worker and in the ``squall`` processes it starts. (Workers print nothing themselves; the
# main process keeps the real terminal's width for pytest's own output.)
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["COLUMNS"] = "400"

# A shared 2-core VM can stall any example for longer than Hypothesis's 200 ms default
# deadline; a timing failure there says nothing about the property under test.
settings.register_profile("squall", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("squall")


@pytest.fixture(autouse=True)
def _private_squall_db(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path_factory.mktemp("squall-data")
    monkeypatch.setenv("SQUALL_DB", str(data / "squall.db"))
    monkeypatch.setenv("XDG_DATA_HOME", str(data / "xdg"))
    return data


@pytest.fixture(autouse=True)
def _fresh_boto3_default_session() -> None:
    """Each test resolves AWS credentials from its own environment.

    ``boto3.client()`` goes through one default session per process, and botocore caches the
    credentials that session resolved first: a test that set ``AWS_ACCESS_KEY_ID=testing`` (moto)
    would hand those keys to every later client of the worker. DynamoDB Local keeps one database
    per access key and region, so a later test's server then saw none of its fixture's tables
    ("Cannot do operations on a non-existent table"), depending on which tests ran before it.
    """
    boto3 = sys.modules.get("boto3")  # not imported here: most tests never need it
    if boto3 is not None:
        boto3.DEFAULT_SESSION = None
