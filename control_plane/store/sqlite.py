"""The embedded store: one SQLite file, WAL mode, for ``squall run`` and ``squall server``.

Why SQLite: it is in the standard library, one file is easy to back up and to delete, and WAL
lets the CLI read (``squall executions list``) while a run writes. Every execution write is
one ``BEGIN IMMEDIATE`` transaction: meta row with a version check, changed task runs, logs,
timers and the job outbox together, so a crash leaves either all of it or none.

Connections come from a small pool: each call borrows one for its own transaction and gives
it back, so no two threads ever share a connection while a transaction is open, and the
number kept open does not grow with the number of threads that ever called (``squall
server`` runs each HTTP connection on a thread of its own). At most ``IDLE_CONNECTIONS``
wait in the pool; a burst borrows more and closes the extra ones when they come back.
``busy_timeout`` makes concurrent writers queue instead of failing. The schema is versioned
with ``PRAGMA user_version`` and migrated in code at open.
"""

from __future__ import annotations

import base64
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Any

from msgspec.structs import replace

from control_plane.collector import acyclic
from control_plane.engine.model import Execution, LogLine, TaskRun
from control_plane.engine.states import State
from control_plane.errors import ConflictError, NotFoundError, StoreError
from control_plane.levels import Level
from control_plane.store.base import (
    ExecutionSummary,
    FlowRecord,
    JobPhase,
    JobRecord,
    LeaseRecord,
    Page,
    TimerRecord,
    TriggerRecord,
)
from control_plane.store.codec import (
    dumps,
    execution_from_json,
    execution_meta,
    loads,
    taskrun_dumps,
    taskrun_loads,
)

__all__ = ["IDLE_CONNECTIONS", "MIGRATIONS", "SqliteStore", "default_db_path"]

_LEASE_OF = "SELECT owner, renewed FROM leases WHERE execution_id=?"
IDLE_CONNECTIONS = 4  # kept open between calls: enough for the server, bounded whatever its thread count

MIGRATIONS: list[str] = [
    # 1: the first schema
    """
    CREATE TABLE flows (
        namespace TEXT NOT NULL, id TEXT NOT NULL, revision INTEGER NOT NULL,
        source TEXT NOT NULL, updated TEXT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (namespace, id, revision)
    ) WITHOUT ROWID;
    CREATE TABLE executions (
        id TEXT PRIMARY KEY, namespace TEXT NOT NULL, flow_id TEXT NOT NULL, state TEXT NOT NULL,
        created REAL NOT NULL, version INTEGER NOT NULL, parent_id TEXT, body TEXT NOT NULL
    );
    CREATE INDEX executions_by_created ON executions (created DESC, id DESC);
    CREATE INDEX executions_by_flow ON executions (namespace, flow_id, created DESC, id DESC);
    CREATE TABLE taskruns (
        execution_id TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL,
        PRIMARY KEY (execution_id, id)
    ) WITHOUT ROWID;
    CREATE TABLE logs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, execution_id TEXT NOT NULL, taskrun_id TEXT,
        task_id TEXT, attempt INTEGER NOT NULL, at TEXT NOT NULL, level TEXT NOT NULL, message TEXT NOT NULL
    );
    CREATE INDEX logs_by_execution ON logs (execution_id, seq);
    CREATE TABLE timers (
        execution_id TEXT NOT NULL, key TEXT NOT NULL, at REAL NOT NULL,
        PRIMARY KEY (execution_id, key)
    ) WITHOUT ROWID;
    CREATE INDEX timers_by_at ON timers (at);
    CREATE TABLE jobs (
        name TEXT PRIMARY KEY, execution_id TEXT NOT NULL, taskrun_id TEXT NOT NULL,
        attempt INTEGER NOT NULL, runner TEXT NOT NULL, phase TEXT NOT NULL, spec TEXT NOT NULL,
        handle TEXT, version INTEGER NOT NULL, updated TEXT
    );
    CREATE INDEX jobs_active ON jobs (phase, runner) WHERE phase != 'DONE';
    CREATE TABLE triggers (key TEXT PRIMARY KEY, data TEXT NOT NULL, version INTEGER NOT NULL);
    """,
    # 2: who drives each execution (control_plane/service/ownership.py)
    """
    CREATE TABLE leases (execution_id TEXT PRIMARY KEY, owner TEXT NOT NULL, renewed REAL NOT NULL)
    """,
    # 3: the submit claim of a job and when its first submit was tried (JobRecord); the new
    # CANCELLING phase needs no change (phase is free text, DONE the only one left out of jobs_active)
    """
    ALTER TABLE jobs ADD COLUMN claim TEXT;
    ALTER TABLE jobs ADD COLUMN claim_until TEXT;
    ALTER TABLE jobs ADD COLUMN since TEXT
    """,
]


