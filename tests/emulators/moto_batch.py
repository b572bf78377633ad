"""Plays the container for moto's AWS Batch, so Batch jobs really run their commands in tests.

moto's Batch without Docker (``use_docker: False``) marks every job SUCCEEDED the moment it
is submitted and runs nothing. :class:`BatchExecutor` replaces that one step (the simple
backend's ``_mark_job_as_finished``) while the server runs in this process, and does what
Batch plus the awslogs driver would do, each through moto's own models or APIs:

- ``run`` queues (default): the job goes RUNNING and its container command (the runner's
  generated ``sh`` wrapper, verbatim) runs through the kit's
  :class:`~tests.emulators.executor.LocalExecutor` with the job's environment, in its own
  process group; stdout and stderr go, line by line and in order, to CloudWatch Logs
  (``PutLogEvents`` against moto, stamped when each line was written) under
  ``/aws/batch/job`` and the job's ``logStreamName``; when it exits, the exit code is
  recorded and the job ends SUCCEEDED (0) or FAILED, after its lines were sent (unless
  ``log_lag`` asks for late logs, as CloudWatch's ingestion delay gives).
- ``hold`` queues: the job stays RUNNABLE (no capacity fits it).
- ``park`` queues: the job stays RUNNING and runs nothing (thousands of cheap jobs).

TerminateJob/CancelJob (moto sets ``job.stop``) kill the process group and end the job
FAILED with the given reason, as Batch does; ``attemptDurationSeconds`` is enforced with
Batch's own reason. Images are played by PATH: a container of the official AWS CLI image
(``public.ecr.aws/aws-cli/...``, the runner's staging containers) runs ``aws`` as its entry
point, a small shim on its PATH that copies with boto3 against the same moto server; any
other image (the user's) has no ``aws`` at all, unless ``aws_cli=True`` puts the shim there.

ECS multi-container jobs (``ecsProperties``, which moto 5.2.5 does not model): the
definition and the override are kept beside moto's job, the containers run one after the
other in ``dependsOn`` order through the executor, sharing one volume directory, each with
its own log stream; the job is SUCCEEDED when every essential container exited 0 (its exit
code is the first essential one that did not), and DescribeJobs shows each container's exit
code and stream under ``ecsProperties`` and ``attempts[].taskProperties``.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import shutil
import sys
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from tests.emulators.executor import LocalExecutor, LogLine, Mount, RunningJob

__all__ = ["BatchExecutor", "BatchIndex", "Mode", "Outcome", "batch_state_change", "create_queues"]

Mode = Literal["run", "hold", "park"]
LOG_GROUP = "/aws/batch/job"
TIMEOUT_REASON = "Job attempt duration exceeded timeout"

_SHIM = '''#!{python}
"""The AWS CLI slice the staging image uses: `aws s3 cp [--recursive] [--exclude P] [--include P] SRC DST`.

