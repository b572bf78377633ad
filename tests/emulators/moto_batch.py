"""Plays the container for moto's AWS Batch, so Batch jobs really run their commands in tests.

moto's Batch without Docker (``use_docker: False``) marks every job SUCCEEDED the moment it
is submitted and runs nothing. :class:`BatchExecutor` replaces that one step (the simple
backend's ``_mark_job_as_finished``) while the server runs in this process, and does what
Batch plus the awslogs driver would do, each through moto's own models or APIs:

- ``run`` queues (default): the job goes RUNNING and its container command (the runner's
  generated ``sh`` wrapper, verbatim) runs locally with the job's environment, in its own
  process group; stdout and stderr go, line by line and in order, to CloudWatch Logs
  (``PutLogEvents`` against moto) under ``/aws/batch/job`` and the job's ``logStreamName``;
  when it exits, the exit code is recorded and the job ends SUCCEEDED (0) or FAILED.
- ``hold`` queues: the job stays RUNNABLE (no capacity fits it).
- ``park`` queues: the job stays RUNNING and runs nothing (thousands of cheap jobs).

TerminateJob/CancelJob (moto sets ``job.stop``) kill the process group and end the job
FAILED with the given reason, as Batch does; ``attemptDurationSeconds`` is enforced with
Batch's own reason. The wrapper's ``aws s3 cp`` is served by a small ``aws`` shim on PATH
that copies with boto3 against the same moto server (the test image's AWS CLI).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = ["BatchExecutor", "Mode"]

Mode = Literal["run", "hold", "park"]
LOG_GROUP = "/aws/batch/job"

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
class _Running:
    job: Any
    mode: Mode
    proc: subprocess.Popen[bytes] | None = None
    pending: list[str] = field(default_factory=list)
    open_pipes: int = 2
    started: float = field(default_factory=time.time)
    killed: bool = False
    stream_ready: bool = False


class BatchExecutor:
    """Install with :meth:`start` (needs moto's server in this process), remove with :meth:`stop`."""

    def __init__(self, endpoint: str, workdir: Path, region: str = "us-east-1") -> None:
        self.endpoint = endpoint
        self.region = region
        self.modes: dict[str, Mode] = {}
        self.started_commands = 0
        self._workdir = workdir
        self._jobs: list[_Running] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="moto-batch-executor", daemon=True)
        self._original: Any = None
        self._logs: Any = None
        self._last_ms = 0

    # -- lifecycle

    def start(self) -> BatchExecutor:
        import boto3
        from moto.batch_simple.models import BatchSimpleBackend

        self._set_config(use_docker=False)
        shim_dir = self._workdir / "bin"
        shim_dir.mkdir(parents=True, exist_ok=True)
        shim = shim_dir / "aws"
        shim.write_text(_SHIM.format(python=sys.executable))
        shim.chmod(0o755)
        self._path = f"{shim_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}"
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
        with self._lock:
            for running in self._jobs:
                if running.proc is not None and running.proc.poll() is None:
                    os.killpg(running.proc.pid, signal.SIGKILL)
                    running.proc.wait()
        self._set_config(use_docker=True)

    def _set_config(self, *, use_docker: bool) -> None:
        body = json.dumps({"batch": {"use_docker": use_docker}}).encode()
        request = urllib.request.Request(f"{self.endpoint}/moto-api/config", data=body, method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    # -- what Batch does

    def _accept(self, job: Any) -> None:
        mode = self.modes.get(job.job_queue.arn, "run")
        job._transitions = []  # the state moves only when we say so
        running = _Running(job, mode)
        if mode == "hold":
            job._status = "RUNNABLE"
        else:
            job._status = "RUNNING"
            from datetime import datetime

            job.job_started_at = datetime.now()
            job.log_stream_name = job._stream_name
            job._start_attempt()
            if mode == "run":
                self._spawn(running)
        with self._lock:
            self._jobs.append(running)

    def _spawn(self, running: _Running) -> None:
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
        running.proc = subprocess.Popen(
            command,
            env=env,
            cwd=self._workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,  # like the container runtime: each stream assembled into lines on
            stderr=subprocess.PIPE,  # its own, then both sent to the one CloudWatch stream
            start_new_session=True,
        )
        self.started_commands += 1
        for pipe in (running.proc.stdout, running.proc.stderr):
            threading.Thread(target=self._read, args=(running, pipe), daemon=True).start()

    def _read(self, running: _Running, pipe: Any) -> None:
        for raw in iter(pipe.readline, b""):
            text = raw.decode("utf-8", "replace").rstrip("\n")
            with self._lock:
                running.pending.append(text)
        pipe.close()
        with self._lock:
            running.open_pipes -= 1

    def _flush(self, running: _Running) -> None:
        with self._lock:
            lines, running.pending = running.pending, []
        if not lines:
            return
        job = running.job
        if not running.stream_ready:
            exists = self._logs.exceptions.ResourceAlreadyExistsException
            with contextlib.suppress(exists):
                self._logs.create_log_group(logGroupName=LOG_GROUP)
            with contextlib.suppress(exists):
                self._logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=job.log_stream_name)
            running.stream_ready = True
        for start in range(0, len(lines), 5000):
            now = max(int(time.time() * 1000), self._last_ms)
            self._last_ms = now
            events = [{"timestamp": now, "message": line} for line in lines[start : start + 5000]]
            self._logs.put_log_events(
                logGroupName=LOG_GROUP, logStreamName=job.log_stream_name, logEvents=events
            )

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                jobs = list(self._jobs)
            for running in jobs:
                try:
                    self._tick(running)
                except Exception as exc:  # keep playing the other jobs; show what broke
                    print(f"moto batch executor: {exc!r}", file=sys.stderr)
            self._stop.wait(0.01)

    def _tick(self, running: _Running) -> None:
        job = running.job
        if job.job_stopped:
            with self._lock:
                self._jobs.remove(running)
            return
        duration = (job.timeout or {}).get("attemptDurationSeconds")
        if duration and running.mode != "hold" and time.time() - running.started > duration:
            job.terminate("Job attempt duration exceeded timeout")
        proc = running.proc
        if job.stop and not running.killed:
            running.killed = True
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            elif proc is None:
                job.exit_code = 137 if running.mode == "park" else None
                if job.latest_attempt is not None and job.exit_code is not None:
                    job.latest_attempt["container"]["exitCode"] = job.exit_code
                job._mark_stopped(success=False)
                return
        if proc is None:
            return
        self._flush(running)
        if proc.poll() is not None and running.open_pipes == 0:
            self._flush(running)
            code = proc.returncode
            job.exit_code = 128 - code if code < 0 else code
            if job.latest_attempt is not None:  # moto's describe() shows the exit code only here
                job.latest_attempt["container"]["exitCode"] = job.exit_code
            if job.job_stopped_reason is None:
                job.job_stopped_reason = "Essential container in task exited"
            job._mark_stopped(success=code == 0 and not job.stop)
