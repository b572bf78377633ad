"""The Google Batch fake, driven through the real google-cloud-batch client (REST transport).

The Google Batch runner is tested against this fake, so the fake is tested first on its
own: what the SDK sends must be accepted, what it reads must parse, errors must become the
google-api-core exceptions the real service gives, and jobs must really run, fail, time out,
be cancelled and be lost. Raw httpx covers the wire details the SDK hides (unknown fields,
enum encoding). Every wait is on a condition with a deadline.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from runners.testing import count_local_processes, wait_until

batch_v1 = pytest.importorskip("google.cloud.batch_v1")
httpx = pytest.importorskip("httpx")
exceptions = pytest.importorskip("google.api_core.exceptions")

from tests.emulators.google_batch import FakeGoogleBatch, Outcome  # noqa: E402

PROJECT = "squall-test"
PARENT = f"projects/{PROJECT}/locations/us-central1"
DEADLINE = 20.0
State = batch_v1.JobStatus.State
TaskState = batch_v1.TaskStatus.State


@pytest.fixture
def fake(google_batch: Callable[..., FakeGoogleBatch]) -> FakeGoogleBatch:
    return google_batch()


@pytest.fixture
def client(fake: FakeGoogleBatch) -> Any:
    return fake.client()


def script(text: str, **spec: Any) -> Any:
    """A one-task job running ``sh -c text`` (``spec``: more TaskSpec fields)."""
    runnable = batch_v1.Runnable(script=batch_v1.Runnable.Script(text=text))
    return batch_v1.Job(
        task_groups=[batch_v1.TaskGroup(task_spec=batch_v1.TaskSpec(runnables=[runnable], **spec))]
    )


def job_id() -> str:
    return f"j-{uuid.uuid4().hex[:10]}"


def create(client: Any, job: Any, name: str | None = None, request_id: str = "") -> Any:
    request = batch_v1.CreateJobRequest(
        parent=PARENT, job_id=name or job_id(), job=job, request_id=request_id
    )
    return client.create_job(request=request)


def wait_state(client: Any, name: str, *states: Any, deadline_s: float = DEADLINE) -> Any:
    """The job once its state is one of ``states`` (fails the test at the deadline)."""
    seen: list[Any] = []

    def reached() -> bool:
        seen[:] = [client.get_job(name=name)]
        return seen[0].status.state in states

    wait_until(reached, deadline_s, f"{name} to reach {[State(s).name for s in states]}")
    return seen[0]


def descriptions(job: Any) -> list[str]:
    return [event.description for event in job.status.status_events]


def test_create_get_and_list_with_a_label_filter_across_pages(fake: FakeGoogleBatch, client: Any) -> None:
    ids = [job_id() for _ in range(5)]
    fake.hold.update(ids)  # they stay QUEUED: nothing runs
    uids = []
    for index, name in enumerate(ids):
        job = script("true")
        job.labels = {"team": "a" if index < 3 else "b"}
        created = create(client, job, name)
        assert created.name == f"{PARENT}/jobs/{name}"
        assert created.status.state == State.QUEUED
        assert created.uid.startswith(name[:18]) and created.uid != name
        number = fake.project_number(PROJECT)
        assert (
            created.task_groups[0].name
            == f"projects/{number}/locations/us-central1/jobs/{name}/taskGroups/group0"
        )
        assert created.task_groups[0].task_count == 1
        uids.append(created.uid)
    got = client.get_job(name=f"{PARENT}/jobs/{ids[1]}")
    assert (got.uid, dict(got.labels), got.status.state) == (uids[1], {"team": "a"}, State.QUEUED)
    assert len(set(uids)) == 5
    assert got.create_time.timestamp() == pytest.approx(time.time(), abs=30)
    assert list(client.list_tasks(parent=got.task_groups[0].name)) == []  # no task before SCHEDULED

    before = fake.calls["ListJobs"]
    request = batch_v1.ListJobsRequest(parent=PARENT, filter='labels.team="a"', page_size=2)
    pages = list(client.list_jobs(request=request).pages)
    assert [len(page.jobs) for page in pages] == [2, 1]
    assert [job.name.rsplit("/", 1)[1] for page in pages for job in page.jobs] == ids[:3]  # creation order
    assert fake.calls["ListJobs"] - before == 2  # one call a page
    both = f'labels.team="b" AND name="{PARENT}/jobs/{ids[4]}" AND status.state="QUEUED"'
    listed = client.list_jobs(request=batch_v1.ListJobsRequest(parent=PARENT, filter=both))
    assert [job.name for job in listed] == [f"{PARENT}/jobs/{ids[4]}"]
    by_name = client.list_jobs(request=batch_v1.ListJobsRequest(parent=PARENT, order_by="name desc"))
    assert [job.name for job in by_name] == sorted((f"{PARENT}/jobs/{i}" for i in ids), reverse=True)
    with pytest.raises(exceptions.BadRequest, match=re.escape('labels.team~"a"')):
        list(client.list_jobs(request=batch_v1.ListJobsRequest(parent=PARENT, filter='labels.team~"a"')))
    with pytest.raises(exceptions.NotFound):
        client.get_job(name=f"{PARENT}/jobs/nope")


def test_same_job_id_conflicts_but_the_same_request_id_returns_the_first_job(
    fake: FakeGoogleBatch, client: Any
) -> None:
    name, request_id = job_id(), str(uuid.uuid4())
    first = create(client, script("echo once"), name, request_id=request_id)
    with pytest.raises(exceptions.Conflict) as conflict:
        create(client, script("echo once"), name, request_id=str(uuid.uuid4()))
    assert conflict.value.response.json()["error"]["status"] == "ALREADY_EXISTS"
    assert type(conflict.value) is exceptions.Conflict  # REST: the class comes from the HTTP status only
    again = create(client, script("echo once"), name, request_id=request_id)
    assert again.uid == first.uid
    wait_state(client, first.name, State.SUCCEEDED)
    assert create(client, script("echo once"), name, request_id=request_id).uid == first.uid
    assert fake.runs[name] == 1
    assert fake.calls["CreateJob"] == 4
    with pytest.raises(exceptions.BadRequest, match="UUID"):
        create(client, script("true"), request_id="not-a-uuid")
    with pytest.raises(exceptions.BadRequest, match="Job id"):
        create(client, script("true"), "Upper-Case")


def test_an_unknown_or_mistyped_field_is_invalid_argument_naming_it(fake: FakeGoogleBatch) -> None:
    url = f"{fake.endpoint}/v1/{PARENT}/jobs"
    spec = {"runnables": [{"script": {"text": "true"}}]}
    unknown = httpx.post(
        url, params={"jobId": "x1"}, json={"taskGroups": [{"taskSpec": spec}], "bogusField": 1}
    )
    assert unknown.status_code == 400
    error = unknown.json()["error"]
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
    assert '"bogusField"' in error["message"]
    nested = httpx.post(url, params={"jobId": "x2"}, json={"taskGroups": [{"taskSpec": {"runables": []}}]})
    assert nested.status_code == 400 and '"runables"' in nested.json()["error"]["message"]
    typed = httpx.post(
        url, params={"jobId": "x3"}, json={"taskGroups": [{"taskSpec": spec, "taskCount": "many"}]}
    )
    assert typed.status_code == 400 and "taskCount" in typed.json()["error"]["message"]
    query = httpx.post(url, params={"jobId": "x4", "jobID": "x4"}, json={"taskGroups": [{"taskSpec": spec}]})
    assert query.status_code == 400 and '"jobID"' in query.json()["error"]["message"]
    assert fake.calls["CreateJob"] == 4
    assert httpx.get(f"{fake.endpoint}/v1/{PARENT}/jobs/x1").status_code == 404  # nothing was created


def test_a_command_that_exits_3_fails_the_job_with_the_code_in_its_events(
    fake: FakeGoogleBatch, client: Any
) -> None:
    job = wait_state(client, create(client, script("echo out; echo err >&2; exit 3")).name, State.FAILED)
    last = descriptions(job)[-1]
    assert last.startswith(
        f"Job state is set from RUNNING to FAILED for job projects/{fake.project_number(PROJECT)}/"
    )
    assert "Job failed due to task failure. Specifically, task with index 0 failed" in last
    assert re.search(
        r'task event: "Task state is updated from RUNNING to FAILED on zones/us-central1-a/instances/'
        r'\d{19} with exit code 3\."$',
        last,
    )
    [task] = client.list_tasks(parent=job.task_groups[0].name)
    assert task.status.state == TaskState.FAILED
    assert task.status.status_events[-1].task_execution.exit_code == 3
    assert [e.task_state for e in task.status.status_events] == [
        TaskState.ASSIGNED,
        TaskState.RUNNING,
        TaskState.FAILED,
    ]
    assert client.get_task(name=task.name).status.state == TaskState.FAILED
    assert job.status.task_groups["group0"].counts == {"FAILED": 1}
    [line] = [
        (line.stream.value, line.text)
        for line in fake.log_lines(job.name.rsplit("/", 1)[1])
        if line.text == "err"
    ]
    assert line == ("stderr", "err")


def test_a_container_runs_its_entrypoint_with_the_task_environment(
    fake: FakeGoogleBatch, client: Any
) -> None:
    runnable = batch_v1.Runnable(
        container=batch_v1.Runnable.Container(
            image_uri="python:3.12-slim",
            entrypoint="/bin/sh",
            commands=["-c", 'echo "$GREETING $WHO $BATCH_TASK_INDEX/$BATCH_TASK_COUNT $BATCH_JOB_UID"'],
        ),
        environment=batch_v1.Environment(variables={"WHO": "runnable"}),
    )
    spec = batch_v1.TaskSpec(
        runnables=[runnable], environment=batch_v1.Environment(variables={"GREETING": "hello", "WHO": "task"})
    )
    policy = batch_v1.AllocationPolicy.InstancePolicy(
        machine_type="n2-standard-4", provisioning_model=batch_v1.AllocationPolicy.ProvisioningModel.SPOT
    )
    job = batch_v1.Job(
        task_groups=[batch_v1.TaskGroup(task_spec=spec)],
        allocation_policy=batch_v1.AllocationPolicy(
            instances=[batch_v1.AllocationPolicy.InstancePolicyOrTemplate(policy=policy)]
        ),
    )
    created = create(client, job)
    done = wait_state(client, created.name, State.SUCCEEDED)
    texts = [line.text for line in fake.log_lines(created.name.rsplit("/", 1)[1])]
    assert texts == [f"hello runnable 0/1 {created.uid}"]
    assert descriptions(done)[-1].startswith("Job state is set from RUNNING to SUCCEEDED for job ")
    [instance] = done.status.task_groups["group0"].instances
    assert (instance.machine_type, instance.provisioning_model) == (
        "n2-standard-4",
        policy.provisioning_model,
    )
    assert done.status.run_duration.total_seconds() > 0


def test_jobs_run_concurrently(fake: FakeGoogleBatch, client: Any, tmp_path: Any) -> None:
    """Each job waits for the other's file: both succeed only if they run at the same time."""

    def waits_for(mine: str, other: str) -> Any:
        return script(
            f"touch {tmp_path}/{mine}; i=0; while [ ! -f {tmp_path}/{other} ]; do"
            f" i=$((i+1)); [ $i -gt 300 ] && exit 9; sleep 0.05; done"
        )

    first, second = create(client, waits_for("a", "b")), create(client, waits_for("b", "a"))
    for created in (first, second):
        assert wait_state(client, created.name, State.SUCCEEDED, State.FAILED).status.state == State.SUCCEEDED


