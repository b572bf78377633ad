"""Google Batch end to end: the Lambda handlers over DynamoDB Local, jobs really run.

Three warm containers (api, events, tick), each its own runtime with its own store client and
its own runner instances, share one DynamoDB Local table, as the functions do in AWS. Google
Batch is the REST fake (jobs run here, the bucket on fake-gcs-server is mounted into them),
AWS Batch is moto's server with the executor, and Batch's notifications go to the Pub/Sub
emulator; a push subscription cannot be used (the emulator does not sign pushes), so the test
pulls each message and delivers it as the push Google would send: the envelope, signed with an
OIDC token by a local issuer whose keys the events function fetches, through the events
handler. AWS Batch's jobs end through the tick's reconcile (moto sends no EventBridge events).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from control_plane.engine.states import State
from control_plane.handlers import api, events, tick
from control_plane.handlers.container import install
from control_plane.runtime import Runtime, load_settings, open_runtime, visit_after
from control_plane.service.storage import open_task_storage
from control_plane.store.dynamodb import DynamoDBStore
from runners.google_batch import GoogleBatchRunner
from runners.testing import count_local_processes
from tests.integration.api_events import LambdaContext, event
from tests.integration.service_helpers import messages
from tests.integration.test_aws_batch_runner import REGION as AWS_REGION
from tests.integration.test_aws_batch_runner import BatchEnv, batch_env, batch_state_change  # noqa: F401
from tests.integration.test_google_batch_runner import FAST_POLICY, PROJECT, REGION, no_sleep
from tests.integration.test_ingress import AUDIENCE, PUSHER, Issuer, issuer, pubsub_push  # noqa: F401

google_batch = pytest.importorskip("tests.emulators.google_batch")

TOPIC, SUBSCRIPTION = "squall-batch", "squall-events"
SHELL = "io.kestra.plugin.scripts.shell.Commands"
GOOGLE = "io.kestra.plugin.ee.gcp.runner.Batch"
AWS = "io.kestra.plugin.ee.aws.runner.Batch"
DEADLINE = 90.0


@pytest.fixture(autouse=True)
def _aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", AWS_REGION)


class Cloud:
    """The deployment: its table, storage, the two clouds, and the three functions' containers."""

    def __init__(
        self,
        tmp_path: Path,
        table: tuple[Any, str],
        fake: Any,
        gcs: Any,
        pubsub: Any,
        aws: BatchEnv,
        signer: Issuer,
    ) -> None:
        self.fake, self.gcs, self.aws, self.issuer = fake, gcs, aws, signer
        self.bucket = f"squall-e2e-{uuid.uuid4().hex[:8]}"
        gcs.client().create_bucket(self.bucket)
        self.pubsub = pubsub.client()
        topic = self.pubsub.create_topic(PROJECT, f"{TOPIC}-{self.bucket}")
        self.subscription = self.pubsub.create_subscription(PROJECT, f"{SUBSCRIPTION}-{self.bucket}", topic)
        self.topic = topic
        self.client, self.table = table
        self.settings = load_settings(
            {},
            data_dir=str(tmp_path / "data"),
            auth="none",
            reconcile_after=0.5,
            submit_grace=120,
            pubsub_audience=AUDIENCE,
            pubsub_service_account=PUSHER,
            pubsub_certs_url=signer.url,
        )
        self.opened: list[Runtime] = []
        self.aws_delivered: set[str] = set()
        self.api_rt, self.events_rt, self.tick_rt = self.container(), self.container(), self.container()

    def google(self) -> GoogleBatchRunner:
        return GoogleBatchRunner(
            defaults={
                "projectId": PROJECT,
                "region": REGION,
                "bucket": self.bucket,
                "notificationTopic": self.topic,
            },
            endpoint=self.fake.endpoint,
            storage_endpoint=self.gcs.endpoint,
            anonymous=True,
            policy=FAST_POLICY,
            sleep=no_sleep,
            rate=1000.0,
            log_grace=3.0,
        )

    def runners(self) -> dict[str, Any]:
        """This container's own runner instances (a subclass adds more clouds)."""
        return {"google-batch": self.google(), "aws-batch": self.aws.runner()}

    def container(self) -> Runtime:
        """A warm container of one function: its own store client, runners and storage client."""
        storage = open_task_storage(
            f"gs://{self.bucket}/deploy",
            read=(f"s3://{self.aws.bucket}/",),
            options={
                "gs": {"endpoint": self.gcs.endpoint},
                "s3": {"endpoint_url": self.aws.endpoint, "region": AWS_REGION},
            },
        )
        rt = open_runtime(
            self.settings,
            store=DynamoDBStore(self.table, client=self.client, visit_after=visit_after(self.settings)),
            runners=self.runners(),
            storage=storage,
        )
        self.opened.append(rt)
        return rt

    # -- the functions

    def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        install(self.api_rt)
        try:
            return api.handler(event(method, path, **kwargs), LambdaContext())
        finally:
            install(None)

    def start(self, source: str) -> str:
        record = self.api_rt.service.deploy(source, "flow.yaml")
        answer = self.call("POST", f"/api/v1/main/executions/{record.namespace}/{record.id}")
        assert answer["statusCode"] == 200, answer
        return str(json.loads(answer["body"])["id"])

    def deliver_notifications(self) -> int:
        """Pull what Batch published and push it to the events function, OIDC-signed; count 200s."""
        received = self.pubsub.pull(self.subscription, 100)
        applied = 0
        install(self.events_rt)
        try:
            for message in received:
                data = self.pubsub.data(message)
                attributes = dict(message["message"].get("attributes") or {})
                request = pubsub_push(data, self.issuer.token(), **attributes)
                answer = events.handler(request, LambdaContext(function_name="squall-events"))
                assert answer["statusCode"] == 200, answer
                applied += 1
        finally:
            install(None)
        if received:
            self.pubsub.ack(self.subscription, [m["ackId"] for m in received])
        return applied

    def deliver_aws_events(self) -> int:
        """The "Batch Job State Change" EventBridge delivers for each AWS job that ended (moto sends none)."""
        batch = self.aws.client("batch")
        ended = [
            j["jobId"]
            for status in ("SUCCEEDED", "FAILED")
            for j in batch.list_jobs(jobQueue=self.aws.run_queue, jobStatus=status)["jobSummaryList"]
            if j["jobId"] not in self.aws_delivered
        ]
        for job in batch.describe_jobs(jobs=ended)["jobs"] if ended else []:
            body = batch_state_change(job)
            install(self.events_rt)
            try:
                events.handler(body, None)
            finally:
                install(None)
            self.aws_delivered.add(job["jobId"])
        return len(ended)

    def tick(self) -> None:
        install(self.tick_rt)
        try:
            tick.handler({}, None)
        finally:
            install(None)

    def state(self, execution_id: str) -> State:
        return self.api_rt.store.get_execution(execution_id).state

    def drive(self, execution_id: str, until: Callable[[State], bool] = lambda s: s.terminal) -> State:
        """Deliver notifications and tick until ``until(state)``; fail at the deadline."""
        deadline = time.monotonic() + DEADLINE
        while not until(state := self.state(execution_id)):
            if time.monotonic() > deadline:
                pytest.fail(f"execution {execution_id} still {state} after {DEADLINE}s")
            if not self.deliver_notifications() + self.deliver_aws_events():
                self.tick()
                time.sleep(0.05)  # yield the CPU to the jobs between rounds; the loop waits on state
        return state

    def close(self) -> None:
        for rt in self.opened:
            rt.close()
        self.pubsub.close()


