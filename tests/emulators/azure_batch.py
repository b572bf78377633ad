"""A wire-protocol fake of the Azure Batch data plane (jobs, tasks, task files) whose tasks run here.

No emulator of Azure Batch exists. This one speaks the REST surface that ``azure.batch.BatchClient``
(azure-batch 15.1.0, API version 2025-06-01) uses, so the real client works against it
unchanged, and each task's command line runs as a local process through the shared
:class:`~tests.emulators.executor.LocalExecutor`::

    with FakeAzureBatch(tmp_path) as fake:
        client = fake.client()
        client.create_job(BatchJobCreateOptions(id="j", pool_info=BatchPoolInfo(pool_id="p")))
        client.create_task("j", BatchTaskCreateOptions(id="t", command_line="/bin/sh -c 'echo hi'"))
        client.get_task("j", "t").state   # active -> running -> completed

Files go through Azure Storage for real: ``resourceFiles`` are downloaded with a plain HTTP
GET of their ``httpUrl`` (a SAS URL: Azurite checks it), ``outputFiles`` are uploaded with
azure-storage-blob to their ``containerUrl`` (a container SAS), so a runner's SAS code is
exercised, not trusted. A task's ``stdout.txt`` and ``stderr.txt`` are node files, readable
while it runs (``ocp-range``), gone when the task is deleted, as on a real node.

Sources: [SDK] azure-batch 15.1.0 (``_operations/_operations.py``: routes, expected status
codes, error maps; ``models/_models.py``, ``_enums.py``: field names and values); [REF]
https://learn.microsoft.com/rest/api/batchservice/ (task states, ``executionInfo``,
``outputFiles`` upload conditions, OData error bodies, ``odata.nextLink``); [ERR]
https://learn.microsoft.com/azure/batch/batch-job-task-error-checking. UNVERIFIED: this fake's
choice, not read anywhere.

| Behaviour                                                             | Source          |
|-----------------------------------------------------------------------|-----------------|
| routes and verbs; create job/task 201, delete task 200, delete job    | SDK             |
| 202, terminate task 204, get/list 200, file GET/HEAD 200              |                 |
| request bodies checked against the SDK's models: an unknown property  | SDK models;     |
| anywhere is a 400 ``InvalidRequestBody`` naming it (responses are     | code UNVERIFIED |
| checked against ``BatchTask``/``BatchJob`` too: a fake's bug fails)   |                 |
| errors: ``{"odata.metadata", "code", "message": {"lang", "value"},    | REF, SDK        |
| "values": [{"key", "value"}]}``; ``JobExists``/``TaskExists`` 409,    | (BatchError);   |
| ``JobNotFound``/``TaskNotFound`` 404, ``TaskCompleted`` 409 on a      | codes REF;      |
| terminate of a completed task                                         | the last        |
|                                                                       | UNVERIFIED      |
| ``Authorization: SharedKey <account>:<sig>`` required (401 without),  | SDK (its signing|
| the signature recomputed with the key by the SDK's own signing policy | policy); 401/403|
| (403 ``AuthenticationFailed`` when it differs)                        | UNVERIFIED      |
| list tasks: ``maxresults`` (default and max 1000), ``$filter`` on     | REF; paging     |
| ``state eq '<state>'`` / ``id eq '<id>'`` joined by ``or``/``and``,   | token format    |
| ``$select``; next page by ``odata.nextLink`` (``$skiptoken``)         | UNVERIFIED      |
| states ``active`` -> ``preparing`` (skipped) -> ``running`` ->        | SDK enums, REF  |
| ``completed``; a task of a pool in ``hold_pools`` stays ``active``    |                 |
| ``executionInfo``: ``startTime`` (when downloads start), ``endTime``, | REF             |
| ``exitCode`` (absent when the command never ran), ``result``          |                 |
| ``success``/``failure``, ``failureInfo`` {category, code, message,    |                 |
| details}, ``retryCount``, ``requeueCount``, ``lastRequeueTime``       |                 |
| nonzero exit: ``failureInfo`` usererror ``FailureExitCode``           | REF (codes);    |
|                                                                       | text UNVERIFIED |
| resource file download: HTTP GET (resets and 5xx retried, 4 tries);  | codes: Batch    |
| ``BlobAccessDenied``, else ``BlobDownloadMiscError``; usererror; the  | SDK constants;  |
| command never runs                                                    | texts UNVERIFIED|
| output files after the command, per ``uploadCondition`` (tasksuccess, | REF             |
| taskfailure, taskcompletion); a failed upload: usererror              | codes: SDK      |
| ``FileUploadContainerNotFound`` / ``FileUploadAccessDenied`` /        | constants;      |
| ``FileUploadMiscError``, result failure, the message names the file   | texts UNVERIFIED|
| ``filePattern``: relative to the working directory, ``*``, ``**``,    | REF             |
| ``../stdout.txt``; with a wildcard ``path`` is a virtual directory    |                 |
| and the path below the pattern's fixed part is kept                   |                 |
| ``uploadHeaders``: ``x-ms-meta-*`` only (become blob metadata);       | limit of the    |
| others 501                                                            | fake            |
| ``maxWallClockTime`` from the start: killed, usererror ``TaskEnded``, | REF (limit);    |
| "...exceeded its maximum wall clock time"                             | code and text   |
|                                                                       | UNVERIFIED      |
| terminate: killed (SIGKILL: exit 137), usererror ``TaskEnded``; an    | code and exit   |
| active task completes without running                                 | UNVERIFIED      |
| delete task: killed, gone with its node files                         | REF             |
| ``containerSettings.imageName``: PATH from ``images``; an image in    | limit of the    |
| ``broken_images`` ends the task with that failureInfo, no exit code   | fake            |
| :meth:`FakeAzureBatch.preempt`: the node is taken (spot): the process | REF ("requeue");|
| is killed, the task goes back to ``active``, ``requeueCount`` + 1,    | details         |
| then runs again from scratch                                          | UNVERIFIED      |
| node paths ``AZ_BATCH_TASK_DIR``, ``AZ_BATCH_TASK_WORKING_DIR`` (wd), | REF (env vars); |
| ``AZ_BATCH_JOB_ID``, ``AZ_BATCH_TASK_ID``; command line split like a  | splitting       |
| POSIX shell's words, not run by a shell                               | UNVERIFIED      |

Test controls (Python attributes, not HTTP): ``hold_pools`` (tasks of those pools stay
``active``), ``park_pools`` (tasks of those pools are ``running`` on a node but their command
waits: many running tasks without as many processes); call :meth:`held_changed` after removing
a pool from either. ``images`` (image -> PATH), ``broken_images`` (image -> failureInfo),
:meth:`preempt`, ``runs`` (processes started per task), ``calls`` (requests per operation).
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import shutil
import signal as signals
import sys
import threading
import time
import traceback
import typing
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self
from urllib.parse import parse_qs, quote, unquote, urlsplit

import isodate

from tests.emulators.executor import LocalExecutor, LogLine, RunningJob, Stream

__all__ = ["ACCOUNT", "ACCOUNT_KEY", "BatchError", "FakeAzureBatch", "check_model"]

ACCOUNT = "squallbatch"
ACCOUNT_KEY = "c3F1YWxsLWZha2UtYmF0Y2gta2V5LW5vdC1hLXNlY3JldA=="
"""The fake account's shared key (base64, as Azure's are); every request's signature is checked."""
MAX_RESULTS = 1000
_ERRORS = "Microsoft.Azure.Batch.Protocol.Entities.Container.errors/@Element"
NODE_ROOT = "/mnt/batch/tasks"
KILL_EXIT = 128 + signals.SIGKILL
TRANSFER_ATTEMPTS = 8
"""Tries of each resource file download and output upload (Batch retries transfers; how often:
UNVERIFIED). Enough that the tests' proxy, which resets every 5th storage call of 50 concurrent
tasks, cannot fail one by chance (4 tries did: about one upload in 600)."""
TICK = 0.02


