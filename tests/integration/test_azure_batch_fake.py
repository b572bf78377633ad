"""The Azure Batch fake (tests/emulators/azure_batch.py) through the real azure-batch client and Azurite.

What a runner relies on is checked here against the SDK itself: status codes the client
accepts, OData errors it maps to its exception types, ``odata.nextLink`` paging it follows,
node files by ranges, resource files fetched with SAS URLs that Azurite really checks, output
files uploaded per their condition.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from runners.testing import count_local_processes, wait_until

pytest.importorskip("azure.batch")
from azure.batch import models
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import (
    BlobSasPermissions,
    ContainerSasPermissions,
    generate_blob_sas,
    generate_container_sas,
)

from tests.emulators.azure_batch import FakeAzureBatch
from tests.emulators.azurite import ACCOUNT, ACCOUNT_KEY, Azurite

POOL = "pool-a"


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeAzureBatch]:
    with FakeAzureBatch(tmp_path_factory.mktemp("azure-batch")) as running:
        yield running


@pytest.fixture
def client(fake: FakeAzureBatch) -> Any:
    return fake.client()


@pytest.fixture
def job(client: Any) -> str:
    job_id = f"job-{uuid.uuid4().hex[:8]}"
    client.create_job(models.BatchJobCreateOptions(id=job_id, pool_info=models.BatchPoolInfo(pool_id=POOL)))
    return job_id


@pytest.fixture(scope="module")
def container(azurite: Azurite) -> str:
    name = f"c-{uuid.uuid4().hex[:8]}"
    azurite.service().create_container(name)
    return name


def _blob_url(azurite: Azurite, container: str, blob: str, *, key: str = ACCOUNT_KEY) -> str:
    sas = generate_blob_sas(
        ACCOUNT,
        container,
        blob,
        account_key=key,
        permission=BlobSasPermissions(read=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    return f"{azurite.endpoint.format(account=ACCOUNT)}/{container}/{blob}?{sas}"


def _container_url(azurite: Azurite, container: str) -> str:
    sas = generate_container_sas(
        ACCOUNT,
        container,
        account_key=ACCOUNT_KEY,
        permission=ContainerSasPermissions(write=True, create=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    return f"{azurite.endpoint.format(account=ACCOUNT)}/{container}?{sas}"


def _output(pattern: str, url: str, path: str, condition: str, meta: str = "") -> models.OutputFile:
    headers = [models.OutputFileUploadHeader(name="x-ms-meta-squalltask", value=meta)] if meta else None
    return models.OutputFile(
        file_pattern=pattern,
        destination=models.OutputFileDestination(
            container=models.OutputFileBlobContainerDestination(
                container_url=url, path=path, upload_headers=headers
            )
        ),
        upload_options=models.OutputFileUploadConfiguration(upload_condition=condition),
    )


def _completed(client: Any, job: str, task: str, deadline: float = 30.0) -> Any:
    wait_until(
        lambda: client.get_task(job, task).state == "completed", deadline, f"task {task} never completed"
    )
    return client.get_task(job, task)


def test_a_task_runs_with_resource_files_and_uploads_outputs_and_logs(
    client: Any, job: str, azurite: Azurite, container: str
) -> None:
    blobs = azurite.service().get_container_client(container)
    blobs.upload_blob("in/data.txt", b"alpha\n", overwrite=True)
    out = _container_url(azurite, container)
    task = models.BatchTaskCreateOptions(
        id="t1",
        command_line="/bin/sh -c 'cat in/data.txt; mkdir -p res/sub; printf r > res/sub/r.txt; echo oops >&2'",  # noqa: E501
        resource_files=[
            models.ResourceFile(
                http_url=_blob_url(azurite, container, "in/data.txt"), file_path="in/data.txt"
            )
        ],
        output_files=[
            _output("res/**/*", out, "t1/out", "taskcompletion", meta="t1"),
            _output("../std*.txt", out, "t1/log", "taskcompletion"),
            _output("res/**/*", out, "t1/never", "taskfailure"),
        ],
        environment_settings=[models.EnvironmentSetting(name="GREETING", value="hi there")],
    )
    client.create_task(job, task)
    done = _completed(client, job, "t1")
    info = done.execution_info
    assert (info.exit_code, info.result, info.failure_info) == (0, "success", None)
    assert info.start_time <= info.end_time
    assert b"".join(client.download_task_file(job, "t1", "stdout.txt")) == b"alpha\n"
    assert b"".join(client.download_task_file(job, "t1", "stdout.txt", ocp_range="bytes=2-3")) == b"ph"
    props = client.get_task_file_properties(job, "t1", "stderr.txt")
    assert int(props.content_length) == len(b"oops\n") and props.url.endswith("/files/stderr.txt")
    assert blobs.download_blob("t1/out/sub/r.txt").readall() == b"r"
    assert blobs.get_blob_client("t1/out/sub/r.txt").get_blob_properties().metadata == {"squalltask": "t1"}
    assert blobs.download_blob("t1/log/stdout.txt").readall() == b"alpha\n"
    assert not list(blobs.list_blobs(name_starts_with="t1/never/"))


def test_a_failing_task_says_why_and_uploads_on_failure_only(
    client: Any, job: str, azurite: Azurite, container: str
) -> None:
    out = _container_url(azurite, container)
    client.create_task(
        job,
        models.BatchTaskCreateOptions(
            id="t2",
            command_line="/bin/sh -c 'printf f > f.txt; exit 3'",
            output_files=[
                _output("f.txt", out, "t2/fail.txt", "taskfailure"),
                _output("f.txt", out, "t2/ok.txt", "tasksuccess"),
            ],
        ),
    )
    info = _completed(client, job, "t2").execution_info
    assert (info.exit_code, info.result) == (3, "failure")
    assert (info.failure_info.category, info.failure_info.code) == ("usererror", "FailureExitCode")
    names = {
        b.name for b in azurite.service().get_container_client(container).list_blobs(name_starts_with="t2/")
    }
    assert names == {"t2/fail.txt"}


def test_errors_are_odata_bodies_the_sdk_maps(client: Any, job: str) -> None:
    task = models.BatchTaskCreateOptions(id="dup", command_line="/bin/true")
    client.create_task(job, task)
    with pytest.raises(ResourceExistsError) as exists:
        client.create_task(job, task)
    assert exists.value.error.code == "TaskExists"
    with pytest.raises(ResourceExistsError) as job_exists:
        client.create_job(models.BatchJobCreateOptions(id=job, pool_info=models.BatchPoolInfo(pool_id=POOL)))
    assert job_exists.value.error.code == "JobExists"
    with pytest.raises(ResourceNotFoundError) as missing:
        client.get_task(job, "no-such-task")
    assert missing.value.error.code == "TaskNotFound"
    with pytest.raises(ResourceNotFoundError):
        client.create_task("no-such-job", task)
    with pytest.raises(HttpResponseError) as bad:
        client.create_task(
            job, {"id": "bad", "commandLine": "/bin/true", "constraints": {"maxWallClok": "PT1S"}}
        )
    assert bad.value.status_code == 400 and "constraints.maxWallClok" in str(bad.value)


def test_requests_signed_with_another_key_are_refused(fake: FakeAzureBatch, job: str) -> None:
    from azure.batch import BatchClient
    from azure.core.credentials import AzureNamedKeyCredential

    forged = BatchClient(
        fake.endpoint,
        AzureNamedKeyCredential(fake.account, "Zm9yZ2Vka2V5Zm9yZ2Vka2V5Zm9yZ2Vka2V5Zm9yZ2U="),
        retry_total=0,
    )
    with pytest.raises(HttpResponseError) as refused:
        forged.get_job(job)
    assert (refused.value.status_code, refused.value.error.code) == (403, "AuthenticationFailed")


def test_list_follows_next_links_and_filters_on_state(client: Any, job: str, fake: FakeAzureBatch) -> None:
    for i in range(5):
        client.create_task(job, models.BatchTaskCreateOptions(id=f"l{i}", command_line="/bin/true"))
    for i in range(5):
        _completed(client, job, f"l{i}")
    before = fake.calls["ListTasks"]
    listed = [t.id for t in client.list_tasks(job, max_results=2)]
    assert listed == [f"l{i}" for i in range(5)]
    assert fake.calls["ListTasks"] - before == 3  # pages of 2, 2 and 1
    client.create_task(job, models.BatchTaskCreateOptions(id="slow", command_line="/bin/sh -c 'sleep 30'"))
    wait_until(lambda: client.get_task(job, "slow").state == "running", 10, "slow never ran")
    running = [t.id for t in client.list_tasks(job, filter="state eq 'running'", select=["id", "state"])]
    assert running == ["slow"]
    client.terminate_task(job, "slow")


def test_terminate_stops_the_process_and_is_final(client: Any, job: str) -> None:
    token = f"squall-fake-{uuid.uuid4().hex}"
    client.create_task(
        job, models.BatchTaskCreateOptions(id="term", command_line=f"/bin/sh -c 'sleep 60 # {token}'")
    )
    wait_until(lambda: count_local_processes(token) >= 1, 10, "the task never started")
    client.terminate_task(job, "term")
    info = client.get_task(job, "term").execution_info
    assert (info.result, info.failure_info.code) == ("failure", "TaskEnded")
    wait_until(lambda: count_local_processes(token) == 0, 10, "the terminated task still runs")
    with pytest.raises(ResourceExistsError) as done:
        client.terminate_task(job, "term")
    assert done.value.error.code == "TaskCompleted"


def test_max_wall_clock_time_ends_the_task(client: Any, job: str) -> None:
    client.create_task(
        job,
        models.BatchTaskCreateOptions(
            id="wall",
            command_line="/bin/sh -c 'sleep 60'",
            constraints=models.BatchTaskConstraints(max_wall_clock_time=timedelta(seconds=1)),
        ),
    )
    info = _completed(client, job, "wall").execution_info
    assert info.failure_info.code == "TaskEnded" and "wall clock" in info.failure_info.message


def test_resource_file_failures_are_usererrors_and_sas_is_enforced(
    client: Any, job: str, azurite: Azurite, container: str
) -> None:
    azurite.service().get_container_client(container).upload_blob("secret.txt", b"s", overwrite=True)
    forged = _blob_url(azurite, container, "secret.txt", key="Zm9yZ2Vka2V5Zm9yZ2Vka2V5Zm9yZ2Vka2V5Zm9yZ2U=")
    cases = {
        "gone": (_blob_url(azurite, container, "no-such.txt"), "BlobNotFound"),
        "forged": (forged, "BlobAccessDenied"),
    }
    for task_id, (url, _) in cases.items():
        client.create_task(
            job,
            models.BatchTaskCreateOptions(
                id=task_id,
                command_line="/bin/sh -c 'echo ran'",
                resource_files=[models.ResourceFile(http_url=url, file_path=f"{task_id}.txt")],
            ),
        )
    for task_id, (_, code) in cases.items():
        info = _completed(client, job, task_id).execution_info
        assert (info.result, info.failure_info.category, info.failure_info.code) == (
            "failure",
            "usererror",
            code,
        )
        assert info.exit_code is None and f"{task_id}.txt" in info.failure_info.message


def test_a_preempted_task_is_requeued_and_runs_again(
    client: Any, job: str, fake: FakeAzureBatch, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    client.create_task(
        job,
        models.BatchTaskCreateOptions(
            id="spot", command_line=f"/bin/sh -c 'echo run >> {ledger}; sleep 2; echo done'"
        ),
    )
    wait_until(lambda: ledger.exists(), 10, "the task never ran")
    fake.hold_pools.add(POOL)
    try:
        fake.preempt(job, "spot")
        task = client.get_task(job, "spot")
        assert (task.state, task.execution_info.requeue_count, task.node_info) == ("active", 1, None)
    finally:
        fake.hold_pools.discard(POOL)
        fake.held_changed()
    info = _completed(client, job, "spot").execution_info
    assert (info.exit_code, info.requeue_count, fake.runs["spot"]) == (0, 1, 2)
    assert ledger.read_text().splitlines() == ["run", "run"]
