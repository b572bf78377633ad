"""The AWS Batch runner against moto in server mode, through real boto3 clients.

moto runs no containers here (``use_docker: False``); :class:`BatchExecutor` plays the
container: each job's generated wrapper command really runs as a local ``sh`` process, its
output lands in CloudWatch Logs through ``PutLogEvents``, and the job ends in moto with the
real exit code. So the whole runner contract runs, including "cancel really stops the
processes". Faults are injected with a botocore ``before-send`` hook on the runner's session
(a throttling or 5xx response instead of the HTTP call); nothing is patched in the runner.
"""

from __future__ import annotations

import functools
import random
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from msgspec.structs import replace

from runners.aws_batch import AwsBatchRunner, BatchOptions, Pricing, estimate_cost
from runners.aws_batch import runner as batch_runner
from runners.aws_batch.runner import (
    BATCH_RETENTION,
    MANAGED_TAG,
    MANAGED_VALUE,
    batch_job_name,
)
from runners.base import (
    Evented,
    Failure,
    JobHandle,
    JobSpec,
    JobState,
    PushEvent,
    Runner,
    RunnerOptionsError,
    TransientRunnerError,
    runner_classes,
    validate_options,
)
from runners.endpoints import canonical_endpoint
from runners.retry import RetryPolicy
from runners.testing import (
    CallCounter,
    RunnerContract,
    count_local_processes,
    read_logs,
    sh,
    wait_state,
    wait_terminal,
    wait_until,
)
from tests.emulators.fault_proxy import FaultProxy
from tests.emulators.moto_batch import BatchExecutor, Outcome, batch_state_change, create_queues

boto3 = pytest.importorskip("boto3")
pytest.importorskip("moto.server")

REGION = "us-east-1"
FAST_POLICY = RetryPolicy(attempts=4, initial_delay=0.0, max_delay=0.0, jitter=0.0)
LOG_GRACE = 3.0
"""Seconds a killed job's log waits for the wrapper's sentinel (the emulator ingests at once)."""
LOOP = 'i=0; while [ "$i" -lt 120 ]; do sleep 1; i=$((i+1)); done'


def no_sleep(_seconds: float) -> None:
    """Retry backoff in tests: never really wait."""


def _session(**_kwargs: Any) -> Any:
    return boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_kwargs: Any) -> Iterator[bytes]:
        yield self.body


@dataclass
class Faults:
    """A session factory whose clients fail some calls like a throttled or broken AWS endpoint.

    ``failures``: the first N calls fail; ``rate``: each call fails with this probability
    (seeded). Batch calls get Batch's 429 TooManyRequestsException, others a 503.
    """

    failures: int = 0
    rate: float = 0.0
    seed: int = 7
    counter: CallCounter = field(default_factory=CallCounter)
    operations: Counter[str] = field(default_factory=Counter)
    injected: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._rand = random.Random(self.seed)

    def session(self, **_kwargs: Any) -> Any:
        session = _session()
        session.events.register("before-call", self._before_call)
        session.events.register("before-send", self._before_send)
        return session

    def _before_call(self, model: Any, **_kwargs: Any) -> None:
        with self._lock:
            self.operations[model.name] += 1

    def _before_send(self, request: Any, event_name: str = "", **_kwargs: Any) -> Any:
        from botocore.awsrequest import AWSResponse

        calls = self.counter.hit()
        with self._lock:
            fail = calls <= self.failures or self._rand.random() < self.rate
            if fail:
                self.injected += 1
        if not fail:
            return None
        if ".batch." in event_name:
            body = b'{"__type":"TooManyRequestsException","message":"Too Many Requests."}'
            headers = {"x-amzn-ErrorType": "TooManyRequestsException", "Content-Type": "application/json"}
            return AWSResponse(request.url, 429, headers, _Raw(body))
        return AWSResponse(request.url, 503, {}, _Raw(b""))


@dataclass
class BatchEnv:
    endpoint: str
    run_queue: str
    hold_queue: str
    park_queue: str
    bucket: str
    executor: BatchExecutor
    lag_queue: str = ""

    def client(self, service: str) -> Any:
        return _session().client(service, endpoint_url=self.endpoint, region_name=REGION)

    def runner(
        self,
        faults: Faults | None = None,
        policy: RetryPolicy = FAST_POLICY,
        *,
        endpoint: str | None = None,
        **defaults: Any,
    ) -> Any:
        """A runner on this backend (``endpoint``: through a proxy in front of it)."""
        return AwsBatchRunner(
            session_factory=faults.session if faults is not None else _session,
            endpoint_url=endpoint or self.endpoint,
            region=REGION,
            defaults={"jobQueueArn": self.run_queue, "bucket": self.bucket, **defaults},
            policy=policy,
            sleep=no_sleep,
            log_grace=LOG_GRACE,
        )


@pytest.fixture(scope="module")
def batch_env(moto_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BatchEnv]:
    executor = BatchExecutor(moto_server, tmp_path_factory.mktemp("batch-executor")).start()
    try:
        session = _session()
        iam = session.client("iam", endpoint_url=moto_server, region_name=REGION)
        batch = session.client("batch", endpoint_url=moto_server, region_name=REGION)
        s3 = session.client("s3", endpoint_url=moto_server, region_name=REGION)
        queues = create_queues(iam, batch, "squall", ("run", "hold", "park", "lag"))
        executor.modes = {queues["hold"]: "hold", queues["park"]: "park"}
        executor.lags = {queues["lag"]: 1.5}  # CloudWatch's ingestion delay: lines after the job's end
        bucket = f"squall-batch-{uuid.uuid4().hex[:8]}"
        s3.create_bucket(Bucket=bucket)
        yield BatchEnv(
            moto_server, queues["run"], queues["hold"], queues["park"], bucket, executor, queues["lag"]
        )
    finally:
        executor.stop()


def read_s3(env: BatchEnv) -> Callable[[str], bytes]:
    s3 = env.client("s3")

    def read(uri: str) -> bytes:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    return read


