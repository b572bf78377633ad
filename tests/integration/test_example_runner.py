"""A complete, minimal runner written only against the contract: start a new backend from here.

Read it top down. ``ToyCloud`` stands in for your backend's API: a batch service with a job table
keyed by the job's name (its idempotency key), ids it makes up, a run-time timeout, cancel with
a tombstone, batched status, paged logs, its own file staging and push events; it really runs
each command on this machine (``LocalExecutor``). ``ToyRunner`` is what a third-party author
writes: it imports ``runners.base``, ``runners.retry`` and ``runners.testing``, never
``control_plane``, calls the cloud only through its API and each call through ``runners.retry``,
and maps the cloud's states and codes to neutral ones in one place (``_status``).
``TestToyRunner`` proves it: the whole contract suite, fed by fixtures (docs/runners/README.md).
"""

from __future__ import annotations

import bisect
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote, urlparse

import msgspec
import pytest

from runners import retry
from runners.base import (
    Failure,
    JobEvent,
    JobHandle,
    JobNotFoundError,
    JobSpec,
    JobState,
    JobStatus,
    LogChunk,
    LogRecord,
    PushEvent,
    Runner,
    RunnerOptions,
    validate_options,
)
from runners.testing import CallCounter, RunnerContract, count_local_processes
from tests.emulators.executor import LocalExecutor, LogLine

# ------------------------------------------------------------------ the backend


