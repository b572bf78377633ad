"""A wire-protocol fake of the Google Cloud Batch v1 REST API whose jobs really run, here.

No official emulator of Batch exists. This one speaks the REST surface the real client
uses, so ``google.cloud.batch_v1.BatchServiceClient(transport="rest")`` works against it
unchanged (:meth:`FakeGoogleBatch.client` builds one), and a job's runnables run as local
processes through the shared :class:`~tests.emulators.executor.LocalExecutor`::

    with FakeGoogleBatch(tmp_path, gcs_endpoint=gcs.endpoint) as fake:
        client = fake.client()
        job = client.create_job(parent="projects/p/locations/us-central1", job_id="j1", job=...)
        ... client.get_job(name=job.name).status.state ...

Requests are checked against the SDK's own proto types: every body is parsed with
``json_format.Parse(..., ignore_unknown_fields=False)`` into the request's message, so an
unknown or mistyped field is a 400 naming it, and every answer is ``json_format`` of the
same messages (int64 as strings, ``"3600s"`` durations, RFC 3339 ``Z`` timestamps), with
enums as numbers when the query asks ``$alt=json;enum-encoding=int`` (the SDK always does)
and as names otherwise. Errors have Google's JSON shape ``{"error": {"code", "message",
"status"}}``. Jobs are kept as proto messages.

What is modelled, and how sure it is. Sources: [SDK] the docstrings of google-cloud-batch
0.22.4 (``batch_v1/types``, ``transports/rest_base.py``); [REF]
https://cloud.google.com/batch/docs/reference/rest/v1/projects.locations.jobs; [TS]
https://cloud.google.com/batch/docs/troubleshooting#reserved-exit-codes; [KI]
https://cloud.google.com/batch/docs/known-issues; [NOTIF]
https://cloud.google.com/batch/docs/enable-notifications and .../monitor-jobs-using-notifications;
[3P] real Batch output quoted in public issues and code (nextflow-io/nextflow#3061, #4225,
#5550; DataBiosphere/dsub#303 and dsub's event regexes; a ``gcloud batch jobs describe``),
wording that is Google's but was not read on a Google page. UNVERIFIED: this fake's choice.

| Behaviour                                                           | Source             |
|---------------------------------------------------------------------|--------------------|
| routes, verbs, bodies (create: the Job; cancel: ``{"requestId"}``)  | SDK                |
| unknown/mistyped body field or unknown query parameter: 400 naming  | SDK protos; wording|
| it (``Invalid JSON payload received. Unknown name "x" ...``)        | UNVERIFIED         |
| jobId ``^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$``; none: one is generated | SDK; ``job-<hex>`` |
|                                                                     | UNVERIFIED         |
| requestId a non-zero UUID; a repeat returns the first job/operation | SDK (AIP-155); the |
|                                                                     | 400 UNVERIFIED     |
| existing jobId: 409 ALREADY_EXISTS                                  | AIP-133; wording   |
|                                                                     | UNVERIFIED         |
| one task group (400 otherwise)                                      | REF                |
| taskCount > 1, retries, lifecycle policies, barriers, background    | limits of the fake:|
| runnables, NFS/disk volumes, secret env, ``container.volumes``, a   | 501 UNIMPLEMENTED  |
| container with neither entrypoint nor commands                      | naming the field   |
| defaults filled: taskCount 1, parallelism 1                         | UNVERIFIED         |
| task group, task names and status texts use the project *number*    | 3P (#3061, describe|
| (derived from the project id here; both forms accepted in paths)    | output)            |
| uid ``<first 18 chars of id>-<8 hex>-<4 hex>-<5 hex>``              | 3P (#4225 logs)    |
| QUEUED -> SCHEDULED -> RUNNING -> SUCCEEDED/FAILED; no event while  | SDK states; 3P     |
| QUEUED, then ``STATUS_CHANGED`` "Job state is set from A to B for   | (#5550, dsub)      |
| job <name>."                                                        |                    |
| FAILED: "...for job <name>.Job failed due to task failure.          | 3P (gcloud output; |
| Specifically, task with index 0 failed due to the following task    | no space after the |
| event: \"Task state is updated from RUNNING to FAILED on            | name's period)     |
| zones/<zone>/instances/<19 digits> with exit code N.\""             |                    |
| tasks exist from SCHEDULED on: PENDING, ASSIGNED, RUNNING,          | 3P (nextflow copes |
| SUCCEEDED/FAILED; the last event carries ``taskExecution.exitCode`` | with no tasks);    |
|                                                                     | texts UNVERIFIED   |
| runnables in order, ``ignoreExitStatus``, ``alwaysRun``; the task's | SDK (``Runnable``, |
| exit code is the first failure's                                    | ``TaskExecution``) |
| 50005 past ``maxRunDuration`` or a runnable's ``timeout``           | TS, KI             |
| 50001 Spot preemption, 50002-50004 and 50006 VM lost                | TS (codes); "due to|
|                                                                     | ..." texts 3P for  |
|                                                                     | 50001/2/5, else    |
|                                                                     | UNVERIFIED         |
| quota: stays SCHEDULED, event ``OPERATIONAL_INFO`` "VM in Managed   | 3P (dsub#303,      |
| Instance Group meets error: Batch Error: code -                     | nextflow); the type|
| CODE_GCE_QUOTA_EXCEEDED, description - ..."                         | 3P (user notes)    |
| VM never created: SCHEDULED, event "Job gets non-retryable         | 3P (nextflow#5550, |
| information Batch Error: code - CODE_GCE_..., description - ...",   | #5567); the event  |
| FAILED, no task at all                                              | type UNVERIFIED    |
| image that cannot be pulled: RUNNING, nothing runs, a docker-style  | UNVERIFIED         |
| stderr line, FAILED with 125 "due to image pull failure for <image>"|                    |
| cancel: CANCELLATION_IN_PROGRESS, SIGTERM, SIGKILL after            | SDK states and LRO |
| ``kill_grace``, CANCELLED; operation metadata ``OperationMetadata`` | types; 400 on a    |
| (verb ``cancel``), response ``CancelJobResponse``; a terminal job:  | terminal job and   |
| 400 FAILED_PRECONDITION; the killed task shows FAILED               | the task UNVERIFIED|
| delete: DELETION_IN_PROGRESS, killed, gone (404); response Empty    | SDK                |
| list filter ``labels.K="V"``, ``name=``, ``uid=``, ``status.state=``| SDK (orderBy); the |
| joined by `` AND ``; orderBy ``name``/``create_time`` [``desc``];   | default order and  |
| page size 50 by default, capped at 100; opaque page tokens          | the cap UNVERIFIED |
| env: task and runnable ``environment.variables``, BATCH_TASK_INDEX, | Batch's predefined |
| BATCH_TASK_COUNT, BATCH_JOB_UID                                     | vars; JOB_UID      |
|                                                                     | UNVERIFIED         |
| GCS volumes at ``mountPath`` in every runnable; every object under  | SDK (``Container.  |
| the prefix shows (as gcsfuse ``--implicit-dirs``); writes land when | volumes``); the    |
| the runnable exits                                                  | rest UNVERIFIED    |
| notifications on job/task changes (``type``, ``newJobState``,       | NOTIF; attributes  |
| ``newTaskState``); a missing topic is logged, the job goes on       | JobName, JobUID,   |
|                                                                     | NewJobState, Type  |
|                                                                     | 3P; Region, task   |
|                                                                     | attributes, data   |
|                                                                     | text UNVERIFIED    |

What clients see through google-api-core over REST (not the fake's choice): an error's class
comes from the HTTP status alone, so 409 ALREADY_EXISTS raises ``Conflict`` (not
``AlreadyExists``) and 400 FAILED_PRECONDITION raises ``BadRequest`` (not
``FailedPrecondition``); the JSON ``status`` is in ``exc.response.json()``.

Test controls (Python attributes, not HTTP):

- ``hold``: job ids that stay QUEUED until removed (or the job is cancelled or deleted);
  ``hold_labels``: label *values* that do the same for every job carrying one (any key).
- a job labelled :data:`~tests.emulators.google_rest.UPLOAD_LAG_LABEL` (milliseconds) reaches
  its end before its GCS volumes are synced back: its files (the runner's logs) land in the
  bucket after it ended.
- ``schedule_delay``: seconds spent in QUEUED and again in SCHEDULED (default 0.05).
- ``outcomes[job_id] = Outcome...``: Batch ends that job for an infrastructure reason
  instead of running it to the end (taken once, when it is scheduled); see :class:`Outcome`.
- ``lost(job_id)``: the job vanishes, as if someone else deleted it (its process is killed).
- ``log_lines(job_id)``: what its runnables wrote (stdout and stderr lines). Real Batch sends
  these to Cloud Logging, which the runner does not read; this is for debugging tests.
- ``images[image_uri] = PATH``: what a container image provides, as the ``PATH`` its commands
  run with (a directory holding a ``python``, say); other images get the executor's minimal PATH.
- ``calls``: a Counter of requests per method (``calls["CreateJob"]``), for call budgets.
- ``runs``: a Counter of processes started per job id, one per runnable run (what an
  exactly-once test counts: a second submission that ran would show here).
- ``notification_errors``: the notifications that could not be published (a missing topic).
- ``kill_grace``: seconds between SIGTERM and SIGKILL when a job is cancelled or deleted.

:meth:`FakeGoogleBatch.stop` kills every job, stops the server and raises, grouped, what
failed inside the fake (a driver thread, an executor callback) so no bug vanishes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import signal as signals
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.cloud import batch_v1
from google.protobuf import empty_pb2

from tests.emulators.executor import LogLine, Mount, RunningJob, Stream
from tests.emulators.google_rest import (
    TICK,
    ApiError,
    GoogleRestFake,
    copy,
    invalid,
    not_found,
    parse,
)
from tests.emulators.google_rest import page_size as _sized
from tests.emulators.mounts import GcsPrefix

__all__ = ["FakeGoogleBatch", "Outcome"]

JobState = batch_v1.JobStatus.State
TaskState = batch_v1.TaskStatus.State
NotificationType = batch_v1.JobNotification.Type
_JOB: Any = batch_v1.Job.pb()
_TASK: Any = batch_v1.Task.pb()

JOB_ID = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
ORDERS = ("", "name", "name desc", "create_time", "create_time desc")
DEFAULT_PAGE, MAX_PAGE = 50, 100
GROUP = "group0"
"""A job labelled with N has its GCS volumes synced back N ms after it ended (a slow flush)."""

PREEMPTED = 50001
VM_LOST = {
    50002: "due to Batch no longer receives VM updates",
    50003: "due to VM is rebooted during task execution",
    50004: "due to tasks cannot be canceled",
    50006: "due to VM is recreated during task execution",
}
OVER_RUNTIME = 50005
IMAGE_PULL_FAILED = 125  # docker run's own code when the daemon cannot start the container

_QUERY = {
    "CreateJob": {"jobId", "requestId"},
    "ListJobs": {"filter", "orderBy", "pageSize", "pageToken"},
    "DeleteJob": {"reason", "requestId"},
    "ListTasks": {"filter", "pageSize", "pageToken"},
}
_P = r"/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
_J = _P + r"/jobs/(?P<job>[^/:]+)"
_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(rf"^{_P}/jobs$"), "CreateJob"),
    ("GET", re.compile(rf"^{_P}/jobs$"), "ListJobs"),
    ("GET", re.compile(rf"^{_J}$"), "GetJob"),
    ("DELETE", re.compile(rf"^{_J}$"), "DeleteJob"),
    ("POST", re.compile(rf"^{_J}:cancel$"), "CancelJob"),
    ("GET", re.compile(rf"^{_J}/taskGroups/(?P<group>[^/]+)/tasks$"), "ListTasks"),
    ("GET", re.compile(rf"^{_J}/taskGroups/(?P<group>[^/]+)/tasks/(?P<task>[^/]+)$"), "GetTask"),
    ("GET", re.compile(rf"^{_P}/operations/(?P<operation>[^/:]+)$"), "GetOperation"),
]


# -- Google's wording (see the module table for where each comes from)


def job_event(old: int, new: int, job: str) -> str:
    return f"Job state is set from {JobState(old).name} to {JobState(new).name} for job {job}."


def task_event(old: int, new: int, where: str, reason: str = "", code: int | None = None) -> str:
    tail = f" {reason}" if reason else ""
    tail += f" with exit code {code}" if code is not None else ""
    return f"Task state is updated from {TaskState(old).name} to {TaskState(new).name} on {where}{tail}."


def job_failed(old: int, job: str, task_description: str) -> str:
    return (
        f"{job_event(old, JobState.FAILED, job)}Job failed due to task failure. Specifically, task with "
        f'index 0 failed due to the following task event: "{task_description}"'
    )


def quota_exceeded(instance: str, quota: str, limit: float, region: str) -> str:
    return (
        "VM in Managed Instance Group meets error: Batch Error: code - CODE_GCE_QUOTA_EXCEEDED, "
        f"description - error count is 1, latest message example: Instance '{instance}' creation "
        f"failed: Quota '{quota}' exceeded.  Limit: {limit:.1f} in region {region}."
    )


@dataclass(frozen=True)
class Outcome:
    """How Batch itself ends a job, whatever its command does: a test provokes a failure class.

    ``exit_code`` is the task's (Batch's reserved codes); ``reason`` the "due to ..." part of the
    task event; ``started``: the command starts, runs ``after`` seconds, then is killed (else
    it never starts, and the job fails from SCHEDULED); ``running``: the job reaches RUNNING
    although no command starts (an image pull); ``quota``: the job never leaves SCHEDULED and
    shows Google's ``CODE_GCE_QUOTA_EXCEEDED`` event for that quota. Without an exit code or a
    quota (``Outcome(None, "<description>")``) no VM can ever start the job: it fails from
    SCHEDULED with that description as an event, and no task exists. Build them with the
    class methods.
    """

    exit_code: int | None
    reason: str = ""
    started: bool = False
    running: bool = False
    after: float = 0.0
    quota: str | None = None
    limit: float = 0.0
    log: tuple[str, ...] = ()

    @classmethod
    def preempted(cls, *, started: bool = True, after: float = 0.0) -> Outcome:
        """The Spot VM is reclaimed: task exit code 50001."""
        return cls(PREEMPTED, "due to Spot VM preemption", started=started, after=after)

    @classmethod
    def vm_lost(cls, code: int = 50002, *, started: bool = True, after: float = 0.0) -> Outcome:
        """The VM stops reporting (50002), reboots (50003), hangs (50004) or is recreated (50006)."""
        if code not in VM_LOST:
            raise ValueError(f"VM loss codes are {sorted(VM_LOST)}, not {code}")
        return cls(code, VM_LOST[code], started=started, after=after)

    @classmethod
    def quota_exceeded(cls, quota: str = "CPUS", limit: float = 0.0) -> Outcome:
        """No VM can be created: the job stays SCHEDULED for ever (until cancelled or deleted)."""
        return cls(None, quota=quota, limit=limit)

    @classmethod
    def start_failed(cls, code: str = "CODE_GCE_BAD_REQUEST", description: str = "") -> Outcome:
        """Batch cannot create the VM, for good: SCHEDULED -> FAILED, no task, no exit code."""
        detail = f", description - {description}" if description else ""
        return cls(None, f"Job gets non-retryable information Batch Error: code - {code}{detail}")

    @classmethod
    def image_pull_failed(cls, image: str = "the image") -> Outcome:
        """The container cannot be pulled: RUNNING, then FAILED with 125, nothing ran (UNVERIFIED)."""
        line = f"docker: Error response from daemon: manifest for {image} not found: manifest unknown."
        reason = f"due to image pull failure for {image}: manifest unknown"
        return cls(IMAGE_PULL_FAILED, reason, running=True, log=(line,))


@dataclass(eq=False)
class _Job:
    """One job: its proto, its task once scheduled, and what its driver thread shares."""

    project: str
    location: str
    job_id: str
    job: Any  # batch_v1 Job proto
    number_name: str  # the name as Batch writes it in texts (project number)
    created_ns: int
    zone: str
    instance: str
    cond: threading.Condition
    task: Any = None  # batch_v1 Task proto, from SCHEDULED on
    halt: str | None = None  # "cancel", "delete", "lost", "stop": the driver must stop
    driver_alive: bool = True
    run: RunningJob | None = None
    exit_code: int | None = None  # of the runnable running now, once it exited
    running_since: float | None = None
    ended_at: float | None = None
    operation: str | None = None  # the cancel or delete operation in progress

    @property
    def state(self) -> JobState:
        return JobState(self.job.status.state)

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.location}"


class FakeGoogleBatch(GoogleRestFake):
    """The fake Batch service on 127.0.0.1 (a free port). See the module docstring."""

    ROUTES = _ROUTES
    QUERY = _QUERY
    NAME = "fake Google Batch"

    def __init__(
        self, workdir: Path, *, gcs_endpoint: str | None = None, pubsub_endpoint: str | None = None
    ) -> None:
        super().__init__(workdir, gcs_endpoint=gcs_endpoint)
        self.pubsub_endpoint = pubsub_endpoint
        self.schedule_delay = 0.05
        self.outcomes: dict[str, Outcome] = {}
        self.notification_errors: list[str] = []
        self._jobs: dict[tuple[str, str, str], _Job] = {}
        self._logs: dict[str, list[LogLine]] = {}
        self._requests: dict[tuple[str, str, str], Any] = {}  # (parent, verb, requestId) -> job | op name
        self._numbers: dict[str, str] = {}  # project number -> project id
        self._publisher: _Publisher | None = None

    # -- lifecycle

    def start(self) -> FakeGoogleBatch:
        super().start()
        if self.pubsub_endpoint is not None:
            self._publisher = _Publisher(self.pubsub_endpoint, self.notification_errors)
        return self

    def _halt_all(self) -> list[RunningJob]:
        for record in self._jobs.values():
            record.halt = record.halt or "stop"
            record.cond.notify_all()
        return [record.run for record in self._jobs.values() if record.run is not None]

    def _close(self) -> None:
        if self._publisher is not None:
            self._publisher.close()

    def client(self) -> Any:
        """The real ``BatchServiceClient`` on this fake: REST transport, anonymous credentials."""
        from google.auth.credentials import AnonymousCredentials

        return batch_v1.BatchServiceClient(
            transport="rest",
            client_options={"api_endpoint": self.endpoint},
            credentials=AnonymousCredentials(),
        )

    # -- test controls

    def lost(self, job_id: str) -> None:
        """The job vanishes (404 from now on), as if deleted by someone else; its process is killed."""
        with self._lock:
            record = self._by_id(job_id)
            del self._jobs[(record.project, record.location, record.job_id)]
            record.halt = "lost"
            record.cond.notify_all()
            run = record.run
        if run is not None:
            run.kill(signals.SIGKILL)

    def log_lines(self, job_id: str) -> list[LogLine]:
        """Every line the job's runnables wrote, in order (kept after the job is gone)."""
        with self._lock:
            return list(self._logs.get(job_id, ()))

    def project_number(self, project: str) -> str:
        """The number Batch writes for ``project`` in task group names and status texts (stable)."""
        digest = int(hashlib.sha256(project.encode()).hexdigest(), 16)
        number = str(100_000_000_000 + digest % 900_000_000_000)
        with self._lock:
            self._numbers[number] = project
        return number

    def _by_id(self, job_id: str) -> _Job:
        found = [record for record in self._jobs.values() if record.job_id == job_id]
        if len(found) != 1:
            raise KeyError(f"{len(found)} jobs have the id {job_id!r}")
        return found[0]

    def _canonical(self, project: str) -> str:
        with self._lock:
            return self._numbers.get(project, project)

    # -- methods

    def _create_job(self, where: Mapping[str, str], params: Mapping[str, str], body: bytes) -> Any:
        job = _parse(body, _JOB, "job")
        job_id = params.get("jobId") or f"job-{secrets.token_hex(6)}"
        if not JOB_ID.match(job_id):
            raise _invalid(
                f'Job id "{job_id}" is invalid: it must match ^[a-z]([a-z0-9-]{{0,61}}[a-z0-9])?$ '
                "(lowercase letters, digits and '-', starting with a letter, at most 63 characters)"
            )
        request_id = _request_id(params.get("requestId", ""))
        _validate(job)
        project, location = where["project"], where["location"]
        parent = f"projects/{project}/locations/{location}"
        number = self.project_number(project)
        with self._lock:
            if request_id:
                seen = self._requests.get((parent, "create", request_id))
                if seen is not None:
                    current = self._jobs.get((project, location, seen.job_id))
                    return self._view(current if current is seen else seen)
            if (project, location, job_id) in self._jobs:
                raise ApiError(409, "ALREADY_EXISTS", f"Resource '{parent}/jobs/{job_id}' already exists")
            record = self._new_job(job, project, location, job_id, number)
            self._jobs[(project, location, job_id)] = record
            if request_id:
                self._requests[(parent, "create", request_id)] = record
            self._notify_job(record, JobState.STATE_UNSPECIFIED, JobState.QUEUED)
            self._spawn(lambda: self._drive(record), f"fake-batch-{job_id}")
            return self._view(record)

    def _get_job(self, where: Mapping[str, str], params: Mapping[str, str], body: bytes) -> Any:
        with self._lock:
            return self._view(self._find(where))

    def _list_jobs(self, where: Mapping[str, str], params: Mapping[str, str], body: bytes) -> Any:
        clauses = _filter(params.get("filter", ""))
        order = params.get("orderBy", "").strip()
        if order not in ORDERS:
            raise _invalid(f'Invalid orderBy "{order}": supported are {", ".join(map(repr, ORDERS[1:]))}')
        size = _page_size(params.get("pageSize", ""))
        descending = order.endswith(" desc")
        with self._lock:
            records = [
                r
                for r in self._jobs.values()
                if (r.project, r.location) == (where["project"], where["location"]) and _matches(r, clauses)
            ]
            keyed = sorted(
                ((_sort_key(r, order), r) for r in records), key=lambda kr: kr[0], reverse=descending
            )
            token = params.get("pageToken", "")
            if token:
                after = _read_token(token, params.get("filter", ""), order)
                keyed = [(k, r) for k, r in keyed if (k < after if descending else k > after)]
            page = keyed[:size]
            response = batch_v1.ListJobsResponse.pb()(jobs=[self._view(r) for _, r in page])
            if len(keyed) > size:
                response.next_page_token = _make_token(page[-1][0], params.get("filter", ""), order)
            return response

    def _cancel_job(self, where: Mapping[str, str], params: Mapping[str, str], body: bytes) -> Any:
        request = _parse(body, batch_v1.CancelJobRequest.pb(), "CancelJobRequest")
        request_id = _request_id(request.request_id)
        with self._lock:
            record = self._find(where)
            if request_id:
                seen = self._requests.get((record.parent, "cancel", request_id))
                if seen is not None:
                    return self._operation_view(seen)
            if record.state in TERMINAL or record.state == JobState.DELETION_IN_PROGRESS:
                raise ApiError(
                    400,
                    "FAILED_PRECONDITION",
                    f"Job {record.job.name} is {record.state.name} and cannot be cancelled",
                )
            if record.state != JobState.CANCELLATION_IN_PROGRESS:
                record.operation = self._new_operation(record, "cancel")
                self._job_state(record, JobState.CANCELLATION_IN_PROGRESS)
                record.halt = "cancel"
                record.cond.notify_all()
            assert record.operation is not None
            if request_id:
                self._requests[(record.parent, "cancel", request_id)] = record.operation
            return self._operation_view(record.operation)

    def _delete_job(self, where: Mapping[str, str], params: Mapping[str, str], body: bytes) -> Any:
        request_id = _request_id(params.get("requestId", ""))
        with self._lock:
            parent = f"projects/{where['project']}/locations/{where['location']}"
            if request_id and (parent, "delete", request_id) in self._requests:
                return self._operation_view(self._requests[(parent, "delete", request_id)])
            record = self._find(where)
            if record.state != JobState.DELETION_IN_PROGRESS:
                record.operation = self._new_operation(record, "delete")
                self._job_state(record, JobState.DELETION_IN_PROGRESS)
                record.halt = "delete"
                record.cond.notify_all()
                if not record.driver_alive:  # a terminal job: nobody else will finish the deletion
                    self._spawn(lambda: self._conclude(record), f"fake-batch-delete-{record.job_id}")
            assert record.operation is not None
            if request_id:
                self._requests[(parent, "delete", request_id)] = record.operation
            return self._operation_view(record.operation)

    def _list_tasks(self, where: Mapping[str, str], params: Mapping[str, str], body: bytes) -> Any:
        clauses = _filter(params.get("filter", ""), tasks=True)
        _page_size(params.get("pageSize", ""))
        with self._lock:
            record = self._find(where)
            if where["group"] != GROUP:
                raise _not_found(f"{record.job.name}/taskGroups/{where['group']}")
            tasks = [] if record.task is None else [_copy(record.task)]
        return batch_v1.ListTasksResponse.pb()(tasks=[t for t in tasks if _task_matches(t, clauses)])

    def _get_task(self, where: Mapping[str, str], params: Mapping[str, str], body: bytes) -> Any:
        with self._lock:
            record = self._find(where)
            name = f"{record.job.name}/taskGroups/{where['group']}/tasks/{where['task']}"
            if where["group"] != GROUP or where["task"] != "0" or record.task is None:
                raise _not_found(name)
            return _copy(record.task)

    # -- state (every method below runs with self._lock held)

    def _find(self, where: Mapping[str, str]) -> _Job:
        record = self._jobs.get((where["project"], where["location"], where["job"]))
        if record is None:
            raise _not_found(f"projects/{where['project']}/locations/{where['location']}/jobs/{where['job']}")
        return record

    def _new_job(self, job: Any, project: str, location: str, job_id: str, number: str) -> _Job:
        for output_only in ("name", "uid", "status", "create_time", "update_time"):
            job.ClearField(output_only)
        job.name = f"projects/{project}/locations/{location}/jobs/{job_id}"
        job.uid = f"{job_id[:18]}-{uuid.uuid4().hex[:8]}-{secrets.token_hex(2)}-{secrets.token_hex(3)[:5]}"
        number_name = f"projects/{number}/locations/{location}/jobs/{job_id}"
        group = job.task_groups[0]
        group.name = f"{number_name}/taskGroups/{GROUP}"
        group.task_count = group.task_count or 1
        group.parallelism = group.parallelism or 1
        now = time.time_ns()
        job.create_time.FromNanoseconds(now)
        job.update_time.FromNanoseconds(now)
        job.status.state = JobState.QUEUED
        zones = [z for z in job.allocation_policy.location.allowed_locations if z.startswith("zones/")]
        zone = zones[0].removeprefix("zones/") if zones else f"{location}-a"
        instance = str(1_000_000_000_000_000_000 + secrets.randbelow(8_000_000_000_000_000_000))
        self._logs[job_id] = []
        return _Job(
            project, location, job_id, job, number_name, now, zone, instance, threading.Condition(self._lock)
        )

    def _view(self, record: _Job) -> Any:
        job = _copy(record.job)
        if record.running_since is not None:
            seconds = (record.ended_at or time.time()) - record.running_since
            job.status.run_duration.FromNanoseconds(int(seconds * 1e9))
        return job

    def _job_state(self, record: _Job, new: int, description: str | None = None) -> None:
        old = record.state
        status = record.job.status
        status.state = new
        event = status.status_events.add(type_="STATUS_CHANGED")
        event.description = description or job_event(old, new, record.number_name)
        event.event_time.FromNanoseconds(time.time_ns())
        record.job.update_time.CopyFrom(event.event_time)
        if new in TERMINAL:
            record.ended_at = time.time()
        self._notify_job(record, old, new)

    def _task_state(self, record: _Job, new: int, reason: str = "", code: int | None = None) -> str:
        """Move the task to ``new``; the event's description (for the job's failure text)."""
        task = record.task
        old = TaskState(task.status.state)
        where = f"zones/{record.zone}/instances/{record.instance}"
        shown = code if new in (TaskState.FAILED,) else None
        event = task.status.status_events.add(type_="STATUS_CHANGED", task_state=new)
        event.description = task_event(old, new, where, reason, shown)
        event.event_time.FromNanoseconds(time.time_ns())
        if code is not None and new in (TaskState.FAILED, TaskState.SUCCEEDED):
            event.task_execution.exit_code = code
        task.status.state = new
        counts = record.job.status.task_groups[GROUP].counts
        counts.clear()
        counts[TaskState(new).name] = 1
        record.job.update_time.CopyFrom(event.event_time)
        self._notify_task(record, new, event.description)
        return str(event.description)

    def _schedule(self, record: _Job, *, task: bool = True) -> None:
        self._job_state(record, JobState.SCHEDULED)
        record.job.status.run_duration.SetInParent()
        policy = (
            record.job.allocation_policy.instances[0].policy
            if record.job.allocation_policy.instances
            else None
        )
        group = record.job.status.task_groups[GROUP]
        group.instances.add(
            machine_type=(policy.machine_type if policy and policy.machine_type else "e2-standard-2"),
            provisioning_model=(policy.provisioning_model if policy and policy.provisioning_model else 1),
            task_pack=1,
        )
        if not task:
            return
        record.task = _TASK(name=f"{record.job.task_groups[0].name}/tasks/0")
        record.task.status.state = TaskState.PENDING
        group.counts["PENDING"] = 1
        self._notify_task(record, TaskState.PENDING, f"Task {record.task.name} is PENDING.")

    def _new_operation(self, record: _Job, verb: str) -> str:
        name = f"{record.parent}/operations/operation-{int(time.time() * 1000)}-{secrets.token_hex(8)}"
        metadata = batch_v1.OperationMetadata.pb()(target=record.job.name, verb=verb, api_version="v1")
        metadata.create_time.FromNanoseconds(time.time_ns())
        return self._store_operation(name, metadata)

    def _finish_operation(self, name: str | None, response: Any) -> None:
        if name is None:
            return
        operation = self._operations[name]
        metadata = batch_v1.OperationMetadata.pb()()
        operation.metadata.Unpack(metadata)
        metadata.end_time.FromNanoseconds(time.time_ns())
        operation.metadata.Pack(metadata)
        operation.response.Pack(response)
        operation.done = True

    def _operation_view(self, name: str) -> Any:
        return _copy(self._operations[name])

    # -- notifications (published in order by one thread, never under the lock's wait)

    def _notify_job(self, record: _Job, old: int, new: int) -> None:
        for notification in record.job.notifications:
            message = notification.message
            wanted = message.type_ == NotificationType.JOB_STATE_CHANGED or (
                message.type_ == NotificationType.TYPE_UNSPECIFIED and message.new_job_state
            )
            if wanted and message.new_job_state in (JobState.STATE_UNSPECIFIED, new):
                text = job_event(old, new, record.number_name) if old else f"Job {record.job.name} is QUEUED."
                attributes = {
                    "Type": "JOB_STATE_CHANGED",
                    "JobName": record.job.name,
                    "JobUID": record.job.uid,
                    "NewJobState": JobState(new).name,
                    "Region": record.location,
                }
                self._publish(notification.pubsub_topic, text, attributes)

    def _notify_task(self, record: _Job, new: int, text: str) -> None:
        for notification in record.job.notifications:
            message = notification.message
            wanted = message.type_ == NotificationType.TASK_STATE_CHANGED or (
                message.type_ == NotificationType.TYPE_UNSPECIFIED and message.new_task_state
            )
            if wanted and message.new_task_state in (TaskState.STATE_UNSPECIFIED, new):
                attributes = {
                    "Type": "TASK_STATE_CHANGED",
                    "JobName": record.job.name,
                    "JobUID": record.job.uid,
                    "TaskName": record.task.name,
                    "TaskUID": f"{record.job.uid}-{GROUP}-0",
                    "NewTaskState": TaskState(new).name,
                    "Region": record.location,
                }
                self._publish(notification.pubsub_topic, text, attributes)

    def _publish(self, topic: str, text: str, attributes: dict[str, str]) -> None:
        if self._publisher is None:
            self.notification_errors.append(f"{topic}: no pubsub_endpoint given to the fake")
            return
        self._publisher.put(topic, text.encode(), attributes)

    # -- running jobs: one driver thread a job

    def _held_changed(self) -> None:
        with self._lock:
            for record in self._jobs.values():
                record.cond.notify_all()

    def _lifecycle(self, record: _Job) -> None:
        if not self._wait(record, lambda: not self._held(record.job_id, record.job.labels), None):
            return
        if not self._wait(record, lambda: False, self.schedule_delay):
            return
        with self._lock:
            if record.halt is not None:
                return
            outcome = self.outcomes.pop(record.job_id, None)
            never_starts = outcome is not None and outcome.exit_code is None and outcome.quota is None
            self._schedule(record, task=not never_starts)
            if outcome is not None and never_starts:  # no VM will ever run it: FAILED, no task
                event = record.job.status.status_events.add(type_="OPERATIONAL_INFO")
                event.description = outcome.reason
                event.event_time.FromNanoseconds(time.time_ns())
                self._job_state(record, JobState.FAILED)
                return
            if outcome is not None and outcome.quota is not None:
                event = record.job.status.status_events.add(type_="OPERATIONAL_INFO")
                instance = f"{record.job.uid[:40]}-{GROUP}-0-{secrets.token_hex(2)}"
                event.description = quota_exceeded(instance, outcome.quota, outcome.limit, record.location)
                event.event_time.FromNanoseconds(time.time_ns())
        if outcome is not None and outcome.quota is not None:
            self._wait(record, lambda: False, None)  # for ever: only a halt ends it
            return
        if not self._wait(record, lambda: False, self.schedule_delay):
            return
        with self._lock:
            if record.halt is not None:
                return
            self._task_state(record, TaskState.ASSIGNED)
            if outcome is not None and not outcome.started and not outcome.running:
                assert outcome.exit_code is not None
                text = self._task_state(record, TaskState.FAILED, outcome.reason, outcome.exit_code)
                self._job_state(
                    record, JobState.FAILED, job_failed(JobState.SCHEDULED, record.number_name, text)
                )
                return
            self._task_state(record, TaskState.RUNNING)
            self._job_state(record, JobState.RUNNING)
            record.running_since = time.time()
        if outcome is not None and not outcome.started:
            with self._lock:
                self._logs[record.job_id].extend(
                    LogLine(Stream.STDERR, line, time.time()) for line in outcome.log
                )
            assert outcome.exit_code is not None
            result: tuple[int, str] | None = (outcome.exit_code, outcome.reason)
        else:
            result = self._run_task(record, outcome)
        if result is None:  # halted: _drive concludes a cancel or delete
            return
        code, reason = result
        with self._lock:
            if record.halt is not None:
                return
            if code == 0:
                self._task_state(record, TaskState.SUCCEEDED, code=0)
                self._job_state(record, JobState.SUCCEEDED)
            else:
                text = self._task_state(record, TaskState.FAILED, reason, code)
                self._job_state(
                    record, JobState.FAILED, job_failed(JobState.RUNNING, record.number_name, text)
                )

    def _run_task(self, record: _Job, outcome: Outcome | None) -> tuple[int, str] | None:
        """Run the runnables in order: (exit code, reason) of the task, None when halted."""
        spec = record.job.task_groups[0].task_spec
        task_deadline = _deadline(spec.max_run_duration) if spec.HasField("max_run_duration") else None
        failure: tuple[int, str] | None = None
        for index, runnable in enumerate(spec.runnables):
            if failure is not None and not runnable.always_run:
                continue
            done = self._run_runnable(record, index, runnable, task_deadline, outcome if index == 0 else None)
            if done is None:
                return None
            code, reason, fatal = done
            if fatal:  # over the runtime or ended by Batch: nothing more runs, not even always_run
                return code, reason
            if code != 0 and not runnable.ignore_exit_status and failure is None:
                failure = (code, "")
        return failure or (0, "")

    def _run_runnable(
        self, record: _Job, index: int, runnable: Any, task_deadline: float | None, outcome: Outcome | None
    ) -> tuple[int, str, bool] | None:
        argv, env, mounts = self._command(record, runnable)
        deadline = task_deadline
        if runnable.HasField("timeout"):
            mine = _deadline(runnable.timeout)
            deadline = mine if deadline is None else min(deadline, mine)

        with self._lock:
            if record.halt is not None:
                return None
            run = self._launch(
                record, f"{record.job.uid}-r{index}", argv, env, self._logs[record.job_id], mounts
            )
            if run is None:
                return None
            self.runs[record.job_id] += 1
            why, kill_at = "", None
            while record.exit_code is None:
                now = time.monotonic()
                if record.halt is not None:
                    why = "halt"
                elif outcome is not None and run.pid is not None:
                    kill_at = kill_at if kill_at is not None else now + outcome.after
                    why = "outcome" if now >= kill_at else ""
                if not why and deadline is not None and now >= deadline:
                    why = "timeout"
                if why:
                    break
                record.cond.wait(TICK if deadline is None else max(0.0, min(TICK, deadline - now)))
            else:
                if outcome is None:
                    return record.exit_code, "", False
                why = "outcome"  # it ended first: Batch still reports the VM's fate (the outcome wins)
        if why == "outcome":
            run.kill(signals.SIGKILL)
        else:
            self._terminate(record, run)
        with self._lock:
            record.cond.wait_for(lambda: record.exit_code is not None, timeout=30)
        if why == "timeout":
            return OVER_RUNTIME, "due to task runs over the maximum runtime", True
        if why == "outcome":
            assert outcome is not None and outcome.exit_code is not None
            return outcome.exit_code, outcome.reason, True
        return None

    def _command(self, record: _Job, runnable: Any) -> tuple[list[str], dict[str, str], list[Mount]]:
        spec = record.job.task_groups[0].task_spec
        if runnable.HasField("container"):
            container = runnable.container
            argv = ([container.entrypoint] if container.entrypoint else []) + list(container.commands)
        elif runnable.script.text:
            argv = ["sh", "-c", runnable.script.text]
        else:
            argv = ["sh", runnable.script.path]
        image = runnable.container.image_uri if runnable.HasField("container") else ""
        env = {
            **self._base_env(image),
            **dict(spec.environments),
            **dict(spec.environment.variables),
            **dict(runnable.environment.variables),
            "BATCH_TASK_INDEX": "0",
            "BATCH_TASK_COUNT": "1",
            "BATCH_JOB_UID": record.job.uid,
        }
        mounts = []
        for volume in spec.volumes:
            prefix = GcsPrefix.from_remote_path(self._storage_client(record.project), volume.gcs.remote_path)
            mounts.append(self._lag(prefix.mount(volume.mount_path), record.job.labels))
        return argv, env, mounts

    def _conclude(self, record: _Job) -> None:
        """Finish a cancel (CANCELLED) or a delete (gone) once the job's process is dead."""
        run = self._stop_process(record)
        with self._lock:
            if record.halt == "cancel" and record.state == JobState.CANCELLATION_IN_PROGRESS:
                if record.task is not None and run is not None and record.exit_code is not None:
                    self._task_state(record, TaskState.FAILED, code=record.exit_code)
                self._job_state(record, JobState.CANCELLED)
                self._finish_operation(record.operation, batch_v1.CancelJobResponse.pb()())
                record.operation = None
            elif record.halt == "delete":
                self._jobs.pop((record.project, record.location, record.job_id), None)
                self._finish_operation(record.operation, empty_pb2.Empty())