_by_seq = attrgetter("seq")
_by_id = itemgetter(1)


def _taskrun_rows(execution_id: str, taskruns: Iterable[TaskRun]) -> list[tuple[str, str, str]]:
    """Rows of ``taskruns``, in key order: SQLite appends to its B-tree instead of splitting
    pages at random (ids are hashes), half the insert time of a 100,000-task-run loop.

    Encoded in creation order first: that is the order the task runs were allocated in, so
    reading them goes through memory in order instead of jumping from one to the next, which
    at 100,000 task runs encoded in 1.7 us each instead of 3.0 (benchmarks/engine.py's flow).
    """
    rows = [(execution_id, tr.id, taskrun_dumps(tr)) for tr in sorted(taskruns, key=_by_seq)]
    rows.sort(key=_by_id)
    return rows


def default_db_path() -> Path:
    """``$SQUALL_DB``, else ``$XDG_DATA_HOME/squall/squall.db`` (``~/.local/share`` by default)."""
    if env := os.environ.get("SQUALL_DB"):
        return Path(env)
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "squall" / "squall.db"


def _epoch(moment: datetime) -> float:
    return moment.timestamp()


def _cursor_encode(*parts: Any) -> str:
    return base64.urlsafe_b64encode(dumps(list(parts)).encode()).decode()


def _cursor_decode(cursor: str, size: int) -> list[Any]:
    try:
        parts = loads(base64.urlsafe_b64decode(cursor.encode()))
    except ValueError as exc:
        raise StoreError(f"invalid page cursor {cursor!r}") from exc
    if not isinstance(parts, list) or len(parts) != size:
        raise StoreError(f"invalid page cursor {cursor!r}")
    return parts


def _no_sync() -> None:
    """Nothing to make durable: the writes were synced (or are as ``synchronous`` makes them)."""


