"""The Cloud Run runner against the REST fake of Cloud Run v2 and fake-gcs-server, with the real SDKs.

Executions really run: the fake (tests/emulators/cloud_run.py) runs each execution's container
command on this machine through the shared executor and mounts the bucket from fake-gcs-server
the way Cloud Run's Cloud Storage volumes (gcsfuse) would, so the whole contract runs. Faults
come from the fault proxy in front of the fake (429s, resets, a lost create response).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from msgspec.structs import replace

from runners.base import Failure, JobHandle, JobSpec, JobState, Runner, RunnerError
from runners.cloud_run import CloudRunRunner, cloud_run_job_id
from runners.retry import RetryPolicy
from runners.testing import CallCounter, RunnerContract, count_local_processes, read_logs, sh, wait_terminal
from tests.emulators.fault_proxy import FaultProxy, ProxiedCalls
from tests.emulators.google_rest import UPLOAD_LAG_LABEL
from tests.integration.service_helpers import squall_run_on_google_fake

cloud_run = pytest.importorskip("tests.emulators.cloud_run")
FakeCloudRun = cloud_run.FakeCloudRun

PROJECT, REGION = "squall-tests", "europe-west1"
FAST_POLICY = RetryPolicy(attempts=4, initial_delay=0.0, max_delay=0.0, jitter=0.0)
LOG_GRACE = 3.0
"""Seconds a killed job's log waits for the sentinel (the fake syncs the mount at once)."""


def no_sleep(_seconds: float) -> None:
    """Retry backoff in tests: never really wait."""


@dataclass
class RunEnv:
    fake: Any
    gcs: Any
    bucket: str

    deployment: str = "squall"
    """The deployment label of the runners made now: one per contract case, so a list call sees
    that case's jobs only (cases clean nothing up; a real deployment deletes its ended jobs)."""
    region: str = REGION
    """The region of the runners made now: one per contract case too, because Cloud Run's wildcard
    list covers every execution of a region, whatever its label."""

    def defaults(self, **extra: Any) -> dict[str, Any]:
        return {
            "projectId": PROJECT,
            "region": self.region,
            "bucket": self.bucket,
            "deployment": self.deployment,
            **extra,
        }

    def runner(
        self,
        *,
        endpoint: str | None = None,
        storage_endpoint: str | None = None,
        policy: RetryPolicy = FAST_POLICY,
        **defaults: Any,
    ) -> CloudRunRunner:
        """A runner on this backend (``endpoint``: through a proxy in front of the fake)."""
        return CloudRunRunner(
            defaults=self.defaults(**defaults),
            endpoint=endpoint or self.fake.endpoint,
            storage_endpoint=storage_endpoint or self.gcs.endpoint,
            anonymous=True,
            policy=policy,
            sleep=no_sleep,
            rate=1000.0,
            log_grace=LOG_GRACE,
        )

    def read(self, uri: str) -> bytes:
        bucket, _, key = uri.removeprefix("gs://").partition("/")
        return bytes(self.gcs.client().bucket(bucket).blob(key).download_as_bytes())


@pytest.fixture(scope="module")
def run_env(fake_gcs: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunEnv]:
    bucket = f"squall-{uuid.uuid4().hex[:8]}"
    fake_gcs.client().create_bucket(bucket)
    with FakeCloudRun(tmp_path_factory.mktemp("cloud-run"), gcs_endpoint=fake_gcs.endpoint) as fake:
        yield RunEnv(fake, fake_gcs, bucket)


def _runner_factory(
    fake_endpoint: str, gcs_endpoint: str, bucket: str, deployment: str, region: str
) -> CloudRunRunner:
    """Module level, so a process pool can pickle it: each OS process builds its own runner."""
    return CloudRunRunner(
        defaults={"projectId": PROJECT, "region": region, "bucket": bucket, "deployment": deployment},
        endpoint=fake_endpoint,
        storage_endpoint=gcs_endpoint,
        anonymous=True,
        policy=FAST_POLICY,
        sleep=no_sleep,
        rate=1000.0,
        log_grace=LOG_GRACE,
    )