class _Publisher:
    """Publishes notifications to the Pub/Sub emulator in order, on its own thread."""

    def __init__(self, endpoint: str, errors: list[str]) -> None:
        from tests.emulators.pubsub import PubSubRest

        self._client = PubSubRest(endpoint)
        self._errors = errors
        self._queue: list[tuple[str, bytes, dict[str, str]] | None] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="fake-batch-pubsub", daemon=True)
        self._thread.start()

    def put(self, topic: str, data: bytes, attributes: dict[str, str]) -> None:
        with self._cond:
            self._queue.append((topic, data, attributes))
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._queue.append(None)
            self._cond.notify()
        self._thread.join(10)
        self._client.close()

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._queue))
                item = self._queue.pop(0)
            if item is None:
                return
            topic, data, attributes = item
            try:
                self._client.publish(topic, data, attributes)
            except Exception as exc:  # Batch does not fail a job for its notifications
                message = f"{topic}: {exc}"
                print(f"fake Google Batch: notification not published: {message}", file=sys.stderr)
                self._errors.append(message)


_invalid, _not_found, _copy, _parse = invalid, not_found, copy, parse


def _unmodelled(what: str) -> ApiError:
    return ApiError(501, "UNIMPLEMENTED", f"{what} is not modelled by FakeGoogleBatch (tests/emulators)")


