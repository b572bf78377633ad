"""The store contract against the embedded SQLite store, plus what only SQLite has."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from control_plane.errors import StoreError
from control_plane.store.sqlite import IDLE_CONNECTIONS, MIGRATIONS, SqliteStore, default_db_path
from tests.store_contract import StoreContract, make_execution


class TestSqliteStore(StoreContract):
    @pytest.fixture
    def store_factory(self, tmp_path: Path) -> Iterator[Callable[[], SqliteStore]]:
        opened: list[SqliteStore] = []

        def factory() -> SqliteStore:
            opened.append(SqliteStore(tmp_path / "squall.db"))
            return opened[-1]

        yield factory
        for store in opened:
            store.close()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[SqliteStore]:
    store = SqliteStore(tmp_path / "squall.db")
    yield store
    store.close()


def _pragma(path: Path, name: str) -> object:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]
    finally:
        conn.close()


def test_wal_mode_is_on(db: SqliteStore) -> None:
    assert _pragma(db.path, "journal_mode") == "wal"


def test_schema_version_is_the_number_of_migrations(db: SqliteStore, tmp_path: Path) -> None:
    assert db.schema_version == len(MIGRATIONS)
    db.close()
    again = SqliteStore(tmp_path / "squall.db")  # migrating an up-to-date file changes nothing
    try:
        assert again.schema_version == len(MIGRATIONS)
    finally:
        again.close()


def test_a_newer_schema_is_refused_with_a_hint_to_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    SqliteStore(path).close()
    conn = sqlite3.connect(path)
    try:
        conn.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
        conn.commit()
    finally:
        conn.close()
    with pytest.raises(StoreError, match="upgrade") as info:
        SqliteStore(path)
    assert str(path) in str(info.value)
    assert _pragma(path, "user_version") == len(MIGRATIONS) + 1  # left as it was


def test_a_file_that_is_not_a_database_is_refused_naming_its_path(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are not the pages you are looking for\n" * 200)
    with pytest.raises(StoreError) as info:
        SqliteStore(path)
    assert str(path) in str(info.value)


def test_a_directory_that_cannot_be_created_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="directory"):
        SqliteStore(blocker / "sub" / "squall.db")


def test_default_db_path_honors_squall_db_then_xdg_data_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SQUALL_DB", str(tmp_path / "explicit.db"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_db_path() == tmp_path / "explicit.db"
    monkeypatch.delenv("SQUALL_DB")
    assert default_db_path() == tmp_path / "xdg" / "squall" / "squall.db"
    monkeypatch.setenv("XDG_DATA_HOME", "")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_db_path() == tmp_path / "home" / ".local" / "share" / "squall" / "squall.db"


def test_the_default_path_is_used_and_created(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SQUALL_DB", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    store = SqliteStore()
    try:
        assert store.path == tmp_path / "data" / "squall" / "squall.db"
        store.create_execution(make_execution("here"))
        assert store.path.exists()
    finally:
        store.close()


@pytest.mark.parametrize("cursor", ["not base64 !", "bm90IGpzb24", "WzEsMiwzXQ==", "e30="])
def test_an_invalid_cursor_is_a_store_error(db: SqliteStore, cursor: str) -> None:
    for listing in (
        lambda: db.list_flows(cursor=cursor),
        lambda: db.list_executions(cursor=cursor),
        lambda: db.read_logs("ex", cursor=cursor),
    ):
        with pytest.raises(StoreError, match="cursor"):
            listing()


def test_synchronous_must_be_a_known_level(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        SqliteStore(tmp_path / "x.db", synchronous="SOMETIMES")


def test_an_unreadable_row_is_a_store_error_naming_the_execution(db: SqliteStore) -> None:
    db.create_execution(make_execution("broken"))
    conn = sqlite3.connect(db.path)
    try:
        conn.execute("UPDATE executions SET body = '{\"id\": \"broken\"}' WHERE id = 'broken'")
        conn.commit()
    finally:
        conn.close()
    with pytest.raises(StoreError, match="broken"):
        db.get_execution("broken")


def test_a_full_disk_is_a_store_error_and_nothing_is_half_written(db: SqliteStore) -> None:
    db.create_execution(make_execution("kept"))
    with db._connection() as conn:  # given back first, so this thread's next call takes it again
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count={pages}")  # the database may not grow any more
    big = make_execution("big")
    big = big.evolve(inputs={"blob": "x" * 2_000_000})
    with pytest.raises(StoreError, match="full"):
        db.create_execution(big)
    with db._connection() as again:
        assert again is conn
        conn.execute("PRAGMA max_page_count=1073741823")
    assert db.get_execution("kept").id == "kept"
    with pytest.raises(StoreError, match="not found"):
        db.get_execution("big")


def _open_files(path: Path) -> int:
    """File descriptors of this process open on the database, its WAL or its shared memory."""
    names = {str(path), f"{path}-wal", f"{path}-shm"}
    count = 0
    for fd in Path("/proc/self/fd").iterdir():
        try:
            count += os.readlink(fd) in names
        except OSError:  # closed between listing and reading
            continue
    return count


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_connections_do_not_outlive_the_threads_that_used_them(db: SqliteStore) -> None:
    """``squall server`` runs each HTTP connection on a thread of its own: 300 short threads
    must not leave 300 connections (and their file descriptors) behind."""
    db.create_execution(make_execution("shared"))
    before = _open_files(db.path)
    for _ in range(300):
        thread = threading.Thread(target=db.get_execution, args=("shared",))
        thread.start()
        thread.join()
    assert _open_files(db.path) <= before + 2 * IDLE_CONNECTIONS


def test_concurrent_threads_share_a_bounded_set_of_connections(db: SqliteStore) -> None:
    db.create_execution(make_execution("busy"))
    errors: list[BaseException] = []
    start = threading.Barrier(32)

    def work() -> None:
        try:
            start.wait(timeout=30)
            for _ in range(20):
                assert db.get_execution("busy").id == "busy"
                assert db.list_executions(limit=5).items
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert db.idle_connections() <= IDLE_CONNECTIONS


def test_close_while_a_connection_is_in_use_closes_it_when_returned(db: SqliteStore) -> None:
    with db._connection() as conn:
        db.close()  # e.g. the server stopping while a request still reads
        assert conn.execute("SELECT 1").fetchone() == (1,)  # the borrower is not cut off
    with pytest.raises(sqlite3.ProgrammingError):
        conn.execute("SELECT 1")  # closed once given back
    assert db.schema_version == len(MIGRATIONS)  # a closed store opens connections again on use


def _run_until_killed(script: str, path: Path) -> None:
    """Run ``script`` (given the database's path) in a Python process that kills itself (SIGKILL)."""
    import signal
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr


def test_a_lease_written_without_fsync_survives_a_crash_of_its_process(tmp_path: Path) -> None:
    # Leases are committed with synchronous=NORMAL: in WAL mode a commit is in the WAL (the
    # OS's cache) when it returns, so a process killed right after it loses nothing.

    path = tmp_path / "crash.db"
    script = (
        "import os, signal, sys\n"
        "from datetime import UTC, datetime\n"
        "from control_plane.store.sqlite import SqliteStore\n"
        "store = SqliteStore(sys.argv[1])\n"
        "store.claim_lease('ex-1', 'me', at=datetime.now(UTC), free=lambda held: True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    _run_until_killed(script, path)
    store = SqliteStore(path)
    try:
        lease = store.get_lease("ex-1")
        assert lease is not None and lease.owner == "me"
    finally:
        store.close()


def test_a_lease_write_leaves_its_connection_fully_synchronous(db: SqliteStore) -> None:
    from datetime import UTC, datetime

    db.claim_lease("ex-2", "me", at=datetime.now(UTC), free=lambda held: True)
    db.release_lease("ex-2", "me")
    with db._connection() as conn:  # the pooled connection both used
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL, for the next write


def test_a_write_whose_sync_is_deferred_survives_a_crash_of_its_process(tmp_path: Path) -> None:
    # deferred_sync(): the commit is in the WAL (the OS's cache) when it returns, before its
    # fsync; a process killed before it calls the sync loses nothing.
    path = tmp_path / "deferred.db"
    script = (
        "import os, signal, sys\n"
        "from datetime import UTC, datetime\n"
        "from control_plane.store.sqlite import SqliteStore\n"
        "store = SqliteStore(sys.argv[1])\n"
        "with store.deferred_sync() as sync:\n"
        "    store.save_flow('ns', 'f', 'id: f', at=datetime.now(UTC))\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    _run_until_killed(script, path)
    store = SqliteStore(path)
    try:
        assert store.get_flow("ns", "f").source == "id: f"
    finally:
        store.close()


def test_a_deferred_sync_is_one_fdatasync_of_the_wal_and_leaves_the_connection_synchronous(
    db: SqliteStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import UTC, datetime

    synced: list[str] = []
    real = os.fdatasync

    def recording(fd: int) -> None:  # the real call, and which file it was on
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fdatasync", recording)
    other = SqliteStore(db.path)
    try:
        with db.deferred_sync() as sync:
            db.save_flow("ns", "a", "id: a", at=datetime.now(UTC))
            db.save_flow("ns", "b", "id: b", at=datetime.now(UTC))
            assert other.get_flow("ns", "b").source == "id: b"  # committed: every reader sees it
            assert synced == []
            sync()
            assert synced == [f"{db.path}-wal"]
            sync()  # nothing written since: nothing to sync
            assert synced == [f"{db.path}-wal"]
            db.save_flow("ns", "c", "id: c", at=datetime.now(UTC))
        assert synced == [f"{db.path}-wal"] * 2  # the exit syncs what the call did not
    finally:
        other.close()
    with db._connection() as conn:
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL, for the next write


def test_a_store_that_is_not_fully_synchronous_defers_nothing(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    store = SqliteStore(tmp_path / "normal.db", synchronous="NORMAL")
    try:
        with store.deferred_sync() as sync:
            store.save_flow("ns", "a", "id: a", at=datetime.now(UTC))
            sync()
        with store._connection() as conn:
            assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL, as asked
    finally:
        store.close()