class TestAwsBatchContract(RunnerContract):
    deadline_s = 30.0

    @pytest.fixture
    def runner(self, batch_env: BatchEnv) -> Runner:
        return batch_env.runner()

    @pytest.fixture
    def second_runner(self, batch_env: BatchEnv) -> Runner:
        return batch_env.runner()

    @pytest.fixture
    def faulty_runner(self, batch_env: BatchEnv) -> Callable[[int], tuple[Runner, CallCounter]]:
        def make(failures: int) -> tuple[Runner, CallCounter]:
            faults = Faults(failures=failures)
            return batch_env.runner(faults), faults.counter

        return make

    @pytest.fixture
    def output_prefix(self, batch_env: BatchEnv) -> str:
        return f"s3://{batch_env.bucket}/outputs/{uuid.uuid4().hex[:8]}/"

    @pytest.fixture
    def read_uri(self, batch_env: BatchEnv) -> Callable[[str], bytes]:
        return read_s3(batch_env)

    @pytest.fixture
    def process_count(self) -> Callable[[str], int]:
        return count_local_processes  # the executor runs each job's command on this machine

    @pytest.fixture
    def host_dir(self, tmp_path: Path) -> Path:
        return tmp_path

    @pytest.fixture
    def runner_factory(self, batch_env: BatchEnv) -> Callable[[], Runner]:
        """Picklable: each OS process builds its own runner, as each Lambda does (no shared lock)."""
        return functools.partial(
            AwsBatchRunner,
            session_factory=_session,
            endpoint_url=batch_env.endpoint,
            region=REGION,
            defaults={"jobQueueArn": batch_env.run_queue, "bucket": batch_env.bucket},
            policy=FAST_POLICY,
            sleep=no_sleep,
            log_grace=LOG_GRACE,
        )

    @pytest.fixture
    def lost_response_runner(self, batch_env: BatchEnv) -> Iterator[Callable[[], Runner]]:
        """SubmitJob reaches moto, which creates the job; the proxy then drops the response."""
        with FaultProxy(batch_env.endpoint) as proxy:
            proxy.drop_after("POST", r"/v1/submitjob", times=1)
            yield lambda: batch_env.runner(endpoint=proxy.endpoint)

    @pytest.fixture
    def lagging_runner(self, batch_env: BatchEnv) -> Runner:
        runner: Runner = batch_env.runner(jobQueueArn=batch_env.lag_queue)
        return runner

    @pytest.fixture
    def unwritable_output_prefix(self) -> str:
        return f"s3://squall-no-such-bucket-{uuid.uuid4().hex[:8]}/outputs/"

    @pytest.fixture
    def queued_options(self, batch_env: BatchEnv) -> dict[str, Any]:
        return {"jobQueueArn": batch_env.hold_queue}  # no capacity fits: the job stays RUNNABLE

    @pytest.fixture
    def failure_cases(self, batch_env: BatchEnv) -> dict[Failure, Callable[..., JobHandle]]:
        """Batch's own reasons (from AWS's documentation) for each failure class it can report."""

        def ended_by_batch(outcome: Outcome) -> Callable[..., JobHandle]:
            def make(runner: Runner, make_spec: Any, submit: Any) -> JobHandle:
                spec = make_spec("echo never")
                batch_env.executor.outcomes[batch_job_name(spec.name)] = outcome
                return submit(runner, spec)

            return make

        def unschedulable(runner: Runner, make_spec: Any, submit: Any) -> JobHandle:
            options = {"jobQueueArn": batch_env.hold_queue, "runnableTimeout": "PT1S"}
            return submit(runner, make_spec("echo never", options=options))

        def lost(runner: Runner, make_spec: Any, submit: Any) -> JobHandle:
            """Evidence: a job submitted longer ago than Batch keeps jobs, which Batch no longer knows."""
            handle = submit(runner, make_spec("echo x"))
            wait_terminal(runner, handle, 30.0)
            old = (datetime.now(UTC) - BATCH_RETENTION - timedelta(days=1)).timestamp()
            return JobHandle(handle.name, handle.runner, "expired-job-id", {**handle.data, "submitted": old})

        return {
            Failure.PREEMPTED: ended_by_batch(
                Outcome("Host EC2 (instance i-0a1b2c3d4e5f60718) terminated.", exit_code=143, started=True)
            ),
            Failure.START_FAILED: ended_by_batch(
                Outcome("TaskFailedToStart: timeout waiting for network interface provisioning")
            ),
            Failure.CONFIG: ended_by_batch(
                Outcome(
                    "CannotPullContainerError: pull image manifest has been retried 5 time(s): failed to"
                    " resolve ref docker.io/library/pyhton:3.12: docker.io/library/pyhton:3.12: not found"
                )
            ),
            Failure.UNSCHEDULABLE: unschedulable,
            Failure.LOST: lost,
        }

    @pytest.fixture
    def push_event(self, batch_env: BatchEnv) -> Callable[[Runner, JobHandle], PushEvent]:
        """The "Batch Job State Change" EventBridge would deliver now: the job as DescribeJobs shows it."""

        def event(runner: Runner, handle: JobHandle) -> PushEvent:
            (job,) = batch_env.client("batch").describe_jobs(jobs=[handle.id])["jobs"]
            return PushEvent("aws.batch", batch_state_change(job))

        return event


# -- beyond the contract


def _spec(script: str, **fields: Any) -> JobSpec:
    fields.setdefault("name", f"batch-{uuid.uuid4().hex[:12]}")
    return JobSpec(command=sh(script), **fields)


def _jobs_named(env: BatchEnv, queue: str, name: str) -> list[dict[str, Any]]:
    reply = env.client("batch").list_jobs(jobQueue=queue, filters=[{"name": "JOB_NAME", "values": [name]}])
    return list(reply["jobSummaryList"])


def test_entry_point_options_and_protocols(batch_env: BatchEnv) -> None:
    assert runner_classes()["aws-batch"] is AwsBatchRunner
    runner = batch_env.runner()
    assert isinstance(runner, Runner)
    assert isinstance(runner, Evented) and AwsBatchRunner.event_keys == frozenset({"aws.batch"})
    assert AwsBatchRunner.carries_handles
    kestra = {
        "jobQueueArn": "arn:aws:batch:us-east-1:123456789012:job-queue/q",
        "region": "eu-west-1",
        "stsRoleArn": "arn:aws:iam::123456789012:role/squall",
        "computeEnvironmentArn": "arn:aws:batch:us-east-1:123456789012:compute-environment/ce",
        "executionRoleArn": "arn:aws:iam::123456789012:role/exec",
        "taskRoleArn": "arn:aws:iam::123456789012:role/task",
        "resources": {"request": {"cpu": "2", "memory": "4096"}},
        "bucket": "my-bucket",
        "platformCapabilities": ["FARGATE"],
        "retryStrategy": {"attempts": 2},
        "timeout": "PT30M",
        "waitUntilCompletion": "PT1H",
    }
    options = validate_options(AwsBatchRunner, kestra)
    assert isinstance(options, BatchOptions)
    assert (options.resources.vcpu, options.resources.memory) == (2.0, 4096)
    with pytest.raises(RunnerOptionsError, match=r"taskRunner\.jobQueueArn"):
        validate_options(AwsBatchRunner, {"region": "us-east-1"})
    with pytest.raises(RunnerOptionsError, match=r"taskRunner\.containerImage"):
        validate_options(AwsBatchRunner, {"jobQueueArn": "q", "containerImage": "x"})