class TestCloudRunContract(RunnerContract):
    deadline_s = 30.0

    @pytest.fixture(autouse=True)
    def _own_deployment(self, run_env: RunEnv) -> Iterator[None]:
        run_env.deployment = f"case-{uuid.uuid4().hex[:10]}"
        run_env.region = f"region-{uuid.uuid4().hex[:8]}"
        yield
        run_env.deployment, run_env.region = "squall", REGION

    @pytest.fixture
    def runner(self, run_env: RunEnv) -> Runner:
        return run_env.runner()

    @pytest.fixture
    def second_runner(self, run_env: RunEnv) -> Runner:
        return run_env.runner()

    @pytest.fixture
    def faulty_runner(self, run_env: RunEnv) -> Iterator[Callable[[int], tuple[Runner, CallCounter]]]:
        proxies: list[FaultProxy] = []

        def make(failures: int) -> tuple[Runner, CallCounter]:
            batch = FaultProxy(run_env.fake.endpoint).start()
            gcs = FaultProxy(run_env.gcs.endpoint).start()
            proxies.extend((batch, gcs))
            if failures:
                batch.fail_before("*", "", status=503, times=failures)
            return run_env.runner(endpoint=batch.endpoint, storage_endpoint=gcs.endpoint), ProxiedCalls(
                batch, gcs
            )

        yield make
        for proxy in proxies:
            proxy.stop()

    @pytest.fixture
    def output_prefix(self, run_env: RunEnv) -> str:
        return f"gs://{run_env.bucket}/outputs/{uuid.uuid4().hex[:8]}/"

    @pytest.fixture
    def read_uri(self, run_env: RunEnv) -> Callable[[str], bytes]:
        return run_env.read

    @pytest.fixture
    def process_count(self) -> Callable[[str], int]:
        return count_local_processes  # the fake runs each job's command on this machine

    @pytest.fixture
    def host_dir(self, tmp_path: Path) -> Path:
        return tmp_path

    @pytest.fixture
    def runner_factory(self, run_env: RunEnv) -> Callable[[], Runner]:
        return functools.partial(
            _runner_factory,
            run_env.fake.endpoint,
            run_env.gcs.endpoint,
            run_env.bucket,
            run_env.deployment,
            run_env.region,
        )

    @pytest.fixture
    def lost_response_runner(self, run_env: RunEnv) -> Iterator[Callable[[], Runner]]:
        """create_job reaches the fake, which creates the job; the proxy then drops the response."""
        with FaultProxy(run_env.fake.endpoint) as proxy:
            proxy.drop_after("POST", r"/jobs\?", times=1)
            yield lambda: run_env.runner(endpoint=proxy.endpoint)

    @pytest.fixture
    def queued_options(self, run_env: RunEnv) -> Iterator[dict[str, Any]]:
        """A label the fake holds in QUEUED: no VM ever comes."""
        label = f"hold-{uuid.uuid4().hex[:8]}"
        run_env.fake.hold_labels.add(label)
        yield {"labels": {"squall-hold": label}}
        run_env.fake.hold_labels.discard(label)

    @pytest.fixture
    def unwritable_output_prefix(self) -> str:
        return f"gs://squall-no-such-bucket-{uuid.uuid4().hex[:8]}/outputs/"

    @pytest.fixture
    def lagging_runner(self, run_env: RunEnv) -> Runner:
        """Each execution's files (its logs) reach the bucket 1.5 s after it ended."""
        return run_env.runner(labels={UPLOAD_LAG_LABEL: "1500"})

    def test_polling_50_handles_costs_the_declared_calls(
        self,
        runner: Runner,
        faulty_runner: Callable[[int], tuple[Runner, CallCounter]],
        make_spec: Any,
        submit: Any,
    ) -> None:
        """Cloud Run's executions carry no exit code: a poll lists the executions (a page of 100)
        and, when some failed, their tasks (a page of 100). The contract's bound,
        ceil(n / poll_batch), reads that as 50 handles a call; for 50 handles it is 2 calls."""
        self.skip_recount()
        handles = [submit(runner, make_spec(f"exit {i % 2}", output_prefix=None)) for i in range(50)]
        for handle in handles:
            wait_terminal(runner, handle, self.deadline_s)
        counted, counter = faulty_runner(0)
        statuses = counted.poll(handles)
        assert [statuses[h.name].exit_code for h in handles] == [i % 2 for i in range(50)]
        assert counter.calls <= 2, f"{counter.calls} backend calls to poll 50 jobs"

    @pytest.fixture
    def failure_cases(self, run_env: RunEnv) -> dict[Failure, Callable[..., JobHandle]]:
        """CONFIG and LOST as Cloud Run produces them (the wrapper's CONFIG: a test below)."""

        def config(runner: Runner, make_spec: Any, submit: Any) -> JobHandle:
            """An image that does not exist: Cloud Run fails the job at create, no execution."""
            image = f"europe-docker.pkg.dev/squall-tests/images/missing-{uuid.uuid4().hex[:8]}:1"
            run_env.fake.missing_images.add(image)
            return submit(runner, replace(make_spec("echo never"), image=image))

        def lost(runner: Runner, make_spec: Any, submit: Any) -> JobHandle:
            """Evidence: the job is gone from Cloud Run and Squall left no tombstone for it."""
            handle = submit(runner, make_spec("sleep 30"))
            run_env.fake.lost(handle.data["job"].rpartition("/")[2])
            return handle

        return {Failure.CONFIG: config, Failure.LOST: lost}


