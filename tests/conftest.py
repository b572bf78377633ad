"""Every test gets its own Squall data directory: nothing touches the user's real store."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _private_squall_db(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path_factory.mktemp("squall-data")
    monkeypatch.setenv("SQUALL_DB", str(data / "squall.db"))
    monkeypatch.setenv("XDG_DATA_HOME", str(data / "xdg"))
    return data
