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
Batch's own reason. With ``aws_cli`` (the default, for now), the wrapper's ``aws s3 cp`` is
served by a small ``aws`` shim on PATH that copies with boto3 against the same moto server
(the test image's AWS CLI); without it, the job's PATH holds no ``aws`` at all.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from tests.emulators.executor import LocalExecutor, LogLine, RunningJob

__all__ = ["BatchExecutor", "Mode"]

Mode = Literal["run", "hold", "park"]
LOG_GROUP = "/aws/batch/job"
TIMEOUT_REASON = "Job attempt duration exceeded timeout"

_SHIM = '''#!{python}
"""A minimal `aws s3 cp SRC DST` for tests, against AWS_ENDPOINT_URL."""
import os, sys
import boto3

args = [a for a in sys.argv[1:] if not a.startswith("--")]
if args[:2] != ["s3", "cp"] or len(args) != 4:
    sys.exit("shim supports only: aws s3 cp SRC DST")
src, dst = args[2], args[3]
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
if src.startswith("s3://"):
    bucket, _, key = src[5:].partition("/")
    try:
        data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as exc:
        sys.exit(f"download failed: {{exc}}")
    with open(dst, "wb") as out:
        out.write(data)
else:
    bucket, _, key = dst[5:].partition("/")
    with open(src, "rb") as f:
        s3.put_object(Bucket=bucket, Key=key, Body=f.read())
'''


@dataclass
class _Job:
    job: Any  # moto's batch Job
    mode: Mode
    started: float
    run: RunningJob | None = None
    exit_code: int | None = None  # once the executor reported it (all its lines were delivered)
    killed: bool = False


class BatchExecutor:
    """Install with :meth:`start` (needs moto's server in this process), remove with :meth:`stop`.

    ``aws_cli``: put the ``aws`` shim on the jobs' PATH; when False, every directory of this
    machine's PATH that holds an ``aws`` is left out too, so the "image" has no AWS CLI.
    ``log_lag``: deliver each log line to CloudWatch that many seconds late (see
    :class:`~tests.emulators.executor.LocalExecutor`); the job may then end before its logs.
    """

    def __init__(
        self,
        endpoint: str,
        workdir: Path,
        region: str = "us-east-1",
        *,
        aws_cli: bool = True,
        log_lag: float = 0.0,
    ) -> None:
        self.endpoint = endpoint
        self.region = region
        self.aws_cli = aws_cli
        self.log_lag = log_lag
        self.modes: dict[str, Mode] = {}
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
        self._thread.start()
        return self

    def stop(self) -> None:
        from moto.batch_simple.models import BatchSimpleBackend

        self._stop.set()
        self._thread.join(timeout=10)
        if self._original is not None:
            BatchSimpleBackend._mark_job_as_finished = self._original  # type: ignore[method-assign]
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

    def _run(self, running: _Job) -> None:
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
            job.job_id, command, env, on_line=on_line, on_exit=on_exit, log_lag=self.log_lag
        )
        self.started_commands += 1

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
            if stream not in self._streams:
                exists = self._logs.exceptions.ResourceAlreadyExistsException
                with contextlib.suppress(exists):
                    self._logs.create_log_group(logGroupName=LOG_GROUP)
                with contextlib.suppress(exists):
                    self._logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
                self._streams.add(stream)
            events = []
            for line in lines:
                stamp = max(int(line.at * 1000), self._last_ms.get(stream, 0))
                self._last_ms[stream] = stamp
                events.append({"timestamp": stamp, "message": line.text})
            for start in range(0, len(events), 5000):
                self._logs.put_log_events(
                    logGroupName=LOG_GROUP, logStreamName=stream, logEvents=events[start : start + 5000]
                )

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
        job._mark_stopped(success=code == 0 and not job.stop)
