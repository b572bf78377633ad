"""The Google Batch runner against the REST fake of Batch and fake-gcs-server, with the real SDKs.

Jobs really run: the fake (tests/emulators/google_batch.py) runs each job's container command
on this machine through the shared executor and mounts the bucket from fake-gcs-server the way
gcsfuse would, so the whole contract runs, including "cancel really stops the process" and
"a file written by one job is read by the next". Faults come from the fault proxy in front
of the fake (429s, resets, lost responses) and from the fake's outcomes (preemption, a lost
VM, quota, an image that cannot be pulled).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from runners.base import Failure, JobHandle, JobSpec, JobState, PushEvent, Runner
from runners.google_batch import GoogleBatchRunner
from runners.retry import RetryPolicy
from runners.testing import CallCounter, RunnerContract, count_local_processes, read_logs, sh, wait_terminal
from tests.emulators.fault_proxy import FaultProxy, ProxiedCalls
from tests.emulators.google_rest import UPLOAD_LAG_LABEL
from tests.integration.service_helpers import squall_run_on_google_fake

google_batch = pytest.importorskip("tests.emulators.google_batch")
FakeGoogleBatch = google_batch.FakeGoogleBatch
Outcome = google_batch.Outcome

PROJECT, REGION = "squall-tests", "europe-west1"
FAST_POLICY = RetryPolicy(attempts=4, initial_delay=0.0, max_delay=0.0, jitter=0.0)
LOG_GRACE = 3.0
"""Seconds a killed job's log waits for the sentinel (the fake syncs the mount at once)."""


def no_sleep(_seconds: float) -> None:
    """Retry backoff in tests: never really wait."""