@dataclass
class Throttled:
    """Proxies in front of Cloud Run and Cloud Storage, and the rules that fault them."""

    batch: str
    gcs: str
    throttle: Any
    reset: Any


@pytest.fixture(scope="module")
def throttled(run_env: RunEnv) -> Iterator[Throttled]:
    """Every 4th Batch call is a 429 and every 5th GCS call a reset connection, as a busy project
    sees them."""
    with FaultProxy(run_env.fake.endpoint) as batch, FaultProxy(run_env.gcs.endpoint) as gcs:
        throttle = batch.fail_before(
            "*",
            "",
            status=429,
            body=b'{"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}}',
            headers={"Content-Type": "application/json"},
            times=None,
            every=4,
        )
        reset = gcs.reset_before("*", "", times=None, every=5)
        yield Throttled(batch.endpoint, gcs.endpoint, throttle, reset)


class TestCloudRunContractThroughFaults(TestCloudRunContract):
    """The same contract with every runner call through the throttling proxies (the retry policy
    absorbs them: none of the cases may notice)."""

    counts_calls = False

    @pytest.fixture
    def runner(self, run_env: RunEnv, throttled: Throttled) -> Runner:
        return run_env.runner(endpoint=throttled.batch, storage_endpoint=throttled.gcs)

    @pytest.fixture
    def second_runner(self, run_env: RunEnv, throttled: Throttled) -> Runner:
        return run_env.runner(endpoint=throttled.batch, storage_endpoint=throttled.gcs)

    @pytest.fixture
    def runner_factory(self, run_env: RunEnv, throttled: Throttled) -> Callable[[], Runner]:
        return functools.partial(
            _runner_factory,
            throttled.batch,
            throttled.gcs,
            run_env.bucket,
            run_env.deployment,
            run_env.region,
        )

    def test_the_proxies_really_fault_the_calls(
        self, runner: Runner, throttled: Throttled, make_spec: Any, submit: Any
    ) -> None:
        before = (throttled.throttle.applied, throttled.reset.applied)
        # The rules fault every 4th and every 5th call they see, counted across the class's
        # tests: one job may make too few calls to meet the next reset, so up to five jobs run,
        # and every one must succeed with its log while faulted.
        for _ in range(5):
            handle = submit(runner, make_spec("echo through", output_files=("x",)))
            assert wait_terminal(runner, handle, self.deadline_s).state is JobState.SUCCEEDED
            assert [r.text for r in read_logs(runner, handle, self.deadline_s)] == ["through"]
            if throttled.throttle.applied > before[0] and throttled.reset.applied > before[1]:
                break
        assert throttled.throttle.applied > before[0] and throttled.reset.applied > before[1]


# -- beyond the contract


def _spec(script: str, **fields: Any) -> JobSpec:
    fields.setdefault("name", f"cr-{uuid.uuid4().hex[:12]}")
    return JobSpec(command=sh(script), **fields)


def test_500_running_executions_reconcile_in_five_list_calls(run_env: RunEnv) -> None:
    """One wildcard list call a page of 100 executions; nothing per job."""
    # a region of its own: the wildcard lists every execution of the region, whatever its label
    runner = run_env.runner(deployment="bulk", region="us-east1", labels={"hold": "bulk-hold"})
    run_env.fake.hold_labels.add("bulk-hold")
    handles = [runner.submit(_spec("sleep 60")) for _ in range(500)]
    before = run_env.fake.calls.copy()
    statuses = run_env.runner(deployment="bulk", region="us-east1").poll(handles)
    spent = run_env.fake.calls - before
    assert {s.state for s in statuses.values()} == {JobState.QUEUED} and len(statuses) == 500
    assert spent == {"ListExecutions": 5}, spent
    for handle in handles:
        runner.cancel(handle)
    run_env.fake.hold_labels.discard("bulk-hold")