Copies with boto3 against AWS_ENDPOINT_URL. Like the real CLI, a failed file is reported on
stderr ("upload failed: ..." / "download failed: ...") and the exit code is 1.
"""
import fnmatch, os, sys
import boto3

argv = sys.argv[1:]
if argv[:2] != ["s3", "cp"]:
    sys.exit("shim supports only: aws s3 cp")
paths, filters, recursive = [], [], False
i = 2
while i < len(argv):
    arg = argv[i]
    if arg in ("--exclude", "--include"):
        filters.append((arg, argv[i + 1]))
        i += 2
        continue
    if arg == "--recursive":
        recursive = True
    elif not arg.startswith("--"):
        paths.append(arg)
    i += 1
src, dst = paths
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")


def wanted(rel):
    keep = True
    for kind, pattern in filters:  # later filters win, as in the CLI
        if fnmatch.fnmatchcase(rel, pattern):
            keep = kind == "--include"
    return keep


def split(uri):
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


failed = False
pairs = []
if src.startswith("s3://"):
    bucket, prefix = split(src)
    if recursive:
        try:
            pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
        except Exception as exc:
            sys.exit(f"fatal error: {{exc}}")
        pairs = [(k, os.path.join(dst, k[len(prefix):])) for k in keys if wanted(k[len(prefix):])]
    else:
        pairs = [(prefix, dst)]
    for key, path in pairs:
        try:
            data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            with open(path, "wb") as out:
                out.write(data)
        except Exception as exc:
            print(f"download failed: s3://{{bucket}}/{{key}} to {{path}} {{exc}}", file=sys.stderr)
            failed = True
else:
    bucket, prefix = split(dst)
    if recursive:
        for root, _dirs, files in os.walk(src):
            for name in files:
                path = os.path.join(root, name)
                rel = os.path.relpath(path, src)
                if wanted(rel):
                    pairs.append((path, prefix + rel))
    else:
        pairs = [(src, prefix)]
    for path, key in sorted(pairs):
        try:
            with open(path, "rb") as f:
                s3.put_object(Bucket=bucket, Key=key, Body=f.read())
        except Exception as exc:
            print(f"upload failed: {{path}} to s3://{{bucket}}/{{key}} {{exc}}", file=sys.stderr)
            failed = True
sys.exit(1 if failed else 0)
'''


@dataclass
class _Job:
    job: Any  # moto's batch Job
    mode: Mode
    started: float
    run: RunningJob | None = None
    exit_code: int | None = None  # once the executor reported it (all its lines were delivered)
    killed: bool = False
    containers: list[dict[str, Any]] = field(default_factory=list)  # an ECS job's, in run order


@dataclass(frozen=True)
class Outcome:
    """How Batch itself ends a job, whatever its command: a test provokes a failure class with it.

    ``reason`` is the ``statusReason`` Batch would give (a reclaimed spot host, an image it
    cannot pull...); ``started`` says whether the job got as far as RUNNING first.
    """

    reason: str
    exit_code: int | None = None
    started: bool = False


_pending_ecs = threading.local()
"""The ``ecsPropertiesOverride`` of the SubmitJob being handled on this thread (moto drops it)."""


class BatchExecutor:
    """Install with :meth:`start` (needs moto's server in this process), remove with :meth:`stop`.

    ``aws_cli``: put the ``aws`` shim on the jobs' PATH; when False, every directory of this
    machine's PATH that holds an ``aws`` is left out too, so the "image" has no AWS CLI.
    ``log_lag``: deliver each log line to CloudWatch that many seconds late (see
    :class:`~tests.emulators.executor.LocalExecutor`); the job may then end before its logs.
    ``direct_logs``: hand the lines to moto's CloudWatch Logs backend in this process instead
    of through its HTTP API (as Batch's log driver, not a client, writes them): the same
    streams and events, without three requests per job for the server to parse; for long
    benchmarks, where those requests were a large share of the emulators' CPU.
    """

    def __init__(
        self,
        endpoint: str,
        workdir: Path,
        region: str = "us-east-1",
        *,
        aws_cli: bool = False,
        log_lag: float = 0.0,
        direct_logs: bool = False,
    ) -> None:
        self.endpoint = endpoint
        self.direct_logs = direct_logs
        self.region = region
        self.aws_cli = aws_cli
        self.log_lag = log_lag
        self.modes: dict[str, Mode] = {}
        self.lags: dict[str, float] = {}
        """Job queue ARN -> ``log_lag`` for that queue's jobs (others get ``log_lag``)."""
        self.outcomes: dict[str, Outcome] = {}
        """Batch job name -> how Batch ends that job instead of running it (taken once)."""
        self.started_commands = 0
        self._workdir = workdir
        self._executor = LocalExecutor(workdir / "jobs")
        self._jobs: list[_Job] = []
        self._pending: list[tuple[str, LogLine]] = []  # (log stream, line) not yet sent
        self._streams: set[str] = set()  # log streams created
        self._last_ms: dict[str, int] = {}  # per log stream: CloudWatch wants events in order
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="moto-batch-executor", daemon=True)
        self._original: Any = None
        self._logs: Any = None
        self._path = ""

    # -- lifecycle

    def start(self) -> BatchExecutor:
        import boto3
        from moto.batch_simple.models import BatchSimpleBackend

        self._set_config(use_docker=False)
        self._path = self._job_path()
        self._logs = boto3.client(
            "logs",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        self._original = BatchSimpleBackend._mark_job_as_finished
        executor = self

        def accept(backend: Any, include_start_attempt: bool, job: Any) -> None:
            backend.backend._jobs[job.job_id] = job
            executor._accept(job)

        BatchSimpleBackend._mark_job_as_finished = accept  # type: ignore[method-assign]
        self._patch_ecs()
        self._thread.start()
        return self

    def _patch_ecs(self) -> None:
        """Teach moto (5.2.5) ECS multi-container jobs: it refuses ``ecsProperties`` definitions
        and drops ``ecsPropertiesOverride``. The definition is registered with its main
        container as ``containerProperties`` and keeps the ECS document beside it; describe
        calls show the ECS shape (``ecsProperties``, ``attempts[].taskProperties``)."""
        from moto.batch.models import Job, JobDefinition
        from moto.batch.responses import BatchResponse

        originals = (
            BatchResponse.registerjobdefinition,
            BatchResponse.submitjob,
            JobDefinition.describe,
            Job.describe,
        )
        self._ecs_originals = originals
        register, submit, describe_def, describe_job = originals

        def registerjobdefinition(response: Any) -> str:
            body = json.loads(response.body or "{}")
            ecs = body.pop("ecsProperties", None)
            if ecs is None:
                return register(response)
            containers = ecs["taskProperties"][0]["containers"]
            main = next((c for c in containers if c.get("resourceRequirements")), containers[0])
            body["containerProperties"] = {
                "image": main["image"],
                "command": main.get("command") or [],
                "resourceRequirements": main.get("resourceRequirements") or [],
            }
            response.body = json.dumps(body)
            reply = register(response)
            arn = json.loads(reply)["jobDefinitionArn"]
            response.batch_backend.get_job_definition_by_arn(arn).ecs_properties = ecs
            return reply

        def submitjob(response: Any) -> str:
            _pending_ecs.value = json.loads(response.body or "{}").get("ecsPropertiesOverride")
            try:
                return submit(response)
            finally:
                _pending_ecs.value = None

        def definition_describe(definition: Any) -> dict[str, Any]:
            result = describe_def(definition)
            ecs = getattr(definition, "ecs_properties", None)
            if ecs is not None:
                result.pop("containerProperties", None)
                result["ecsProperties"] = ecs
            return result

        def job_describe(job: Any) -> dict[str, Any]:
            result = describe_job(job)
            containers = getattr(job, "squall_containers", None)
            if containers is not None:
                shown = [dict(c["detail"]) for c in containers]
                result.pop("container", None)
                result["ecsProperties"] = {"taskProperties": [{"containers": shown}]}
                result["attempts"] = [
                    {
                        **{k: v for k, v in attempt.items() if k != "container"},
                        "taskProperties": [{"containers": shown}],
                    }
                    for attempt in result.get("attempts") or []
                ]
            return result

        BatchResponse.registerjobdefinition = registerjobdefinition  # type: ignore[method-assign]
        BatchResponse.submitjob = submitjob  # type: ignore[method-assign]
        JobDefinition.describe = definition_describe  # type: ignore[method-assign]
        Job.describe = job_describe  # type: ignore[method-assign]

    def _unpatch_ecs(self) -> None:
        from moto.batch.models import Job, JobDefinition
        from moto.batch.responses import BatchResponse

        originals = getattr(self, "_ecs_originals", None)
        if originals is None:
            return
        (
            BatchResponse.registerjobdefinition,  # type: ignore[method-assign]
            BatchResponse.submitjob,  # type: ignore[method-assign]
            JobDefinition.describe,  # type: ignore[method-assign]
            Job.describe,  # type: ignore[method-assign]
        ) = originals

    def stop(self) -> None:
        from moto.batch_simple.models import BatchSimpleBackend

        self._stop.set()
        self._thread.join(timeout=10)
        if self._original is not None:
            BatchSimpleBackend._mark_job_as_finished = self._original  # type: ignore[method-assign]
        self._unpatch_ecs()
        try:
            self._executor.stop()
        finally:
            self._set_config(use_docker=True)

    def _set_config(self, *, use_docker: bool) -> None:
        body = json.dumps({"batch": {"use_docker": use_docker}}).encode()
        request = urllib.request.Request(f"{self.endpoint}/moto-api/config", data=body, method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def _job_path(self) -> str:
        host = os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep)
        if self.aws_cli:
            shim_dir = self._workdir / "bin"
            shim_dir.mkdir(parents=True, exist_ok=True)
            shim = shim_dir / "aws"
            shim.write_text(_SHIM.format(python=sys.executable))
            shim.chmod(0o755)
            return os.pathsep.join([str(shim_dir), *host])
        return os.pathsep.join(d for d in host if d and not os.access(Path(d) / "aws", os.X_OK))

    # -- what Batch does

    def _accept(self, job: Any) -> None:
        mode = self.modes.get(job.job_queue.arn, "run")
        job._transitions = []  # the state moves only when we say so
        running = _Job(job, mode, time.time())
        ecs = getattr(job.job_definition, "ecs_properties", None)
        if ecs is not None:
            running.containers = self._ecs_containers(job, ecs, getattr(_pending_ecs, "value", None))
            job.squall_containers = running.containers
        outcome = self.outcomes.pop(job.job_name, None)
        if outcome is not None:
            self._end_as(job, outcome)
            return
        if mode == "hold":
            job._status = "RUNNABLE"
        else:
            job._status = "RUNNING"
            job.job_started_at = datetime.now()
            job.log_stream_name = job._stream_name
            job._start_attempt()
            if mode == "run":
                self._run(running)
        with self._lock:
            self._jobs.append(running)

    def _lag(self, job: Any) -> float:
        return self.lags.get(job.job_queue.arn, self.log_lag)

    def _end_as(self, job: Any, outcome: Outcome) -> None:
        if outcome.started:
            job._status = "RUNNING"
            job.job_started_at = datetime.now()
            job.log_stream_name = job._stream_name
            job._start_attempt()
        job.exit_code = outcome.exit_code
        if job.latest_attempt is not None and outcome.exit_code is not None:
            job.latest_attempt["container"]["exitCode"] = outcome.exit_code
        job.job_stopped_reason = outcome.reason
        job._mark_stopped(success=False)

    def _ecs_containers(
        self, job: Any, ecs: dict[str, Any], override: dict[str, Any] | None
    ) -> list[dict[str, Any]]:
        """The task's containers in ``dependsOn`` order, each with its overridden command and env."""
        task = ecs["taskProperties"][0]
        changes = {
            c["name"]: c for c in ((override or {}).get("taskProperties") or [{}])[0].get("containers") or []
        }
        pending = [dict(c) for c in task["containers"]]
        ordered: list[dict[str, Any]] = []
        while pending:
            done = {c["name"] for c in ordered}
            ready = next(c for c in pending if {d["containerName"] for d in c.get("dependsOn") or []} <= done)
            pending.remove(ready)
            ordered.append(ready)
        volume = self._workdir / "volumes" / job.job_id
        volume.mkdir(parents=True, exist_ok=True)
        out = []
        for spec in ordered:
            change = changes.get(spec["name"], {})
            stream = f"squall/{spec['name']}/{job.job_id}"
            out.append(
                {
                    "spec": spec,
                    "command": change.get("command") or spec.get("command") or [],
                    "environment": [*(spec.get("environment") or []), *(change.get("environment") or [])],
                    "volume": volume,
                    "detail": {"name": spec["name"], "image": spec["image"], "logStreamName": stream},
                }
            )
        return out

    def _run(self, running: _Job) -> None:
        if running.containers:
            self._run_container(running, 0)
            return
        job = running.job
        overrides = job.container_overrides or {}
        command = overrides.get("command") or job.job_definition.container_properties.get("command")
        env = {
            "PATH": self._path,
            "HOME": str(self._workdir),
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_BATCH_JOB_ID": job.job_id,
            "TMPDIR": str(self._workdir),
        }
        env.update({item["name"]: item["value"] for item in overrides.get("environment") or []})
        stream = job.log_stream_name

        def on_line(line: LogLine) -> None:
            with self._lock:
                self._pending.append((stream, line))

        def on_exit(code: int) -> None:
            with self._lock:
                running.exit_code = code

        running.run = self._executor.start(
            job.job_id, command, env, on_line=on_line, on_exit=on_exit, log_lag=self._lag(job)
        )
        self.started_commands += 1

    def _run_container(self, running: _Job, index: int) -> None:
        """Run the task's container ``index``; when it exits, the next (all of them: ``COMPLETE``).

        An image is played by its PATH: the AWS CLI image (the staging containers) has the
        ``aws`` shim, which it runs as its entry point; the user's image has no ``aws``. The
        volume is one directory, copied into each container's mount and back after it.
        """
        job = running.job
        container = running.containers[index]
        spec = container["spec"]
        cli = spec["image"].startswith("public.ecr.aws/aws-cli/")
        command = (["aws"] if cli else []) + list(container["command"])
        env = {
            "PATH": self._cli_path() if cli else self._path,
            "HOME": str(self._workdir),
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_BATCH_JOB_ID": job.job_id,
            "TMPDIR": str(self._workdir),
        }
        env.update({item["name"]: item["value"] for item in container["environment"]})
        volume: Path = container["volume"]
        mounts = [
            Mount(
                point["containerPath"],
                lambda local, v=volume: shutil.copytree(v, local, dirs_exist_ok=True),
                lambda local, v=volume: shutil.copytree(local, v, dirs_exist_ok=True),
            )
            for point in spec.get("mountPoints") or []
        ]
        stream = container["detail"]["logStreamName"]

        def on_line(line: LogLine) -> None:
            with self._lock:
                self._pending.append((stream, line))

        def on_exit(code: int) -> None:
            container["detail"]["exitCode"] = code
            last = index == len(running.containers) - 1
            if last or job.stop:
                essential = [c for c in running.containers if c["spec"].get("essential", True)]
                failed = [c for c in essential if c["detail"].get("exitCode") != 0]
                with self._lock:
                    running.exit_code = (failed or essential)[0]["detail"].get("exitCode", 137)
                return
            self._run_container(running, index + 1)

        running.run = self._executor.start(
            f"{job.job_id}-{spec['name']}",
            command,
            env,
            on_line=on_line,
            on_exit=on_exit,
            log_lag=self._lag(job),
            mounts=mounts,
        )
        self.started_commands += 1

    def _cli_path(self) -> str:
        shim_dir = self._workdir / "bin"
        shim_dir.mkdir(parents=True, exist_ok=True)
        shim = shim_dir / "aws"
        if not shim.exists():
            shim.write_text(_SHIM.format(python=sys.executable))
            shim.chmod(0o755)
        return os.pathsep.join([str(shim_dir), os.environ.get("PATH", "/usr/bin:/bin")])

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                jobs = list(self._jobs)
                # Read before sending: every line of an exited job is then in this round's batch.
                exited = [(running, running.exit_code) for running in jobs if running.exit_code is not None]
            for step in (*(lambda r=r: self._police(r) for r in jobs), self._flush):
                try:
                    step()
                except Exception as exc:  # keep playing the other jobs; show what broke
                    print(f"moto batch executor: {exc!r}", file=sys.stderr)
            for running, code in exited:
                self._finish(running, code)
            self._stop.wait(0.01)

    def _police(self, running: _Job) -> None:
        """Enforce what moto only records: a stop request, the attempt's time limit."""
        job = running.job
        if job.job_stopped:
            with self._lock:
                self._jobs.remove(running)
            return
        duration = (job.timeout or {}).get("attemptDurationSeconds")
        if duration and running.mode != "hold" and time.time() - running.started > duration:
            job.terminate(TIMEOUT_REASON)
        if job.stop and not running.killed:
            running.killed = True
            if running.run is not None:
                running.run.kill()  # the job ends when the executor reports the exit (137)
            else:
                job.exit_code = 137 if running.mode == "park" else None
                if job.latest_attempt is not None and job.exit_code is not None:
                    job.latest_attempt["container"]["exitCode"] = job.exit_code
                job._mark_stopped(success=False)

    def _flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        by_stream: dict[str, list[LogLine]] = {}
        for stream, line in pending:
            by_stream.setdefault(stream, []).append(line)
        for stream, lines in by_stream.items():
            if self.direct_logs:
                self._put_direct(stream, lines)
                continue
            if stream not in self._streams:
                exists = self._logs.exceptions.ResourceAlreadyExistsException
                with contextlib.suppress(exists):
                    self._logs.create_log_group(logGroupName=LOG_GROUP)
                with contextlib.suppress(exists):
                    self._logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
                self._streams.add(stream)
            events = self._events(stream, lines)
            for start in range(0, len(events), 5000):
                self._logs.put_log_events(
                    logGroupName=LOG_GROUP, logStreamName=stream, logEvents=events[start : start + 5000]
                )

    def _events(self, stream: str, lines: list[LogLine]) -> list[dict[str, Any]]:
        """CloudWatch's events for ``lines``: in order, as it wants them within a stream."""
        events = []
        for line in lines:
            stamp = max(int(line.at * 1000), self._last_ms.get(stream, 0))
            self._last_ms[stream] = stamp
            events.append({"timestamp": stamp, "message": line.text})
        return events

    def _put_direct(self, stream: str, lines: list[LogLine]) -> None:
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.logs.models import logs_backends

        backend = logs_backends[DEFAULT_ACCOUNT_ID][self.region]
        if stream not in self._streams:
            if LOG_GROUP not in backend.groups:
                backend.create_log_group(LOG_GROUP, {})
            if stream not in backend.groups[LOG_GROUP].streams:
                backend.create_log_stream(LOG_GROUP, stream)
            self._streams.add(stream)
        events = self._events(stream, lines)
        backend.put_log_events(LOG_GROUP, stream, events)

    def _finish(self, running: _Job, code: int) -> None:
        job = running.job
        with self._lock:
            self._jobs.remove(running)
        if job.job_stopped:
            return
        job.exit_code = code
        if job.latest_attempt is not None:  # moto's describe() shows the exit code only here
            job.latest_attempt["container"]["exitCode"] = code
        if job.job_stopped_reason is None:
            job.job_stopped_reason = "Essential container in task exited"
        # An ECS job: SUCCEEDED when every essential container exited 0 (code is the first that did not).
        job._mark_stopped(success=code == 0 and not job.stop)


def batch_state_change(job: dict[str, Any]) -> dict[str, Any]:
    """The "Batch Job State Change" EventBridge delivers for ``job`` (as DescribeJobs shows it);
    region and account are the job ARN's."""
    _, _, _, region, account, _ = str(job["jobArn"]).split(":", 5)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Batch Job State Change",
        "source": "aws.batch",
        "account": account,
        "time": datetime.now(UTC).isoformat(),
        "region": region,
        "resources": [job["jobArn"]],
        "detail": job,
    }


def create_queues(iam: Any, batch: Any, prefix: str, kinds: tuple[str, ...] = ("run",)) -> dict[str, str]:
    """Job queue ARNs by kind, on one new unmanaged compute environment (moto's IAM and Batch
    clients): what every test and benchmark that submits through moto's Batch sets up first.
    Names are ``<prefix>-<suffix>`` for the compute environment, ``<prefix>-<kind>-<suffix>``
    for a queue, so several setups on one server never collide."""
    suffix = uuid.uuid4().hex[:8]
    role = iam.create_role(RoleName=f"batch-{suffix}", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    ce = batch.create_compute_environment(
        computeEnvironmentName=f"{prefix}-{suffix}", type="UNMANAGED", state="ENABLED", serviceRole=role
    )["computeEnvironmentArn"]
    return {
        kind: batch.create_job_queue(
            jobQueueName=f"{prefix}-{kind}-{suffix}",
            state="ENABLED",
            priority=1,
            computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce}],
        )["jobQueueArn"]
        for kind in kinds
    }


