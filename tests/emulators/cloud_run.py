"""A wire-protocol fake of the Cloud Run Admin API v2 (jobs, executions, tasks) whose jobs run here.

No official emulator of Cloud Run jobs exists. This one speaks the REST surface the real
clients use, so ``google.cloud.run_v2.JobsClient`` / ``ExecutionsClient`` / ``TasksClient``
(``transport="rest"``) work against it unchanged (:meth:`FakeCloudRun.clients` builds them), and
an execution's container command runs as a local process through the shared
:class:`~tests.emulators.executor.LocalExecutor`::

    with FakeCloudRun(tmp_path, gcs_endpoint=gcs.endpoint) as fake:
        jobs, executions, tasks = fake.clients()
        jobs.create_job(parent=..., job_id="j1", job=run_v2.Job(start_execution_token="t1", ...)).result()
        executions.get_execution(name=f"{parent}/jobs/j1/executions/j1-t1").succeeded_count

HTTP, strict proto parsing (an unknown or mistyped field is a 400 naming it), enum encoding
per ``$alt``, Google's error JSON and operations come from :mod:`tests.emulators.google_rest`,
shared with the Google Batch fake.

Sources: [SDK] google-cloud-run 0.16.2 (``run_v2/types``, ``services/*/transports/rest_base.py``,
``client.py``'s ``operation.from_gapic`` types); [REF]
https://cloud.google.com/run/docs/reference/rest/v2/projects.locations.jobs (same field texts as
the SDK); [CC] https://cloud.google.com/run/docs/container-contract (job env vars). UNVERIFIED:
this fake's choice, not read anywhere.

| Behaviour                                                              | Source            |
|------------------------------------------------------------------------|-------------------|
| routes, verbs, bodies (create: the Job; run/cancel: the request, ``*``)| SDK rest_base     |
| LRO ``@type``: create/delete job: metadata and response                | SDK client.py     |
| ``type.googleapis.com/google.cloud.run.v2.Job``; run job, cancel and   |                   |
| delete execution: ``...run.v2.Execution`` for both                     |                   |
| operation names ``.../operations/<uuid4>``; create's operation is done | UNVERIFIED        |
| at once, run's when the execution ends (its error: the failure text),  |                   |
| with a start token when it started, with a run token when it ended     | SDK (token texts) |
| unknown body field / query parameter: 400 naming it                    | SDK protos; words |
|                                                                        | UNVERIFIED        |
| jobId ``^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$``; taken: 409 ALREADY_EXISTS | AIP-122/133;      |
|                                                                        | words UNVERIFIED  |
| ``startExecutionToken``/``runExecutionToken``: the execution created   | SDK: "used as a   |
| with the job is ``<job>-<token>``; ``len(job) + len(token) < 63`` else | suffix", "sum ... |
| 400. The hyphen: UNVERIFIED (it makes the rule the 63-char id limit)   | fewer than 63"    |
| other executions ``<job>-<5 random [a-z0-9]>``                         | OTel semconv ex.  |
|                                                                        | ``sample-job-mdw84``|
| ``validateOnly``: nothing is created, the operation is done            | SDK               |
| list jobs / executions newest first; pageSize default 50, max 100      | SDK (order); sizes|
|                                                                        | UNVERIFIED        |
| ``jobs/-/executions`` and ``jobs/-/executions/-/tasks`` wildcards       | SDK (ListExecu-   |
|                                                                        | tionsRequest doc) |
| one task an execution (``taskCount`` 1); other values: 501             | limit of the fake |
| ``maxRetries`` unset means 3; a failed attempt is retried that often,  | SDK (TaskTemplate)|
| ``task.retried`` and ``execution.retriedCount`` count it               |                   |
| ``timeout`` per attempt (default 600s): SIGTERM, SIGKILL after         | SDK ("applies per |
| ``kill_grace``; the attempt fails (status DEADLINE_EXCEEDED, no exit   | attempt"); result |
| code) and is retried like any failure                                  | UNVERIFIED        |
| conditions ``Completed`` (terminal), ``ResourcesAvailable``,          | types/states/enum:|
| ``Started``; failure ``NON_ZERO_EXIT_CODE``, cancel ``CANCELLING`` then | SDK (Condition);  |
| ``CANCELLED`` (state FAILED); messages                                 | messages and the  |
|                                                                        | cancel state      |
|                                                                        | UNVERIFIED        |
| ``lastAttemptResult``: ``exitCode`` and ``status`` (OK, or code 2 "The | SDK fields; texts |
| container exited with an error.")                                      | UNVERIFIED        |
| cancel: running task SIGTERM, SIGKILL; cancelledCount 1; a finished    | SDK; 400 on a     |
| execution: 400 FAILED_PRECONDITION                                     | finished one      |
|                                                                        | UNVERIFIED        |
| delete execution / job: processes killed, gone (404); a job's          | UNVERIFIED        |
| executions go with it                                                  |                   |
| env: the container's ``env`` (``valueSource``: 501), CLOUD_RUN_JOB,     | CC                |
| CLOUD_RUN_EXECUTION, CLOUD_RUN_TASK_INDEX/_ATTEMPT/_COUNT              |                   |
| argv ``command`` + ``args`` (no command: 501, the image's entrypoint);  | SDK (Container)   |
| RunJob ``overrides.containerOverrides`` args / env / clearArgs, timeout|                   |
| image host: Artifact Registry, Container Registry or Docker Hub, else  | error text as a   |
| 400 at create                                                          | user saw it (a    |
|                                                                        | v1 field path)    |
| an image that does not exist: create's operation ends with an error,   | gcloud's "Image   |
| the job stays with ``terminalCondition`` Ready FAILED, reason          | 'x' not found.";  |
| CONTAINER_MISSING, and no execution                                    | the rest          |
|                                                                        | UNVERIFIED        |
| GCS volumes (``gcs.bucket``, ``readOnly``, ``mountOptions``) at each   | SDK (GCSVolume-   |
| ``volumeMounts[].mountPath``; ``only-dir=D`` (gcsfuse's flag, given    | Source: options   |
| without ``--``; ``--only-dir=`` accepted too) mounts ``D/``; other     | without "--");    |
| volume kinds: 501; objects appear as files, writes land at the end     | sync UNVERIFIED   |

What clients see through google-api-core over REST (not the fake's choice): an error's class
comes from the HTTP status alone, so 409 ALREADY_EXISTS raises ``Conflict``.

Test controls (Python attributes, not HTTP): ``hold`` (job ids) / ``hold_labels`` (label
values of the job or its execution template): its executions stay pending until removed (or
cancelled, deleted); ``schedule_delay`` (seconds pending before a start, default 0.05);
``images[image] = PATH``; ``calls`` (Counter per method: ``CreateJob``, ``ListExecutions``...);
``runs`` (Counter of processes started per job id, one per attempt); ``lost(job_id)`` (the job
and its executions vanish, processes killed); ``log_lines(execution_id)``; ``kill_grace``.
``missing_images``: a job of such an image fails at create as an image that does not exist
would (below). A job labelled :data:`~tests.emulators.google_rest.UPLOAD_LAG_LABEL`
(milliseconds) ends before its volume's files reach the bucket.
Not modelled (yet): ``outcomes`` (platform-caused ends), update job, IAM.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import signal as signals
import string
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.cloud import run_v2
from google.rpc import status_pb2

from tests.emulators.executor import LogLine, Mount, RunningJob
from tests.emulators.google_rest import (
    TICK,
    ApiError,
    GoogleRestFake,
    copy,
    invalid,
    not_found,
    page_size,
    parse,
)
from tests.emulators.mounts import GcsPrefix

__all__ = ["FakeCloudRun"]

_JOB: Any = run_v2.Job.pb()
_EXECUTION: Any = run_v2.Execution.pb()
_TASK: Any = run_v2.Task.pb()
_CONDITION: Any = run_v2.Condition.pb()
State = run_v2.Condition.State
Reason = run_v2.Condition.ExecutionReason
CommonReason = run_v2.Condition.CommonReason

_IMAGE = re.compile(
    r"^(?:(?:[a-z]+\.)?gcr\.io/|(?:[a-z0-9-]+-)?docker\.pkg\.dev/|docker\.io/|(?![^/]*[.:][^/]*/))"
    r"[a-z0-9][a-z0-9._/-]*(?::[\w][\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$"
)
"""Where Cloud Run pulls from: Artifact Registry, Container Registry or Docker Hub (a path whose
first part names no other host)."""
JOB_ID = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
DEFAULT_RETRIES = 3
DEFAULT_TIMEOUT = 600.0
DEFAULT_PAGE, MAX_PAGE = 50, 100
EXITED_WITH_ERROR = "The container exited with an error."
TIMED_OUT = "The configured timeout was reached."

_P = r"/v2/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
_J = _P + r"/jobs/(?P<job>[^/:]+)"
_E = _J + r"/executions/(?P<execution>[^/:]+)"
_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(rf"^{_P}/jobs$"), "CreateJob"),
    ("GET", re.compile(rf"^{_P}/jobs$"), "ListJobs"),
    ("GET", re.compile(rf"^{_J}$"), "GetJob"),
    ("DELETE", re.compile(rf"^{_J}$"), "DeleteJob"),
    ("POST", re.compile(rf"^{_J}:run$"), "RunJob"),
    ("GET", re.compile(rf"^{_J}/executions$"), "ListExecutions"),
    ("GET", re.compile(rf"^{_E}$"), "GetExecution"),
    ("DELETE", re.compile(rf"^{_E}$"), "DeleteExecution"),
    ("POST", re.compile(rf"^{_E}:cancel$"), "CancelExecution"),
    ("GET", re.compile(rf"^{_E}/tasks$"), "ListTasks"),
    ("GET", re.compile(rf"^{_E}/tasks/(?P<task>[^/]+)$"), "GetTask"),
    ("GET", re.compile(rf"^{_P}/operations/(?P<operation>[^/:]+)$"), "GetOperation"),
]
_LIST = {"pageSize", "pageToken", "showDeleted"}
_QUERY = {
    "CreateJob": {"jobId", "validateOnly"},
    "ListJobs": _LIST,
    "DeleteJob": {"validateOnly", "etag"},
    "ListExecutions": _LIST,
    "DeleteExecution": {"validateOnly", "etag"},
    "ListTasks": _LIST,
}


@dataclass(eq=False)
class _Job:
    project: str
    location: str
    job_id: str
    job: Any  # run_v2 Job proto
    created_ns: int
    executions: dict[str, _Execution] = field(default_factory=dict)


@dataclass(eq=False)
class _Execution:
    """One execution, its single task, and what its driver thread shares."""

    owner: _Job
    exec_id: str
    execution: Any  # run_v2 Execution proto
    task: Any  # run_v2 Task proto
    cond: threading.Condition
    created_ns: int
    halt: str | None = None  # "cancel", "delete", "lost", "stop"
    driver_alive: bool = True
    run: RunningJob | None = None
    exit_code: int | None = None
    on_start: list[tuple[str, Any]] = field(default_factory=list)  # (operation, response) when started
    on_end: list[tuple[str, Any]] = field(default_factory=list)  # ... when ended
    finishing: list[str] = field(default_factory=list)  # cancel/delete operations

    @property
    def ended(self) -> bool:
        return self.execution.HasField("completion_time")


class FakeCloudRun(GoogleRestFake):
    """The fake Cloud Run Admin API v2 on 127.0.0.1 (a free port). See the module docstring."""

    ROUTES = _ROUTES
    QUERY = _QUERY
    NAME = "fake Cloud Run"

    def __init__(self, workdir: Path, *, gcs_endpoint: str | None = None) -> None:
        super().__init__(workdir, gcs_endpoint=gcs_endpoint)
        self.schedule_delay = 0.05
        self.missing_images: set[str] = set()
        self._jobs: dict[tuple[str, str, str], _Job] = {}
        self._logs: dict[str, list[LogLine]] = {}

    def clients(self) -> tuple[Any, Any, Any]:
        """The real ``JobsClient``, ``ExecutionsClient``, ``TasksClient`` on this fake (REST, anonymous)."""
        from google.auth.credentials import AnonymousCredentials

        options = {"api_endpoint": self.endpoint}
        return tuple(  # type: ignore[return-value]
            kind(transport="rest", client_options=options, credentials=AnonymousCredentials())
            for kind in (run_v2.JobsClient, run_v2.ExecutionsClient, run_v2.TasksClient)
        )

    # -- test controls

    def lost(self, job_id: str) -> None:
        """The job and its executions vanish (404 from now on); their processes are killed."""
        with self._lock:
            found = [key for key in self._jobs if key[2] == job_id]
            if len(found) != 1:
                raise KeyError(f"{len(found)} jobs have the id {job_id!r}")
            record = self._jobs.pop(found[0])
            runs = self._halt(record.executions.values(), "lost")
        for run in runs:
            run.kill(signals.SIGKILL)

    def log_lines(self, execution_id: str) -> list[LogLine]:
        """Every line the execution's attempts wrote, in order (kept after it is gone)."""
        with self._lock:
            return list(self._logs.get(execution_id, ()))

    def _halt(self, executions: Any, why: str) -> list[RunningJob]:
        runs = []
        for record in executions:
            record.halt = record.halt or why
            record.cond.notify_all()
            if record.run is not None:
                runs.append(record.run)
        return runs

    def _halt_all(self) -> list[RunningJob]:
        return self._halt([e for job in self._jobs.values() for e in job.executions.values()], "stop")

    def _held_changed(self) -> None:
        with self._lock:
            for job in self._jobs.values():
                for record in job.executions.values():
                    record.cond.notify_all()

    # -- jobs

    def _create_job(self, where: Mapping[str, str], params: Mapping[str, str], body: bytes) -> Any:
        job = parse(body, _JOB, "job")
        job_id = params.get("jobId", "")
        if not JOB_ID.match(job_id):
            raise invalid(
                f'Job id "{job_id}" is invalid: it must match ^[a-z]([a-z0-9-]{{0,61}}[a-z0-9])?$ '
                "(lowercase letters, digits and '-', starting with a letter, at most 63 characters)"
            )
        token = job.start_execution_token or job.run_execution_token
        if token and len(job_id) + len(token) >= 63:
            raise invalid(
                f'The sum of job name and token length must be fewer than 63 characters: "{job_id}" '
                f'and "{token}" are {len(job_id) + len(token)}'
            )
        if token and not JOB_ID.match(f"{job_id}-{token}"):
            raise invalid(f'Execution token "{token}" is invalid: lowercase letters, digits and "-" only')
        self._validate(job.template, "job.template")
        project, location = where["project"], where["location"]
        parent = f"projects/{project}/locations/{location}"
        with self._lock:
            if (project, location, job_id) in self._jobs:
                raise ApiError(409, "ALREADY_EXISTS", f"Resource '{parent}/jobs/{job_id}' already exists")
            record = self._new_job(job, project, location, job_id)
            operation = self._new_operation(parent, record.job)
            if params.get("validateOnly") == "true":
                self._finish(operation, record.job)
                return copy(self._operation(operation))
            self._jobs[(project, location, job_id)] = record
            image = job.template.template.containers[0].image
            if image in self.missing_images:
                message = f"Image '{image}' not found."
                missing = CommonReason.CONTAINER_MISSING
                record.job.terminal_condition.CopyFrom(
                    _condition("Ready", State.CONDITION_FAILED, message, common=missing)
                )
                self._finish(operation, record.job, message)
            elif token:
                execution = self._new_execution(record, f"{job_id}-{token}", None)
                waits = execution.on_start if job.start_execution_token else execution.on_end
                waits.append((operation, None))
            else:
                self._finish(operation, record.job)
            return copy(self._operation(operation))

    def _get_job(self, where: Mapping[str, str], params: Mapping[str, str], body: bytes) -> Any:
        with self._lock:
            return self._job_view(self._find_job(where))

    def _list_jobs(self, where: Mapping[str, str], params: Mapping[str, str], body: bytes) -> Any:
        with self._lock:
            records = [
                r
                for r in self._jobs.values()
                if (r.project, r.location) == (where["project"], where["location"])
            ]
            page, token = _page(records, params)
            return run_v2.ListJobsResponse.pb()(jobs=[self._job_view(r) for r in page], next_page_token=token)

    def _delete_job(self, where: Mapping[str, str], params: Mapping[str, str], body: bytes) -> Any:
        with self._lock:
            record = self._find_job(where)
            view = self._job_view(record)
            view.delete_time.FromNanoseconds(time.time_ns())
            operation = self._new_operation(self._parent(record), view)
            if params.get("validateOnly") == "true":
                self._finish(operation, view)
                return copy(self._operation(operation))
            del self._jobs[(record.project, record.location, record.job_id)]
            runs = self._halt(record.executions.values(), "delete")
            self._finish(operation, view)
        for run in runs:
            run.kill(signals.SIGKILL)
        return copy(self._operation(operation))

    def _run_job(self, where: Mapping[str, str], params: Mapping[str, str], body: bytes) -> Any:
        request = parse(body, run_v2.RunJobRequest.pb(), "RunJobRequest")
        overrides = request.overrides
        if overrides.task_count not in (0, 1):
            raise self.unmodelled("overrides.taskCount other than 1")
        with self._lock:
            record = self._find_job(where)
            exec_id = f"{record.job_id}-{''.join(secrets.choice(_ALNUM) for _ in range(5))}"
            chosen = overrides if request.HasField("overrides") else None
            execution = self._new_execution(record, exec_id, chosen, start=not request.validate_only)
            operation = self._new_operation(self._parent(record), execution.execution)
            if request.validate_only:
                self._finish(operation, execution.execution)
            else:
                execution.on_end.append((operation, "execution"))
            return copy(self._operation(operation))

    # -- executions

    def _get_execution(self, where: Mapping[str, str], params: Mapping[str, str], body: bytes) -> Any:
        with self._lock:
            return self._execution_view(self._find_execution(where))

    def _list_executions(self, where: Mapping[str, str], params: Mapping[str, str], body: bytes) -> Any:
        with self._lock:
            records = [e for job in self._jobs_under(where) for e in job.executions.values()]
            page, token = _page(records, params)
            return run_v2.ListExecutionsResponse.pb()(
                executions=[self._execution_view(e) for e in page], next_page_token=token
            )

    def _cancel_execution(self, where: Mapping[str, str], params: Mapping[str, str], body: bytes) -> Any:
        parse(body, run_v2.CancelExecutionRequest.pb(), "CancelExecutionRequest")
        with self._lock:
            record = self._find_execution(where)
            if record.ended:
                raise ApiError(
                    400,
                    "FAILED_PRECONDITION",
                    f"Execution {record.execution.name} has already completed and cannot be cancelled",
                )
            operation = self._new_operation(self._parent(record.owner), record.execution)
            if record.halt is None:
                record.halt = "cancel"
                self._condition(record, "Completed", State.CONDITION_PENDING, reason=Reason.CANCELLING)
                record.cond.notify_all()
                if not record.driver_alive:
                    self._spawn(lambda: self._conclude(record), f"fake-run-cancel-{record.exec_id}")
            record.finishing.append(operation)
            return copy(self._operation(operation))

    def _delete_execution(self, where: Mapping[str, str], params: Mapping[str, str], body: bytes) -> Any:
        with self._lock:
            record = self._find_execution(where)
            operation = self._new_operation(self._parent(record.owner), record.execution)
            if params.get("validateOnly") == "true":
                self._finish(operation, self._execution_view(record))
                return copy(self._operation(operation))
            record.finishing.append(operation)
            if record.halt in (None, "cancel"):
                record.halt = "delete"
                record.cond.notify_all()
                if not record.driver_alive:
                    self._spawn(lambda: self._conclude(record), f"fake-run-delete-{record.exec_id}")
            return copy(self._operation(operation))

    # -- tasks

    def _get_task(self, where: Mapping[str, str], params: Mapping[str, str], body: bytes) -> Any:
        with self._lock:
            record = self._find_execution(where)
            if where["task"] != record.task.name.rsplit("/", 1)[1]:
                raise not_found(f"{record.execution.name}/tasks/{where['task']}")
            return copy(record.task)

    def _list_tasks(self, where: Mapping[str, str], params: Mapping[str, str], body: bytes) -> Any:
        with self._lock:
            if where["execution"] == "-":
                records = [e for job in self._jobs_under(where) for e in job.executions.values()]
            else:
                records = [self._find_execution(where)]
            page, token = _page(records, params)
            return run_v2.ListTasksResponse.pb()(tasks=[copy(e.task) for e in page], next_page_token=token)

    # -- state (every method below runs with self._lock held)

    def _parent(self, record: _Job) -> str:
        return f"projects/{record.project}/locations/{record.location}"

    def _find_job(self, where: Mapping[str, str]) -> _Job:
        record = self._jobs.get((where["project"], where["location"], where["job"]))
        if record is None:
            raise not_found(f"projects/{where['project']}/locations/{where['location']}/jobs/{where['job']}")
        return record

    def _jobs_under(self, where: Mapping[str, str]) -> list[_Job]:
        if where["job"] != "-":
            return [self._find_job(where)]
        here = (where["project"], where["location"])
        return [r for r in self._jobs.values() if (r.project, r.location) == here]

    def _find_execution(self, where: Mapping[str, str]) -> _Execution:
        job = self._find_job(where)
        record = job.executions.get(where["execution"])
        if record is None:
            raise not_found(f"{job.job.name}/executions/{where['execution']}")
        return record

    def _new_job(self, job: Any, project: str, location: str, job_id: str) -> _Job:
        for output_only in (
            "uid",
            "generation",
            "create_time",
            "update_time",
            "terminal_condition",
            "conditions",
            "execution_count",
            "latest_created_execution",
            "observed_generation",
            "reconciling",
            "etag",
        ):
            job.ClearField(output_only)
        job.name = f"projects/{project}/locations/{location}/jobs/{job_id}"
        job.uid = str(uuid.uuid4())
        job.generation = job.observed_generation = 1
        template = job.template
        template.task_count = template.task_count or 1
        template.parallelism = template.parallelism or 1
        if not template.template.HasField("max_retries"):
            template.template.max_retries = DEFAULT_RETRIES
        if not template.template.HasField("timeout"):
            template.template.timeout.FromSeconds(int(DEFAULT_TIMEOUT))
        now = time.time_ns()
        job.create_time.FromNanoseconds(now)
        job.update_time.FromNanoseconds(now)
        job.terminal_condition.CopyFrom(_condition("Ready", State.CONDITION_SUCCEEDED))
        job.etag = f'"{secrets.token_hex(8)}"'
        return _Job(project, location, job_id, job, now)

    def _new_execution(self, record: _Job, exec_id: str, overrides: Any, *, start: bool = True) -> _Execution:
        template = copy(record.job.template.template)
        if overrides is not None:
            _apply(template, overrides)
        now = time.time_ns()
        name = f"{record.job.name}/executions/{exec_id}"
        execution = _EXECUTION(
            name=name,
            uid=str(uuid.uuid4()),
            generation=1,
            observed_generation=1,
            job=record.job_id,
            parallelism=1,
            task_count=1,
            template=template,
            labels=dict(record.job.template.labels),
            annotations=dict(record.job.template.annotations),
            log_uri=(
                f"https://console.cloud.google.com/logs/viewer?project={record.project}"
                f"&advancedFilter=resource.type%3D%22cloud_run_job%22%0Alabels.%22run.googleapis.com"
                f"/execution_name%22%3D%22{exec_id}%22"
            ),
            etag=f'"{secrets.token_hex(8)}"',
        )
        execution.create_time.FromNanoseconds(now)
        execution.update_time.FromNanoseconds(now)
        for kind in ("Completed", "ResourcesAvailable", "Started"):
            execution.conditions.append(_condition(kind, State.CONDITION_PENDING))
        task = _TASK(
            name=f"{name}/tasks/{exec_id}-task0",
            uid=str(uuid.uuid4()),
            generation=1,
            observed_generation=1,
            job=record.job_id,
            execution=exec_id,
            containers=template.containers,
            volumes=template.volumes,
            max_retries=template.max_retries,
            timeout=template.timeout,
            index=0,
            log_uri=execution.log_uri,
            labels=dict(record.job.template.labels),
        )
        task.create_time.FromNanoseconds(now)
        task.conditions.append(_condition("Completed", State.CONDITION_PENDING))
        result = _Execution(record, exec_id, execution, task, threading.Condition(self._lock), now)
        if not start:  # validateOnly
            return result
        record.executions[exec_id] = result
        record.job.execution_count += 1
        reference = record.job.latest_created_execution
        reference.Clear()
        reference.name = name
        reference.create_time.FromNanoseconds(now)
        reference.completion_status = run_v2.ExecutionReference.CompletionStatus.EXECUTION_PENDING
        self._logs[exec_id] = []
        self._spawn(lambda: self._drive(result), f"fake-run-{exec_id}")
        return result

    def _new_operation(self, parent: str, metadata: Any) -> str:
        return self._store_operation(f"{parent}/operations/{uuid.uuid4()}", copy(metadata))

    def _finish(self, name: str, response: Any, error: str | None = None) -> None:
        operation = self._operation(name)
        if error is not None:
            operation.error.CopyFrom(status_pb2.Status(code=9, message=error))
        else:
            operation.response.Pack(response)
        operation.done = True

    def _job_view(self, record: _Job) -> Any:
        return copy(record.job)

    def _execution_view(self, record: _Execution) -> Any:
        return copy(record.execution)

    def _condition(
        self, record: _Execution, kind: str, state: int, message: str = "", reason: int = 0
    ) -> None:
        for condition in record.execution.conditions:
            if condition.type_ == kind:
                condition.CopyFrom(_condition(kind, state, message, reason))
        record.execution.update_time.FromNanoseconds(time.time_ns())

    def _settle_operations(self, record: _Execution, waits: list[tuple[str, Any]], error: str | None) -> None:
        for operation, what in waits:
            response = self._execution_view(record) if what == "execution" else self._job_view(record.owner)
            self._operation(operation).metadata.Pack(response)
            self._finish(operation, response, error)
        waits.clear()

    # -- running: one driver thread an execution

    def _lifecycle(self, record: _Execution) -> None:
        labels = {**record.owner.job.labels, **record.execution.labels}
        if not self._wait(record, lambda: not self._held(record.owner.job_id, labels), None):
            return
        if not self._wait(record, lambda: False, self.schedule_delay):
            return
        with self._lock:
            if record.halt is not None:
                return
            now = time.time_ns()
            record.execution.start_time.FromNanoseconds(now)
            record.execution.running_count = 1
            self._condition(record, "ResourcesAvailable", State.CONDITION_SUCCEEDED, "Provisioned resources.")
            self._condition(record, "Started", State.CONDITION_SUCCEEDED, "Started deployed execution.")
            record.task.scheduled_time.FromNanoseconds(now)
            record.task.start_time.FromNanoseconds(now)
            record.owner.job.latest_created_execution.completion_status = (
                run_v2.ExecutionReference.CompletionStatus.EXECUTION_RUNNING
            )
            self._settle_operations(record, record.on_start, None)
        retries = record.execution.template.max_retries
        for attempt in range(retries + 1):
            result = self._attempt(record, attempt)
            if result is None:  # halted: _drive concludes a cancel or delete
                return
            code, message = result
            with self._lock:
                if record.halt is not None:
                    return
                record.task.last_attempt_result.Clear()
                attempt_result = record.task.last_attempt_result
                attempt_result.status.code = 0 if code == 0 else (4 if code is None else 2)
                attempt_result.status.message = message
                if code is not None:
                    attempt_result.exit_code = code
                if code == 0 or attempt == retries:
                    break
                record.task.retried += 1
                record.execution.retried_count = 1
        with self._lock:
            self._end(record, code, message)

    def _end(self, record: _Execution, code: int | None, message: str) -> None:
        now = time.time_ns()
        execution, task = record.execution, record.task
        execution.running_count = 0
        execution.completion_time.FromNanoseconds(now)
        task.completion_time.FromNanoseconds(now)
        seconds = (now - execution.start_time.ToNanoseconds()) / 1e9
        Status = run_v2.ExecutionReference.CompletionStatus
        if code == 0:
            execution.succeeded_count = 1
            self._condition(
                record,
                "Completed",
                State.CONDITION_SUCCEEDED,
                f"Execution completed successfully in {seconds:.2f}s.",
            )
            task.conditions[0].CopyFrom(
                _condition("Completed", State.CONDITION_SUCCEEDED, "Completed successfully.")
            )
            status, error = Status.EXECUTION_SUCCEEDED, None
        else:
            execution.failed_count = 1
            reason = Reason.NON_ZERO_EXIT_CODE if code is not None else 0
            failed = f"Task {task.name.rsplit('/', 1)[1]} failed with message: {message}"
            text = f"Execution {record.exec_id} has failed to complete, 1/1 tasks failed."
            self._condition(record, "Completed", State.CONDITION_FAILED, text, reason)
            task.conditions[0].CopyFrom(_condition("Completed", State.CONDITION_FAILED, failed, reason))
            status, error = Status.EXECUTION_FAILED, f"{text} {failed}"
        self._complete_reference(record, status)
        self._settle_operations(record, record.on_start, error)
        self._settle_operations(record, record.on_end, error)

    def _complete_reference(self, record: _Execution, status: int) -> None:
        reference = record.owner.job.latest_created_execution
        if reference.name == record.execution.name:
            reference.completion_status = status
            reference.completion_time.CopyFrom(record.execution.completion_time)

    def _attempt(self, record: _Execution, attempt: int) -> tuple[int | None, str] | None:
        """Run the container once: (exit code or None on timeout, status message); None when halted."""
        argv, env, mounts, cwd = self._command(record, attempt)
        template = record.execution.template
        deadline = time.monotonic() + template.timeout.ToNanoseconds() / 1e9

        with self._lock:
            if record.halt is not None:
                return None
            logs = self._logs[record.exec_id]
            run = self._launch(record, f"{record.execution.uid}-a{attempt}", argv, env, logs, mounts, cwd)
            if run is None:
                return None
            self.runs[record.owner.job_id] += 1
            while record.exit_code is None and record.halt is None and time.monotonic() < deadline:
                record.cond.wait(max(0.0, min(TICK, deadline - time.monotonic())))
            if record.exit_code is not None and record.halt is None:
                code = record.exit_code
                return code, "" if code == 0 else EXITED_WITH_ERROR
            halted = record.halt is not None
        self._terminate(record, run)
        with self._lock:
            record.cond.wait_for(lambda: record.exit_code is not None, timeout=30)
        return None if halted else (None, TIMED_OUT)

    def _command(
        self, record: _Execution, attempt: int
    ) -> tuple[list[str], dict[str, str], list[Mount], str | None]:
        template = record.execution.template
        container = template.containers[0]
        env = {
            **self._base_env(container.image),
            **{variable.name: variable.value for variable in container.env},
            "CLOUD_RUN_JOB": record.owner.job_id,
            "CLOUD_RUN_EXECUTION": record.exec_id,
            "CLOUD_RUN_TASK_INDEX": "0",
            "CLOUD_RUN_TASK_ATTEMPT": str(attempt),
            "CLOUD_RUN_TASK_COUNT": "1",
        }
        volumes = {volume.name: volume for volume in template.volumes}
        mounts = []
        for mount in container.volume_mounts:
            gcs = volumes[mount.name].gcs
            prefix = _only_dir(gcs.mount_options)
            client = self._storage_client(record.owner.project)
            binding = GcsPrefix(client, gcs.bucket, f"{prefix}/" if prefix else "")
            labels = {**record.owner.job.labels, **record.execution.labels}
            mounts.append(self._lag(binding.mount(mount.mount_path, read_only=gcs.read_only), labels))
        return list(container.command) + list(container.args), env, mounts, container.working_dir or None

    def _conclude(self, record: _Execution) -> None:
        """Finish a cancel (CANCELLED) or a delete (gone) once the execution's process is dead."""
        self._stop_process(record)
        with self._lock:
            execution = record.execution
            if not record.ended:
                now = time.time_ns()
                execution.running_count = 0
                execution.cancelled_count = 1
                execution.completion_time.FromNanoseconds(now)
                self._condition(
                    record,
                    "Completed",
                    State.CONDITION_FAILED,
                    "The execution was cancelled.",
                    Reason.CANCELLED,
                )
                record.task.conditions[0].CopyFrom(
                    _condition(
                        "Completed", State.CONDITION_FAILED, "The task was cancelled.", Reason.CANCELLED
                    )
                )
                self._complete_reference(
                    record, run_v2.ExecutionReference.CompletionStatus.EXECUTION_CANCELLED
                )
                self._settle_operations(record, record.on_start, "The execution was cancelled.")
                self._settle_operations(record, record.on_end, "The execution was cancelled.")
            if record.halt == "delete":
                execution.delete_time.FromNanoseconds(time.time_ns())
                record.owner.executions.pop(record.exec_id, None)
            for operation in record.finishing:
                self._operation(operation).metadata.Pack(execution)
                self._finish(operation, copy(execution))
            record.finishing.clear()

    # -- validation

    def _validate(self, template: Any, at: str) -> None:
        """What Cloud Run refuses (400) and what this fake cannot play (501), named."""
        if template.task_count > 1:
            raise self.unmodelled(f"{at}.taskCount > 1")
        if template.parallelism > 1:
            raise self.unmodelled(f"{at}.parallelism > 1")
        spec = template.template
        if len(spec.containers) != 1:
            raise (
                invalid(f"{at}.template.containers: a container is required")
                if not spec.containers
                else self.unmodelled(f"{at}.template.containers: more than one container (sidecars)")
            )
        if spec.max_retries < 0:
            raise invalid(f"{at}.template.maxRetries must not be negative")
        container = spec.containers[0]
        where = f"{at}.template.containers[0]"
        if not container.image:
            raise invalid(f"{where}.image is required")
        if not _IMAGE.match(container.image):
            raise invalid(
                f"{where}.image: Expected an image path like [host/]repo-path[:tag and/or @digest], where "
                f"host is one of [region.]gcr.io, [region-]docker.pkg.dev or docker.io but obtained "
                f"{container.image}"
            )
        if not container.command:
            raise self.unmodelled(f"{where} without command (the image's own entrypoint)")
        for variable in container.env:
            if variable.HasField("value_source"):
                raise self.unmodelled(f"{where}.env[{variable.name}].valueSource (secrets)")
        names = {}
        for index, volume in enumerate(spec.volumes):
            if not volume.HasField("gcs"):
                raise self.unmodelled(f"{at}.template.volumes[{index}]: volumes other than gcs")
            if not volume.gcs.bucket:
                raise invalid(f"{at}.template.volumes[{index}].gcs.bucket is required")
            names[volume.name] = volume
        for index, mount in enumerate(container.volume_mounts):
            if mount.name not in names:
                raise invalid(f"{where}.volumeMounts[{index}]: no volume named {mount.name!r}")
            if not mount.mount_path.startswith("/"):
                raise invalid(f"{where}.volumeMounts[{index}].mountPath must be absolute")
            if mount.sub_path:
                raise self.unmodelled(f"{where}.volumeMounts[{index}].subPath")


