"""A one-job WorkingDirectory (ADR 0016) on AWS Batch (moto server mode), the storage on moto S3.

Three children with an input file of 3 KB each: alone, each fits inline in its job's command
(6 KiB without ``taskRunner.bucket``); together they would not. As one job, the later
children's files go through the deployment storage and are staged by reference (sidecars),
so the WorkingDirectory runs as one Batch job without a bucket option.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from control_plane.engine.states import State
from control_plane.runtime import load_settings, open_runtime
from control_plane.service.storage import open_task_storage
from control_plane.store.sqlite import SqliteStore
from runners.aws_batch import AwsBatchRunner
from tests.integration.service_helpers import deploy_and_run, messages
from tests.integration.test_aws_batch_runner import (  # noqa: F401  (batch_env is a fixture)
    FAST_POLICY,
    LOG_GRACE,
    REGION,
    BatchEnv,
    _session,
    batch_env,
    no_sleep,
)

PADDING = "#" * 3000


@pytest.fixture(autouse=True)
def _aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """The storage's own S3 client (the control plane's) finds moto's keys as boto3 would."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


def flow() -> str:
    children = "".join(
        f"""
      - id: c{i}
        type: io.kestra.plugin.scripts.shell.Commands
        containerImage: python:3.12-slim
        taskRunner:
          type: io.kestra.plugin.ee.aws.runner.Batch
        inputFiles:
          pad{i}.txt: "{PADDING}"
        commands:
          - echo "c{i} saw" $(ls f*.txt 2>/dev/null) "and $(wc -c < pad{i}.txt) bytes"
          - echo {i} > f{i}.txt
"""
        for i in range(3)
    )
    return f"""
id: wd-batch
namespace: squall.batch
tasks:
  - id: worker
    type: io.kestra.plugin.core.flow.WorkingDirectory
    tasks:{children}
"""


def test_a_working_directory_of_big_scripts_is_one_batch_job(batch_env: BatchEnv, tmp_path: Path) -> None:  # noqa: F811
    runner = AwsBatchRunner(  # no bucket: only what the deployment storage holds is staged by reference
        session_factory=_session,
        endpoint_url=batch_env.endpoint,
        region=REGION,
        defaults={"jobQueueArn": batch_env.run_queue},
        policy=FAST_POLICY,
        sleep=no_sleep,
        log_grace=LOG_GRACE,
    )
    storage = open_task_storage(
        f"s3://{batch_env.bucket}/deploy-{tmp_path.name}/",
        options={"s3": {"endpoint_url": batch_env.endpoint, "region": REGION}},
    )
    rt = open_runtime(
        load_settings({}, data_dir=str(tmp_path / "data")),
        store=SqliteStore(tmp_path / "squall.db"),
        runners={"aws-batch": runner},
        storage=storage,
    )
    try:
        execution = deploy_and_run(rt, flow())
        assert execution.state is State.SUCCESS, [
            (tr.task_id, tr.error) for tr in execution.taskruns.values()
        ]
        jobs = {a.job for tr in execution.taskruns.values() for a in tr.attempts if a.job}
        assert len(jobs) == 1
        assert messages(rt, execution.id, "c0") == ["c0 saw and 3000 bytes"]
        assert messages(rt, execution.id, "c2") == ["c2 saw f0.txt f1.txt and 3000 bytes"]
    finally:
        rt.close()