def _request_id(value: str) -> str:
    if not value:
        return ""
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        parsed = None
    if parsed is None or parsed.int == 0:
        raise _invalid(f'requestId "{value}" must be a valid UUID other than the zero UUID')
    return value


def _validate(job: Any) -> None:
    """What Batch refuses (400) and what this fake cannot play (501), named."""
    if len(job.task_groups) != 1:
        raise _invalid(f"job.taskGroups: exactly one TaskGroup is supported, got {len(job.task_groups)}")
    group = job.task_groups[0]
    if group.task_count < 0 or group.parallelism < 0:
        raise _invalid("job.taskGroups[0].taskCount and parallelism must be positive")
    if group.task_count > 1:
        raise _unmodelled("taskGroups[0].taskCount > 1")
    spec = group.task_spec
    if not spec.runnables:
        raise _invalid("job.taskGroups[0].taskSpec.runnables: at least one runnable is required")
    if spec.max_retry_count or spec.lifecycle_policies:
        raise _unmodelled("taskSpec.maxRetryCount / lifecyclePolicies (task retries)")
    if spec.environment.secret_variables or spec.environment.HasField("encrypted_variables"):
        raise _unmodelled("taskSpec.environment secretVariables / encryptedVariables")
    for index, runnable in enumerate(spec.runnables):
        at = f"job.taskGroups[0].taskSpec.runnables[{index}]"
        kind = runnable.WhichOneof("executable")
        if kind is None:
            raise _invalid(f"{at}: one of container, script or barrier is required")
        if kind == "barrier":
            raise _unmodelled(f"{at}.barrier")
        if runnable.background:
            raise _unmodelled(f"{at}.background")
        if runnable.environment.secret_variables or runnable.environment.HasField("encrypted_variables"):
            raise _unmodelled(f"{at}.environment secretVariables / encryptedVariables")
        if kind == "container":
            if not runnable.container.image_uri:
                raise _invalid(f"{at}.container.imageUri is required")
            if runnable.container.volumes:
                raise _unmodelled(f"{at}.container.volumes")
            if not runnable.container.entrypoint and not runnable.container.commands:
                raise _unmodelled(f"{at}.container without entrypoint or commands (the image's own command)")
        elif not runnable.script.text and not runnable.script.path:
            raise _invalid(f"{at}.script: text or path is required")
    for index, volume in enumerate(spec.volumes):
        at = f"job.taskGroups[0].taskSpec.volumes[{index}]"
        if volume.WhichOneof("source") != "gcs":
            raise _unmodelled(f"{at}: volumes other than gcs")
        if not volume.gcs.remote_path or not volume.mount_path:
            raise _invalid(f"{at}: gcs.remotePath and mountPath are required")
    for index, notification in enumerate(job.notifications):
        if not re.match(r"^projects/[^/]+/topics/[^/]+$", notification.pubsub_topic):
            raise _invalid(
                f"job.notifications[{index}].pubsubTopic must be projects/{{project}}/topics/{{topic}}"
            )