class ToyCloudError(Exception):
    """An error answer of the cloud's API with its HTTP-like status: 429 and 503 may pass."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status} {message}")
        self.status = status


@dataclass
class _Job:
    id: str
    name: str
    request: Mapping[str, Any]
    dir: Path
    state: str = "PENDING"  # then RUNNING, then ENDED
    code: str | None = None  # why it ended: EXIT, CANNOT_START, STAGING_FAILED, UPLOAD_FAILED...
    reason: str | None = None
    exit_code: int | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    started: float | None = None
    ended: float | None = None
    lines: list[tuple[str, str, float]] = field(default_factory=list)  # (stream, text, written at)
    timer: threading.Timer | None = None


_PUBLIC = ("id", "name", "state", "code", "reason", "exit_code", "started", "ended")


class ToyCloud:
    """A batch service in one object. Its API: ``create``, ``lookup``, ``describe``, ``cancel``,
    ``read_logs``, and the body of the event it pushes (``event``); errors are ToyCloudError.

    What it guarantees, and a runner may rely on: ``create`` of an existing name returns that
    job (as a 409 would); it stages a job's files in and out itself (as Azure Batch's resource
    and output files do) and fails the job with STAGING_FAILED or UPLOAD_FAILED when it cannot;
    ``cancel`` returns once the job has ended, and its code stays CANCELLED; a log line becomes
    readable ``log_lag`` seconds after it was written (ingestion), and a log page says ``final``
    once the job has ended and every line it wrote is readable.
    """

    def __init__(self, root: Path, *, log_lag: float = 0.0) -> None:
        self.root, self.log_lag = root, log_lag
        self._executor = LocalExecutor(root / "executor")
        self._lock = threading.Lock()  # held by every call: create is atomic, one job per name
        self._jobs: dict[str, _Job] = {}  # by name, the idempotency key
        self._ids: dict[str, _Job] = {}

    def create(self, request: Mapping[str, Any]) -> dict[str, Any]:
        with self._lock:
            job = self._jobs.get(request["name"])
            if job is None:
                job = _Job(
                    uuid.uuid4().hex[:12], request["name"], request, self.root / "jobs" / request["name"]
                )
                self._jobs[job.name] = self._ids[job.id] = job
                if not request["hold"]:  # a held job stays PENDING, as in a queue that never has room
                    self._start(job)
            return self._doc(job)

    def lookup(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            job = self._jobs.get(name)
            return self._doc(job) if job else None

    def describe(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        """Up to 100 jobs in one call; ids it does not know are left out."""
        if len(ids) > 100:
            raise ToyCloudError(400, "describe takes at most 100 ids")
        with self._lock:
            return [self._doc(self._ids[i]) for i in ids if i in self._ids]

    def cancel(self, job_id: str) -> None:
        with self._lock:
            job = self._get(job_id)
            if job.state == "ENDED":
                return
            job.code, job.reason = "CANCELLED", "cancelled on request"  # the tombstone, kept for good
            if job.state == "PENDING":
                return self._end(job)
            self._executor.kill(job.id)
        self._executor.job(job.id).wait(10.0)

    def read_logs(self, job_id: str, start: int, limit: int) -> dict[str, Any]:
        with self._lock:
            job = self._get(job_id)
            readable = bisect.bisect_right(job.lines, time.time() - self.log_lag, key=lambda line: line[2])
            final = job.state == "ENDED" and readable == len(job.lines)
            return {"lines": job.lines[start : min(start + limit, readable)], "end": readable, "final": final}

    def event(self, job_id: str) -> dict[str, Any]:
        """The body the cloud pushes to its webhook when the job changes state."""
        with self._lock:
            return {"type": "toy.job", "job": self._doc(self._get(job_id))}

    def close(self) -> None:
        self._executor.stop()  # raises what the callbacks below raised: a bug here fails the test

    # -- inside the cloud, under self._lock

    def _start(self, job: _Job) -> None:
        work, out = job.dir / "work", job.dir / "out"
        work.mkdir(parents=True)
        out.mkdir()
        for rel, source in {**job.request["files"], **job.request["inputs"]}.items():
            try:
                (work / rel).parent.mkdir(parents=True, exist_ok=True)
                (work / rel).write_bytes(source if isinstance(source, bytes) else _local(source).read_bytes())
            except (OSError, ValueError) as exc:
                job.code, job.reason = "STAGING_FAILED", f"cannot stage {rel}: {exc}"
                return self._end(job)
        job.state, job.started = "RUNNING", time.time()
        if job.request["timeout_s"] is not None:  # run time only: the clock starts now
            job.timer = threading.Timer(job.request["timeout_s"], self._expire, (job,))
            job.timer.daemon = True
            job.timer.start()
        env = {**job.request["env"], "WORKING_DIR": str(work), "OUTPUT_DIR": str(out)}
        on_line, on_exit = partial(self._line, job), partial(self._exited, job)
        self._executor.start(
            job.id, job.request["command"], env, cwd=str(work), on_line=on_line, on_exit=on_exit
        )

    def _line(self, job: _Job, line: LogLine) -> None:
        with self._lock:
            job.lines.append((line.stream.value, line.text, line.at))

    def _expire(self, job: _Job) -> None:
        with self._lock:
            if job.state == "RUNNING" and job.code is None:
                job.code, job.reason = "TIMED_OUT", f"timed out after {job.request['timeout_s']:g}s"
                self._executor.kill(job.id)

    def _exited(self, job: _Job, code: int) -> None:
        with self._lock:
            job.exit_code = code
            if job.timer:
                job.timer.cancel()
            if job.code is None and self._executor.job(job.id).pid is None:  # argv[0] could not run
                stderr = [text for stream, text, _ in job.lines if stream == "stderr"]
                job.code, job.reason = "CANNOT_START", stderr[-1] if stderr else f"exit {code}"
            elif job.code is None:
                job.code, job.reason = "EXIT", f"exit {code}"
                self._upload(job)
            self._end(job)

    def _upload(self, job: _Job) -> None:
        """Copy the ``outputs`` globs and all of OUTPUT_DIR under ``output_prefix``/<name>/."""
        if job.request["output_prefix"] is None:
            return
        work, out = job.dir / "work", job.dir / "out"
        found = {str(p.relative_to(work)): p for g in job.request["outputs"] for p in work.glob(g)}
        found |= {str(p.relative_to(out)): p for p in out.rglob("*")}
        for rel, path in sorted(found.items()):
            if not path.is_file():
                continue
            try:
                target = _local(job.request["output_prefix"]) / job.name / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
            except (OSError, ValueError) as exc:
                job.code, job.reason = "UPLOAD_FAILED", f"cannot copy {rel} to the output prefix: {exc}"
                return
            job.outputs[rel] = target.as_uri()

    def _end(self, job: _Job) -> None:
        job.state, job.ended = "ENDED", time.time()
        shutil.rmtree(job.dir, ignore_errors=True)  # as a container's disk: outputs are uploaded

    def _get(self, job_id: str) -> _Job:
        if job_id not in self._ids:
            raise ToyCloudError(404, f"no job {job_id!r}")
        return self._ids[job_id]

    def _doc(self, job: _Job) -> dict[str, Any]:
        return {key: getattr(job, key) for key in _PUBLIC} | {"outputs": dict(job.outputs)}


def _local(uri: str) -> Path:
    """The path of a ``file://`` URI: the toy cloud's storage is this machine's disk."""
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        raise ValueError(f"{uri}: the toy cloud reads and writes file:// URIs only")
    return Path(unquote(parsed.path))