def test_a_gcs_volume_shows_the_bucket_to_the_command_and_keeps_what_it_wrote(
    google_batch: Callable[..., FakeGoogleBatch], fake_gcs: Any
) -> None:
    storage = fake_gcs.client()
    bucket = storage.create_bucket(f"gb-{uuid.uuid4().hex[:12]}")
    bucket.blob("stage/in.txt").upload_from_string(b"from the bucket\n")
    bucket.blob("elsewhere.txt").upload_from_string(b"not mounted\n")
    fake = google_batch(gcs_endpoint=fake_gcs.endpoint)
    client = fake.client()
    volume = batch_v1.Volume(
        gcs=batch_v1.GCS(remote_path=f"{bucket.name}/stage"), mount_path="/mnt/disks/share"
    )
    command = (
        "ls /mnt/disks/share; cat /mnt/disks/share/in.txt > /mnt/disks/share/out.txt;"
        " echo written >> /mnt/disks/share/out.txt; rm /mnt/disks/share/in.txt"
    )
    created = create(client, script(command, volumes=[volume]))
    wait_state(client, created.name, State.SUCCEEDED)
    assert [line.text for line in fake.log_lines(created.name.rsplit("/", 1)[1])] == ["in.txt"]
    assert bucket.blob("stage/out.txt").download_as_bytes() == b"from the bucket\nwritten\n"
    assert sorted(blob.name for blob in storage.list_blobs(bucket.name)) == ["elsewhere.txt", "stage/out.txt"]