def test_duplicate_submit_after_a_simulated_crash_creates_one_job(batch_env: BatchEnv) -> None:
    spec = _spec("echo once")
    first = batch_env.runner().submit(spec)
    # The process that submitted dies before recording the handle; a fresh one retries.
    again = batch_env.runner().submit(spec)
    found = batch_env.runner().find(spec)
    assert again.id == first.id and found is not None and found.id == first.id
    assert len(_jobs_named(batch_env, batch_env.run_queue, spec.name)) == 1
    status = wait_terminal(batch_env.runner(), first, 30.0)
    assert status.state is JobState.SUCCEEDED, status


def test_1000_running_jobs_are_reconciled_with_at_most_10_describe_calls(batch_env: BatchEnv) -> None:
    batch = batch_env.client("batch")
    definition = batch.register_job_definition(
        jobDefinitionName=f"park-{uuid.uuid4().hex[:6]}",
        type="container",
        containerProperties={"image": "busybox", "vcpus": 1, "memory": 128, "command": ["true"]},
    )["jobDefinitionArn"]
    handles = []
    for i in range(1000):
        name = f"park-{i}-{uuid.uuid4().hex[:6]}"
        job = batch.submit_job(jobName=name, jobQueue=batch_env.park_queue, jobDefinition=definition)
        handles.append(JobHandle(name, "aws-batch", job["jobId"]))
    faults = Faults()
    runner = batch_env.runner(faults)
    statuses = runner.poll(handles)
    assert len(statuses) == 1000
    assert {s.state for s in statuses.values()} == {JobState.RUNNING}
    assert faults.operations["DescribeJobs"] <= 10, faults.operations
    assert faults.operations["DescribeJobs"] == 10


def test_30_percent_throttling_still_completes_every_task(batch_env: BatchEnv) -> None:
    faults = Faults(rate=0.3, seed=30)
    runner = batch_env.runner(faults, policy=RetryPolicy(attempts=12, initial_delay=0.0, jitter=0.0))
    specs = [_spec(f"echo task-{i}; exit {i % 2}") for i in range(8)]
    handles = [runner.submit(spec) for spec in specs]
    for i, handle in enumerate(handles):
        status = wait_terminal(runner, handle, 30.0)
        assert status.exit_code == i % 2, status
        assert status.state is (JobState.SUCCEEDED if i % 2 == 0 else JobState.FAILED)
        assert [r.text for r in read_logs(runner, handle, 30.0)] == [f"task-{i}"]
    for spec in specs:  # exactly once despite retried submits
        assert len(_jobs_named(batch_env, batch_env.run_queue, spec.name)) == 1
    assert faults.injected > 10, faults.injected


def test_cancel_terminates_the_job_and_reports_cancelled_only_once_batch_stopped_it(
    batch_env: BatchEnv,
) -> None:
    runner = batch_env.runner()
    token = f"squall-batch-cancel-{uuid.uuid4().hex}"
    handle = runner.submit(_spec(f"echo up; {LOOP} # {token}"))
    wait_state(runner, handle, {JobState.RUNNING}, 30.0)
    wait_until(lambda: count_local_processes(token) >= 1, 30.0, "the job's process never started")
    runner.cancel(handle)
    status = wait_terminal(runner, handle, 30.0)
    assert (status.state, status.failure) == (JobState.CANCELLED, Failure.CANCELLED), status
    job = batch_env.client("batch").describe_jobs(jobs=[handle.id])["jobs"][0]
    assert job["status"] == "FAILED" and job["statusReason"].startswith("Squall: cancelled")
    wait_until(lambda: count_local_processes(token) == 0, 10.0, "the cancelled job still runs")


def test_a_job_runnable_too_long_is_unschedulable(batch_env: BatchEnv) -> None:
    runner = batch_env.runner(jobQueueArn=batch_env.hold_queue, runnableTimeout="PT0.5S")
    handle = runner.submit(_spec("echo never"))
    status = wait_terminal(runner, handle, 30.0)
    assert (status.state, status.failure) == (JobState.FAILED, Failure.UNSCHEDULABLE), status
    assert status.reason is not None and "RUNNABLE for" in status.reason

    keep = batch_env.runner(
        jobQueueArn=batch_env.hold_queue, runnableTimeout="PT0.5S", cancelUnschedulable=False
    )
    held = keep.submit(_spec("echo never"))

    def reported() -> bool:
        return keep.poll([held])[held.name].failure is Failure.UNSCHEDULABLE

    wait_until(reported, 30.0, "the long RUNNABLE job was never reported")
    assert keep.poll([held])[held.name].state is JobState.QUEUED  # reported, not cancelled
    keep.cancel(held)
    assert wait_terminal(keep, held, 30.0).state is JobState.CANCELLED


def test_job_definitions_are_shared_per_image_and_resources(batch_env: BatchEnv) -> None:
    batch = batch_env.client("batch")
    small = batch_env.runner(resources={"vcpu": 1, "memory": 512})
    big = batch_env.runner(resources={"vcpu": 2, "memory": 1024})
    handles = [
        small.submit(_spec("true")),
        batch_env.runner(resources={"vcpu": 1, "memory": 512}).submit(_spec("true")),
        big.submit(_spec("true")),
    ]
    defs = [batch.describe_jobs(jobs=[h.id])["jobs"][0]["jobDefinition"] for h in handles]
    assert defs[0] == defs[1] != defs[2]
    registered = batch.describe_job_definitions(jobDefinitions=[defs[0]])["jobDefinitions"]
    assert len(registered) == 1 and registered[0]["jobDefinitionName"].startswith("squall-")


