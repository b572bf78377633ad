"""What every wire-protocol fake of a Google Cloud REST API here shares (Batch, Cloud Run).

A fake subclasses :class:`GoogleRestFake`, lists its ``ROUTES`` (verb, path regex, API method
name) and the query parameters each method accepts (``QUERY``), and writes one method
``_<snake_case_name>(where, params, body)`` per API method returning a proto message. This
module does the rest the same way for all of them:

- HTTP on 127.0.0.1 (a free port), one thread a request; ``calls`` counts requests per method.
- Strict parsing (:func:`parse`): ``json_format.Parse(..., ignore_unknown_fields=False)`` into
  the SDK's message, so an unknown or mistyped field is a 400 naming it; an unknown query
  parameter is a 400 too. Answers are ``json_format`` of proto messages, enums as numbers
  when the query asks ``$alt=json;enum-encoding=int`` (the SDKs always do), names otherwise.
- Errors in Google's JSON shape ``{"error": {"code", "message", "status"}}`` (:class:`ApiError`).
- Long-running operations kept as ``google.longrunning.Operation`` protos (:meth:`_store_operation`).
- The fake's own threads (:meth:`_spawn`): an exception in one is printed and raised, grouped
  with the executor's, by :meth:`stop`, so a fake's bug fails the test that used it.
- Test controls both fakes have: ``hold`` / ``hold_labels`` (watched sets: a change wakes the
  drivers), ``images`` (image -> PATH), ``runs`` (processes started per job id).
- GCS volumes through :class:`tests.emulators.mounts.GcsPrefix` on a storage client per project.
"""

from __future__ import annotations

import json
import re
import shutil
import signal as signals
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self
from urllib.parse import parse_qs, unquote, urlsplit

from google.longrunning import operations_pb2
from google.protobuf import json_format

from tests.emulators.executor import LocalExecutor, LogLine, Mount, RunningJob

__all__ = [
    "UPLOAD_LAG_LABEL",
    "ApiError",
    "GoogleRestFake",
    "Watched",
    "copy",
    "invalid",
    "not_found",
    "page_size",
    "parse",
    "snake",
]

UPLOAD_LAG_LABEL = "fake-upload-lag-ms"
"""A job labelled so (milliseconds) ends before its volume's files reach the bucket, as a slow
gcsfuse flush would leave them: the runner must keep reading the log until its end sentinel."""
TICK = 0.02  # how often a waiting driver re-checks what tests change without telling it
_UNBOUND = "Cannot bind query parameter."
COMMON_QUERY = frozenset({"$alt", "alt", "prettyPrint"})


