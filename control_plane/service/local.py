"""Wiring for one machine: SQLite store, process runner, object store directory, side by side.

Everything lives next to the database file (``--db`` / ``$SQUALL_DB``, by default under the
user's data directory)::

    squall.db        the state store
    storage/         task output files (``file://`` URIs handed to later tasks)
    jobs/            the process runner's job directories (logs, exit codes)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from msgspec import Struct

from control_plane.engine.model import Execution, LogLine
from control_plane.service.memory import Clock
from control_plane.service.runners import RunnerRegistry
from control_plane.service.service import Service
from control_plane.service.storage import LocalStorage
from control_plane.store.sqlite import SqliteStore, default_db_path

__all__ = ["LocalRuntime", "open_local"]


class LocalRuntime(Struct):
    store: SqliteStore
    service: Service
    data_dir: Path

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> LocalRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_local(
    db: str | os.PathLike[str] | None = None,
    *,
    clock: Clock | None = None,
    runner_config: Mapping[str, Mapping[str, Any]] | None = None,
    on_change: Callable[[Execution], None] | None = None,
    on_logs: Callable[[Execution | None, Sequence[LogLine]], None] | None = None,
    synchronous: str = "FULL",
    **service_options: Any,
) -> LocalRuntime:
    path = Path(db) if db is not None else default_db_path()
    store = SqliteStore(path, synchronous=synchronous)
    data_dir = path.resolve().parent
    config: dict[str, Mapping[str, Any]] = {"process": {"base_dir": data_dir / "jobs"}}
    config.update(runner_config or {})
    service = Service(
        store,
        runners=RunnerRegistry(config),
        storage=LocalStorage(data_dir / "storage"),
        clock=clock,
        on_change=on_change,
        on_logs=on_logs,
        **service_options,
    )
    return LocalRuntime(store, service, data_dir)