def test_max_run_duration_kills_the_task_with_exit_code_50005(fake: FakeGoogleBatch, client: Any) -> None:
    started = time.monotonic()
    created = create(client, script("echo start; sleep 60", max_run_duration=timedelta(seconds=1)))
    job = wait_state(client, created.name, State.FAILED)
    assert time.monotonic() - started < 15
    assert descriptions(job)[-1].endswith('due to task runs over the maximum runtime with exit code 50005."')
    [task] = client.list_tasks(parent=job.task_groups[0].name)
    assert task.status.status_events[-1].task_execution.exit_code == 50005


def test_cancel_stops_a_running_process_and_ends_cancelled(fake: FakeGoogleBatch, client: Any) -> None:
    token = f"cancel-me-{uuid.uuid4().hex[:8]}"
    text = f"trap 'echo got TERM; exit 143' TERM; echo started; while :; do sleep 0.05; done # {token}"
    created = create(client, script(text))
    name = created.name.rsplit("/", 1)[1]
    wait_until(
        lambda: any(line.text == "started" for line in fake.log_lines(name)), DEADLINE, "the command to start"
    )
    assert count_local_processes(token) == 1
    operation = client.cancel_job(name=created.name)  # returns at once: an operation future
    assert operation.operation.name.startswith(f"{PARENT}/operations/")
    assert operation.metadata.verb == "cancel" and operation.metadata.target == created.name
    assert client.get_job(name=created.name).status.state in (State.CANCELLATION_IN_PROGRESS, State.CANCELLED)
    assert isinstance(operation.result(timeout=DEADLINE), batch_v1.CancelJobResponse)
    job = wait_state(client, created.name, State.CANCELLED)
    assert count_local_processes(token) == 0
    assert "got TERM" in [line.text for line in fake.log_lines(name)]  # SIGTERM first, as a grace
    as_batch_writes_it = f"projects/{fake.project_number(PROJECT)}/locations/us-central1/jobs/{name}"
    assert descriptions(job)[-2:] == [
        f"Job state is set from RUNNING to CANCELLATION_IN_PROGRESS for job {as_batch_writes_it}.",
        f"Job state is set from CANCELLATION_IN_PROGRESS to CANCELLED for job {as_batch_writes_it}.",
    ]
    with pytest.raises(exceptions.BadRequest) as again:  # FAILED_PRECONDITION arrives as BadRequest over REST
        client.cancel_job(name=created.name)
    assert again.value.response.json()["error"]["status"] == "FAILED_PRECONDITION"
    assert fake.calls["CancelJob"] == 2