class ApiError(Exception):
    """An answer in Google's error shape: HTTP ``code``, canonical ``status``, ``message``."""

    def __init__(self, code: int, status: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message

    def body(self) -> str:
        return json.dumps({"error": {"code": self.code, "message": self.message, "status": self.status}})


def invalid(message: str) -> ApiError:
    return ApiError(400, "INVALID_ARGUMENT", message)


def not_found(name: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", f"Resource '{name}' was not found")


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def copy(message: Any) -> Any:
    out = type(message)()
    out.CopyFrom(message)
    return out


def parse(body: bytes, message_class: Any, what: str) -> Any:
    """``body`` parsed strictly into ``message_class``: any unknown or mistyped field is a 400."""
    message = message_class()
    try:
        json_format.Parse(body.decode() if body else "{}", message, ignore_unknown_fields=False)
    except (json_format.ParseError, UnicodeDecodeError) as exc:
        text = str(exc)
        unknown = re.search(r'has no field named "([^"]+)" at "([^"]+)"', text)
        if unknown:
            field_name, where = unknown.groups()
            detail = f"Unknown name \"{field_name}\" at '{where}': Cannot find field."
            raise invalid(f"Invalid JSON payload received. {detail}") from exc
        raise invalid(f"Invalid JSON payload received for {what}. {text.splitlines()[0]}") from exc
    return message


def page_size(text: str, default: int, maximum: int) -> int:
    try:
        size = int(text or 0)
    except ValueError:
        raise invalid(f"Invalid value at 'page_size' (TYPE_INT32), \"{text}\"") from None
    if size < 0:
        raise invalid("page_size must not be negative")
    return min(size or default, maximum)


class Watched(set[str]):
    """A set that calls ``changed`` after each change: the fake's drivers wake to re-read it."""

    def __init__(self, changed: Callable[[], None]) -> None:
        super().__init__()
        self._changed = changed

    def add(self, item: str) -> None:
        super().add(item)
        self._changed()

    def discard(self, item: object) -> None:
        super().discard(item)
        self._changed()

    def remove(self, item: str) -> None:
        super().remove(item)
        self._changed()

    def clear(self) -> None:
        super().clear()
        self._changed()

    def update(self, *others: Iterable[str]) -> None:
        super().update(*others)
        self._changed()

    def difference_update(self, *others: Iterable[Any]) -> None:
        super().difference_update(*others)
        self._changed()

    def pop(self) -> str:
        item = super().pop()
        self._changed()
        return item

    def __ior__(self, other: AbstractSet[str]) -> Self:  # type: ignore[override,misc]
        self.update(other)
        return self

    def __isub__(self, other: AbstractSet[Any]) -> Self:  # type: ignore[misc]
        self.difference_update(other)
        return self


class _NoStorage:
    """Stands for a storage client when the fake was given no ``gcs_endpoint``: mounts fail clearly."""

    def __init__(self, fake: str) -> None:
        self._fake = fake

    def list_blobs(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"this job mounts a GCS volume but {self._fake} got no gcs_endpoint")

    def bucket(self, *args: Any, **kwargs: Any) -> Any:
        return self.list_blobs()


class _Handler(BaseHTTPRequestHandler):
    fake: GoogleRestFake
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: with Nagle on, the client's delayed ACK holds the
    # second for 40 ms, a wait per call no real server has (the tests' time went there).
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._answer()

    do_POST = do_DELETE = do_PUT = do_PATCH = do_GET

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, text = self.fake.serve(self.command, self.path, body)
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read ``fake.calls``, not an access log."""


class GoogleRestFake:
    """The HTTP server, dispatch, operations, threads and shared test controls of a fake.

    Subclasses set ``ROUTES``, ``QUERY`` and ``NAME``, and implement :meth:`_halt_all` (mark
    every job halted; return the processes to kill) and :meth:`_held_changed`.
    """

    ROUTES: ClassVar[list[tuple[str, re.Pattern[str], str]]] = []
    QUERY: ClassVar[Mapping[str, AbstractSet[str]]] = {}
    NAME: ClassVar[str] = "fake"

    def __init__(self, workdir: Path, *, gcs_endpoint: str | None = None) -> None:
        self.workdir = workdir
        self.gcs_endpoint = gcs_endpoint
        self.images: dict[str, str] = {}
        self.hold: set[str] = Watched(self._held_changed)
        self.hold_labels: set[str] = Watched(self._held_changed)
        self.kill_grace = 0.5
        self.calls: Counter[str] = Counter()
        self.runs: Counter[str] = Counter()
        self._executor = LocalExecutor(workdir / "executor")
        self._lock = threading.Lock()
        self._operations: dict[str, Any] = {}  # full name -> Operation proto
        self._drivers: list[threading.Thread] = []
        self._errors: list[Exception] = []
        self._storage: dict[str, Any] = {}
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle

    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> Self:
        (self.workdir / "home").mkdir(parents=True, exist_ok=True)
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        serving = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=self.NAME, daemon=True
        )
        serving.start()
        return self

    def stop(self) -> None:
        """Kill every job, stop serving; raise what failed inside the fake, grouped."""
        with self._lock:
            runs = self._halt_all()
            drivers = list(self._drivers)
        for run in runs:
            run.kill(signals.SIGKILL)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        deadline = time.monotonic() + 10
        for driver in drivers:
            driver.join(max(0.0, deadline - time.monotonic()))
        self._close()
        errors: list[Exception] = []
        try:
            self._executor.stop()
        except ExceptionGroup as group:
            errors.extend(e for e in group.exceptions if isinstance(e, Exception))
        with self._lock:
            errors[:0], self._errors = self._errors, []
        if errors:
            raise ExceptionGroup(f"the {self.NAME} failed", errors)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _halt_all(self) -> list[RunningJob]:
        """(Lock held.) Tell every driver to stop; the processes to kill."""
        raise NotImplementedError

    def _held_changed(self) -> None:
        """``hold`` or ``hold_labels`` changed: wake the drivers waiting on them."""

    def _close(self) -> None:
        """After the drivers stopped, before the executor stops: close what else the fake runs."""

    # -- HTTP

    def serve(self, method: str, target: str, body: bytes) -> tuple[int, str]:
        """Answer one request: (HTTP status, JSON text)."""
        url = urlsplit(target)
        path = unquote(url.path)
        query = parse_qs(url.query, keep_blank_values=True)
        routed = next(
            (
                (name, match)
                for verb, pattern, name in self.ROUTES
                if verb == method and (match := pattern.match(path))
            ),
            None,
        )
        if routed is None:
            with self._lock:
                self.calls["Unknown"] += 1
            return 404, not_found(path).body()
        name, match = routed
        with self._lock:
            self.calls[name] += 1
        alt = (query.get("$alt") or query.get("alt") or [""])[0]
        try:
            unknown = sorted(set(query) - COMMON_QUERY - self.QUERY.get(name, set()))
            if unknown:
                raise invalid(f'Invalid JSON payload received. Unknown name "{unknown[0]}": {_UNBOUND}')
            params = {key: values[-1] for key, values in query.items()}
            where = match.groupdict()
            where["project"] = self._canonical(where["project"])
            message = getattr(self, f"_{snake(name)}")(where, params, body)
        except ApiError as error:
            return error.code, error.body()
        return 200, json_format.MessageToJson(message, use_integers_for_enums="enum-encoding=int" in alt)

    def _canonical(self, project: str) -> str:
        """The project id a path's project names (a fake may accept project numbers too)."""
        return project

    def unmodelled(self, what: str) -> ApiError:
        return ApiError(501, "UNIMPLEMENTED", f"{what} is not modelled by {self.NAME} (tests/emulators)")

    # -- operations (the caller holds the lock)

    def _store_operation(self, name: str, metadata: Any) -> str:
        operation = operations_pb2.Operation(name=name)
        operation.metadata.Pack(metadata)
        self._operations[name] = operation
        return name

    def _operation(self, name: str) -> Any:
        """The stored Operation proto itself (to finish it: ``response.Pack``, ``done``)."""
        return self._operations[name]

    def _get_operation(self, where: Mapping[str, str], params: Mapping[str, str], body: bytes) -> Any:
        name = f"projects/{where['project']}/locations/{where['location']}/operations/{where['operation']}"
        with self._lock:
            if name not in self._operations:
                raise not_found(name)
            return copy(self._operations[name])

    # -- threads

    def _guarded(self, target: Callable[[], None]) -> None:
        """Run ``target``; an exception is printed now and raised by :meth:`stop` (a fake's bug)."""
        try:
            target()
        except Exception as exc:
            traceback.print_exception(exc, file=sys.stderr)
            with self._lock:
                self._errors.append(exc)

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        """A thread of the fake (the caller holds the lock), joined by :meth:`stop`."""
        thread = threading.Thread(target=self._guarded, args=(target,), name=name, daemon=True)
        self._drivers.append(thread)
        thread.start()

    # -- driving one job (or execution) on its own thread. A record has ``halt`` (None, or why its
    # driver must stop: "cancel", "delete", "lost", "stop"), ``cond`` (a Condition on the lock),
    # ``run``, ``exit_code`` (of the process running now, once it exited) and ``driver_alive``.

    def _lifecycle(self, record: Any) -> None:
        """Play the record's life until its end or a halt (the driver thread's body)."""
        raise NotImplementedError

    def _conclude(self, record: Any) -> None:
        """Finish a cancel or a delete once the driver stopped (its process: :meth:`_stop_process`)."""
        raise NotImplementedError

    def _drive(self, record: Any) -> None:
        self._guarded(lambda: self._lifecycle(record))
        with self._lock:
            record.driver_alive = False
            pending = record.halt in ("cancel", "delete")
        if pending:
            self._guarded(lambda: self._conclude(record))

    def _wait(self, record: Any, ready: Callable[[], bool], timeout: float | None) -> bool:
        """Until ``ready()`` holds or ``timeout`` passed; False at once if the record was halted.

        Without a timeout it sleeps until notified: a halt notifies, and so does any change to
        ``hold`` or ``hold_labels`` (they are watched sets), so hundreds of held jobs cost nothing.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while record.halt is None:
                if ready():
                    return True
                if deadline is None:
                    record.cond.wait()
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    return True
                record.cond.wait(left)
            return False

    def _launch(
        self,
        record: Any,
        run_id: str,
        argv: list[str],
        env: dict[str, str],
        logs: list[LogLine],
        mounts: list[Mount],
        cwd: str | None = None,
    ) -> RunningJob | None:
        """(Lock held.) Start a process for ``record``: lines go to ``logs``, its exit code to
        ``record.exit_code`` (notifying ``record.cond``); None if the executor is stopping."""

        def on_line(line: LogLine) -> None:
            with self._lock:
                logs.append(line)

        def on_exit(code: int) -> None:
            with self._lock:
                record.exit_code = code
                record.cond.notify_all()

        record.exit_code = None
        try:
            run = self._executor.start(
                run_id, argv, env, on_line=on_line, on_exit=on_exit, mounts=mounts, cwd=cwd
            )
        except RuntimeError:  # the executor is stopping
            return None
        record.run = run
        return run

    def _terminate(self, record: Any, run: RunningJob) -> None:
        """SIGTERM, then SIGKILL if the process is still there after ``kill_grace``."""
        run.kill(signals.SIGTERM)
        with self._lock:
            exited = record.cond.wait_for(lambda: record.exit_code is not None, timeout=self.kill_grace)
        if not exited:
            run.kill(signals.SIGKILL)

    def _stop_process(self, record: Any) -> RunningJob | None:
        """Terminate the record's process if it still runs and wait for its end; the process."""
        with self._lock:
            run = record.run
        if run is not None and run.exit_code is None:
            self._terminate(record, run)
            with self._lock:
                record.cond.wait_for(lambda: record.exit_code is not None, timeout=30)
        return run

    def _held(self, job_id: str, labels: Mapping[str, str]) -> bool:
        return job_id in self.hold or any(v in self.hold_labels for v in labels.values())

    # -- running commands

    def _base_env(self, image: str) -> dict[str, str]:
        """HOME, TMPDIR and, for an image in ``images``, its PATH."""
        return {
            "HOME": str(self.workdir / "home"),
            "TMPDIR": str(self.workdir / "home"),
            **({"PATH": self.images[image]} if image in self.images else {}),
        }

    def _lag(self, mount: Mount, labels: Mapping[str, str]) -> Mount:
        """``mount``, uploading late when ``labels`` ask for it (:data:`UPLOAD_LAG_LABEL`)."""
        seconds = int(labels.get(UPLOAD_LAG_LABEL, "0") or 0) / 1000
        if not seconds or mount.upload is None:
            return mount
        upload = mount.upload

        def later(directory: Path) -> None:
            snapshot = Path(tempfile.mkdtemp(prefix="lagged-", dir=self.workdir))
            shutil.copytree(directory, snapshot, dirs_exist_ok=True)

            def sync() -> None:
                time.sleep(seconds)  # the fake plays a slow flush: time passing is the point
                upload(snapshot)

            with self._lock:
                self._spawn(sync, "lagged-upload")

        return Mount(mount.path_in_job, mount.download, later)

    def _storage_client(self, project: str) -> Any:
        if self.gcs_endpoint is None:
            return _NoStorage(self.NAME)
        with self._lock:
            if project not in self._storage:
                from runners.storage.gcs import make_client

                self._storage[project] = make_client(self.gcs_endpoint, project)
            return self._storage[project]