def test_large_inputs_go_through_s3_and_cleanup_removes_them(batch_env: BatchEnv) -> None:
    runner = batch_env.runner()
    payload = bytes(range(256)) * 64  # 16 KiB: too big to travel inside the command
    handle = runner.submit(
        _spec("wc -c < blob.bin; cat note.txt", input_files={"blob.bin": payload, "note.txt": b"hi"})
    )
    status = wait_terminal(runner, handle, 30.0)
    assert status.state is JobState.SUCCEEDED, (status, read_logs(runner, handle))
    assert [r.text.strip() for r in read_logs(runner, handle)] == [str(len(payload)), "hi"]
    s3 = batch_env.client("s3")
    staged = s3.list_objects_v2(Bucket=batch_env.bucket, Prefix=f"squall/{handle.name}/inputs/")
    assert staged.get("KeyCount", 0) == 2
    runner.cleanup(handle)
    runner.cleanup(handle)
    staged = s3.list_objects_v2(Bucket=batch_env.bucket, Prefix=f"squall/{handle.name}/inputs/")
    assert staged.get("KeyCount", 0) == 0


def test_tags_events_and_cost(batch_env: BatchEnv) -> None:
    labels = {
        "squall.io/namespace": "company.team",
        "squall.io/flow": "etl",
        "squall.io/task": "crunch",
        "squall.io/execution": "4xYz",
        "squall.io/taskrun": "tr-1",
        "squall.io/attempt": "1",
    }
    hourly = Pricing(vcpuHour=0.04048, gibHour=0.004445, spotDiscount=0.7)
    runner = batch_env.runner(
        resources={"vcpu": 2, "memory": 4096}, spot=True, pricing=hourly.model_dump(by_alias=True)
    )
    handle = runner.submit(_spec("echo hi", labels=labels))
    status = wait_terminal(runner, handle, 30.0)
    job = batch_env.client("batch").describe_jobs(jobs=[handle.id])["jobs"][0]
    assert {k: job["tags"][k] for k in labels} == labels
    # The EventBridge event of this job carries the same document: same status, no handle needed.
    event = {
        "version": "0",
        "id": "c8f9c4b5-76e5-d76a-f980-7011e206042b",
        "detail-type": "Batch Job State Change",
        "source": "aws.batch",
        "account": "123456789012",
        "time": "2024-05-01T12:00:00Z",
        "region": REGION,
        "resources": [job["jobArn"]],
        "detail": job,
    }
    fresh = batch_env.runner()
    parsed = fresh.parse_event(PushEvent("aws.batch", event))
    assert parsed is not None and (parsed.name, parsed.job_id) == (handle.name, handle.id)
    assert parsed.handle is not None and (parsed.handle.name, parsed.handle.id) == (handle.name, handle.id)
    assert (parsed.status.state, parsed.status.exit_code, parsed.status.resources, parsed.status.cost) == (
        status.state,
        status.exit_code,
        status.resources,
        status.cost,
    )
    assert status.resources is not None and status.resources.spot
    assert status.resources.gib_seconds == pytest.approx(4 * status.resources.vcpu_seconds / 2)
    # The price travels on the job (tag), so a process that only sees the event prices it too.
    assert job["tags"]["squall:price"] == "0.04048/0.004445/0/0.7"
    expected = (2 * 0.04048 + 4 * 0.004445) * status.resources.vcpu_seconds / 2 / 3600 * (1 - 0.7)
    assert status.cost == pytest.approx(expected, abs=1e-6)
    assert status.cost == estimate_cost(status.resources, hourly)


def test_no_price_table_means_no_cost_estimate(batch_env: BatchEnv) -> None:
    runner = batch_env.runner()
    status = wait_terminal(runner, runner.submit(_spec("echo hi")), 30.0)
    assert status.resources is not None and status.cost is None


def test_an_assumed_role_signs_every_call_and_is_renewed_before_it_expires(batch_env: BatchEnv) -> None:
    role = batch_env.client("iam").create_role(
        RoleName=f"squall-submit-{uuid.uuid4().hex[:8]}", AssumeRolePolicyDocument="{}"
    )["Role"]["Arn"]
    assumed: list[dict[str, Any]] = []
    signers: set[str] = set()

    def record_signer(request: Any, **_kwargs: Any) -> None:
        signers.add(str(request.headers["Authorization"]).split("Credential=")[1].split("/")[0])

    def session_factory(**kwargs: Any) -> Any:
        kwargs.setdefault("aws_access_key_id", "testing")
        kwargs.setdefault("aws_secret_access_key", "testing")
        session = boto3.Session(**{"region_name": REGION, **kwargs})
        session.events.register(
            "provide-client-params.sts.AssumeRole", lambda params, **_: assumed.append(dict(params))
        )
        session.events.register("before-send.batch", record_signer)
        return session

    clock = [datetime.now(UTC)]
    runner = AwsBatchRunner(
        session_factory=session_factory,
        endpoint_url=batch_env.endpoint,
        region=REGION,
        defaults={
            "jobQueueArn": batch_env.run_queue,
            "stsRoleArn": role,
            "stsRoleExternalId": "squall-ext",
            "stsRoleSessionName": "squall-test",
        },
        policy=FAST_POLICY,
        sleep=no_sleep,
        now=lambda: clock[0],
    )
    first = runner.submit(_spec("echo one"))
    assert wait_terminal(runner, first, 30.0).state is JobState.SUCCEEDED
    assert assumed == [{"RoleArn": role, "RoleSessionName": "squall-test", "ExternalId": "squall-ext"}]
    assert signers and all(key.startswith("ASIA") for key in signers)  # STS keys, not the base ones

    start = clock[0]
    clock[0] = start + timedelta(minutes=56)  # moto's credentials last an hour; renewed 5 minutes early
    second = runner.submit(_spec("echo two"))
    assert len(assumed) == 2
    clock[0] = start + timedelta(minutes=1)  # (moto dates the new ones from the real time)
    assert wait_terminal(runner, second, 30.0).state is JobState.SUCCEEDED
    assert len(assumed) == 2  # the renewed credentials serve every later call


