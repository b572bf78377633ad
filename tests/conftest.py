"""Every test gets its own Squall data directory: nothing touches the user's real store."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

pytest_plugins = ["tests.emulators.fixtures"]

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