@dataclass
class GoogleEnv:
    fake: Any
    gcs: Any
    bucket: str

    deployment: str = "squall"
    """The deployment label of the runners made now: one per contract case, so a list call sees
    that case's jobs only (cases clean nothing up; a real deployment deletes its ended jobs)."""

    def defaults(self, **extra: Any) -> dict[str, Any]:
        return {
            "projectId": PROJECT,
            "region": REGION,
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
    ) -> GoogleBatchRunner:
        """A runner on this backend (``endpoint``: through a proxy in front of the fake)."""
        return GoogleBatchRunner(
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
def google_env(fake_gcs: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GoogleEnv]:
    bucket = f"squall-{uuid.uuid4().hex[:8]}"
    fake_gcs.client().create_bucket(bucket)
    with FakeGoogleBatch(tmp_path_factory.mktemp("google-batch"), gcs_endpoint=fake_gcs.endpoint) as fake:
        yield GoogleEnv(fake, fake_gcs, bucket)


def _runner_factory(fake_endpoint: str, gcs_endpoint: str, bucket: str, deployment: str) -> GoogleBatchRunner:
    """Module level, so a process pool can pickle it: each OS process builds its own runner."""
    return GoogleBatchRunner(
        defaults={"projectId": PROJECT, "region": REGION, "bucket": bucket, "deployment": deployment},
        endpoint=fake_endpoint,
        storage_endpoint=gcs_endpoint,
        anonymous=True,
        policy=FAST_POLICY,
        sleep=no_sleep,
        rate=1000.0,
        log_grace=LOG_GRACE,
    )


class TestGoogleBatchContract(RunnerContract):
    deadline_s = 30.0

    @pytest.fixture(autouse=True)
    def _own_deployment(self, google_env: GoogleEnv) -> Iterator[None]:
        google_env.deployment = f"case-{uuid.uuid4().hex[:10]}"
        yield
        google_env.deployment = "squall"

    @pytest.fixture
    def runner(self, google_env: GoogleEnv) -> Runner:
        return google_env.runner()

    @pytest.fixture
    def second_runner(self, google_env: GoogleEnv) -> Runner:
        return google_env.runner()

    @pytest.fixture
    def faulty_runner(self, google_env: GoogleEnv) -> Iterator[Callable[[int], tuple[Runner, CallCounter]]]:
        proxies: list[FaultProxy] = []

        def make(failures: int) -> tuple[Runner, CallCounter]:
            batch = FaultProxy(google_env.fake.endpoint).start()
            gcs = FaultProxy(google_env.gcs.endpoint).start()
            proxies.extend((batch, gcs))
            if failures:
                batch.fail_before("*", "", status=503, times=failures)
            return google_env.runner(endpoint=batch.endpoint, storage_endpoint=gcs.endpoint), ProxiedCalls(
                batch, gcs
            )

        yield make
        for proxy in proxies:
            proxy.stop()

    @pytest.fixture
    def output_prefix(self, google_env: GoogleEnv) -> str:
        return f"gs://{google_env.bucket}/outputs/{uuid.uuid4().hex[:8]}/"

    @pytest.fixture
    def read_uri(self, google_env: GoogleEnv) -> Callable[[str], bytes]:
        return google_env.read

    @pytest.fixture
    def process_count(self) -> Callable[[str], int]:
        return count_local_processes  # the fake runs each job's command on this machine

    @pytest.fixture
    def host_dir(self, tmp_path: Path) -> Path:
        return tmp_path

    @pytest.fixture
    def runner_factory(self, google_env: GoogleEnv) -> Callable[[], Runner]:
        return functools.partial(
            _runner_factory,
            google_env.fake.endpoint,
            google_env.gcs.endpoint,
            google_env.bucket,
            google_env.deployment,
        )

    @pytest.fixture
    def lost_response_runner(self, google_env: GoogleEnv) -> Iterator[Callable[[], Runner]]:
        """create_job reaches the fake, which creates the job; the proxy then drops the response."""
        with FaultProxy(google_env.fake.endpoint) as proxy:
            proxy.drop_after("POST", r"/jobs\?", times=1)
            yield lambda: google_env.runner(endpoint=proxy.endpoint)

    @pytest.fixture
    def queued_options(self, google_env: GoogleEnv) -> Iterator[dict[str, Any]]:
        """A label the fake holds in QUEUED: no VM ever comes."""
        label = f"hold-{uuid.uuid4().hex[:8]}"
        google_env.fake.hold_labels.add(label)
        yield {"labels": {"squall-hold": label}}
        google_env.fake.hold_labels.discard(label)

    @pytest.fixture
    def lagging_runner(self, google_env: GoogleEnv) -> Runner:
        """Each job's files (its logs) reach the bucket 1.5 s after the job ended."""
        return google_env.runner(labels={UPLOAD_LAG_LABEL: "1500"})

    @pytest.fixture
    def unwritable_output_prefix(self) -> str:
        return f"gs://squall-no-such-bucket-{uuid.uuid4().hex[:8]}/outputs/"

    @pytest.fixture
    def failure_cases(self, google_env: GoogleEnv) -> dict[Failure, Callable[..., JobHandle]]:
        """Batch's own ways (see tests/emulators/google_batch.py's table) of ending a job."""

        def ended_by_batch(outcome: Any) -> Callable[..., JobHandle]:
            def make(runner: Runner, make_spec: Any, submit: Any) -> JobHandle:
                spec = make_spec("echo never")
                google_env.fake.outcomes[spec.name] = outcome
                return submit(runner, spec)

            return make

        def queued_too_long(outcome: Any | None) -> Callable[..., JobHandle]:
            def make(runner: Runner, make_spec: Any, submit: Any) -> JobHandle:
                spec = make_spec("echo never", options={"queuedTimeout": "PT1S"})
                if outcome is not None:
                    google_env.fake.outcomes[spec.name] = outcome
                else:
                    google_env.fake.hold.add(spec.name)
                return submit(runner, spec)

            return make

        def start_failed(runner: Runner, make_spec: Any, submit: Any) -> JobHandle:
            spec = make_spec("echo never")
            google_env.fake.outcomes[spec.name] = Outcome.start_failed()
            return submit(runner, spec)

        def lost(runner: Runner, make_spec: Any, submit: Any) -> JobHandle:
            """Evidence: the job is gone from Batch and Squall left no tombstone for it."""
            handle = submit(runner, make_spec("sleep 30"))
            google_env.fake.lost(handle.data["job"].rpartition("/")[2])
            return handle

        return {
            Failure.PREEMPTED: ended_by_batch(Outcome.preempted()),
            Failure.CONFIG: ended_by_batch(Outcome.image_pull_failed("docker.io/library/pyhton:3.12")),
            Failure.QUOTA: queued_too_long(Outcome.quota_exceeded("N2_CPUS")),
            Failure.UNSCHEDULABLE: queued_too_long(None),
            Failure.START_FAILED: start_failed,
            Failure.LOST: lost,
        }

    @pytest.fixture
    def push_event(self, google_env: GoogleEnv) -> Callable[[Runner, JobHandle], PushEvent]:
        """The notification Batch would publish now (attributes as the fake's table gives them)."""

        def event(runner: Runner, handle: JobHandle) -> PushEvent:
            job = google_env.fake.client().get_job(name=handle.data["job"])
            state = job.status.state.name
            attributes = {
                "Type": "JOB_STATE_CHANGED",
                "JobName": job.name,
                "JobUID": job.uid,
                "NewJobState": state,
                "Region": REGION,
            }
            return PushEvent("gcp.pubsub", {"data": f"Job state was updated: {state}"}, attributes)

        return event


@dataclass
class Throttled:
    """Proxies in front of Batch and Cloud Storage, and the rules that fault them."""

    batch: str
    gcs: str
    throttle: Any
    reset: Any


@pytest.fixture(scope="module")
def throttled(google_env: GoogleEnv) -> Iterator[Throttled]:
    """Every 4th Batch call is a 429 and every 5th GCS call a reset connection, as a busy project
    sees them."""
    with FaultProxy(google_env.fake.endpoint) as batch, FaultProxy(google_env.gcs.endpoint) as gcs:
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


class TestGoogleBatchContractThroughFaults(TestGoogleBatchContract):
    """The same contract with every runner call through the throttling proxies (the retry policy
    absorbs them: none of the cases may notice)."""

    counts_calls = False

    @pytest.fixture
    def runner(self, google_env: GoogleEnv, throttled: Throttled) -> Runner:
        return google_env.runner(endpoint=throttled.batch, storage_endpoint=throttled.gcs)

    @pytest.fixture
    def second_runner(self, google_env: GoogleEnv, throttled: Throttled) -> Runner:
        return google_env.runner(endpoint=throttled.batch, storage_endpoint=throttled.gcs)

    @pytest.fixture
    def runner_factory(self, google_env: GoogleEnv, throttled: Throttled) -> Callable[[], Runner]:
        return functools.partial(
            _runner_factory, throttled.batch, throttled.gcs, google_env.bucket, google_env.deployment
        )

    def test_the_proxies_really_fault_the_calls(
        self, runner: Runner, throttled: Throttled, make_spec: Any, submit: Any
    ) -> None:
        before = (throttled.throttle.applied, throttled.reset.applied)
        handle = submit(runner, make_spec("echo through", output_files=("x",)))
        assert wait_terminal(runner, handle, self.deadline_s).state is JobState.SUCCEEDED
        assert [r.text for r in read_logs(runner, handle, self.deadline_s)] == ["through"]
        assert throttled.throttle.applied > before[0] and throttled.reset.applied > before[1]


# -- beyond the contract


def _spec(script: str, **fields: Any) -> JobSpec:
    fields.setdefault("name", f"gb-{uuid.uuid4().hex[:12]}")
    return JobSpec(command=sh(script), **fields)


def test_a_preempted_job_is_preempted_not_a_user_error(google_env: GoogleEnv) -> None:
    runner = google_env.runner(provisioningModel="SPOT")
    spec = _spec("sleep 30")
    google_env.fake.outcomes[spec.name] = Outcome.preempted(after=0.2)
    status = wait_terminal(runner, runner.submit(spec), 30)
    assert (status.state, status.failure, status.exit_code) == (JobState.FAILED, Failure.PREEMPTED, 50001)


def test_500_running_jobs_reconcile_in_five_list_calls(google_env: GoogleEnv) -> None:
    """One list call a page of 100; no get_job for a job the list shows."""
    runner = google_env.runner(deployment="bulk")
    handles = []
    for _ in range(500):
        spec = _spec("sleep 60")
        google_env.fake.hold.add(spec.name)  # stays queued: 500 live jobs, none running
        handles.append(runner.submit(spec))
    before = google_env.fake.calls.copy()
    fresh = google_env.runner(deployment="bulk")
    statuses = fresh.poll(handles)
    spent = google_env.fake.calls - before
    assert {s.state for s in statuses.values()} == {JobState.QUEUED} and len(statuses) == 500
    assert spent == {"ListJobs": 5}, spent
    for handle in handles:
        fresh.cancel(handle)
    for handle in handles:
        google_env.fake.hold.discard(handle.data["job"].rpartition("/")[2])


def test_cleanup_keeps_how_the_job_ended_after_batch_forgot_it(google_env: GoogleEnv) -> None:
    runner = google_env.runner()
    spec = _spec("echo done > out.txt; exit 3", output_files=("out.txt",))
    handle = runner.submit(spec)
    assert wait_terminal(runner, handle, 30).exit_code == 3
    runner.cleanup(handle)
    fresh = google_env.runner()
    status = fresh.poll([handle])[handle.name]
    assert (status.state, status.failure, status.exit_code) == (JobState.FAILED, Failure.USER, 3)
    assert google_env.read(status.output_files["out.txt"]) == b"done\n"
    assert [r.text for r in read_logs(fresh, handle, 30)] == []


def test_timeout_is_batch_max_run_duration(google_env: GoogleEnv) -> None:
    runner = google_env.runner()
    handle = runner.submit(_spec("sleep 30", timeout=timedelta(seconds=1)))
    status = wait_terminal(runner, handle, 30)
    assert (status.failure, status.exit_code, status.reason) == (
        Failure.TIMEOUT,
        50005,
        "timed out after 0:00:01",
    )


def test_a_job_queued_too_long_is_cancelled_in_batch(google_env: GoogleEnv) -> None:
    now = [datetime.now(UTC)]
    runner = GoogleBatchRunner(
        defaults=google_env.defaults(),
        endpoint=google_env.fake.endpoint,
        storage_endpoint=google_env.gcs.endpoint,
        anonymous=True,
        policy=FAST_POLICY,
        sleep=no_sleep,
        now=lambda: now[0],
    )
    spec = _spec("echo never")
    google_env.fake.hold.add(spec.name)
    handle = runner.submit(spec)
    assert runner.poll([handle])[handle.name].state is JobState.QUEUED
    now[0] += timedelta(minutes=31)
    status = runner.poll([handle])[handle.name]
    assert (status.state, status.failure) == (JobState.FAILED, Failure.UNSCHEDULABLE)
    job = google_env.fake.client().get_job(name=handle.data["job"])
    assert job.status.state.name in {"CANCELLATION_IN_PROGRESS", "CANCELLED"}
    assert google_env.fake.runs[spec.name] == 0


def test_squall_run_of_the_sample_on_the_fake(google_env: GoogleEnv, tmp_path: Path) -> None:
    """``squall run samples/google-batch.yaml``, as a user types it, with the deployment's
    SQUALL_RUNNERS pointing the runner at the fake; the sample itself is unchanged."""
    result = squall_run_on_google_fake(
        "google-batch.yaml",
        "google-batch",
        google_env.fake,
        google_env.gcs,
        tmp_path,
        "-i",
        "paths=2000",
        log_grace=LOG_GRACE,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "one-day VaR at 0.99:" in result.stdout and "over 2000 paths" in result.stdout
    assert "gs://my-squall-staging/squall/" in result.stdout  # var.json, kept in the job's bucket