# ------------------------------------------------------------------ the runner


@retry.register_classifier(runner="toy")  # scoped: asked about the toy runner's calls only
def _classify(exc: BaseException) -> bool | None:
    """Throttling and unavailability pass; every other answer of the cloud is final.

    (A runner over a real SDK recognises its error classes by module and name instead, so that
    importing the runner imports no SDK.)"""
    return exc.status in (429, 503) if isinstance(exc, ToyCloudError) else None


Wire = Callable[[str, Callable[[], Any]], Any]
"""How a request reaches the cloud: ``wire(operation, send)`` calls ``send()``. Tests put faults
here (httpx's transport seam): an error before ``send`` is a request that never arrived, one
after it a response lost on the way back."""


def _direct(operation: str, send: Callable[[], Any]) -> Any:
    return send()


class ToyOptions(RunnerOptions):
    """The ``taskRunner`` block of a toy job."""

    hold: bool = False
    """Keep the job queued until it is cancelled (stands for a queue that never has room)."""


_ENDS = {  # the cloud's end codes, mapped once: who is at fault decides who pays for a retry
    "EXIT": (JobState.FAILED, Failure.USER),  # a non-zero exit code; 0 is success
    "TIMED_OUT": (JobState.FAILED, Failure.TIMEOUT),
    "CANCELLED": (JobState.CANCELLED, Failure.CANCELLED),
    "CANNOT_START": (JobState.FAILED, Failure.CONFIG),  # argv[0] missing: running it again cannot help
    "STAGING_FAILED": (JobState.FAILED, Failure.CONFIG),
    "UPLOAD_FAILED": (JobState.FAILED, Failure.CONFIG),
}