class SqliteStore:
    """A :class:`~control_plane.store.base.StateStore` in one SQLite file (or ``:memory:``-like temp)."""

    def __init__(self, path: str | os.PathLike[str] | None = None, *, synchronous: str = "FULL") -> None:
        self.path = Path(path) if path is not None else default_db_path()
        if synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, not {synchronous!r}")
        self._synchronous = synchronous
        self._deferring = threading.local()  # on, dirty: this thread's deferred_sync()
        self._idle: list[sqlite3.Connection] = []  # a stack: a thread's next call takes the one it gave back
        self._generation = 0  # close() increments it: connections borrowed before are closed on return
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the directory of the database {self.path}: {exc}") from exc
        try:
            self._migrate()
        except BaseException:
            self.close()  # a refused database must not leak its connection
            raise

    # ------------------------------------------------------------------ plumbing

    def _open(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open the database {self.path}: {exc}") from exc
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.DatabaseError as exc:
            conn.close()  # not a database (or unreadable): do not leak the connection
            raise StoreError(f"cannot open the database {self.path}: {exc}") from exc
        return conn

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """Borrow a connection for one call; it goes back to the pool (or is closed) afterwards."""
        with self._lock:
            conn = self._idle.pop() if self._idle else None
            generation = self._generation
        if conn is None:
            conn = self._open()
        try:
            yield conn
        finally:
            healthy = True
            if conn.in_transaction:  # never hand on a connection in the middle of a transaction
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    healthy = False
            with self._lock:
                keep = healthy and generation == self._generation and len(self._idle) < IDLE_CONNECTIONS
                if keep:
                    self._idle.append(conn)
            if not keep:
                conn.close()

    def idle_connections(self) -> int:
        """Connections open in the pool now (not counting those borrowed by a call in progress)."""
        with self._lock:
            return len(self._idle)

    @contextmanager
    def deferred_sync(self) -> Iterator[Callable[[], None]]:
        """This thread's write transactions within it commit without their fsync; the call it
        yields (made on exit at the latest) makes them durable: one ``fdatasync`` of the WAL,
        what ``synchronous=FULL`` does at each commit (:class:`~control_plane.store.base.SyncDeferring`).

        Meanwhile they survive a crash of the process (they are in the WAL, in the OS's
        cache: every reader sees them), not a power loss. Only with ``synchronous=FULL``;
        otherwise the writes are as the setting makes them and the call does nothing.
        """
        if self._synchronous != "FULL" or getattr(self._deferring, "on", False):
            yield _no_sync
            return
        self._deferring.on = True
        self._deferring.dirty = False
        try:
            yield self._sync_deferred
        finally:
            try:
                self._sync_deferred()
            finally:
                self._deferring.on = False

    def _sync_deferred(self) -> None:
        if not getattr(self._deferring, "dirty", False):
            return
        self._deferring.dirty = False
        try:
            fd = os.open(f"{self.path}-wal", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return  # checkpointed into the database, which the checkpoint synced, and removed
        except OSError as exc:
            raise StoreError(f"database {self.path}: cannot sync its log: {exc}") from exc
        try:
            os.fdatasync(fd)
        except OSError as exc:
            raise StoreError(f"database {self.path}: cannot sync its log: {exc}") from exc
        finally:
            os.close(fd)

    @contextmanager
    def _write(self, *, synced: bool = True) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction. ``synced=False``: its commit is not fsynced
        (``synchronous=NORMAL`` for it). In WAL mode it still survives a crash of the process
        (it is in the WAL, in the OS's cache), and the next synced commit's fsync of the WAL
        makes it survive power loss too; only bookkeeping that a power loss may lose uses it.
        Within :meth:`deferred_sync`, every write is made so and synced by its call."""
        with self._connection() as conn:
            deferred = getattr(self._deferring, "on", False)
            if deferred:
                self._deferring.dirty = True
            relaxed = (not synced or deferred) and self._synchronous in ("FULL", "EXTRA")
            if relaxed:
                conn.execute("PRAGMA synchronous=NORMAL")
            try:
                with self._transaction(conn):
                    yield conn
            finally:
                if relaxed:
                    conn.execute(f"PRAGMA synchronous={self._synchronous}")

    @contextmanager
    def _transaction(self, conn: sqlite3.Connection) -> Iterator[None]:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"database {self.path}: {exc}") from exc
        try:
            yield
        except sqlite3.DatabaseError as exc:  # disk full, I/O error...: nothing of it was written
            if conn.in_transaction:  # SQLite may have rolled back already
                conn.execute("ROLLBACK")
            raise StoreError(f"database {self.path}: {exc}") from exc
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreError(f"database {self.path}: commit failed: {exc}") from exc

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._connection() as conn:
            try:
                return conn.execute(sql, params).fetchall()
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"database {self.path}: {exc}") from exc

    def _migrate(self) -> None:
        with self._write() as conn:
            current = conn.execute("PRAGMA user_version").fetchone()[0]
            if current > len(MIGRATIONS):
                raise StoreError(
                    f"the database {self.path} has schema version {current}, newer than this Squall"
                    f" understands ({len(MIGRATIONS)}): upgrade Squall"
                )
            for number in range(current, len(MIGRATIONS)):
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version={number + 1}")

    @property
    def schema_version(self) -> int:
        return int(self._read("PRAGMA user_version")[0][0])

    def close(self) -> None:
        """Close the pooled connections; one a call still holds is closed when it is given back.

        The store stays usable: a later call opens a connection again.
        """
        with self._lock:
            idle, self._idle = self._idle, []
            self._generation += 1
        for conn in idle:
            conn.close()

    # ------------------------------------------------------------------ flows

    def save_flow(self, namespace: str, flow_id: str, source: str, *, at: datetime) -> FlowRecord:
        with self._write() as conn:
            row = conn.execute(
                "SELECT revision, source, deleted, updated FROM flows WHERE namespace=? AND id=?"
                " ORDER BY revision DESC LIMIT 1",
                (namespace, flow_id),
            ).fetchone()
            if row is not None and row[1] == source and not row[2]:
                return FlowRecord(namespace, flow_id, row[0], source, datetime.fromisoformat(row[3]))
            revision = 1 if row is None else row[0] + 1
            conn.execute(
                "INSERT INTO flows (namespace, id, revision, source, updated) VALUES (?,?,?,?,?)",
                (namespace, flow_id, revision, source, at.isoformat()),
            )
            return FlowRecord(namespace, flow_id, revision, source, at)

    def get_flow(self, namespace: str, flow_id: str, revision: int | None = None) -> FlowRecord:
        if revision is None:
            rows = self._read(
                "SELECT revision, source, updated, deleted FROM flows WHERE namespace=? AND id=?"
                " ORDER BY revision DESC LIMIT 1",
                (namespace, flow_id),
            )
            if rows and rows[0][3]:
                rows = []
        else:
            rows = self._read(
                "SELECT revision, source, updated, deleted FROM flows"
                " WHERE namespace=? AND id=? AND revision=?",
                (namespace, flow_id, revision),
            )
        if not rows:
            at = "" if revision is None else f" revision {revision}"
            raise NotFoundError(f"flow {namespace}.{flow_id}{at} not found")
        rev, source, updated, deleted = rows[0]
        return FlowRecord(namespace, flow_id, rev, source, datetime.fromisoformat(updated), bool(deleted))

    def list_flows(
        self, namespace: str | None = None, *, limit: int = 100, cursor: str | None = None
    ) -> Page[FlowRecord]:
        after = _cursor_decode(cursor, 2) if cursor else ["", ""]
        params: list[Any] = [after[0], after[0], after[1]]
        where = "(f.namespace > ? OR (f.namespace = ? AND f.id > ?))"
        if namespace is not None:
            # A prefix test, not LIKE: LIKE treats `_` and `%` as wildcards and ignores ASCII case.
            where += " AND (f.namespace = ? OR substr(f.namespace, 1, ?) = ?)"
            params += [namespace, len(namespace) + 1, namespace + "."]
        rows = self._read(
            "SELECT f.namespace, f.id, f.revision, f.source, f.updated FROM flows f"
            " JOIN (SELECT namespace, id, MAX(revision) AS rev FROM flows GROUP BY namespace, id) m"
            " ON f.namespace = m.namespace AND f.id = m.id AND f.revision = m.rev"
            f" WHERE f.deleted = 0 AND {where} ORDER BY f.namespace, f.id LIMIT ?",
            [*params, limit + 1],
        )
        items = [FlowRecord(r[0], r[1], r[2], r[3], datetime.fromisoformat(r[4])) for r in rows[:limit]]
        more = len(rows) > limit
        return Page(items, _cursor_encode(items[-1].namespace, items[-1].id) if more else None)

    def flow_revisions(self, namespace: str, flow_id: str) -> list[int]:
        rows = self._read(
            "SELECT revision FROM flows WHERE namespace=? AND id=? AND deleted=0 ORDER BY revision",
            (namespace, flow_id),
        )
        return [r[0] for r in rows]

    def delete_flow(self, namespace: str, flow_id: str, *, at: datetime) -> None:
        with self._write() as conn:
            # Read the latest revision inside the write transaction: a save_flow between a read
            # and this insert would otherwise take the same revision number (IntegrityError).
            row = conn.execute(
                "SELECT revision, source, deleted FROM flows WHERE namespace=? AND id=?"
                " ORDER BY revision DESC LIMIT 1",
                (namespace, flow_id),
            ).fetchone()
            if row is None or row[2]:
                raise NotFoundError(f"flow {namespace}.{flow_id} not found")
            conn.execute(
                "INSERT INTO flows (namespace, id, revision, source, updated, deleted) VALUES (?,?,?,?,?,1)",
                (namespace, flow_id, row[0] + 1, row[1], at.isoformat()),
            )

    # ------------------------------------------------------------------ executions

    def create_execution(
        self,
        execution: Execution,
        *,
        logs: Sequence[LogLine] = (),
        timers: Sequence[TimerRecord] = (),
        jobs: Sequence[JobRecord] = (),
    ) -> None:
        with self._write() as conn:
            try:
                conn.execute(
                    "INSERT INTO executions"
                    " (id, namespace, flow_id, state, created, version, parent_id, body)"
                    " VALUES (?,?,?,?,?,?,?,?)",
                    self._meta_row(execution),
                )
            except sqlite3.IntegrityError:
                raise ConflictError(f"execution {execution.id} already exists") from None
            with acyclic():
                rows = _taskrun_rows(execution.id, execution.taskruns.values())
            conn.executemany("INSERT INTO taskruns (execution_id, id, body) VALUES (?,?,?)", rows)
            self._side_records(conn, execution.id, logs, timers, jobs)

    def save_execution(
        self,
        execution: Execution,
        *,
        expected_version: int,
        logs: Sequence[LogLine] = (),
        timers: Sequence[TimerRecord] = (),
        jobs: Sequence[JobRecord] = (),
    ) -> None:
        with self._write() as conn:
            ex_id, _, _, state, _, version, _, body = self._meta_row(execution)
            cur = conn.execute(
                "UPDATE executions SET state=?, version=?, body=? WHERE id=? AND version=?",
                (state, version, body, ex_id, expected_version),
            )
            if cur.rowcount != 1:
                found = conn.execute("SELECT version FROM executions WHERE id=?", (ex_id,)).fetchone()
                if found is None:
                    raise NotFoundError(f"execution {ex_id} not found")
                raise ConflictError(
                    f"execution {ex_id} is at version {found[0]}, not {expected_version}: reload and retry"
                )
            upserts = []
            deletes = []
            with acyclic():
                for tr_id in sorted(execution.changed):  # key order, as in create_execution
                    tr = execution.taskruns.get(tr_id)
                    if tr is None:
                        deletes.append((ex_id, tr_id))
                    else:
                        upserts.append((ex_id, tr_id, taskrun_dumps(tr)))
            if upserts:
                conn.executemany(
                    "INSERT INTO taskruns (execution_id, id, body) VALUES (?,?,?)"
                    " ON CONFLICT (execution_id, id) DO UPDATE SET body=excluded.body",
                    upserts,
                )
            if deletes:
                conn.executemany("DELETE FROM taskruns WHERE execution_id=? AND id=?", deletes)
            self._side_records(conn, ex_id, logs, timers, jobs)

    @staticmethod
    def _meta_row(ex: Execution) -> tuple[Any, ...]:
        parent_id = ex.parent.get("id") if ex.parent else None
        return (
            ex.id,
            ex.namespace,
            ex.flow_id,
            ex.state.value,
            _epoch(ex.created),
            ex.version,
            parent_id,
            dumps(execution_meta(ex)),
        )

    def _side_records(
        self,
        conn: sqlite3.Connection,
        execution_id: str,
        logs: Sequence[LogLine],
        timers: Sequence[TimerRecord],
        jobs: Sequence[JobRecord],
    ) -> None:
        if logs:
            self._insert_logs(conn, execution_id, logs)
        if timers:
            conn.executemany(
                "INSERT INTO timers (execution_id, key, at) VALUES (?,?,?)"
                " ON CONFLICT (execution_id, key) DO UPDATE SET at=excluded.at",
                [(t.execution_id, t.key, _epoch(t.at)) for t in timers],
            )
        for job in jobs:
            if job.phase is not JobPhase.SUBMITTING:
                # DONE and CANCELLING stick (``later_phase``): a handle riding in after a kill
                # is stored, the cancel is kept.
                conn.execute(
                    "UPDATE jobs SET phase=CASE WHEN phase='DONE' THEN phase"
                    " WHEN phase='CANCELLING' AND ?<>'DONE' THEN phase ELSE ? END,"
                    " handle=COALESCE(?, handle), version=version+1, updated=? WHERE name=?",
                    (
                        job.phase.value,
                        job.phase.value,
                        None if job.handle is None else dumps(job.handle),
                        None if job.updated is None else job.updated.isoformat(),
                        job.name,
                    ),
                )
                continue
            try:
                conn.execute(
                    "INSERT INTO jobs (name, execution_id, taskrun_id, attempt, runner, phase, spec, handle,"
                    " version, updated, claim, claim_until, since) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    self._job_row(job, 1),
                )
            except sqlite3.IntegrityError:
                raise ConflictError(f"job {job.name} already exists") from None

    @staticmethod
    def _job_row(job: JobRecord, version: int) -> tuple[Any, ...]:
        return (
            job.name,
            job.execution_id,
            job.taskrun_id,
            job.attempt,
            job.runner,
            job.phase.value,
            dumps(job.spec),
            None if job.handle is None else dumps(job.handle),
            version,
            None if job.updated is None else job.updated.isoformat(),
            job.claim,
            None if job.claim_until is None else job.claim_until.isoformat(),
            None if job.since is None else job.since.isoformat(),
        )

    def get_execution(self, execution_id: str) -> Execution:
        with acyclic():  # the rows are freed inside: the collector resumes on the execution alone
            return self._get_execution(execution_id)

    def _get_execution(self, execution_id: str) -> Execution:
        with self._connection() as conn:
            try:
                conn.execute("BEGIN")  # one snapshot for meta and task runs
                try:
                    row = conn.execute(
                        "SELECT version, body FROM executions WHERE id=?", (execution_id,)
                    ).fetchone()
                    if row is None:
                        raise NotFoundError(f"execution {execution_id} not found")
                    # Decoded as SQLite yields them: one row's text alive at a time, not all of them.
                    cursor = conn.execute("SELECT body FROM taskruns WHERE execution_id=?", (execution_id,))
                    try:
                        taskruns = [taskrun_loads(body) for (body,) in cursor]
                        return execution_from_json(loads(row[1]), row[0], taskruns)
                    except (ValueError, KeyError, TypeError) as exc:
                        raise StoreError(
                            f"execution {execution_id} is unreadable in {self.path}: {exc!r}"
                        ) from exc
                finally:
                    conn.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"database {self.path}: {exc}") from exc

    def execution_ids_starting(self, prefix: str, *, limit: int = 10) -> list[str]:
        """Up to ``limit`` execution ids that start with ``prefix``, in order (the CLI takes a
        unique prefix wherever it takes an id, as git does with commits)."""
        rows = self._read(
            "SELECT id FROM executions WHERE id >= ? AND id < ? ORDER BY id LIMIT ?",
            (prefix, prefix + "\U0010ffff", limit),
        )
        return [str(row[0]) for row in rows]

    def purge_executions(self, before: datetime, *, dry_run: bool = False) -> list[tuple[str, str, str]]:
        """Delete every finished execution created before ``before`` with its task runs, logs,
        jobs, timers and lease, in one transaction; ``(id, namespace, flow_id)`` of each.

        Local retention (``squall executions purge``): DynamoDB has its TTL, a SQLite file
        would otherwise grow for ever. A running, paused or queued execution is never touched.
        """
        finished = [s.value for s in State if s.terminal]
        marks = ",".join("?" * len(finished))
        with self._write() as conn:
            rows = conn.execute(
                f"SELECT id, namespace, flow_id FROM executions WHERE created < ? AND state IN ({marks})",
                (before.timestamp(), *finished),
            ).fetchall()
            if not dry_run:
                _delete_executions(conn, [str(row[0]) for row in rows])
        return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]

    def delete_execution(self, execution_id: str) -> None:
        with self._write() as conn:
            row = conn.execute("SELECT state FROM executions WHERE id=?", (execution_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"execution {execution_id} not found")
            if not State(row[0]).terminal:
                raise ConflictError(f"execution {execution_id} is {row[0]}: only an ended one can be deleted")
            _delete_executions(conn, [execution_id])

    def get_execution_meta(self, execution_id: str) -> Execution:
        rows = self._read("SELECT version, body FROM executions WHERE id=?", (execution_id,))
        if not rows:
            raise NotFoundError(f"execution {execution_id} not found")
        try:
            return execution_from_json(loads(rows[0][1]), rows[0][0], [])
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"execution {execution_id} is unreadable in {self.path}: {exc!r}") from exc

    def list_taskruns(
        self, execution_id: str, *, after: str | None = None, limit: int = 100
    ) -> list[TaskRun]:
        rows = self._read(
            "SELECT body FROM taskruns WHERE execution_id=? AND id>? ORDER BY id LIMIT ?",
            (execution_id, after or "", limit),
        )
        try:
            return [taskrun_loads(row[0]) for row in rows]
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(
                f"execution {execution_id} has an unreadable task run in {self.path}: {exc!r}"
            ) from exc

    def list_executions(
        self,
        *,
        namespace: str | None = None,
        flow_id: str | None = None,
        states: Sequence[State] | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[ExecutionSummary]:
        where: list[str] = []
        params: list[Any] = []
        if namespace is not None:
            where.append("namespace = ?")
            params.append(namespace)
        if flow_id is not None:
            where.append("flow_id = ?")
            params.append(flow_id)
        if states:
            where.append(f"state IN ({','.join('?' * len(states))})")
            params += [State(s).value for s in states]
        if cursor:
            created, ex_id = _cursor_decode(cursor, 2)
            where.append("(created < ? OR (created = ? AND id < ?))")
            params += [created, created, ex_id]
        sql = "SELECT id, created, body FROM executions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._read(sql + " ORDER BY created DESC, id DESC LIMIT ?", [*params, limit + 1])
        items = []
        for _, _, body in rows[:limit]:
            meta = loads(body)
            items.append(
                ExecutionSummary(
                    id=meta["id"],
                    namespace=meta["namespace"],
                    flow_id=meta["flow_id"],
                    flow_revision=meta.get("flow_revision"),
                    state=State(meta["state"]),
                    created=datetime.fromisoformat(meta["created"]),
                    ended=datetime.fromisoformat(meta["ended"]) if meta.get("ended") else None,
                    labels=meta.get("labels", {}),
                    parent_id=(meta.get("parent") or {}).get("id"),
                )
            )
        more = len(rows) > limit
        return Page(items, _cursor_encode(rows[limit - 1][1], rows[limit - 1][0]) if more else None)

    # ------------------------------------------------------------------ logs

    @staticmethod
    def _insert_logs(conn: sqlite3.Connection, execution_id: str, logs: Sequence[LogLine]) -> None:
        conn.executemany(
            "INSERT INTO logs (execution_id, taskrun_id, task_id, attempt, at, level, message)"
            " VALUES (?,?,?,?,?,?,?)",
            [
                (execution_id, x.taskrun_id, x.task_id, x.attempt, x.at.isoformat(), x.level.value, x.message)
                for x in logs
            ],
        )

    def append_logs(self, execution_id: str, logs: Sequence[LogLine]) -> None:
        if logs:
            with self._write() as conn:
                self._insert_logs(conn, execution_id, logs)

    def read_logs(
        self,
        execution_id: str,
        *,
        taskrun_id: str | None = None,
        limit: int = 1000,
        cursor: str | None = None,
    ) -> Page[LogLine]:
        after = int(_cursor_decode(cursor, 1)[0]) if cursor else 0
        sql = (
            "SELECT seq, at, level, message, task_id, taskrun_id, attempt FROM logs"
            " WHERE execution_id=? AND seq>?"
        )
        params: list[Any] = [execution_id, after]
        if taskrun_id is not None:
            sql += " AND taskrun_id=?"
            params.append(taskrun_id)
        rows = self._read(sql + " ORDER BY seq LIMIT ?", [*params, limit + 1])
        items = [
            LogLine(datetime.fromisoformat(r[1]), Level(r[2]), r[3], r[4], r[5], r[6]) for r in rows[:limit]
        ]
        more = len(rows) > limit
        return Page(items, _cursor_encode(rows[limit - 1][0]) if more else None)

    # ------------------------------------------------------------------ timers

    def due_timers(self, now: datetime, *, limit: int = 100) -> list[TimerRecord]:
        rows = self._read(
            "SELECT execution_id, key, at FROM timers WHERE at <= ? ORDER BY at LIMIT ?", (_epoch(now), limit)
        )
        return [TimerRecord(r[0], r[1], datetime.fromtimestamp(r[2], UTC)) for r in rows]

    def next_timer(self) -> datetime | None:
        rows = self._read("SELECT MIN(at) FROM timers")
        return None if rows[0][0] is None else datetime.fromtimestamp(rows[0][0], UTC)

    def delete_timer(self, execution_id: str, key: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM timers WHERE execution_id=? AND key=?", (execution_id, key))

    # ------------------------------------------------------------------ jobs

    _JOB_COLUMNS = (
        "name, execution_id, taskrun_id, attempt, runner, phase, spec, handle, version, updated,"
        " claim, claim_until, since"
    )

    @staticmethod
    def _job(row: tuple[Any, ...]) -> JobRecord:
        return JobRecord(
            name=row[0],
            execution_id=row[1],
            taskrun_id=row[2],
            attempt=row[3],
            runner=row[4],
            phase=JobPhase(row[5]),
            spec=loads(row[6]),
            handle=None if row[7] is None else loads(row[7]),
            version=row[8],
            updated=None if row[9] is None else datetime.fromisoformat(row[9]),
            claim=row[10],
            claim_until=None if row[11] is None else datetime.fromisoformat(row[11]),
            since=None if row[12] is None else datetime.fromisoformat(row[12]),
        )

    def get_job(self, name: str) -> JobRecord | None:
        rows = self._read(f"SELECT {self._JOB_COLUMNS} FROM jobs WHERE name=?", (name,))
        return self._job(rows[0]) if rows else None

    def update_job(self, job: JobRecord, *, expected_version: int) -> JobRecord:
        with self._write() as conn:
            row = self._job_row(job, expected_version + 1)
            cur = conn.execute(
                "UPDATE jobs SET phase=?, spec=?, handle=?, version=?, updated=?, claim=?, claim_until=?,"
                " since=? WHERE name=? AND version=?",
                (*row[5:], job.name, expected_version),
            )
            if cur.rowcount != 1:
                if conn.execute("SELECT 1 FROM jobs WHERE name=?", (job.name,)).fetchone() is None:
                    raise NotFoundError(f"job {job.name} not found")
                raise ConflictError(f"job {job.name} changed since version {expected_version}")
        return replace(job, version=expected_version + 1)

    def active_jobs(self, *, runner: str | None = None, limit: int = 1000) -> list[JobRecord]:
        sql = f"SELECT {self._JOB_COLUMNS} FROM jobs WHERE phase != 'DONE'"
        params: list[Any] = []
        if runner is not None:
            sql += " AND runner = ?"
            params.append(runner)
        rows = self._read(sql + " ORDER BY phase DESC, name LIMIT ?", [*params, limit])
        return [self._job(r) for r in rows]

    def visit(self, now: datetime) -> None:
        """Nothing to do: ``active_jobs`` reads the jobs table, which always holds every job."""

    # ------------------------------------------------------------------ triggers

    def get_trigger(self, key: str) -> TriggerRecord | None:
        rows = self._read("SELECT data, version FROM triggers WHERE key=?", (key,))
        return TriggerRecord(key, loads(rows[0][0]), rows[0][1]) if rows else None

    def put_trigger(self, trigger: TriggerRecord, *, expected_version: int) -> TriggerRecord:
        with self._write() as conn:
            data = dumps(trigger.data)
            if expected_version == 0:
                try:
                    conn.execute(
                        "INSERT INTO triggers (key, data, version) VALUES (?,?,1)", (trigger.key, data)
                    )
                except sqlite3.IntegrityError:
                    raise ConflictError(f"trigger {trigger.key} already exists") from None
            else:
                cur = conn.execute(
                    "UPDATE triggers SET data=?, version=? WHERE key=? AND version=?",
                    (data, expected_version + 1, trigger.key, expected_version),
                )
                if cur.rowcount != 1:
                    raise ConflictError(f"trigger {trigger.key} changed since version {expected_version}")
        return TriggerRecord(trigger.key, trigger.data, expected_version + 1)

    # ------------------------------------------------------------------ leases (who drives an execution)

    def get_lease(self, execution_id: str) -> LeaseRecord | None:
        rows = self._read(_LEASE_OF, (execution_id,))
        if not rows:
            return None
        return LeaseRecord(execution_id, rows[0][0], datetime.fromtimestamp(rows[0][1], UTC))

    def claim_lease(
        self, execution_id: str, owner: str, *, at: datetime, free: Callable[[LeaseRecord], bool]
    ) -> LeaseRecord:
        """Take the lease unless another owner holds it and ``free`` says it still may; the holder.

        Read and write are one ``BEGIN IMMEDIATE`` transaction: two processes that find the
        same owner gone cannot both take over. Not fsynced (leases are bookkeeping: a lease a
        power loss took is claimed again): the write that follows a claim makes it durable.
        """
        with self._write(synced=False) as conn:
            row = conn.execute(_LEASE_OF, (execution_id,)).fetchone()
            if row is not None and row[0] != owner:
                held = LeaseRecord(execution_id, row[0], datetime.fromtimestamp(row[1], UTC))
                if not free(held):
                    return held
            conn.execute(
                "INSERT INTO leases (execution_id, owner, renewed) VALUES (?,?,?)"
                " ON CONFLICT (execution_id) DO UPDATE SET owner=excluded.owner, renewed=excluded.renewed",
                (execution_id, owner, _epoch(at)),
            )
        return LeaseRecord(execution_id, owner, at)

    def list_leases(self, *, limit: int = 1000) -> list[LeaseRecord]:
        rows = self._read("SELECT execution_id, owner, renewed FROM leases LIMIT ?", (limit,))
        return [LeaseRecord(r[0], r[1], datetime.fromtimestamp(r[2], UTC)) for r in rows]

    def renew_leases(self, owner: str, *, at: datetime) -> None:
        with self._write(synced=False) as conn:
            conn.execute("UPDATE leases SET renewed=? WHERE owner=?", (_epoch(at), owner))

    def release_lease(self, execution_id: str, owner: str) -> None:
        with self._write(synced=False) as conn:  # a lost release: the next command finds the owner gone
            conn.execute("DELETE FROM leases WHERE execution_id=? AND owner=?", (execution_id, owner))


def _delete_executions(conn: sqlite3.Connection, execution_ids: Sequence[str]) -> None:
    """Remove executions and every row that belongs to them, inside the caller's transaction."""
    ids = [(execution_id,) for execution_id in execution_ids]
    for table in ("taskruns", "logs", "timers", "jobs", "leases"):
        conn.executemany(f"DELETE FROM {table} WHERE execution_id=?", ids)
    conn.executemany("DELETE FROM executions WHERE id=?", ids)
