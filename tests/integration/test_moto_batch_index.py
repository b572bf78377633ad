"""The benchmarks' index over moto's Batch answers what moto answers, by key instead of by scan.

benchmarks/fanout.py runs 10,000+ Batch jobs through moto; it installs
:class:`~tests.emulators.moto_batch.BatchIndex` so that the runner's ListJobs by name and
DescribeJobs by id do not scan every job. These tests pin that the answers are moto's own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from runners.testing import wait_until
from tests.emulators.moto_batch import BatchExecutor, BatchIndex, create_queues

REGION = "us-east-1"
Batch = tuple[Any, dict[str, str], BatchExecutor]


@pytest.fixture(scope="module")
def batch(moto_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Batch]:
    executor = BatchExecutor(moto_server, tmp_path_factory.mktemp("batch-index")).start()
    try:
        session = boto3.Session(aws_access_key_id="t", aws_secret_access_key="t", region_name=REGION)
        client = session.client("batch", endpoint_url=moto_server)
        queues = create_queues(
            session.client("iam", endpoint_url=moto_server), client, "index", ("run", "park")
        )
        executor.modes = {queues["park"]: "park"}
        yield client, queues, executor
    finally:
        executor.stop()


def _submit(client: Any, queue: str, name: str, definition: str) -> str:
    return str(client.submit_job(jobName=name, jobQueue=queue, jobDefinition=definition)["jobId"])


def _definition(client: Any, command: tuple[str, ...] = ("true",)) -> str:
    name = f"index-{uuid.uuid4().hex[:8]}"
    props = {
        "image": "busybox",
        "command": list(command),
        "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "512"}],
    }
    return str(
        client.register_job_definition(jobDefinitionName=name, type="container", containerProperties=props)[
            "jobDefinitionArn"
        ]
    )


def _listed(client: Any, queue: str, value: str) -> list[str]:
    reply = client.list_jobs(jobQueue=queue, filters=[{"name": "JOB_NAME", "values": [value]}])
    return [j["jobId"] for j in reply["jobSummaryList"]]


def test_list_by_name_and_describe_by_id_answer_as_moto_does(batch: Batch) -> None:
    client, queues, _ = batch
    definition = _definition(client)
    tag = uuid.uuid4().hex[:6]
    ids = [_submit(client, queues["park"], name, definition) for name in (f"a-{tag}", f"b-{tag}", f"A-{tag}")]
    asked = [f"a-{tag}", f"b-{tag}", f"c-{tag}", f"a-{tag}*"]
    plain_lists = {value: _listed(client, queues["park"], value) for value in asked}
    plain_describe = client.describe_jobs(jobs=[ids[2], ids[0]])["jobs"]
    with BatchIndex():
        assert {value: _listed(client, queues["park"], value) for value in asked} == plain_lists
        later = _submit(client, queues["park"], f"a-{tag}", definition)  # the index catches up
        assert _listed(client, queues["park"], f"a-{tag}") == [ids[0], ids[2], later]
        indexed = client.describe_jobs(jobs=[ids[2], ids[0]])["jobs"]
        assert sorted(j["jobId"] for j in indexed) == sorted(j["jobId"] for j in plain_describe)
        assert client.describe_jobs(jobs=["no-such-job"])["jobs"] == []
    assert plain_lists[f"a-{tag}"] == [ids[0], ids[2]]  # moto matches names case-insensitively
    assert plain_lists[f"c-{tag}"] == []
    assert len(plain_lists[f"a-{tag}*"]) == 2


def test_a_job_is_heard_stopping_once(batch: Batch) -> None:
    client, queues, _ = batch
    definition = _definition(client)
    with BatchIndex() as index:
        job = _submit(client, queues["run"], f"run-{uuid.uuid4().hex[:6]}", definition)
        parked = _submit(client, queues["park"], f"park-{uuid.uuid4().hex[:6]}", definition)
        wait_until(lambda: job in index.stopped, 30.0, "the job never ended")
        assert client.describe_jobs(jobs=[job])["jobs"][0]["status"] == "SUCCEEDED"
        client.terminate_job(jobId=parked, reason="test")
        wait_until(lambda: parked in index.stopped, 30.0, "the parked job never stopped")
        assert list(index.stopped).count(job) == 1 and list(index.stopped).count(parked) == 1
        assert index.jobs_in(queues["run"]) >= 1


@pytest.mark.parametrize("direct", [False, True])
def test_direct_logs_write_what_the_api_writes(batch: Batch, moto_server: str, direct: bool) -> None:
    """The benchmark's ``direct_logs`` (moto's backend, no requests) leaves the stream the API would."""
    client, queues, executor = batch
    definition = _definition(client, ("sh", "-c", "echo hello; echo world >&2; printf last"))
    executor.direct_logs = direct
    try:
        with BatchIndex() as index:
            job = _submit(client, queues["run"], f"logs-{uuid.uuid4().hex[:6]}", definition)
            wait_until(lambda: job in index.stopped, 30.0, "the job never ended")
    finally:
        executor.direct_logs = False
    described = client.describe_jobs(jobs=[job])["jobs"][0]
    assert described["status"] == "SUCCEEDED"
    logs = boto3.client(
        "logs", endpoint_url=moto_server, region_name=REGION, aws_access_key_id="t", aws_secret_access_key="t"
    )

    def lines() -> list[str]:
        stream = described["container"]["logStreamName"]
        reply = logs.get_log_events(logGroupName="/aws/batch/job", logStreamName=stream, startFromHead=True)
        return sorted(event["message"] for event in reply["events"])

    wait_until(lambda: len(lines()) == 3, 10.0, "the job's three lines never reached CloudWatch")
    assert lines() == ["hello", "last", "world"]