def _time(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


def _status(job: Mapping[str, Any]) -> JobStatus:
    """The cloud's job document in neutral terms."""
    started, ended = _time(job["started"]), _time(job["ended"])
    if job["state"] != "ENDED":
        return JobStatus(JobState.QUEUED if job["state"] == "PENDING" else JobState.RUNNING, started=started)
    succeeded = job["code"] == "EXIT" and job["exit_code"] == 0
    state, failure = (JobState.SUCCEEDED, None) if succeeded else _ENDS[job["code"]]
    code, reason, outputs = job["exit_code"], job["reason"], job["outputs"]
    return JobStatus(state, failure, code, reason, outputs, started=started, ended=ended)


class ToyRunner:
    """The Runner protocol over a :class:`ToyCloud`, with its push events (``Evented``)."""

    name: ClassVar[str] = "toy"
    Options: ClassVar[type[RunnerOptions]] = ToyOptions
    failures: ClassVar[frozenset[Failure]] = frozenset(
        {Failure.USER, Failure.CONFIG, Failure.TIMEOUT, Failure.CANCELLED}
    )  # no LOST: the cloud never forgets a job; no platform failures: it has no hosts to lose
    storage_schemes: ClassVar[frozenset[str]] = frozenset({"file"})  # what the cloud stages itself
    poll_batch: ClassVar[int] = 100  # what one ``describe`` answers
    event_keys: ClassVar[frozenset[str]] = frozenset({"toy"})
    carries_handles: ClassVar[bool] = True  # an event's job document has the name and the id

    def __init__(
        self,
        cloud: ToyCloud,
        *,
        wire: Wire = _direct,
        policy: retry.RetryPolicy = retry.DEFAULT_POLICY,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.cloud, self._wire, self._policy, self._sleep = cloud, wire, policy, sleep

    @property
    def option_defaults(self) -> Mapping[str, Any]:
        return {}  # nothing deployment-wide (a real cloud: its region, queue, bucket)

    def submit(self, spec: JobSpec) -> JobHandle:
        """Idempotent through the cloud's key, the name: a retried or racing create finds the job."""
        options = validate_options(ToyRunner, spec.options)
        assert isinstance(options, ToyOptions)
        request = {
            "name": spec.name,
            "command": list(spec.command),  # no image: the toy cloud runs commands on its host
            "env": dict(spec.env),
            "files": dict(spec.input_files),
            "inputs": dict(spec.input_uris),
            "outputs": list(spec.output_files),
            "output_prefix": spec.output_prefix,
            "timeout_s": spec.timeout.total_seconds() if spec.timeout else None,
            "hold": options.hold,
        }
        return self._handle(self._call(self.cloud.create, request))

    def find(self, spec: JobSpec) -> JobHandle | None:
        job = self._call(self.cloud.lookup, spec.name)
        return self._handle(job) if job else None

    def poll(self, handles: Sequence[JobHandle]) -> Mapping[str, JobStatus]:
        """One ``describe`` per 100 handles; a job the cloud does not know is no news, not LOST."""
        ids = [h.id for h in handles]
        jobs = {
            job["id"]: job
            for i in range(0, len(ids), self.poll_batch)
            for job in self._call(self.cloud.describe, ids[i : i + self.poll_batch])
        }
        return {h.name: _status(jobs[h.id]) for h in handles if h.id in jobs}

    def cancel(self, handle: JobHandle) -> None:
        self._call(self.cloud.cancel, handle.id)

    def logs(self, handle: JobHandle, cursor: str | None) -> LogChunk:
        """The cursor is a line index. Complete only on a ``final`` page read to its end: an
        empty page of an ended job may be lines still being ingested."""
        start = int(cursor or 0)
        page = self._call(self.cloud.read_logs, handle.id, start, 10_000)
        lines = tuple(LogRecord(stream, text, _time(at)) for stream, text, at in page["lines"])
        end = start + len(lines)
        return LogChunk(lines, str(end), complete=page["final"] and end == page["end"])

    def cleanup(self, handle: JobHandle) -> None:
        """Nothing to release: the cloud drops a job's files when it ends and keeps its record and log."""

    def parse_event(self, event: PushEvent) -> JobEvent | None:
        job = event.body.get("job")
        if event.body.get("type") != "toy.job" or not isinstance(job, Mapping):
            return None
        return JobEvent(job["name"], job["id"], _status(job), self._handle(job))

    def _handle(self, job: Mapping[str, Any]) -> JobHandle:
        return JobHandle(job["name"], self.name, job["id"])

    def _call(self, operation: Callable[..., Any], *args: Any) -> Any:
        """One cloud request, retried on transient answers; a 404 becomes the protocol's error."""

        def attempt() -> Any:
            try:
                return self._wire(operation.__name__, lambda: operation(*args))
            except ToyCloudError as exc:
                if exc.status == 404:
                    raise JobNotFoundError(str(exc), runner=self.name) from exc
                raise

        what = operation.__name__
        return retry.call(attempt, policy=self._policy, sleep=self._sleep, runner=self.name, what=what)


# ------------------------------------------------------------------ the contract

FAST = retry.RetryPolicy(attempts=4, initial_delay=0.0, max_delay=0.0, jitter=0.0)
Submit = Callable[[Runner, JobSpec], JobHandle]


def _no_sleep(_seconds: float) -> None:
    """The retry loop's sleep: tests never wait for a backoff."""


class TestToyRunner(RunnerContract):
    # runner_factory is not provided: the cloud lives in this process, so a runner built in
    # another OS process would talk to another cloud (the race test there skips). A cloud
    # behind a network endpoint provides it.

    @pytest.fixture
    def cloud(self, tmp_path: Path) -> Iterator[ToyCloud]:
        cloud = ToyCloud(tmp_path / "cloud")
        yield cloud
        cloud.close()

    @pytest.fixture
    def runner(self, cloud: ToyCloud) -> Runner:
        return ToyRunner(cloud, policy=FAST, sleep=_no_sleep)

    @pytest.fixture
    def second_runner(self, cloud: ToyCloud) -> Runner:
        return ToyRunner(cloud, policy=FAST, sleep=_no_sleep)

    @pytest.fixture
    def faulty_runner(self, cloud: ToyCloud) -> Callable[[int], tuple[Runner, CallCounter]]:
        def make(failures: int) -> tuple[Runner, CallCounter]:
            counter = CallCounter()

            def wire(operation: str, send: Callable[[], Any]) -> Any:
                if counter.hit() <= failures:
                    raise ToyCloudError(503, "service unavailable")
                return send()

            return ToyRunner(cloud, wire=wire, policy=FAST, sleep=_no_sleep), counter

        return make

    @pytest.fixture
    def lost_response_runner(self, cloud: ToyCloud) -> Callable[[], Runner]:
        def make() -> Runner:
            creates = CallCounter()

            def wire(operation: str, send: Callable[[], Any]) -> Any:
                answer = send()
                if operation == "create" and creates.hit() == 1:
                    raise ConnectionResetError("the connection closed before the response")
                return answer

            return ToyRunner(cloud, wire=wire, policy=FAST, sleep=_no_sleep)

        return make

    @pytest.fixture
    def output_prefix(self, tmp_path: Path) -> str:
        return (tmp_path / "bucket").as_uri() + "/"

    @pytest.fixture
    def read_uri(self) -> Callable[[str], bytes]:
        return lambda uri: _local(uri).read_bytes()

    @pytest.fixture
    def unwritable_output_prefix(self, tmp_path: Path) -> str:
        blocker = tmp_path / "not-a-directory"
        blocker.write_text("a file where the prefix needs a directory")
        return (blocker / "outputs").as_uri() + "/"

    @pytest.fixture
    def host_dir(self, tmp_path: Path) -> Path:
        return tmp_path  # the cloud's jobs run on this machine

    @pytest.fixture
    def process_count(self) -> Callable[[str], int]:
        return count_local_processes

    @pytest.fixture
    def queued_options(self) -> Mapping[str, Any]:
        return {"hold": True}

    @pytest.fixture
    def failure_cases(self) -> Mapping[Failure, Callable[..., JobHandle]]:
        def config(runner: Runner, make_spec: Callable[[str], JobSpec], submit: Submit) -> JobHandle:
            spec = msgspec.structs.replace(make_spec(""), command=("squall-no-such-command",))
            return submit(runner, spec)

        return {Failure.CONFIG: config}

    @pytest.fixture
    def lagging_runner(self, tmp_path: Path) -> Iterator[Runner]:
        cloud = ToyCloud(tmp_path / "lagging-cloud", log_lag=1.0)
        yield ToyRunner(cloud, policy=FAST, sleep=_no_sleep)
        cloud.close()

    @pytest.fixture
    def push_event(self, cloud: ToyCloud) -> Callable[[Runner, JobHandle], PushEvent]:
        return lambda runner, handle: PushEvent("toy", cloud.event(handle.id))