def test_cancel_of_a_held_job_cancels_it_without_running_it(fake: FakeGoogleBatch, client: Any) -> None:
    name = job_id()
    fake.hold.add(name)
    created = create(client, script("echo never"), name)
    operation = client.cancel_job(name=created.name)
    job = wait_state(client, created.name, State.CANCELLED)
    assert operation.result(timeout=DEADLINE) is not None and operation.done()
    assert fake.runs[name] == 0 and fake.log_lines(name) == []
    assert [e.split(" for job")[0] for e in descriptions(job)] == [
        "Job state is set from QUEUED to CANCELLATION_IN_PROGRESS",
        "Job state is set from CANCELLATION_IN_PROGRESS to CANCELLED",
    ]


def test_delete_kills_the_job_and_it_is_gone(fake: FakeGoogleBatch, client: Any) -> None:
    token = f"delete-me-{uuid.uuid4().hex[:8]}"
    created = create(client, script(f"echo started; sleep 60 # {token}"))
    name = created.name.rsplit("/", 1)[1]
    wait_until(lambda: count_local_processes(token) == 1, DEADLINE, "the command to start")
    operation = client.delete_job(request=batch_v1.DeleteJobRequest(name=created.name, reason="test"))
    assert operation.metadata.verb == "delete"
    operation.result(timeout=DEADLINE)
    with pytest.raises(exceptions.NotFound):
        client.get_job(name=created.name)
    assert count_local_processes(token) == 0
    assert fake.runs[name] == 1
    assert all(job.name != created.name for job in client.list_jobs(parent=PARENT))


def test_a_preempted_spot_vm_fails_the_task_with_50001(fake: FakeGoogleBatch, client: Any) -> None:
    name = job_id()
    fake.outcomes[name] = Outcome.preempted()
    job = wait_state(client, create(client, script("echo started; sleep 60"), name).name, State.FAILED)
    assert descriptions(job)[-1].endswith('due to Spot VM preemption with exit code 50001."')
    assert fake.runs[name] == 1  # the command had started
    [task] = client.list_tasks(parent=job.task_groups[0].name)
    assert task.status.status_events[-1].task_execution.exit_code == 50001