class BatchError(Exception):
    """An answer in Batch's OData error shape."""

    def __init__(self, status: int, code: str, message: str, values: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.values = status, code, message, dict(values or {})

    def body(self, endpoint: str) -> bytes:
        doc: dict[str, Any] = {
            "odata.metadata": f"{endpoint}/$metadata#{_ERRORS}",
            "code": self.code,
            "message": {"lang": "en-US", "value": f"{self.message}\nRequestId:{uuid.uuid4()}\nTime:{_now()}"},
        }
        if self.values:
            doc["values"] = [{"key": k, "value": v} for k, v in self.values.items()]
        return json.dumps(doc).encode()


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _models() -> Any:
    from azure.batch import models

    return models


def check_model(model: type, doc: Any, where: str = "") -> None:
    """Raise ``BatchError(400, InvalidRequestBody)`` for a property ``model`` (an azure-batch model)
    does not have, at any depth: the SDK's models accept unknown keys silently, Batch does not."""
    if not isinstance(doc, Mapping):
        raise BatchError(400, "InvalidRequestBody", f"{where or 'the body'} is not a JSON object")
    fields = _fields(model)
    hints = typing.get_type_hints(model, {**vars(sys.modules[model.__module__]), "_models": _models()})
    for key, value in doc.items():
        if key.startswith("odata."):
            continue
        path = f"{where}.{key}" if where else key
        if key not in fields:
            raise BatchError(
                400,
                "InvalidRequestBody",
                f"unknown property {path} of {model.__name__}",
                {"PropertyName": path},
            )
        inner = _model_in(hints.get(fields[key][0]))
        if inner is None or value is None:
            continue
        for item in value if isinstance(value, list) else [value]:
            check_model(inner, item, path)


def _fields(model: type) -> dict[str, tuple[str, Any]]:
    """REST name -> (attribute, rest field) of an azure-batch model class (the SDK computes its own
    table only when the first instance is made)."""
    found: dict[str, tuple[str, Any]] = {}
    for cls in reversed(model.__mro__):
        for attr, value in vars(cls).items():
            if type(value).__name__ == "_RestField":
                found[str(value._rest_name_input or attr)] = (attr, value)
    return found


def _model_in(hint: Any) -> type | None:
    """The azure-batch model class inside ``Optional[list[Model]]`` and the like, if any."""
    if isinstance(hint, type):
        return hint if _fields(hint) else None
    if isinstance(hint, typing.ForwardRef):
        return None
    for arg in typing.get_args(hint):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


@dataclass
class _Task:
    job: str
    doc: dict[str, Any]  # the task as GET returns it
    directory: Path  # the node's task directory (stdout.txt, stderr.txt, wd/)
    cond: threading.Condition
    halt: str | None = None  # "terminate", "delete", "preempt", "stop"
    run: RunningJob | None = None
    exit_code: int | None = None
    files: dict[str, IO[bytes]] = field(default_factory=dict)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeAzureBatch
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: with Nagle on, the client's delayed ACK holds the
    # second for 40 ms, a wait per call no real server has (the tests' time went there).
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, headers, data = self.fake.serve(self.command, self.path, dict(self.headers.items()), body)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if "Content-Length" not in headers:  # a HEAD says the file's length
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_POST = do_DELETE = do_PUT = do_PATCH = do_HEAD = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read ``fake.calls``."""


_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    (verb, re.compile(pattern), name)
    for verb, pattern, name in [
        ("POST", r"^/jobs$", "CreateJob"),
        ("GET", r"^/jobs/(?P<job>[^/]+)$", "GetJob"),
        ("DELETE", r"^/jobs/(?P<job>[^/]+)$", "DeleteJob"),
        ("POST", r"^/jobs/(?P<job>[^/]+)/tasks$", "CreateTask"),
        ("GET", r"^/jobs/(?P<job>[^/]+)/tasks$", "ListTasks"),
        ("GET", r"^/jobs/(?P<job>[^/]+)/tasks/(?P<task>[^/]+)$", "GetTask"),
        ("DELETE", r"^/jobs/(?P<job>[^/]+)/tasks/(?P<task>[^/]+)$", "DeleteTask"),
        ("POST", r"^/jobs/(?P<job>[^/]+)/tasks/(?P<task>[^/]+)/terminate$", "TerminateTask"),
        ("GET", r"^/jobs/(?P<job>[^/]+)/tasks/(?P<task>[^/]+)/files/(?P<path>.+)$", "GetTaskFile"),
        ("HEAD", r"^/jobs/(?P<job>[^/]+)/tasks/(?P<task>[^/]+)/files/(?P<path>.+)$", "GetTaskFileProperties"),
    ]
]
_QUERY = {"api-version", "timeOut", "maxresults", "$filter", "$select", "$expand", "$skiptoken", "recursive"}
_STATE_FILTER = re.compile(r"^\s*(state|id)\s+eq\s+'([^']*)'\s*$")
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class FakeAzureBatch:
    """One Batch account's data plane on 127.0.0.1; see the module docstring."""

    def __init__(self, workdir: Path, *, account: str = ACCOUNT, kill_grace: float = 0.0) -> None:
        self.workdir = workdir
        self.account = account
        self.kill_grace = kill_grace
        self.images: dict[str, str] = {}
        self.broken_images: dict[str, dict[str, str]] = {}
        self.hold_pools: set[str] = set()
        self.park_pools: set[str] = set()
        self.calls: Counter[str] = Counter()
        self.runs: Counter[str] = Counter()
        self._executor = LocalExecutor(workdir / "executor")
        self._lock = threading.Lock()
        self._jobs: dict[str, dict[str, Any]] = {}
        self._tasks: dict[tuple[str, str], _Task] = {}
        self._threads: list[threading.Thread] = []
        self._errors: list[Exception] = []
        self._server: ThreadingHTTPServer | None = None
        self._stopping = threading.Event()

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
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="azure-batch", daemon=True
        ).start()
        return self

    def stop(self) -> None:
        """Kill every task, stop serving; raise what failed inside the fake, grouped."""
        self._stopping.set()
        with self._lock:
            tasks = list(self._tasks.values())
            for task in tasks:
                task.halt = task.halt or "stop"
                task.cond.notify_all()
            threads = list(self._threads)
        for task in tasks:
            if task.run is not None:
                task.run.kill(signals.SIGKILL)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        deadline = time.monotonic() + 10
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        errors: list[Exception] = []
        try:
            self._executor.stop()
        except ExceptionGroup as group:
            errors.extend(e for e in group.exceptions if isinstance(e, Exception))
        with self._lock:
            errors[:0], self._errors = self._errors, []
        if errors:
            raise ExceptionGroup("the Azure Batch fake failed", errors)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def client(self, endpoint: str | None = None, **kwargs: Any) -> Any:
        """A real ``azure.batch.BatchClient`` on this fake (shared key, SDK retries off)."""
        from azure.batch import BatchClient
        from azure.core.credentials import AzureNamedKeyCredential

        kwargs.setdefault("retry_total", 0)
        return BatchClient(
            endpoint or self.endpoint, AzureNamedKeyCredential(self.account, ACCOUNT_KEY), **kwargs
        )

    # -- test controls

    def preempt(self, job: str, task_id: str, deadline: float = 10.0) -> None:
        """Take the running task's node back (spot): it is requeued and runs again from scratch."""
        with self._lock:
            task = self._tasks[(job, task_id)]
            if task.doc["state"] != "running":
                raise RuntimeError(f"task {task_id} is {task.doc['state']}, not running")
            task.halt = "preempt"
            task.cond.notify_all()
        with self._lock:
            if not task.cond.wait_for(lambda: task.halt != "preempt", timeout=deadline):
                raise RuntimeError(f"task {task_id} was not requeued within {deadline}s")

    def task_docs(self, job: str) -> list[dict[str, Any]]:
        """Every task of ``job`` as GET returns it (copies), without a request."""
        with self._lock:
            return [json.loads(json.dumps(t.doc)) for (j, _), t in self._tasks.items() if j == job]

    def task_doc(self, job: str, task_id: str) -> dict[str, Any]:
        with self._lock:
            return json.loads(json.dumps(self._tasks[(job, task_id)].doc))

    def held_changed(self) -> None:
        """Call after changing ``hold_pools`` or ``park_pools``: waiting tasks look again."""
        with self._lock:
            for task in self._tasks.values():
                task.cond.notify_all()

    # -- HTTP

    def serve(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        url = urlsplit(target)
        path = url.path
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        routed = next(
            ((name, m) for verb, pattern, name in _ROUTES if verb == method and (m := pattern.match(path))),
            None,
        )
        json_headers = {
            "Content-Type": "application/json;odata=minimalmetadata",
            "request-id": str(uuid.uuid4()),
        }
        with self._lock:
            self.calls[routed[0] if routed else "Unknown"] += 1
        try:
            self._authenticate(method, target, headers)
            if routed is None:
                raise BatchError(
                    404, "InvalidUri", f"The requested URI does not represent any resource: {path}"
                )
            unknown = sorted(set(query) - _QUERY)
            if unknown:
                raise BatchError(
                    400,
                    "InvalidQueryParameterValue",
                    f"unknown query parameter {unknown[0]}",
                    {"QueryParameterName": unknown[0]},
                )
            if "api-version" not in query:
                raise BatchError(400, "MissingRequiredQueryParameter", "api-version is required")
            name, match = routed
            where = {k: unquote(v) for k, v in match.groupdict().items()}
            answer = getattr(self, f"_{_snake(name)}")(where, query, body, headers)
        except BatchError as error:
            return error.status, json_headers, error.body(self.endpoint)
        except Exception as exc:  # a fake's bug: answered as a 500 and raised again by stop()
            traceback.print_exception(exc, file=sys.stderr)
            with self._lock:
                self._errors.append(exc)
            return 500, json_headers, BatchError(500, "InternalError", repr(exc)).body(self.endpoint)
        status, extra, data = answer
        if isinstance(data, (dict, list)):
            return status, {**json_headers, **extra}, json.dumps(data).encode()
        return status, {"request-id": json_headers["request-id"], **extra}, data

    def _authenticate(self, method: str, target: str, headers: Mapping[str, str]) -> None:
        """The SharedKey signature, recomputed with azure-batch's own signing policy and the key."""
        from azure.batch._patch import BatchSharedKeyAuthPolicy
        from azure.core.credentials import AzureNamedKeyCredential
        from azure.core.pipeline import PipelineContext, PipelineRequest
        from azure.core.rest import HttpRequest

        given = {k.lower(): v for k, v in headers.items()}.get("authorization", "")
        if not given.startswith(f"SharedKey {self.account}:"):
            raise BatchError(401, "AuthenticationFailed", "Server failed to authenticate the request.")
        unsigned = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        request = HttpRequest(method, f"http://127.0.0.1{target}", headers=unsigned)
        policy = BatchSharedKeyAuthPolicy(AzureNamedKeyCredential(self.account, ACCOUNT_KEY))
        policy.on_request(PipelineRequest(request, PipelineContext(None)))  # type: ignore[arg-type]
        if request.headers["Authorization"] != given:
            raise BatchError(
                403,
                "AuthenticationFailed",
                "Server failed to authenticate the request. Make sure the value of Authorization header "
                "is formed correctly including the signature.",
            )

    # -- jobs

    def _create_job(self, where: Mapping[str, str], query: Any, body: bytes, headers: Any) -> Any:
        doc = _body(body)
        check_model(_models().BatchJobCreateOptions, doc)
        job_id = str(doc.get("id") or "")
        if not _ID.match(job_id):
            raise BatchError(
                400, "InvalidPropertyValue", f"invalid job id {job_id!r}", {"PropertyName": "id"}
            )
        if not (doc.get("poolInfo") or {}).get("poolId"):
            raise BatchError(
                400, "MissingRequiredProperty", "poolInfo.poolId is required (autoPool: not modelled)"
            )
        with self._lock:
            if job_id.lower() in (j.lower() for j in self._jobs):
                raise BatchError(409, "JobExists", "The specified job already exists.")
            self._jobs[job_id] = {
                **doc,
                "url": f"{self.endpoint}/jobs/{job_id}",
                "eTag": f"0x{uuid.uuid4().hex[:15].upper()}",
                "creationTime": _now(),
                "lastModified": _now(),
                "state": "active",
                "stateTransitionTime": _now(),
            }
        return 201, {"DataServiceId": f"{self.endpoint}/jobs/{job_id}", "ETag": "0x1"}, b""

    def _get_job(self, where: Mapping[str, str], query: Any, body: bytes, headers: Any) -> Any:
        with self._lock:
            doc = self._job(where["job"])
            answer = dict(doc)
        check_model(_models().BatchJob, answer)
        return 200, {}, answer

    def _delete_job(self, where: Mapping[str, str], query: Any, body: bytes, headers: Any) -> Any:
        with self._lock:
            self._job(where["job"])
            self._jobs.pop(where["job"])
            tasks = [t for (j, _), t in self._tasks.items() if j == where["job"]]
        for task in tasks:
            self._delete(task)
        return 202, {}, b""

    def _job(self, job_id: str) -> dict[str, Any]:
        """(Lock held.)"""
        if job_id not in self._jobs:
            raise BatchError(404, "JobNotFound", "The specified job does not exist.")
        return self._jobs[job_id]

    # -- tasks

    def _create_task(self, where: Mapping[str, str], query: Any, body: bytes, headers: Any) -> Any:
        doc = _body(body)
        check_model(_models().BatchTaskCreateOptions, doc)
        task_id = str(doc.get("id") or "")
        if not _ID.match(task_id):
            raise BatchError(
                400, "InvalidPropertyValue", f"invalid task id {task_id!r}", {"PropertyName": "id"}
            )
        if not doc.get("commandLine"):
            raise BatchError(
                400, "MissingRequiredProperty", "commandLine is required", {"PropertyName": "commandLine"}
            )
        for unmodelled in (
            "multiInstanceSettings",
            "dependsOn",
            "applicationPackageReferences",
            "exitConditions",
        ):
            if unmodelled in doc:
                raise BatchError(501, "NotImplemented", f"{unmodelled} is not modelled by the fake")
        for rf in doc.get("resourceFiles") or []:
            if not rf.get("httpUrl") or not rf.get("filePath"):
                raise BatchError(
                    501, "NotImplemented", "only resourceFiles with httpUrl and filePath are modelled"
                )
        for of in doc.get("outputFiles") or []:
            for header in ((of.get("destination") or {}).get("container") or {}).get("uploadHeaders") or []:
                if not str(header.get("name", "")).lower().startswith("x-ms-meta-"):
                    raise BatchError(501, "NotImplemented", "only x-ms-meta-* upload headers are modelled")
        job_id = where["job"]
        with self._lock:
            job = self._job(job_id)
            if job["state"] != "active":
                raise BatchError(409, "JobCompleted", "The specified job is already in a completed state.")
            if any(j == job_id and t.lower() == task_id.lower() for j, t in self._tasks):
                raise BatchError(409, "TaskExists", "The specified task already exists.")
            now = _now()
            constraints = dict(doc.get("constraints") or {})
            constraints.setdefault("maxWallClockTime", "P10675199DT2H48M5.4775807S")
            constraints.setdefault("retentionTime", "P7D")
            constraints.setdefault("maxTaskRetryCount", 0)
            stored = {
                **doc,
                "url": f"{self.endpoint}/jobs/{job_id}/tasks/{task_id}",
                "eTag": f"0x{uuid.uuid4().hex[:15].upper()}",
                "creationTime": now,
                "lastModified": now,
                "state": "active",
                "stateTransitionTime": now,
                "constraints": constraints,
                "requiredSlots": doc.get("requiredSlots", 1),
                "executionInfo": {"retryCount": 0, "requeueCount": 0},
            }
            directory = self.workdir / "nodes" / job_id / task_id
            task = _Task(job_id, stored, directory, threading.Condition(self._lock))
            self._tasks[(job_id, task_id)] = task
            self._spawn(lambda: self._drive(task), f"task-{task_id}")
        return 201, {"DataServiceId": stored["url"], "ETag": stored["eTag"]}, b""

    def _get_task(self, where: Mapping[str, str], query: Any, body: bytes, headers: Any) -> Any:
        with self._lock:
            self._job(where["job"])
            task = self._task(where["job"], where["task"])
            doc = json.loads(json.dumps(task.doc))
        check_model(_models().BatchTask, doc)
        return 200, {"ETag": doc["eTag"]}, _select(doc, query.get("$select"))

    def _list_tasks(self, where: Mapping[str, str], query: Any, body: bytes, headers: Any) -> Any:
        size = int(query.get("maxresults") or MAX_RESULTS)
        if not 1 <= size <= MAX_RESULTS:
            raise BatchError(
                400,
                "InvalidQueryParameterValue",
                "maxresults is 1 to 1000",
                {"QueryParameterName": "maxresults"},
            )
        keep = _filter(query.get("$filter") or "")
        after = query.get("$skiptoken") or ""
        with self._lock:
            self._job(where["job"])
            tasks = sorted(
                (
                    t
                    for (j, tid), t in self._tasks.items()
                    if j == where["job"] and tid > after and keep(t.doc)
                ),
                key=lambda t: str(t.doc["id"]),
            )
            page = [json.loads(json.dumps(t.doc)) for t in tasks[:size]]
        answer: dict[str, Any] = {
            "odata.metadata": f"{self.endpoint}/$metadata#tasks",
            "value": [_select(d, query.get("$select")) for d in page],
        }
        if len(tasks) > size:
            rest = {k: v for k, v in query.items() if k != "$skiptoken"}
            rest["$skiptoken"] = str(page[-1]["id"])
            encoded = "&".join(f"{k}={quote(v, safe='')}" for k, v in rest.items())
            answer["odata.nextLink"] = f"{self.endpoint}/jobs/{where['job']}/tasks?{encoded}"
        for doc in page:
            check_model(_models().BatchTask, doc)
        return 200, {}, answer

    def _terminate_task(self, where: Mapping[str, str], query: Any, body: bytes, headers: Any) -> Any:
        with self._lock:
            self._job(where["job"])
            task = self._task(where["job"], where["task"])
            if task.doc["state"] == "completed":
                raise BatchError(409, "TaskCompleted", "The specified task is already completed.")
            task.halt = task.halt or "terminate"
            task.cond.notify_all()
            run = task.run
        if run is not None:
            run.kill(signals.SIGKILL)
        with self._lock:  # Batch answers once the task is completed
            task.cond.wait_for(lambda: task.doc["state"] == "completed", timeout=30)
        return 204, {}, b""

    def _delete_task(self, where: Mapping[str, str], query: Any, body: bytes, headers: Any) -> Any:
        with self._lock:
            self._job(where["job"])
            task = self._task(where["job"], where["task"])
        self._delete(task)
        return 200, {}, b""

    def _delete(self, task: _Task) -> None:
        with self._lock:
            task.halt = "delete"
            task.cond.notify_all()
            run = task.run
            self._tasks.pop((task.job, str(task.doc["id"])), None)
        if run is not None:
            run.kill(signals.SIGKILL)

    def _task(self, job: str, task_id: str) -> _Task:
        """(Lock held.)"""
        task = self._tasks.get((job, task_id))
        if task is None:
            raise BatchError(404, "TaskNotFound", "The specified task does not exist.")
        return task

    # -- task files

    def _file(self, where: Mapping[str, str]) -> tuple[_Task, Path]:
        with self._lock:
            self._job(where["job"])
            task = self._task(where["job"], where["task"])
            for handle in task.files.values():
                if not handle.closed:
                    handle.flush()
        rel = where["path"]
        if rel.startswith("/") or ".." in rel.split("/"):
            raise BatchError(400, "InvalidPropertyValue", "filePath must stay in the task directory")
        path = task.directory / rel
        if not path.is_file():
            raise BatchError(404, "NodeFileNotFound", "The specified node file does not exist.")
        return task, path

    def _get_task_file(self, where: Mapping[str, str], query: Any, body: bytes, headers: Any) -> Any:
        _, path = self._file(where)
        data = path.read_bytes()
        wanted = {k.lower(): v for k, v in headers.items()}.get("ocp-range")
        if wanted:
            found = re.fullmatch(r"bytes=(\d+)-(\d*)", wanted.strip())
            if found is None:
                raise BatchError(400, "InvalidHeaderValue", "ocp-range is bytes=<start>-[<end>]")
            start = int(found.group(1))
            end = int(found.group(2)) if found.group(2) else len(data) - 1
            if start >= len(data) and len(data) > 0:
                raise BatchError(
                    416,
                    "InvalidRange",
                    "The range specified is invalid for the current size of the resource.",
                )
            data = data[start : end + 1]
        return 200, {"Content-Type": "application/octet-stream", **_file_headers(path)}, data

    def _get_task_file_properties(
        self, where: Mapping[str, str], query: Any, body: bytes, headers: Any
    ) -> Any:
        task, path = self._file(where)
        url = f"{task.doc['url']}/files/{quote(where['path'])}"
        return (
            200,
            {**_file_headers(path), "ocp-batch-file-url": url, "Content-Length": str(path.stat().st_size)},
            b"",
        )

    # -- driving a task

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        """(Lock held.)"""

        def guarded() -> None:
            try:
                target()
            except Exception as exc:
                traceback.print_exception(exc, file=sys.stderr)
                with self._lock:
                    self._errors.append(exc)

        thread = threading.Thread(target=guarded, name=name, daemon=True)
        if len(self._threads) > 512:
            self._threads = [t for t in self._threads if t.is_alive()]
        self._threads.append(thread)
        thread.start()

    def _pool(self, task: _Task) -> str:
        return str((self._jobs.get(task.job) or {}).get("poolInfo", {}).get("poolId", ""))

    def _drive(self, task: _Task) -> None:
        """The task's life: wait for a node, download, run, upload, complete (or a halt)."""
        while True:
            with self._lock:
                task.cond.wait_for(lambda: task.halt is not None or self._pool(task) not in self.hold_pools)
                if task.halt is not None:
                    self._halted_before_start(task)
                    return
                started = _now()
                info = task.doc["executionInfo"]
                info.update(startTime=started)
                self._transition(task, "running")
                node = f"{self.endpoint}/pools/{self._pool(task)}/nodes/tvmps_fake_node_0"
                root = f"workitems/{task.job}/job-1/{task.doc['id']}"
                task.doc["nodeInfo"] = {
                    "poolId": self._pool(task),
                    "nodeId": "tvmps_fake_node_0",
                    "affinityId": "TVM:tvmps_fake_node_0",
                    "nodeUrl": node,
                    "taskRootDirectory": root,
                    "taskRootDirectoryUrl": f"{node}/files/{root}",
                }
                # Parked: running on its node, its command not started yet (many running tasks
                # without as many processes).
                task.cond.wait_for(lambda: task.halt is not None or self._pool(task) not in self.park_pools)
                if task.halt == "preempt":
                    self._requeue(task, {})
                    continue
                if task.halt is not None:
                    self._halted_before_start(task)
                    return
            outcome = self._attempt(task)
            if outcome == "requeued":
                continue
            return

    def _halted_before_start(self, task: _Task) -> None:
        """(Lock held.) Terminated while active: completed without running; deleted or stopped: gone."""
        if task.halt == "terminate":
            self._complete(
                task,
                None,
                {"category": "usererror", "code": "TaskEnded", "message": "The task was terminated."},
            )
        task.cond.notify_all()

    def _attempt(self, task: _Task) -> str:
        task_id = str(task.doc["id"])
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(task.directory)
        wd = task.directory / "wd"
        wd.mkdir(parents=True)
        (task.directory / "tmp").mkdir()
        failure = self._download(task, wd)
        image = str((task.doc.get("containerSettings") or {}).get("imageName") or "")
        if failure is None and image in self.broken_images:
            failure = dict(self.broken_images[image])
        if failure is not None:
            with self._lock:
                if task.halt == "preempt":  # taken while its files downloaded
                    return self._requeue(task, {})
                if task.halt in ("delete", "stop"):
                    return "halted"
                self._complete(task, None, failure)
            return "done"
        files = {s: (task.directory / f"{s}.txt").open("ab") for s in ("stdout", "stderr")}
        try:
            argv = shlex.split(str(task.doc["commandLine"]))
        except ValueError as exc:
            argv = ["/bin/sh", "-c", f"echo 'bad command line: {exc}' >&2; exit 127"]
        env = {
            "HOME": str(self.workdir / "home"),
            "TMPDIR": str(task.directory / "tmp"),
            **({"PATH": self.images[image]} if image in self.images else {}),
            **{str(e["name"]): str(e.get("value") or "") for e in task.doc.get("environmentSettings") or []},
            "AZ_BATCH_TASK_DIR": str(task.directory),
            "AZ_BATCH_TASK_WORKING_DIR": str(wd),
            "AZ_BATCH_JOB_ID": task.job,
            "AZ_BATCH_TASK_ID": task_id,
            "AZ_BATCH_NODE_ROOT_DIR": NODE_ROOT,
            "AZ_BATCH_ACCOUNT_NAME": self.account,
        }

        def on_line(line: LogLine) -> None:
            handle = files["stdout" if line.stream is Stream.STDOUT else "stderr"]
            with self._lock:
                handle.write(line.text.encode() + b"\n")
                handle.flush()

        def on_exit(code: int) -> None:
            with self._lock:
                task.exit_code = code
                task.cond.notify_all()

        limit = _duration(task.doc["constraints"].get("maxWallClockTime"))
        with self._lock:
            if task.halt == "preempt":  # the node was taken before the command started
                return self._requeue(task, files)
            if task.halt is not None:
                return self._after_halt(task, files)
            task.files = files
            task.exit_code = None
            self.runs[task_id] += 1
            try:
                task.run = self._executor.start(
                    f"{task.job}/{task_id}", argv, env, on_line=on_line, on_exit=on_exit, cwd=str(wd)
                )
            except RuntimeError:  # the executor is stopping
                return "halted"
            deadline = time.monotonic() + limit.total_seconds() if limit is not None else None
            timed_out = False
            while task.exit_code is None and task.halt is None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    timed_out = True
                    break
                task.cond.wait(left)
            run = task.run
        if task.exit_code is None:
            run.kill(signals.SIGKILL)
            with self._lock:
                task.cond.wait_for(lambda: task.exit_code is not None, timeout=30)
        with self._lock:
            for handle in files.values():
                handle.flush()
            if task.halt == "preempt":
                return self._requeue(task, files)
            if task.halt in ("delete", "stop"):
                return self._after_halt(task, files)
            code = task.exit_code if task.exit_code is not None else KILL_EXIT
        if timed_out:
            failure: dict[str, Any] | None = {
                "category": "usererror",
                "code": "TaskEnded",
                "message": f"The task exceeded its maximum wall clock time ({limit}) and was terminated.",
            }
        elif task.halt == "terminate":
            failure = {"category": "usererror", "code": "TaskEnded", "message": "The task was terminated."}
        elif code != 0:
            failure = {
                "category": "usererror",
                "code": "FailureExitCode",
                "message": "The task exited with an exit code representing a failure",
                "details": [
                    {
                        "name": "Message",
                        "value": f"The task process exited with an unexpected exit code: {code}",
                    }
                ],
            }
        else:
            failure = None
        upload = self._upload(task, wd, success=failure is None)
        with self._lock:
            for handle in files.values():
                handle.close()
            if task.halt in ("delete", "stop"):
                return "halted"
            self._complete(task, code, failure or upload)
        return "done"

    def _after_halt(self, task: _Task, files: Mapping[str, IO[bytes]]) -> str:
        """(Lock held.)"""
        for handle in files.values():
            handle.close()
        if task.halt == "terminate":
            self._complete(
                task,
                None,
                {"category": "usererror", "code": "TaskEnded", "message": "The task was terminated."},
            )
        return "halted"

    def _requeue(self, task: _Task, files: Mapping[str, IO[bytes]]) -> str:
        """(Lock held.) The node was taken: back to active, counted, run again later."""
        for handle in files.values():
            handle.close()
        info = task.doc["executionInfo"]
        info["requeueCount"] = int(info.get("requeueCount", 0)) + 1
        info["lastRequeueTime"] = _now()
        info.pop("startTime", None)
        task.doc.pop("nodeInfo", None)
        task.run = None
        task.halt = None
        self._transition(task, "active")
        task.cond.notify_all()
        return "requeued"

    def _transition(self, task: _Task, state: str) -> None:
        """(Lock held.)"""
        doc = task.doc
        doc["previousState"], doc["previousStateTransitionTime"] = doc["state"], doc["stateTransitionTime"]
        doc["state"], doc["stateTransitionTime"] = state, _now()
        doc["lastModified"] = doc["stateTransitionTime"]
        doc["eTag"] = f"0x{uuid.uuid4().hex[:15].upper()}"

    def _complete(self, task: _Task, code: int | None, failure: Mapping[str, Any] | None) -> None:
        """(Lock held.)"""
        info = task.doc["executionInfo"]
        info["endTime"] = _now()  # no startTime when it never started (terminated while active)
        if code is not None:
            info["exitCode"] = code
        info["result"] = "failure" if failure else "success"
        if failure:
            info["failureInfo"] = dict(failure)
        self._transition(task, "completed")
        task.cond.notify_all()

    def _download(self, task: _Task, wd: Path) -> dict[str, Any] | None:
        """Each resource file by a plain GET of its URL; the first failure, as failureInfo."""
        for rf in task.doc.get("resourceFiles") or []:
            rel, url = str(rf["filePath"]), str(rf["httpUrl"])
            shown = url.split("?", 1)[0]
            if rel.startswith("/") or ".." in rel.split("/"):
                return {
                    "category": "usererror",
                    "code": "BlobDownloadMiscError",
                    "message": f"invalid filePath {rel}",
                }
            try:
                data = _get(url)
            except urllib.error.HTTPError as exc:
                code = {404: "BlobNotFound", 403: "BlobAccessDenied"}.get(exc.code, "BlobDownloadMiscError")
                return {
                    "category": "usererror",
                    "code": code,
                    "message": f"Failed to download resource file {rel} from {shown}: HTTP {exc.code}",
                    "details": [
                        {"name": "FilePath", "value": rel},
                        {"name": "HttpStatusCode", "value": str(exc.code)},
                    ],
                }
            except OSError as exc:
                return {"category": "usererror", "code": "BlobDownloadMiscError", "message": f"{rel}: {exc}"}
            dest = wd / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
        return None

    def _upload(self, task: _Task, wd: Path, *, success: bool) -> dict[str, Any] | None:
        """Each output file whose condition holds, with azure-storage-blob to its container SAS."""
        from azure.core.exceptions import AzureError, HttpResponseError
        from azure.storage.blob import BlobClient, LinearRetry

        retries = LinearRetry(backoff=0.05, retry_total=TRANSFER_ATTEMPTS - 1, random_jitter_range=0)

        failed: list[tuple[str, str]] = []
        for of in task.doc.get("outputFiles") or []:
            condition = str((of.get("uploadOptions") or {}).get("uploadCondition", "tasksuccess")).lower()
            if (condition == "tasksuccess" and not success) or (condition == "taskfailure" and success):
                continue
            container = (of.get("destination") or {}).get("container") or {}
            base_url, _, sas = str(container["containerUrl"]).partition("?")
            metadata = {
                str(h["name"])[len("x-ms-meta-") :]: str(h.get("value") or "")
                for h in container.get("uploadHeaders") or []
            }
            for rel, blob in _matches(wd, str(of["filePattern"]), container.get("path")):
                url = f"{base_url.rstrip('/')}/{quote(blob)}" + (f"?{sas}" if sas else "")
                try:
                    BlobClient.from_blob_url(url, retry_policy=retries).upload_blob(
                        (wd / rel).read_bytes(), overwrite=True, metadata=metadata or None
                    )
                except HttpResponseError as exc:
                    failed.append((rel, str(getattr(exc, "error_code", "") or exc.status_code)))
                except AzureError as exc:  # the connection failed on every try: the node agent's error
                    failed.append((rel, type(exc).__name__))
                except OSError as exc:
                    failed.append((rel, str(exc)))
        if not failed:
            return None
        kinds = {kind for _, kind in failed}
        code = (
            "FileUploadContainerNotFound"
            if "ContainerNotFound" in kinds
            else "FileUploadAccessDenied"
            if kinds
            & {"AuthorizationFailure", "AuthorizationPermissionMismatch", "AuthenticationFailed", "403"}
            else "FileUploadMiscError"
        )
        shown = ", ".join(f"{rel} ({kind})" for rel, kind in failed)
        return {
            "category": "usererror",
            "code": code,
            "message": f"One or more output files failed to upload: {shown}",
            "details": [{"name": "FilePath", "value": rel} for rel, _ in failed],
        }


def _get(url: str, attempts: int = TRANSFER_ATTEMPTS) -> bytes:
    """A plain GET, retried on resets and 5xx as Batch's node agent retries its transfers."""
    for attempt in range(1, attempts + 1):
        try:
            with urllib.request.urlopen(url, timeout=60) as answer:
                return bytes(answer.read())
        except urllib.error.HTTPError as exc:
            if exc.code < 500 or attempt == attempts:
                raise
        except OSError:
            if attempt == attempts:
                raise
        time.sleep(0.05 * attempt)
    raise AssertionError("unreachable")


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def _body(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body or b"null")
    except ValueError:
        raise BatchError(400, "InvalidRequestBody", "the body is not JSON") from None
    if not isinstance(doc, dict):
        raise BatchError(400, "InvalidRequestBody", "the body is not a JSON object")
    return doc


def _select(doc: dict[str, Any], select: str | None) -> dict[str, Any]:
    if not select:
        return doc
    keep = {s.strip() for s in select.split(",")}
    return {k: v for k, v in doc.items() if k in keep or k.startswith("odata.")}


def _filter(text: str) -> Callable[[Mapping[str, Any]], bool]:
    """``state eq 'running' or state eq 'active'`` and ``and``s of such; others are a 400/501."""
    if not text.strip():
        return lambda doc: True
    if "(" in text:
        raise BatchError(501, "NotImplemented", f"$filter {text!r} is not modelled by the fake")
    alternatives = []
    for alternative in re.split(r"\s+or\s+", text):
        clauses = []
        for clause in re.split(r"\s+and\s+", alternative):
            found = _STATE_FILTER.match(clause)
            if found is None:
                raise BatchError(
                    400,
                    "InvalidQueryParameterValue",
                    f"$filter clause {clause!r} is not valid",
                    {"QueryParameterName": "$filter"},
                )
            clauses.append((found.group(1), found.group(2)))
        alternatives.append(clauses)
    return lambda doc: any(all(str(doc.get(k)) == v for k, v in cl) for cl in alternatives)


def _duration(text: Any) -> timedelta | None:
    if not text or str(text).startswith("P10675199D"):
        return None
    value = isodate.parse_duration(str(text))
    return value if isinstance(value, timedelta) else None


def _file_headers(path: Path) -> dict[str, str]:
    stat = path.stat()
    modified = datetime.fromtimestamp(stat.st_mtime, UTC)
    return {
        "Last-Modified": modified.strftime("%a, %d %b %Y %H:%M:%S GMT"),
        "ocp-creation-time": modified.strftime("%a, %d %b %Y %H:%M:%S GMT"),
        "ocp-batch-file-isdirectory": "False",
        "ocp-batch-file-mode": "0o100644",
    }


def _matches(wd: Path, pattern: str, path: Any) -> list[tuple[str, str]]:
    """(relative path from wd, blob name) for each file ``pattern`` matches (see the table)."""
    wildcard = any(ch in pattern for ch in "*?[")
    if not wildcard:
        source = (wd / pattern).resolve()
        if not source.is_file():
            return []
        rel = str(Path(pattern))
        return [(rel, str(path) if path else Path(pattern).name)]
    parts = pattern.split("/")
    fixed = []
    for part in parts:
        if any(ch in part for ch in "*?["):
            break
        fixed.append(part)
    base = wd.joinpath(*fixed) if fixed else wd
    rest = "/".join(parts[len(fixed) :])
    found = []
    if base.is_dir():
        for file in sorted(p for p in base.rglob("*") if p.is_file()):
            below = file.relative_to(base).as_posix()
            if _glob(rest, below):
                rel = Path(*fixed, below).as_posix() if fixed else below
                found.append((rel, f"{str(path).rstrip('/')}/{below}" if path else below))
    return found


def _glob(pattern: str, rel: str) -> bool:
    """``**`` spans directories (zero or more), ``*`` one path component's characters."""
    regex = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            regex += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            regex += ".*"
            i += 2
        else:
            ch = pattern[i]
            regex += "[^/]*" if ch == "*" else "[^/]" if ch == "?" else re.escape(ch)
            i += 1
    return re.fullmatch(regex, rel) is not None