@pytest.fixture
def cloud(
    tmp_path: Path,
    dynamodb_table: tuple[Any, str],
    fake_gcs: Any,
    pubsub_emulator: Any,
    batch_env: BatchEnv,  # noqa: F811
    issuer: Issuer,  # noqa: F811
) -> Iterator[Cloud]:
    fake = google_batch.FakeGoogleBatch(
        tmp_path / "google", gcs_endpoint=fake_gcs.endpoint, pubsub_endpoint=pubsub_emulator.endpoint
    ).start()
    world = Cloud(tmp_path, dynamodb_table, fake, fake_gcs, pubsub_emulator, batch_env, issuer)
    try:
        yield world
    finally:
        world.close()
        fake.stop()


RELAY = f"""
id: relay
namespace: e2e
tasks:
  - id: a
    type: {SHELL}
    containerImage: python:3.12-slim
    taskRunner: {{type: {GOOGLE}}}
    outputFiles: [a.txt]
    commands: ["echo 'made on google' > a.txt"]
  - id: b
    type: {SHELL}
    containerImage: python:3.12-slim
    taskRunner: {{type: {AWS}}}
    inputFiles:
      got.txt: "{{{{ outputs.a.outputFiles['a.txt'] }}}}"
    outputFiles: [b.txt]
    commands: ["cat got.txt > b.txt", "echo 'and on aws' >> b.txt"]
  - id: c
    type: {SHELL}
    containerImage: python:3.12-slim
    taskRunner: {{type: {GOOGLE}}}
    inputFiles:
      got.txt: "{{{{ outputs.b.outputFiles['b.txt'] }}}}"
    commands: ["cat got.txt"]
"""