def test_a_vm_lost_before_the_command_started_fails_from_scheduled(
    fake: FakeGoogleBatch, client: Any
) -> None:
    name = job_id()
    fake.outcomes[name] = Outcome.vm_lost(50003, started=False)
    job = wait_state(client, create(client, script("echo never"), name).name, State.FAILED)
    assert descriptions(job)[-1].startswith("Job state is set from SCHEDULED to FAILED for job ")
    assert descriptions(job)[-1].endswith(
        'due to VM is rebooted during task execution with exit code 50003."'
    )
    assert fake.runs[name] == 0


def test_a_vm_that_cannot_be_created_fails_the_job_from_scheduled_without_a_task(
    fake: FakeGoogleBatch, client: Any
) -> None:
    name = job_id()
    fake.outcomes[name] = Outcome.start_failed(
        "CODE_GCE_INVALID_FIELD_VALUE", "No zone supports the template."
    )
    job = wait_state(client, create(client, script("echo never"), name).name, State.FAILED)
    assert [d.split(" for job")[0] for d in descriptions(job)] == [
        "Job state is set from QUEUED to SCHEDULED",
        "Job gets non-retryable information Batch Error: code - CODE_GCE_INVALID_FIELD_VALUE, "
        "description - No zone supports the template.",
        "Job state is set from SCHEDULED to FAILED",
    ]
    assert list(client.list_tasks(parent=job.task_groups[0].name)) == []
    assert fake.runs[name] == 0


def test_a_held_label_keeps_jobs_queued_until_it_is_released(fake: FakeGoogleBatch, client: Any) -> None:
    fake.hold_labels.add("parked")
    job = script("echo ran")
    job.labels = {"pool": "parked"}
    held = create(client, job)
    wait_state(client, create(client, script("true")).name, State.SUCCEEDED)  # others run meanwhile
    assert client.get_job(name=held.name).status.state == State.QUEUED
    fake.hold_labels.discard("parked")  # wakes the held job's driver at once
    wait_state(client, held.name, State.SUCCEEDED)


def test_a_quota_keeps_the_job_scheduled_with_googles_event(fake: FakeGoogleBatch, client: Any) -> None:
    name = job_id()
    fake.outcomes[name] = Outcome.quota_exceeded("N2_CPUS", 24)
    created = create(client, script("echo never"), name)
    wait_until(
        lambda: any("CODE_GCE_QUOTA_EXCEEDED" in d for d in descriptions(client.get_job(name=created.name))),
        DEADLINE,
        "the quota event",
    )
    later = create(client, script("true"))  # created after it, and done while it still waits
    wait_state(client, later.name, State.SUCCEEDED)
    job = client.get_job(name=created.name)
    assert job.status.state == State.SCHEDULED
    event = job.status.status_events[-1]
    assert event.type_ == "OPERATIONAL_INFO"
    quoted = "VM in Managed Instance Group meets error: Batch Error: code - CODE_GCE_QUOTA_EXCEEDED, "
    assert event.description.startswith(quoted + "description - ")
    assert "Quota 'N2_CPUS' exceeded.  Limit: 24.0 in region us-central1." in event.description
    [task] = client.list_tasks(parent=job.task_groups[0].name)
    assert task.status.state == TaskState.PENDING
    client.cancel_job(name=created.name)
    wait_state(client, created.name, State.CANCELLED)
    assert fake.runs[name] == 0


def test_an_image_that_cannot_be_pulled_fails_without_running(fake: FakeGoogleBatch, client: Any) -> None:
    name = job_id()
    fake.outcomes[name] = Outcome.image_pull_failed("gcr.io/p/missing:1")
    job = wait_state(client, create(client, script("echo never"), name).name, State.FAILED)
    assert (
        "image pull failure for gcr.io/p/missing:1: manifest unknown with exit code 125."
        in descriptions(job)[-1]
    )
    assert any("manifest unknown" in line.text for line in fake.log_lines(name))
    assert fake.runs[name] == 0


def test_a_lost_job_vanishes_and_its_process_dies(fake: FakeGoogleBatch, client: Any) -> None:
    token = f"lost-{uuid.uuid4().hex[:8]}"
    name = job_id()
    created = create(client, script(f"sleep 60 # {token}"), name)
    wait_until(lambda: count_local_processes(token) == 1, DEADLINE, "the command to start")
    fake.lost(name)
    with pytest.raises(exceptions.NotFound):
        client.get_job(name=created.name)
    wait_until(lambda: count_local_processes(token) == 0, DEADLINE, "the lost job's process to die")