def test_a_flow_may_leave_the_deployments_options_to_the_runner(batch_env: BatchEnv, tmp_path: Path) -> None:
    from control_plane.errors import FlowValidationError
    from control_plane.flows.loader import parse_flow

    task = """
id: lean
namespace: squall.batch
tasks:
  - id: crunch
    type: io.kestra.plugin.scripts.shell.Commands
    containerImage: python:3.12-slim
    taskRunner:
      type: io.kestra.plugin.ee.aws.runner.Batch
      resources: {vcpu: %s}
    commands: [echo lean]
"""
    parse_flow(task % "1", "lean.yaml")  # no queue, no bucket: they are the deployment's
    with pytest.raises(FlowValidationError, match=r"lean\.yaml:10"):
        parse_flow(task % "lots", "lean.yaml")  # a wrong value is still a load error
    runner = batch_env.runner()
    assert runner.option_defaults["jobQueueArn"] == batch_env.run_queue
    spec = _spec("echo lean", options={"resources": {"vcpu": 1}})
    assert wait_terminal(runner, runner.submit(spec), 30.0).state is JobState.SUCCEEDED
    # Through the control plane: the service validates the flow's options merged with these.
    from control_plane.runtime import load_settings, open_runtime
    from control_plane.store.sqlite import SqliteStore

    rt = open_runtime(
        load_settings({}, data_dir=str(tmp_path / "data")),
        store=SqliteStore(tmp_path / "squall.db"),
        runners={"aws-batch": runner},
    )
    try:
        record = rt.service.deploy(task % "1", "lean.yaml")
        execution = rt.service.start(record.namespace, record.id)
        (run,) = rt.store.get_execution(execution.id).taskruns.values()
        job = run.attempts[-1].job
        assert job is not None and _jobs_named(batch_env, batch_env.run_queue, job)  # submitted
        assert run.error is None
    finally:
        rt.close()
    bare = AwsBatchRunner(endpoint_url=batch_env.endpoint, region=REGION, session_factory=_session)
    with pytest.raises(RunnerOptionsError, match="jobQueueArn"):
        bare.submit(_spec("echo lean", options={"resources": {"vcpu": 1}}))


def test_running_logs_are_read_incrementally(batch_env: BatchEnv) -> None:
    runner = batch_env.runner()
    handle = runner.submit(_spec(f"echo first; {LOOP}"))
    seen: list[str] = []
    cursor: list[str | None] = [None]

    def got_first() -> bool:
        chunk = runner.logs(handle, cursor[0])
        seen.extend(r.text for r in chunk.lines)
        cursor[0] = chunk.cursor
        assert not chunk.complete
        return seen == ["first"]

    wait_until(got_first, 30.0, "the running job's first line never showed")
    runner.cancel(handle)
    assert wait_terminal(runner, handle, 30.0).state is JobState.CANCELLED


def test_sample_flow_validates_against_this_runner() -> None:
    from typer.testing import CliRunner

    from control_plane.cli import app

    sample = Path(__file__).resolve().parents[2] / "samples" / "aws-batch.yaml"
    result = CliRunner().invoke(app, ["validate", str(sample)])
    assert result.exit_code == 0, result.output


# -- the tag IAM relies on (infra/modules/squall/modules/policies)


def test_every_job_and_definition_carries_the_managed_tag_a_flow_cannot_remove(batch_env: BatchEnv) -> None:
    """IAM lets Squall cancel only jobs tagged squall:managed=true: every submit must set it."""
    batch = batch_env.client("batch")
    flow_tags = {
        "squall:managed": "false",
        "squall:timeout": "1",
        "squall:outputs": "s3://elsewhere/",
        "team": "d",
    }
    submitted: list[dict[str, Any]] = []

    def session_factory(**_kwargs: Any) -> Any:
        session = _session()
        session.events.register(
            "provide-client-params.batch.SubmitJob", lambda params, **_: submitted.append(dict(params))
        )
        return session

    runner = AwsBatchRunner(
        session_factory=session_factory,
        endpoint_url=batch_env.endpoint,
        region=REGION,
        defaults={"jobQueueArn": batch_env.run_queue, "bucket": batch_env.bucket, "tags": flow_tags},
        policy=FAST_POLICY,
        sleep=no_sleep,
    )
    spec = _spec(f"echo up; {LOOP}", labels={"squall.io/flow": "etl"}, output_files=("out.txt",))
    handle = runner.submit(spec)
    job = batch.describe_jobs(jobs=[handle.id])["jobs"][0]
    assert job["tags"][MANAGED_TAG] == MANAGED_VALUE == "true"
    [request] = submitted  # the tag is in the request (aws:RequestTag) and reaches the ECS task
    assert request["tags"][MANAGED_TAG] == MANAGED_VALUE and request["propagateTags"] is True
    # The runner's own squall:* keys come from the runner only: no fake timeout, no other bucket.
    assert "squall:timeout" not in job["tags"] and job["tags"]["squall:outputs"].startswith(
        f"s3://{batch_env.bucket}/"
    )
    assert (job["tags"]["team"], job["tags"]["squall.io/flow"]) == ("d", "etl")
    [definition] = batch.describe_job_definitions(jobDefinitions=[job["jobDefinition"]])["jobDefinitions"]
    assert definition["tags"][MANAGED_TAG] == MANAGED_VALUE
    # So the runner's own cancel (CancelJob/TerminateJob, allowed on tagged jobs only) applies.
    runner.cancel(handle)
    assert wait_terminal(runner, handle, 30.0).state is JobState.CANCELLED


def test_a_job_submitted_through_a_fixed_definition_is_tagged_too(batch_env: BatchEnv) -> None:
    batch = batch_env.client("batch")
    definition = batch.register_job_definition(
        jobDefinitionName=f"fixed-{uuid.uuid4().hex[:6]}",
        type="container",
        containerProperties={"image": "busybox", "vcpus": 1, "memory": 128, "command": ["true"]},
    )["jobDefinitionArn"]
    runner = batch_env.runner(jobDefinitionArn=definition)
    handle = runner.submit(_spec("echo fixed"))
    assert batch.describe_jobs(jobs=[handle.id])["jobs"][0]["tags"][MANAGED_TAG] == MANAGED_VALUE
    assert wait_terminal(runner, handle, 30.0).state is JobState.SUCCEEDED


# -- endpointOverride: only where the deployment allows


@dataclass
class Sent:
    """A session factory recording the host of every request its clients send."""

    hosts: list[str] = field(default_factory=list)

    def session(self, **_kwargs: Any) -> Any:
        session = _session()
        session.events.register("before-send", self._record)
        return session

    def _record(self, request: Any, **_kwargs: Any) -> None:
        self.hosts.append(str(request.url).split("/")[2])