def test_a_file_goes_from_google_batch_to_aws_batch_and_back(cloud: Cloud) -> None:
    execution_id = cloud.start(RELAY)
    assert cloud.drive(execution_id) is State.SUCCESS
    execution = cloud.api_rt.store.get_execution(execution_id)
    outputs = {tr.task_id: (tr.outputs or {}).get("outputFiles", {}) for tr in execution.ordered_taskruns()}
    assert outputs["a"]["a.txt"].startswith("gs://")
    assert outputs["b"]["b.txt"].startswith(("s3://", "gs://"))
    assert messages(cloud.api_rt, execution_id, "c") == ["made on google", "and on aws"]


def _one_job(cloud: Cloud, label: str) -> str:
    """The job id of the only Batch job carrying ``label``, once it exists."""
    found: list[str] = []

    def listed() -> bool:
        jobs = cloud.fake.client().list_jobs(parent=f"projects/{PROJECT}/locations/{REGION}")
        found[:] = [j.name.rpartition("/")[2] for j in jobs if label in j.labels.values()]
        return bool(found)

    deadline = time.monotonic() + DEADLINE
    while not listed():
        assert time.monotonic() < deadline, f"no job labelled {label}"
        cloud.tick()
    return found[0]


def _single(label: str, script: str, retry: str = "") -> str:
    return f"""
id: single
namespace: e2e
tasks:
  - id: work
    type: {SHELL}
    containerImage: python:3.12-slim
    taskRunner:
      type: {GOOGLE}
      labels: {{e2e: {label}}}
    commands: ["{script}"]{retry}
"""


def test_kill_while_queued_cancels_the_job_before_it_ever_runs(cloud: Cloud) -> None:
    label = f"held-{uuid.uuid4().hex[:8]}"
    cloud.fake.hold_labels.add(label)
    execution_id = cloud.start(_single(label, "echo never"))
    job = _one_job(cloud, label)
    assert cloud.call("DELETE", f"/api/v1/main/executions/{execution_id}/actions/kill")["statusCode"] == 202
    assert cloud.drive(execution_id) is State.KILLED
    assert cloud.fake.calls["CancelJob"] >= 1 and cloud.fake.runs[job] == 0
    # the job itself was deleted at cleanup (Kestra's `delete`); how it ended stays in the bucket
    tombstone = cloud.gcs.client().bucket(cloud.bucket).blob(f"squall/{job}/final.json").download_as_bytes()
    assert json.loads(tombstone)["state"] == "CANCELLED"


def test_kill_while_running_stops_the_process(cloud: Cloud) -> None:
    token = f"e2e-{uuid.uuid4().hex[:10]}"
    execution_id = cloud.start(_single(token, f"sleep 120; echo {token}"))
    _one_job(cloud, token)
    deadline = time.monotonic() + DEADLINE
    while count_local_processes(token) == 0:
        assert time.monotonic() < deadline, "the job never started"
        cloud.deliver_notifications()
        time.sleep(0.05)
    assert cloud.call("DELETE", f"/api/v1/main/executions/{execution_id}/actions/kill")["statusCode"] == 202
    assert cloud.drive(execution_id) is State.KILLED
    assert count_local_processes(token) == 0


def test_a_preempted_attempt_runs_again_without_spending_the_tasks_retries(cloud: Cloud) -> None:
    label = f"spot-{uuid.uuid4().hex[:8]}"
    cloud.fake.hold_labels.add(label)
    execution_id = cloud.start(_single(label, "echo survived"))
    first = _one_job(cloud, label)
    cloud.fake.outcomes[first] = google_batch.Outcome.preempted()
    cloud.fake.hold_labels.discard(label)
    assert cloud.drive(execution_id) is State.SUCCESS
    (work,) = cloud.api_rt.store.get_execution(execution_id).ordered_taskruns()
    assert len(work.attempts) == 2 and work.infra_attempts == 1
    # each attempt keeps where its job ran (a console link) and why it failed; the API says so
    preempted, survived = work.attempts
    assert (preempted.runner, preempted.failure, survived.failure) == ("google-batch", "PREEMPTED", None)
    assert preempted.job_id and preempted.job_id != survived.job_id
    console = f"https://console.cloud.google.com/batch/jobsDetail/regions/{REGION}/jobs/{preempted.job_id}"
    assert preempted.job_url == f"{console}/details?project={PROJECT}"
    view = json.loads(cloud.call("GET", f"/api/v1/main/executions/{execution_id}")["body"])
    attempts = view["taskRunList"][0]["attempts"]
    assert [a["failureClass"] for a in attempts] == ["PREEMPTED", None]
    assert attempts[0]["jobUrl"] == preempted.job_url
    said = messages(cloud.api_rt, execution_id, "work")
    assert any(m.startswith("preempted: the VM was preempted (exit code 50001)") for m in said), said
    assert said[-1] == "survived"