def _deadline(duration: Any) -> float:
    return time.monotonic() + duration.ToNanoseconds() / 1e9


_CLAUSE = re.compile(
    r'^\s*(?P<key>labels\.[A-Za-z0-9_.-]+|[a-z_.]+)\s*=\s*(?:"(?P<quoted>[^"]*)"|(?P<bare>\S+))\s*$'
)


def _filter(text: str, *, tasks: bool = False) -> list[tuple[str, str]]:
    """``KEY="VALUE" AND ...`` as (key, value) pairs; anything else is a 400 naming the clause.

    Jobs: ``labels.K``, ``name``, ``uid``, ``status.state``; tasks: ``name``, ``status.state``.
    """
    if not text.strip():
        return []
    fields = ("name", "status.state") if tasks else ("name", "status.state", "uid")
    states = TaskState.__members__ if tasks else JobState.__members__
    clauses = []
    for clause in text.split(" AND "):
        match = _CLAUSE.match(clause)
        key = match["key"] if match else ""
        if match is None or (key not in fields and (tasks or not key.startswith("labels."))):
            raise _invalid(f'Invalid filter: unsupported clause "{clause.strip()}"')
        value = match["quoted"] if match["quoted"] is not None else match["bare"]
        if key == "status.state" and value not in states:
            raise _invalid(f'Invalid filter: unknown state "{value}"')
        clauses.append((key, value))
    return clauses