class BatchIndex:
    """Makes moto's Batch answer by key what it answers by scanning (needs its server in this process).

    moto 5's ``ListJobs`` walks every job of the queue and ``DescribeJobs`` every job of the
    account, whatever the filter, so at N jobs each submit of the AWS Batch runner (``ListJobs``
    by exact name, twice) and each 100-id ``DescribeJobs`` costs O(N): a 5,000-item fan-out
    took 18.5 minutes, mostly moto's. Real Batch answers both by index; so does this patch: an
    exact ``JOB_NAME`` filter (one value, no ``*``) is looked up in a per-queue dict and a list
    of job ids in moto's own dict of jobs. Anything else (wildcards, statuses, ARNs, array
    jobs) goes to moto's code unchanged. ``stopped`` receives each job's id once, when it first
    reaches a terminal state (the moment Batch would send its terminal state-change event), so
    a harness hands events over without listing the queue. A context manager, or
    :meth:`install` then :meth:`remove`.
    """

    def __init__(self) -> None:
        self.stopped: collections.deque[str] = collections.deque()
        self._by_name: dict[
            int, tuple[int, dict[str, list[Any]]]
        ] = {}  # id(queue) -> (jobs seen, name -> jobs)
        self._originals: tuple[Any, Any, Any] | None = None

    def __enter__(self) -> BatchIndex:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def install(self) -> BatchIndex:
        from moto.batch.models import BatchBackend, Job

        self._originals = (BatchBackend.list_jobs, BatchBackend.describe_jobs, Job._mark_stopped)
        list_jobs, describe_jobs, mark_stopped = self._originals
        index = self

        def indexed_list(
            backend: Any, job_queue_name: Any, array_job_id: Any, job_status: Any = None, filters: Any = None
        ) -> Any:
            name = _exact_name(filters)
            queue = backend.get_job_queue(job_queue_name) if job_queue_name and not array_job_id else None
            if name is None or queue is None:
                return list_jobs(backend, job_queue_name, array_job_id, job_status, filters)
            return list(index._named(queue).get(name.lower(), []))

        def indexed_describe(backend: Any, jobs: Any) -> Any:
            found = [backend._jobs.get(job_id) for job_id in jobs or ()]
            if not found or any(job is None for job in found):
                return describe_jobs(backend, jobs)
            return [job.describe() for job in dict.fromkeys(found)]

        def stop_heard(job: Any, success: bool = True) -> None:
            first = not job.job_stopped
            mark_stopped(job, success)
            if first:
                index.stopped.append(job.job_id)

        BatchBackend.list_jobs = indexed_list  # type: ignore[method-assign]
        BatchBackend.describe_jobs = indexed_describe  # type: ignore[method-assign]
        Job._mark_stopped = stop_heard  # type: ignore[method-assign]
        return self

    def remove(self) -> None:
        from moto.batch.models import BatchBackend, Job

        if self._originals is not None:
            BatchBackend.list_jobs, BatchBackend.describe_jobs, Job._mark_stopped = self._originals  # type: ignore[method-assign]
            self._originals = None

    def _named(self, queue: Any) -> dict[str, list[Any]]:
        """The queue's jobs by lower-cased name (moto compares names so), brought up to date."""
        seen, names = self._by_name.get(id(queue), (0, {}))
        jobs = list(queue.jobs)  # moto only appends; the server's threads may append meanwhile
        for job in jobs[seen:]:
            names.setdefault(job.job_name.lower(), []).append(job)
        self._by_name[id(queue)] = (len(jobs), names)
        return names

    @staticmethod
    def jobs_in(queue_arn: str) -> int:
        """Jobs submitted to the queue so far, whatever their status (no ListJobs scan)."""
        from moto.batch.models import batch_backends

        _, _, _, region, account, _ = queue_arn.split(":", 5)
        queue = batch_backends[account][region].get_job_queue(queue_arn)
        return len(queue.jobs) if queue is not None else 0


def _exact_name(filters: Any) -> str | None:
    if not filters or len(filters) != 1 or filters[0].get("name") != "JOB_NAME":
        return None
    values = filters[0].get("values") or []
    return str(values[0]) if len(values) == 1 and not str(values[0]).endswith("*") else None