def test_a_command_the_image_lacks_is_config(run_env: RunEnv) -> None:
    """The wrapper finds no such command: exit 96, CONFIG (never retried)."""
    runner = run_env.runner()
    handle = runner.submit(replace(_spec("unused"), command=("no-such-command-anywhere",)))
    status = wait_terminal(runner, handle, 30)
    assert (status.state, status.failure, status.exit_code) == (JobState.FAILED, Failure.CONFIG, 96)


def test_an_image_missing_at_create_is_config_with_cloud_runs_words(run_env: RunEnv) -> None:
    image = "europe-docker.pkg.dev/squall-tests/images/typo:1"
    run_env.fake.missing_images.add(image)
    runner = run_env.runner()
    handle = runner.submit(replace(_spec("echo never"), image=image))
    status = run_env.runner().poll([handle])[handle.name]  # a fresh runner: nothing remembered
    assert (status.state, status.failure) == (JobState.FAILED, Failure.CONFIG)
    assert f"Image '{image}' not found." in (status.reason or "")
    assert run_env.fake.runs[handle.data["job"].rpartition("/")[2]] == 0
    runner.cancel(handle)  # nothing to cancel: no tombstone, still CONFIG
    assert run_env.runner().poll([handle])[handle.name].failure is Failure.CONFIG


def test_an_image_cloud_run_cannot_pull_from_is_refused_at_submit(run_env: RunEnv) -> None:
    """Cloud Run pulls from Artifact Registry, Container Registry and Docker Hub only: its 400
    fails the submit (the supervisor makes it CONFIG), naming the image."""
    with pytest.raises(RunnerError, match=r"ghcr\.io/acme/tool:1"):
        run_env.runner().submit(replace(_spec("echo never"), image="ghcr.io/acme/tool:1"))


def test_a_job_without_its_execution_yet_is_queued_and_cancels_by_deletion(run_env: RunEnv) -> None:
    """If Cloud Run has not made the execution yet, the poll says QUEUED and a cancel deletes
    the job under the tombstone, so no execution can start; a fresh runner reads CANCELLED."""
    from google.cloud import run_v2

    spec = _spec("echo never")
    job_id = cloud_run_job_id(spec.name)
    parent = f"projects/{PROJECT}/locations/{REGION}"
    jobs, _, _ = run_env.fake.clients()
    template = run_v2.TaskTemplate(
        containers=[run_v2.Container(image="python:3.12-slim", command=["/bin/sh"], args=["-c", "exit 0"])]
    )
    job = run_v2.Job(
        labels={"squall-deployment": "squall"}, template=run_v2.ExecutionTemplate(template=template)
    )
    jobs.create_job(parent=parent, job=job, job_id=job_id).result(timeout=10)  # no token: no execution
    runner = run_env.runner()
    handle = runner.find(spec)
    assert handle is not None and handle.data["execution"].endswith(f"/executions/{job_id}-run")
    assert runner.poll([handle])[handle.name].state is JobState.QUEUED
    runner.cancel(handle)
    status = run_env.runner().poll([handle])[handle.name]
    assert (status.state, status.failure) == (JobState.CANCELLED, Failure.CANCELLED)
    assert run_env.fake.runs[job_id] == 0


def test_the_job_id_is_short_and_the_execution_deterministic(run_env: RunEnv) -> None:
    spec = _spec("echo hi", name="x" * 63)
    job_id = cloud_run_job_id(spec.name)
    assert len(job_id) == 23 and job_id == cloud_run_job_id(spec.name) != cloud_run_job_id("y" * 63)
    handle = run_env.runner().submit(spec)
    assert handle.data["execution"].endswith(f"/jobs/{job_id}/executions/{job_id}-run")
    assert wait_terminal(run_env.runner(), handle, 30).state is JobState.SUCCEEDED


def test_squall_run_of_the_sample_on_the_fake(run_env: RunEnv, tmp_path: Path) -> None:
    """``squall run samples/cloud-run.yaml``, as a user types it, with the deployment's
    SQUALL_RUNNERS pointing the runner at the fake; the sample itself is unchanged."""
    result = squall_run_on_google_fake(
        "cloud-run.yaml",
        "cloud-run",
        run_env.fake,
        run_env.gcs,
        tmp_path,
        "-i",
        "day=2024-07-01",
        log_grace=LOG_GRACE,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "revenue on 2024-07-01: 1654.7 over 3 regions" in result.stdout, result.stdout
    assert "gs://my-squall-staging/squall/sq-" in result.stdout  # revenue.json, kept in the job's bucket