def test_enums_are_numbers_when_the_query_asks_for_them_and_names_otherwise(
    fake: FakeGoogleBatch, client: Any
) -> None:
    name = job_id()
    fake.hold.add(name)
    created = create(client, script("true", max_run_duration=timedelta(hours=1)), name)
    url = f"{fake.endpoint}/v1/{created.name}"
    as_ints = httpx.get(url, params={"$alt": "json;enum-encoding=int"}).json()
    as_names = httpx.get(url).json()
    assert as_ints["status"]["state"] == int(State.QUEUED)
    assert as_names["status"]["state"] == "QUEUED"
    assert as_names["taskGroups"][0]["taskCount"] == "1"  # int64 as a string
    assert as_names["taskGroups"][0]["taskSpec"]["maxRunDuration"] == "3600s"
    assert as_names["createTime"].endswith("Z")
    assert httpx.get(f"{fake.endpoint}/v1/{PARENT}/jobs/nope").json()["error"]["status"] == "NOT_FOUND"


@pytest.fixture
def subscription(pubsub_emulator: Any) -> Iterator[tuple[Any, str, str]]:
    """(REST client, topic path, pull subscription path) on the session's emulator."""
    pubsub = pubsub_emulator.client()
    suffix = uuid.uuid4().hex[:8]
    topic = pubsub.create_topic(PROJECT, f"batch-{suffix}")
    sub = pubsub.create_subscription(PROJECT, f"batch-sub-{suffix}", topic)
    yield pubsub, topic, sub
    pubsub.close()


def test_notifications_reach_pubsub_with_batchs_attributes(
    google_batch: Callable[..., FakeGoogleBatch], pubsub_emulator: Any, subscription: tuple[Any, str, str]
) -> None:
    pubsub, topic, sub = subscription
    fake = google_batch(pubsub_endpoint=pubsub_emulator.endpoint)
    client = fake.client()
    kinds = batch_v1.JobNotification.Type
    job = script("echo hi")
    job.notifications = [
        batch_v1.JobNotification(
            pubsub_topic=topic, message=batch_v1.JobNotification.Message(type_=kinds.JOB_STATE_CHANGED)
        ),
        batch_v1.JobNotification(
            pubsub_topic=topic,
            message=batch_v1.JobNotification.Message(
                type_=kinds.TASK_STATE_CHANGED, new_task_state=TaskState.SUCCEEDED
            ),
        ),
        batch_v1.JobNotification(  # a topic that does not exist: logged, the job goes on
            pubsub_topic=f"projects/{PROJECT}/topics/missing-{uuid.uuid4().hex[:6]}",
            message=batch_v1.JobNotification.Message(
                type_=kinds.JOB_STATE_CHANGED, new_job_state=State.SUCCEEDED
            ),
        ),
    ]
    created = create(client, job)
    wait_state(client, created.name, State.SUCCEEDED)
    received: list[dict[str, Any]] = []

    def all_arrived() -> bool:
        batch = pubsub.pull(sub, 50)
        pubsub.ack(sub, [message["ackId"] for message in batch])
        received.extend(message["message"] for message in batch)
        return len(received) >= 5

    wait_until(all_arrived, DEADLINE, "four job notifications and one task notification")
    jobs = [m["attributes"] for m in received if m["attributes"]["Type"] == "JOB_STATE_CHANGED"]
    tasks = [m["attributes"] for m in received if m["attributes"]["Type"] == "TASK_STATE_CHANGED"]
    assert [a["NewJobState"] for a in jobs] == ["QUEUED", "SCHEDULED", "RUNNING", "SUCCEEDED"]
    assert {(a["JobName"], a["JobUID"], a["Region"]) for a in jobs} == {
        (created.name, created.uid, "us-central1")
    }
    [task] = tasks
    assert task["NewTaskState"] == "SUCCEEDED" and task["JobUID"] == created.uid
    assert task["TaskName"].endswith(f"/jobs/{created.name.rsplit('/', 1)[1]}/taskGroups/group0/tasks/0")
    # The fake publishes each notification on its own: the missing topic's failure is logged when
    # its publish returns, which may come after the others arrived.
    wait_until(
        lambda: any("missing-" in error and "NOT_FOUND" in error for error in fake.notification_errors),
        DEADLINE,
        "the missing topic's publish error",
    )
