"""``Runtime`` builds its service on first use, once, whichever thread asks first."""

from __future__ import annotations

import ast
import threading
from pathlib import Path

import pytest

from control_plane.runtime import Runtime, Settings, load_settings, local_settings, open_local, open_runtime
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


# ---------------------------------------------------------------------------- one wiring for every runtime

ROOT = Path(__file__).resolve().parents[2]


def test_only_the_wiring_module_builds_a_service() -> None:
    # `squall run`, `squall server`, every Lambda handler and `squall conformance` get their
    # service from control_plane/runtime.py: a second place that builds one would drift from it.
    builders = []
    for path in sorted((ROOT / "control_plane").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", getattr(node.func, "attr", "")) == "Service"
            ):
                builders.append(path.relative_to(ROOT).as_posix())
    assert builders == ["control_plane/runtime.py"]


def test_a_local_runtime_keeps_its_files_beside_the_database_and_submits_every_job_itself(
    tmp_path: Path,
) -> None:
    db = tmp_path / "nested" / "squall.db"
    with open_local(local_settings(db, env={})) as rt:
        assert rt.settings.store == "sqlite" and Path(rt.settings.db or "") == db.resolve()
        assert rt.data_dir == db.resolve().parent  # storage/ and jobs/ beside it, as `squall server`
        assert rt.service.submit_budget is None  # no tick runs beside `squall run`
        assert rt.service.storage.root == db.resolve().parent / "storage"
    env = {"SQUALL_DATA_DIR": str(tmp_path / "data"), "SQUALL_STORE": "dynamodb", "SQUALL_TABLE": "t"}
    settings = local_settings(db, env=env)
    assert settings.store == "sqlite" and settings.data_dir == str(tmp_path / "data")
    with open_runtime(_settings(tmp_path)) as rt:  # a Lambda's: the tick takes what a step leaves
        assert rt.service.submit_budget == rt.settings.submit_budget == 100
