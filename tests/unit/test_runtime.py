"""``Runtime`` builds its service on first use, once, whichever thread asks first."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from control_plane.handlers.runtime import Runtime, Settings, load_settings
from control_plane.service.runners import RunnerRegistry
from control_plane.service.service import Service
from control_plane.service.storage import LocalStorage
from control_plane.store.sqlite import SqliteStore


def _settings(tmp_path: Path) -> Settings:
    env = {"SQUALL_STORE": "sqlite", "SQUALL_DB": str(tmp_path / "db"), "SQUALL_DATA_DIR": str(tmp_path)}
    return load_settings({**env, "SQUALL_AUTH": "none"})


def test_the_service_is_built_once_even_when_threads_race_for_it(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "squall.db")
    built: list[Service] = []
    gate = threading.Barrier(8)

    def build() -> Service:
        service = Service(store, runners=RunnerRegistry(), storage=LocalStorage(tmp_path / "storage"))
        built.append(service)
        return service

    rt = Runtime(_settings(tmp_path), store, build=build)
    rt.flush()  # no service yet: nothing to flush, and nothing built for it
    assert built == []
    seen: list[Service] = []

    def ask() -> None:
        gate.wait(timeout=10)
        seen.append(rt.service)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(built) == 1
    assert len(seen) == 8 and all(s is built[0] for s in seen)
    store.close()


def test_a_runtime_needs_a_service_or_a_way_to_build_one(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "squall.db")
    with pytest.raises(TypeError, match="needs a service"):
        Runtime(_settings(tmp_path), store)
    store.close()