def _override_runner(env: BatchEnv, sent: Sent, *, allowed: tuple[str, ...] = (), **defaults: Any) -> Any:
    """A runner with no Batch endpoint of its own (logs and S3 go to moto): a task's override picks it."""
    return AwsBatchRunner(
        session_factory=sent.session,
        endpoints={"logs": env.endpoint, "s3": env.endpoint, "sts": env.endpoint},
        region=REGION,
        defaults={"jobQueueArn": env.run_queue, "bucket": env.bucket, **defaults},
        policy=FAST_POLICY,
        sleep=no_sleep,
        allowed_endpoints=allowed,
    )


def test_a_flow_cannot_send_signed_requests_to_an_endpoint_the_deployment_did_not_allow(
    batch_env: BatchEnv,
) -> None:
    sent = Sent()
    runner = _override_runner(batch_env, sent)
    spec = _spec("echo hi", options={"endpointOverride": "http://collector.example:8080"})
    pattern = r"taskRunner\.endpointOverride: 'http://collector\.example:8080' is not .* allowed values: none"
    with pytest.raises(RunnerOptionsError, match=pattern):
        runner.submit(spec)
    with pytest.raises(RunnerOptionsError, match=r"taskRunner\.endpointOverride"):
        runner.find(spec)
    assert sent.hosts == []  # refused before any request, signed or not

    # A deployment default is allowed (it is the deployment's), and named with the allow-list.
    allowed = _override_runner(
        batch_env, sent, allowed=("https://batch.vpce.example/",), endpointOverride=batch_env.endpoint
    )
    with pytest.raises(RunnerOptionsError) as refused:
        allowed.submit(spec)
    message = str(refused.value)
    assert "taskRunner.endpointOverride" in message
    assert f"allowed values: {batch_env.endpoint}, https://batch.vpce.example" in message
    with pytest.raises(RunnerOptionsError, match="no credentials, query or fragment"):
        allowed.submit(_spec("echo hi", options={"endpointOverride": "http://user:pw@batch.vpce.example"}))
    assert sent.hosts == []


def test_an_allowed_endpoint_serves_submit_poll_logs_and_cancel(batch_env: BatchEnv) -> None:
    moto_host = batch_env.endpoint.split("/")[2]
    sent = Sent()
    runner = _override_runner(batch_env, sent, allowed=(batch_env.endpoint + "/",))  # same URL, canonical
    handle = runner.submit(_spec("echo via-override", options={"endpointOverride": batch_env.endpoint}))
    assert handle.data["endpoint"] == batch_env.endpoint
    # Another process (a fresh runner, same settings) follows the handle to the same endpoint.
    other = _override_runner(batch_env, sent, allowed=(batch_env.endpoint,))
    assert wait_terminal(other, handle, 30.0).state is JobState.SUCCEEDED
    assert [r.text for r in read_logs(other, handle, 30.0)] == ["via-override"]
    assert set(sent.hosts) == {moto_host}
    # Without the endpoint in its allow-list, a runner refuses to follow a stored handle there.
    with pytest.raises(RunnerOptionsError, match=r"taskRunner\.endpointOverride"):
        _override_runner(batch_env, Sent()).poll([handle])

    # The deployment's own default needs no allow-list entry, and a flow may repeat it.
    default = _override_runner(batch_env, sent, endpointOverride=batch_env.endpoint)
    held = default.submit(_spec(f"echo up; {LOOP}", options={"endpointOverride": batch_env.endpoint}))
    assert "endpoint" not in held.data
    wait_state(default, held, {JobState.RUNNING}, 30.0)
    default.cancel(held)
    assert wait_terminal(default, held, 30.0).state is JobState.CANCELLED