def _matches(record: _Job, clauses: list[tuple[str, str]]) -> bool:
    for key, value in clauses:
        if key.startswith("labels."):
            actual = record.job.labels.get(key.removeprefix("labels."))
        elif key == "status.state":
            actual = record.state.name
        else:
            actual = getattr(record.job, key)
        if actual != value:
            return False
    return True


def _task_matches(task: Any, clauses: list[tuple[str, str]]) -> bool:
    for key, value in clauses:
        actual = TaskState(task.status.state).name if key == "status.state" else task.name
        if actual != value:
            return False
    return True


def _page_size(text: str) -> int:
    return _sized(text, DEFAULT_PAGE, MAX_PAGE)


def _sort_key(record: _Job, order: str) -> tuple[Any, ...]:
    if order.startswith("name"):
        return (record.job.name,)
    return (record.created_ns, record.job.name)


def _make_token(key: tuple[Any, ...], filter_text: str, order: str) -> str:
    raw = json.dumps({"after": list(key), "filter": filter_text, "order": order}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _read_token(token: str, filter_text: str, order: str) -> tuple[Any, ...]:
    try:
        state = json.loads(base64.urlsafe_b64decode(token.encode()))
        after = tuple(state["after"])
        same = state["filter"] == filter_text and state["order"] == order
    except (ValueError, KeyError, TypeError):
        raise _invalid("Invalid page token") from None
    if not same:
        raise _invalid("The page token belongs to a request with another filter or orderBy")
    return after