_ALNUM = string.ascii_lowercase + string.digits


def _condition(kind: str, state: int, message: str = "", reason: int = 0, *, common: int = 0) -> Any:
    condition = _CONDITION(type_=kind, state=state, message=message)
    if reason:
        condition.execution_reason = reason
    if common:
        condition.reason = common
    condition.last_transition_time.FromNanoseconds(time.time_ns())
    return condition


def _apply(template: Any, overrides: Any) -> None:
    """RunJob's ``overrides`` on an execution's TaskTemplate."""
    if overrides.HasField("timeout"):
        template.timeout.CopyFrom(overrides.timeout)
    for override in overrides.container_overrides:
        matches = [c for c in template.containers if not override.name or c.name == override.name]
        for container in matches:
            if override.clear_args or override.args:
                del container.args[:]
                container.args.extend(override.args)
            for variable in override.env:
                kept = [v for v in container.env if v.name != variable.name]
                del container.env[:]
                container.env.extend([*kept, variable])


def _only_dir(options: Any) -> str:
    for option in options:
        key, _, value = option.removeprefix("--").partition("=")
        if key == "only-dir":
            return value.strip("/")
    return ""


def _page(records: list[Any], params: Mapping[str, str]) -> tuple[list[Any], str]:
    """Newest first; an opaque token holds the offset."""
    size = page_size(params.get("pageSize", ""), DEFAULT_PAGE, MAX_PAGE)
    ordered = sorted(records, key=lambda r: r.created_ns, reverse=True)
    start = 0
    if params.get("pageToken"):
        try:
            start = int(json.loads(base64.urlsafe_b64decode(params["pageToken"].encode()))["offset"])
        except (ValueError, KeyError, TypeError):
            raise invalid("Invalid page token") from None
    page = ordered[start : start + size]
    more = start + size < len(ordered)
    token = base64.urlsafe_b64encode(json.dumps({"offset": start + size}).encode()).decode() if more else ""
    return page, token
