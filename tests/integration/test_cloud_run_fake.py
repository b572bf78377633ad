"""The Cloud Run Admin API v2 fake, driven through the real google-cloud-run clients (REST).

The Cloud Run runner is tested against this fake, so the fake is tested first on its own:
what the SDK sends must be accepted, what it reads (jobs, executions, tasks, operations) must
parse, errors must become the google-api-core exceptions the real service gives, and
executions must really run, fail, retry, time out, be cancelled and be deleted. Raw httpx
covers what the SDK hides (unknown fields). Every wait is on a condition with a deadline.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from runners.testing import count_local_processes, wait_until

run_v2 = pytest.importorskip("google.cloud.run_v2")
httpx = pytest.importorskip("httpx")
exceptions = pytest.importorskip("google.api_core.exceptions")

from tests.emulators.cloud_run import FakeCloudRun  # noqa: E402

PROJECT = "squall-test"
PARENT = f"projects/{PROJECT}/locations/us-central1"
DEADLINE = 20.0
State = run_v2.Condition.State
Reason = run_v2.Condition.ExecutionReason


@pytest.fixture
def fake(cloud_run: Callable[..., FakeCloudRun]) -> FakeCloudRun:
    return cloud_run()


@pytest.fixture
def clients(fake: FakeCloudRun) -> tuple[Any, Any, Any]:
    return fake.clients()


def job_id() -> str:
    return f"j-{uuid.uuid4().hex[:10]}"


def shell(text: str, *, retries: int | None = 0, timeout: str | None = None, **template: Any) -> Any:
    """A job whose one container runs ``sh -c text``."""
    container = run_v2.Container(
        image="python:3.11", command=["sh", "-c", text], **template.pop("container", {})
    )
    task = run_v2.TaskTemplate(containers=[container], **template)
    if retries is not None:
        task.max_retries = retries
    if timeout is not None:
        task.timeout = timeout
    return run_v2.Job(template=run_v2.ExecutionTemplate(template=task))


def completed(execution: Any) -> Any:
    return next(c for c in execution.conditions if c.type_ == "Completed")


def wait_ended(executions: Any, name: str) -> Any:
    def done() -> bool:
        return bool(executions.get_execution(name=name).completion_time)

    wait_until(done, DEADLINE, f"{name} did not end")
    return executions.get_execution(name=name)


def test_a_start_token_runs_one_execution_named_from_the_job_and_a_second_create_conflicts(
    fake: FakeCloudRun, clients: tuple[Any, Any, Any]
) -> None:
    jobs, executions, tasks = clients
    name = job_id()
    job = shell("echo hello $CLOUD_RUN_EXECUTION", retries=None)
    job.start_execution_token = "t1"
    operation = jobs.create_job(parent=PARENT, job_id=name, job=job)
    created = operation.result(timeout=DEADLINE)
    assert created.name == f"{PARENT}/jobs/{name}"
    assert created.template.template.max_retries == 3  # the API's default, filled in
    assert created.template.template.timeout == timedelta(seconds=600)
    assert isinstance(operation.metadata, run_v2.Job)

    execution = wait_ended(executions, f"{PARENT}/jobs/{name}/executions/{name}-t1")
    assert execution.succeeded_count == 1 and execution.job == name
    assert completed(execution).state == State.CONDITION_SUCCEEDED
    assert [line.text for line in fake.log_lines(f"{name}-t1")] == [f"hello {name}-t1"]
    (task,) = tasks.list_tasks(parent=execution.name)
    assert task.last_attempt_result.exit_code == 0 and task.last_attempt_result.status.code == 0
    assert tasks.get_task(name=task.name).index == 0

    with pytest.raises(exceptions.Conflict):
        jobs.create_job(parent=PARENT, job_id=name, job=job)
    assert fake.runs[name] == 1
    assert [e.name for e in executions.list_executions(parent=f"{PARENT}/jobs/{name}")] == [execution.name]
    got = jobs.get_job(name=created.name)
    assert got.execution_count == 1 and got.latest_created_execution.name == execution.name
    assert (
        got.latest_created_execution.completion_status
        == run_v2.ExecutionReference.CompletionStatus.EXECUTION_SUCCEEDED
    )


def test_tokens_too_long_or_bad_ids_are_refused(clients: tuple[Any, Any, Any]) -> None:
    jobs = clients[0]
    job = shell("true")
    job.start_execution_token = "x" * 40
    with pytest.raises(exceptions.BadRequest, match="fewer than 63"):
        jobs.create_job(parent=PARENT, job_id="a" * 23, job=job)
    with pytest.raises(exceptions.BadRequest, match="Job id"):
        jobs.create_job(parent=PARENT, job_id="Upper", job=shell("true"))


def test_list_jobs_and_executions_across_jobs_with_the_wildcard(
    fake: FakeCloudRun, clients: tuple[Any, Any, Any]
) -> None:
    jobs, executions, _ = clients
    names = [job_id() for _ in range(3)]
    for name in names:
        jobs.create_job(parent=PARENT, job_id=name, job=shell("true")).result(timeout=DEADLINE)
    runs = [jobs.run_job(name=f"{PARENT}/jobs/{name}") for name in names[:2]]
    for operation in runs:
        assert operation.result(timeout=DEADLINE).succeeded_count == 1
    listed = jobs.list_jobs(request=run_v2.ListJobsRequest(parent=PARENT, page_size=2))
    assert [j.name.rsplit("/", 1)[1] for j in listed] == names[::-1]  # newest first, over two pages
    assert fake.calls["ListJobs"] == 2
    every = {e.name for e in executions.list_executions(parent=f"{PARENT}/jobs/-")}
    assert every == {operation.metadata.name for operation in runs}
    for execution in executions.list_executions(parent=f"{PARENT}/jobs/-"):
        assert execution.name.startswith(f"{PARENT}/jobs/{execution.job}/executions/{execution.job}-")
        assert len(execution.name.rsplit("-", 1)[1]) == 5
    assert len(list(clients[2].list_tasks(parent=f"{PARENT}/jobs/-/executions/-"))) == 2


def test_a_non_zero_exit_fails_the_execution_with_the_code(clients: tuple[Any, Any, Any]) -> None:
    jobs, executions, tasks = clients
    name = job_id()
    jobs.create_job(parent=PARENT, job_id=name, job=shell("exit 3")).result(timeout=DEADLINE)
    operation = jobs.run_job(name=f"{PARENT}/jobs/{name}")
    with pytest.raises(exceptions.GoogleAPICallError, match="failed to complete"):
        operation.result(timeout=DEADLINE)
    execution = executions.get_execution(name=operation.metadata.name)
    condition = completed(execution)
    assert condition.state == State.CONDITION_FAILED
    assert condition.execution_reason == Reason.NON_ZERO_EXIT_CODE
    assert execution.failed_count == 1 and execution.retried_count == 0
    (task,) = tasks.list_tasks(parent=execution.name)
    assert task.last_attempt_result.exit_code == 3
    assert task.last_attempt_result.status.message == "The container exited with an error."
    assert task.retried == 0


@pytest.mark.parametrize("retries", [0, 2])
def test_max_retries_reruns_a_failed_task(
    fake: FakeCloudRun, clients: tuple[Any, Any, Any], retries: int
) -> None:
    jobs, executions, tasks = clients
    name = job_id()
    job = shell('echo "attempt $CLOUD_RUN_TASK_ATTEMPT"; exit 1', retries=retries)
    job.start_execution_token = "r"
    jobs.create_job(parent=PARENT, job_id=name, job=job).result(timeout=DEADLINE)
    execution = wait_ended(executions, f"{PARENT}/jobs/{name}/executions/{name}-r")
    assert fake.runs[name] == retries + 1
    assert [line.text for line in fake.log_lines(f"{name}-r")] == [f"attempt {i}" for i in range(retries + 1)]
    (task,) = tasks.list_tasks(parent=execution.name)
    assert task.retried == retries and execution.retried_count == (1 if retries else 0)
    assert execution.failed_count == 1


def test_a_task_over_its_timeout_is_killed_and_fails(clients: tuple[Any, Any, Any]) -> None:
    jobs, executions, tasks = clients
    name = job_id()
    jobs.create_job(parent=PARENT, job_id=name, job=shell("sleep 30", timeout="0.3s")).result(
        timeout=DEADLINE
    )
    operation = jobs.run_job(name=f"{PARENT}/jobs/{name}")
    execution = wait_ended(executions, operation.metadata.name)
    assert completed(execution).state == State.CONDITION_FAILED
    (task,) = tasks.list_tasks(parent=execution.name)
    assert task.last_attempt_result.status.code == 4  # DEADLINE_EXCEEDED
    assert "timeout" in task.last_attempt_result.status.message


def test_cancel_kills_a_running_execution_and_a_held_one_never_runs(
    fake: FakeCloudRun, clients: tuple[Any, Any, Any]
) -> None:
    jobs, executions, _ = clients
    token = f"crf-{uuid.uuid4().hex[:8]}"
    running, held = job_id(), job_id()
    fake.hold.add(held)
    for name in (running, held):
        job = shell(f"sleep 60 # {token}")
        job.start_execution_token = "c"
        jobs.create_job(parent=PARENT, job_id=name, job=job)
    run_name = f"{PARENT}/jobs/{running}/executions/{running}-c"
    wait_until(lambda: count_local_processes(token) == 1, DEADLINE, "the execution did not start")
    for name in (run_name, f"{PARENT}/jobs/{held}/executions/{held}-c"):
        cancelled = executions.cancel_execution(name=name).result(timeout=DEADLINE)
        assert cancelled.cancelled_count == 1
        assert completed(cancelled).execution_reason == Reason.CANCELLED
    assert count_local_processes(token) == 0
    assert fake.runs[held] == 0 and fake.runs[running] == 1
    with pytest.raises(exceptions.BadRequest):
        executions.cancel_execution(name=run_name)


def test_delete_an_execution_and_a_job(fake: FakeCloudRun, clients: tuple[Any, Any, Any]) -> None:
    jobs, executions, _ = clients
    name = job_id()
    job = shell("true")
    job.start_execution_token = "d"
    jobs.create_job(parent=PARENT, job_id=name, job=job).result(timeout=DEADLINE)
    execution = wait_ended(executions, f"{PARENT}/jobs/{name}/executions/{name}-d")
    assert executions.delete_execution(name=execution.name).result(timeout=DEADLINE).name == execution.name
    with pytest.raises(exceptions.NotFound):
        executions.get_execution(name=execution.name)
    deleted = jobs.delete_job(name=f"{PARENT}/jobs/{name}").result(timeout=DEADLINE)
    assert deleted.name == f"{PARENT}/jobs/{name}"
    with pytest.raises(exceptions.NotFound):
        jobs.get_job(name=f"{PARENT}/jobs/{name}")
    token = f"crl-{uuid.uuid4().hex[:8]}"
    lost = job_id()
    job = shell(f"sleep 60 # {token}")
    job.start_execution_token = "l"
    jobs.create_job(parent=PARENT, job_id=lost, job=job)
    wait_until(lambda: count_local_processes(token) == 1, DEADLINE, "the execution did not start")
    fake.lost(lost)
    with pytest.raises(exceptions.NotFound):
        executions.get_execution(name=f"{PARENT}/jobs/{lost}/executions/{lost}-l")
    wait_until(lambda: count_local_processes(token) == 0, DEADLINE, "the lost execution's process lives on")


def test_a_gcs_volume_with_only_dir_mounts_that_directory(
    cloud_run: Callable[..., FakeCloudRun], fake_gcs: Any
) -> None:
    storage = fake_gcs.client()
    bucket = storage.create_bucket(f"cr-{uuid.uuid4().hex[:12]}")
    bucket.blob("stage/in.txt").upload_from_string(b"from the bucket\n")
    bucket.blob("elsewhere.txt").upload_from_string(b"not mounted\n")
    fake = cloud_run(gcs_endpoint=fake_gcs.endpoint)
    jobs, executions, _ = fake.clients()
    volume = run_v2.Volume(
        name="data", gcs=run_v2.GCSVolumeSource(bucket=bucket.name, mount_options=["only-dir=stage"])
    )
    job = shell(
        "cat /mnt/data/in.txt > /mnt/data/out.txt; echo written >> /mnt/data/out.txt; ls /mnt/data",
        volumes=[volume],
        container={"volume_mounts": [run_v2.VolumeMount(name="data", mount_path="/mnt/data")]},
    )
    job.start_execution_token = "g"
    name = job_id()
    jobs.create_job(parent=PARENT, job_id=name, job=job).result(timeout=DEADLINE)
    execution = wait_ended(executions, f"{PARENT}/jobs/{name}/executions/{name}-g")
    assert execution.succeeded_count == 1, fake.log_lines(f"{name}-g")
    assert bucket.blob("stage/out.txt").download_as_bytes() == b"from the bucket\nwritten\n"
    assert sorted(line.text for line in fake.log_lines(f"{name}-g")) == [
        "in.txt",
        "out.txt",
    ]  # not elsewhere.txt
    assert sorted(blob.name for blob in storage.list_blobs(bucket.name)) == [
        "elsewhere.txt",
        "stage/in.txt",
        "stage/out.txt",
    ]


def test_unknown_fields_are_refused_by_name(fake: FakeCloudRun) -> None:
    body = {"template": {"template": {"containers": [{"image": "x", "command": ["true"], "bogus": 1}]}}}
    response = httpx.post(f"{fake.endpoint}/v2/{PARENT}/jobs", params={"jobId": job_id()}, json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT" and '"bogus"' in error["message"]
    response = httpx.get(f"{fake.endpoint}/v2/{PARENT}/jobs", params={"filter": "x"})
    assert response.status_code == 400 and '"filter"' in response.json()["error"]["message"]


def test_operations_carry_the_sdk_types_and_enums_follow_alt(fake: FakeCloudRun) -> None:
    name = job_id()
    body = {"template": {"template": {"containers": [{"image": "x", "command": ["true"]}]}}}
    operation = httpx.post(f"{fake.endpoint}/v2/{PARENT}/jobs", params={"jobId": name}, json=body).json()
    assert operation["metadata"]["@type"] == "type.googleapis.com/google.cloud.run.v2.Job"
    assert operation["response"]["@type"] == "type.googleapis.com/google.cloud.run.v2.Job"
    assert operation["done"] is True
    got = httpx.get(f"{fake.endpoint}/v2/{operation['name']}").json()
    assert got["name"] == operation["name"]
    run = httpx.post(f"{fake.endpoint}/v2/{PARENT}/jobs/{name}:run", json={}).json()
    assert run["metadata"]["@type"] == "type.googleapis.com/google.cloud.run.v2.Execution"
    job = httpx.get(
        f"{fake.endpoint}/v2/{PARENT}/jobs/{name}", params={"$alt": "json;enum-encoding=int"}
    ).json()
    assert job["terminalCondition"]["state"] == 4
    job = httpx.get(f"{fake.endpoint}/v2/{PARENT}/jobs/{name}").json()
    assert job["terminalCondition"]["state"] == "CONDITION_SUCCEEDED"


def test_an_image_outside_the_three_registries_is_a_400_naming_it(clients: tuple[Any, Any, Any]) -> None:
    jobs, _, _ = clients
    job = shell("true")
    job.template.template.containers[0].image = "quay.io/acme/tool:1"
    with pytest.raises(exceptions.BadRequest, match=r"docker\.pkg\.dev.*quay\.io/acme/tool:1"):
        jobs.create_job(parent=PARENT, job_id=job_id(), job=job)


def test_an_image_that_does_not_exist_fails_the_job_and_makes_no_execution(
    fake: FakeCloudRun, clients: tuple[Any, Any, Any]
) -> None:
    jobs, executions, _ = clients
    image = "us-docker.pkg.dev/squall-test/images/gone:1"
    fake.missing_images.add(image)
    job = shell("echo never")
    job.template.template.containers[0].image = image
    job.start_execution_token = "t1"
    name = job_id()
    operation = jobs.create_job(parent=PARENT, job_id=name, job=job)
    with pytest.raises(exceptions.GoogleAPICallError, match=f"Image '{image}' not found."):
        operation.result(timeout=DEADLINE)
    got = jobs.get_job(name=f"{PARENT}/jobs/{name}")
    condition = got.terminal_condition
    assert (condition.state, condition.reason) == (
        State.CONDITION_FAILED,
        run_v2.Condition.CommonReason.CONTAINER_MISSING,
    )
    assert got.execution_count == 0 and not got.latest_created_execution.name
    with pytest.raises(exceptions.NotFound):
        executions.get_execution(name=f"{PARENT}/jobs/{name}/executions/{name}-t1")
    assert fake.runs[name] == 0
