"""Cloud Run end to end: a flow mixing a Cloud Run task and a Google Batch task, through the handlers.

The same deployment as the Google Batch end-to-end test (api, events and tick containers, each
with its own runtime and runners, over one DynamoDB Local table; storage on fake-gcs-server),
with the Cloud Run fake beside the Google Batch one. Cloud Run has no push events for jobs: its
task ends through the tick's reconcile, the Google Batch one through Pub/Sub.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from control_plane.engine.states import State
from runners.cloud_run import CloudRunRunner
from tests.integration.service_helpers import messages
from tests.integration.test_aws_batch_runner import BatchEnv, batch_env  # noqa: F401  (a fixture)
from tests.integration.test_google_batch_end_to_end import GOOGLE, SHELL, Cloud
from tests.integration.test_google_batch_runner import FAST_POLICY, PROJECT, REGION, no_sleep
from tests.integration.test_ingress import Issuer, issuer  # noqa: F401  (a fixture)

cloud_run = pytest.importorskip("tests.emulators.cloud_run")
google_batch = pytest.importorskip("tests.emulators.google_batch")

CLOUD_RUN = "io.kestra.plugin.ee.gcp.runner.CloudRun"


class Clouds(Cloud):
    """The Google Batch deployment with Cloud Run beside it."""

    def __init__(self, run_fake: Any, *args: Any) -> None:
        self.run_fake = run_fake  # before the containers, which Cloud builds in its __init__
        super().__init__(*args)

    def runners(self) -> dict[str, Any]:
        return {
            **super().runners(),
            "cloud-run": CloudRunRunner(
                defaults={"projectId": PROJECT, "region": REGION, "bucket": self.bucket},
                endpoint=self.run_fake.endpoint,
                storage_endpoint=self.gcs.endpoint,
                anonymous=True,
                policy=FAST_POLICY,
                sleep=no_sleep,
                rate=1000.0,
                log_grace=3.0,
            ),
        }


@pytest.fixture
def clouds(
    tmp_path: Path,
    dynamodb_table: tuple[Any, str],
    fake_gcs: Any,
    pubsub_emulator: Any,
    batch_env: BatchEnv,  # noqa: F811
    issuer: Issuer,  # noqa: F811
) -> Iterator[Clouds]:
    batch = google_batch.FakeGoogleBatch(
        tmp_path / "google", gcs_endpoint=fake_gcs.endpoint, pubsub_endpoint=pubsub_emulator.endpoint
    ).start()
    run = cloud_run.FakeCloudRun(tmp_path / "run", gcs_endpoint=fake_gcs.endpoint).start()
    world = Clouds(run, tmp_path, dynamodb_table, batch, fake_gcs, pubsub_emulator, batch_env, issuer)
    try:
        yield world
    finally:
        world.close()
        run.stop()
        batch.stop()


def test_a_file_goes_from_cloud_run_to_google_batch(clouds: Clouds) -> None:
    marker = uuid.uuid4().hex[:8]
    source = f"""
id: mixed
namespace: e2e
tasks:
  - id: make
    type: {SHELL}
    containerImage: python:3.12-slim
    taskRunner: {{type: {CLOUD_RUN}}}
    outputFiles: [made.txt]
    commands: ["echo 'made on cloud run {marker}' > made.txt"]
  - id: use
    type: {SHELL}
    containerImage: python:3.12-slim
    taskRunner: {{type: {GOOGLE}}}
    inputFiles:
      got.txt: "{{{{ outputs.make.outputFiles['made.txt'] }}}}"
    commands: ["cat got.txt", "echo 'read on google batch'"]
"""
    execution_id = clouds.start(source)
    assert clouds.drive(execution_id) is State.SUCCESS
    execution = clouds.api_rt.store.get_execution(execution_id)
    make = next(tr for tr in execution.ordered_taskruns() if tr.task_id == "make")
    assert (make.outputs or {})["outputFiles"]["made.txt"].startswith("gs://")
    assert messages(clouds.api_rt, execution_id, "use") == [
        f"made on cloud run {marker}",
        "read on google batch",
    ]
    assert clouds.run_fake.calls["CreateJob"] == 1 and clouds.fake.calls["CreateJob"] == 1