def test_the_endpoint_allowlist_is_a_deployment_setting(
    batch_env: BatchEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQUALL_AWS_ENDPOINT_ALLOWLIST reaches the runner the control plane builds; other endpoints fail."""
    import json

    from control_plane.runtime import SettingsError, load_settings, open_runtime

    with pytest.raises(SettingsError, match=r"SQUALL_AWS_ENDPOINT_ALLOWLIST: .*'file:///etc' is not an http"):
        load_settings({"SQUALL_AWS_ENDPOINT_ALLOWLIST": "https://ok.example, file:///etc"})
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    runners = {
        "aws-batch": {
            "region": REGION,
            "endpoints": {"logs": batch_env.endpoint, "s3": batch_env.endpoint},
            "defaults": {"jobQueueArn": batch_env.run_queue, "bucket": batch_env.bucket},
        }
    }
    env = {
        "SQUALL_RUNNERS": json.dumps(runners),
        "SQUALL_AWS_ENDPOINT_ALLOWLIST": f"https://batch.vpce.example, {batch_env.endpoint}",
        "SQUALL_DATA_DIR": str(tmp_path / "data"),
        "SQUALL_DB": str(tmp_path / "squall.db"),
    }
    flow = """
id: pinned
namespace: squall.batch
tasks:
  - id: crunch
    type: io.kestra.plugin.scripts.shell.Commands
    containerImage: python:3.12-slim
    taskRunner:
      type: io.kestra.plugin.ee.aws.runner.Batch
      endpointOverride: %s
    commands: [echo pinned]
"""
    rt = open_runtime(load_settings(env))
    try:
        rt.service.deploy(flow % "http://collector.example:8080", "pinned.yaml")
        refused = rt.service.start("squall.batch", "pinned")
        (run,) = rt.store.get_execution(refused.id).taskruns.values()
        assert run.error is not None and "taskRunner.endpointOverride" in run.error, run
        assert f"allowed values: {batch_env.endpoint}, https://batch.vpce.example" in run.error

        rt.service.deploy(flow % batch_env.endpoint, "pinned.yaml")
        allowed = rt.service.start("squall.batch", "pinned")
        (run,) = rt.store.get_execution(allowed.id).taskruns.values()
        job = run.attempts[-1].job
        assert run.error is None and job is not None and _jobs_named(batch_env, batch_env.run_queue, job)
    finally:
        rt.close()


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("HTTPS://Batch.EU-West-1.amazonaws.com/", "https://batch.eu-west-1.amazonaws.com"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        (
            "https://vpce-1.batch.eu-west-1.vpce.amazonaws.com/v1/",
            "https://vpce-1.batch.eu-west-1.vpce.amazonaws.com/v1",
        ),
    ],
)
def test_endpoints_compare_in_canonical_form(raw: str, canonical: str) -> None:
    assert canonical_endpoint(raw) == canonical


@pytest.mark.parametrize(
    "raw",
    [
        "ftp://host",
        "batch.amazonaws.com",
        "https://",
        "https://a@host",
        "https://host/?x=1",
        "https://host/#f",
    ],
)
def test_an_allowed_endpoint_must_be_a_plain_http_url(raw: str) -> None:
    with pytest.raises(ValueError, match="endpoint URL"):
        canonical_endpoint(raw)
    with pytest.raises(ValueError):
        AwsBatchRunner(allowed_endpoints=[raw])


# -- files without anything in the user's image (issue 19)


def test_a_file_passes_between_two_tasks_whose_image_has_no_aws_cli(batch_env: BatchEnv) -> None:
    """Job A writes 1 MiB of random bytes; job B gets A's output URI as an input and checks them."""
    import hashlib

    runner = batch_env.runner()
    prefix = f"s3://{batch_env.bucket}/outputs/{uuid.uuid4().hex[:8]}/"
    write = _spec(
        'command -v aws && exit 9; head -c 1048576 /dev/urandom > "$OUTPUT_DIR/data.bin"; '
        "sha256sum \"$OUTPUT_DIR/data.bin\" | cut -d' ' -f1",
        image="python:3.12-slim",
        output_prefix=prefix,
    )
    a = runner.submit(write)
    status_a = wait_terminal(runner, a, 30.0)
    logs_a = read_logs(runner, a, 30.0)
    assert status_a.state is JobState.SUCCEEDED, (status_a, logs_a)
    digest = logs_a[-1].text
    uri = status_a.output_files["data.bin"]
    assert hashlib.sha256(read_s3(batch_env)(uri)).hexdigest() == digest

    check = _spec(
        f"command -v aws && exit 9; [ \"$(sha256sum in/data.bin | cut -d' ' -f1)\" = {digest} ] && echo same",
        image="python:3.12-slim",
        input_uris={"in/data.bin": uri},
    )
    b = runner.submit(check)
    status_b = wait_terminal(runner, b, 30.0)
    assert status_b.state is JobState.SUCCEEDED, (status_b, read_logs(runner, b, 30.0))
    assert [r.text for r in read_logs(runner, b, 30.0)] == ["same"]


def test_an_output_that_cannot_be_uploaded_fails_the_job_as_config_naming_it(batch_env: BatchEnv) -> None:
    runner = batch_env.runner()
    spec = _spec(
        "echo r > result.txt",
        output_files=("result.txt",),
        output_prefix=f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/out/",
    )
    handle = runner.submit(spec)
    status = wait_terminal(runner, handle, 30.0)
    assert (status.state, status.failure, status.exit_code) == (JobState.FAILED, Failure.CONFIG, 0), status
    assert status.reason is not None and "result.txt" in status.reason, status.reason


def test_an_input_that_cannot_be_fetched_fails_the_job_as_config_naming_it(batch_env: BatchEnv) -> None:
    runner = batch_env.runner()
    missing = f"s3://{batch_env.bucket}/nothing/{uuid.uuid4().hex[:8]}/gone.csv"
    handle = runner.submit(_spec("echo never", input_uris={"gone.csv": missing}))
    status = wait_terminal(runner, handle, 30.0)
    assert (status.state, status.failure, status.exit_code) == (JobState.FAILED, Failure.CONFIG, 97), status
    texts = [r.text for r in read_logs(runner, handle, 30.0)]
    assert f"squall: cannot fetch input gone.csv from {missing}" in texts and "never" not in texts


def test_an_input_uri_of_another_cloud_is_refused_naming_it(batch_env: BatchEnv) -> None:
    from runners.base import RunnerError

    with pytest.raises(RunnerError, match=r"gs://b/x\.csv"):
        batch_env.runner().submit(_spec("true", input_uris={"x.csv": "gs://b/x.csv"}))


def test_a_command_not_found_is_config(batch_env: BatchEnv) -> None:
    runner = batch_env.runner()
    handle = runner.submit(
        JobSpec(name=f"batch-{uuid.uuid4().hex[:12]}", command=("no-such-tool-xyz", "--go"))
    )
    status = wait_terminal(runner, handle, 30.0)
    assert (status.failure, status.exit_code) == (Failure.CONFIG, 96), status
    assert "squall: command not found: no-such-tool-xyz" in [r.text for r in read_logs(runner, handle, 30.0)]


def test_the_marker_on_a_last_line_without_newline_survives_late_logs(batch_env: BatchEnv) -> None:
    """CloudWatch ingests after the job ended: logs are complete only at the wrapper's sentinels."""
    from runners import markers

    runner = batch_env.runner()
    marker = '::{"outputs":{"k":"v"}}::'
    batch_env.executor.log_lag = 1.5
    try:
        handle = runner.submit(_spec(f"echo first; printf '%s' '{marker}'"))
        status = wait_terminal(runner, handle, 30.0)
        assert status.state is JobState.SUCCEEDED, status
        first = runner.logs(handle, None)
        assert not first.complete  # the job ended, its lines have not all come: not the end
        records = read_logs(runner, handle, 30.0)
    finally:
        batch_env.executor.log_lag = 0.0
    assert [r.text for r in records] == ["first", marker]
    assert markers.collect([r.text for r in records]).outputs == {"k": "v"}


def test_a_killed_jobs_log_is_truncated_after_the_grace(batch_env: BatchEnv) -> None:
    runner = batch_env.runner()
    handle = runner.submit(_spec(f"echo up; {LOOP}"))
    wait_state(runner, handle, {JobState.RUNNING}, 30.0)
    wait_until(lambda: bool(runner.logs(handle, None).lines), 30.0, "no first line")
    runner.cancel(handle)
    assert wait_terminal(runner, handle, 30.0).state is JobState.CANCELLED
    cursor: str | None = None
    texts: list[str] = []

    def done() -> bool:
        nonlocal cursor
        chunk = runner.logs(handle, cursor)
        texts.extend(r.text for r in chunk.lines)
        cursor = chunk.cursor
        return chunk.complete and chunk.truncated

    wait_until(done, 30.0, "the killed job's log never ended")
    assert texts == ["up"]


def test_a_submit_lock_held_by_another_process_waits_for_its_job_then_gives_up_transiently(
    batch_env: BatchEnv,
) -> None:
    """The loser of the submit lock never calls SubmitJob: it waits for the winner's job."""
    spec = _spec("echo never")
    key = f"squall/{batch_job_name(spec.name)}/submit.lock"
    batch_env.client("s3").put_object(Bucket=batch_env.bucket, Key=key, Body=b"another-process")
    runner = AwsBatchRunner(
        session_factory=_session,
        endpoint_url=batch_env.endpoint,
        region=REGION,
        defaults={"jobQueueArn": batch_env.run_queue, "bucket": batch_env.bucket},
        policy=FAST_POLICY,
        sleep=no_sleep,
        limiter_sleep=no_sleep,
    )
    with pytest.raises(TransientRunnerError, match="another process holds its submit lock"):
        runner.submit(spec)
    assert _jobs_named(batch_env, batch_env.run_queue, batch_job_name(spec.name)) == []


def test_a_stale_submit_lock_whose_job_never_appeared_is_taken_over(batch_env: BatchEnv) -> None:
    """Its owner died between the lock and SubmitJob: after two minutes one process submits."""
    spec = _spec("echo took-over")
    key = f"squall/{batch_job_name(spec.name)}/submit.lock"
    batch_env.client("s3").put_object(Bucket=batch_env.bucket, Key=key, Body=b"a-dead-process")
    later = datetime.now(UTC) + timedelta(minutes=3)
    runner = AwsBatchRunner(
        session_factory=_session,
        endpoint_url=batch_env.endpoint,
        region=REGION,
        defaults={"jobQueueArn": batch_env.run_queue, "bucket": batch_env.bucket},
        policy=FAST_POLICY,
        sleep=no_sleep,
        now=lambda: later,
        log_grace=LOG_GRACE,
    )
    handle = runner.submit(spec)
    assert wait_terminal(runner, handle, 30.0).state is JobState.SUCCEEDED
    assert len(_jobs_named(batch_env, batch_env.run_queue, batch_job_name(spec.name))) == 1


def test_a_claimed_submit_takes_no_bucket_lock_and_submits_once(batch_env: BatchEnv) -> None:
    """The control plane's store claim already makes this process the only submitter, and
    its claimant looked the name up (``spec.claimed``): no S3 request at all, even past a lock
    object another path left, and no ListJobs before SubmitJob (one after: the convergence)."""
    faults = Faults()
    runner = batch_env.runner(faults)
    spec = _spec("echo claimed", claimed=True)
    key = f"squall/{batch_job_name(spec.name)}/submit.lock"
    batch_env.client("s3").put_object(Bucket=batch_env.bucket, Key=key, Body=b"an-unclaimed-submitter")
    handle = runner.submit(spec)
    assert not {op for op in faults.operations if op.endswith("Object")}, faults.operations
    assert (faults.operations["SubmitJob"], faults.operations["ListJobs"]) == (1, 1), faults.operations
    assert wait_terminal(runner, handle, 30.0).state is JobState.SUCCEEDED
    assert len(_jobs_named(batch_env, batch_env.run_queue, batch_job_name(spec.name))) == 1
    # Unclaimed, the same name is looked up first (a caller without the store's claim).
    assert runner.submit(replace(spec, claimed=False)).id == handle.id
    assert len(_jobs_named(batch_env, batch_env.run_queue, batch_job_name(spec.name))) == 1


# -- what a completion costs (issue 28): no S3 LIST for a task that can have no outputs


def test_a_task_without_output_files_naming_no_output_dir_is_not_listed_when_it_ends(
    batch_env: BatchEnv,
) -> None:
    """The deployment storage gives every job an output prefix; only a task that can put files
    there (outputFiles, or a command naming OUTPUT_DIR) costs a ListObjectsV2 when it ends."""
    faults = Faults()
    runner = batch_env.runner(faults)
    prefix = f"s3://{batch_env.bucket}/outputs/{uuid.uuid4().hex[:8]}/"
    quiet = runner.submit(_spec("echo done", output_prefix=prefix))
    status = wait_terminal(runner, quiet, 30.0)
    assert status.state is JobState.SUCCEEDED, status
    assert status.output_files == {}
    assert faults.operations["ListObjectsV2"] == 0, faults.operations

    writes = runner.submit(_spec('echo hi > "$OUTPUT_DIR/out.txt"', output_prefix=prefix + "w/"))
    status = wait_terminal(runner, writes, 30.0)
    assert status.state is JobState.SUCCEEDED, status
    assert set(status.output_files) == {"out.txt"}
    assert faults.operations["ListObjectsV2"] >= 1
    assert read_s3(batch_env)(status.output_files["out.txt"]) == b"hi\n"


def test_the_runner_remembers_a_bounded_number_of_finished_jobs(
    batch_env: BatchEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A warm container's runner sees every job of a 100,000-item fan-out end: it keeps the last
    FINISHED_KEPT of them (their ~8 KB DescribeJobs entries), and a forgotten one is described
    again, with the same answer (issue 28 part 3)."""
    monkeypatch.setattr(batch_runner, "FINISHED_KEPT", 2)
    faults = Faults()
    runner = batch_env.runner(faults)
    handles = [runner.submit(_spec(f"echo {i}")) for i in range(3)]
    ended = {h.name: wait_terminal(runner, h, 30.0) for h in handles}
    assert all(s.state is JobState.SUCCEEDED for s in ended.values()), ended
    assert list(runner._finished) == [h.id for h in handles[1:]]  # the oldest was forgotten

    before = faults.operations["DescribeJobs"]
    assert runner.poll(handles[1:]) == {h.name: ended[h.name] for h in handles[1:]}
    assert faults.operations["DescribeJobs"] == before  # remembered: no call
    assert runner.poll(handles[:1]) == {handles[0].name: ended[handles[0].name]}
    assert faults.operations["DescribeJobs"] == before + 1  # forgotten: described again
    assert len(runner._finished) == 2


def test_a_script_file_naming_output_dir_keeps_its_outputs(batch_env: BatchEnv) -> None:
    runner = batch_env.runner()
    prefix = f"s3://{batch_env.bucket}/outputs/{uuid.uuid4().hex[:8]}/"
    spec = _spec(
        "sh make.sh",
        output_prefix=prefix,
        input_files={"make.sh": b'echo made > "$OUTPUT_DIR/made.txt"\n'},
    )
    status = wait_terminal(runner, runner.submit(spec), 30.0)
    assert status.state is JobState.SUCCEEDED, status
    assert set(status.output_files) == {"made.txt"}
