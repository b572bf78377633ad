"""The Google Batch runner's pure parts: job documents -> statuses, options, job ids, cost.

Job documents are the JSON ``get_job`` returns (camelCase, int64 as strings, durations as
``"12.5s"``), trimmed to what Squall reads. Event descriptions are Google's wording as quoted
in the taxonomy module's sources.
"""

from __future__ import annotations

import copy
import warnings
from datetime import timedelta
from typing import Any

import pytest

from runners.base import Failure, JobState, RunnerOptionsError, validate_options
from runners.google_batch import GoogleBatchOptions, GoogleBatchRunner, batch_job_id
from runners.google_batch.runner import _billed, request_id
from runners.google_batch.taxonomy import capacity_problem, duration, exit_code, job_status, timestamp

NAME = "projects/p/locations/europe-west1/jobs/etl-extract-3k2j4h5a"

JOB: dict[str, Any] = {
    "name": NAME,
    "uid": "etl-extract-3k2j-1a2b3c4d-0001-4f5e",
    "taskGroups": [
        {
            "taskSpec": {
                "computeResource": {"cpuMilli": "2000", "memoryMib": "4096"},
                "maxRunDuration": "600s",
            },
            "taskCount": "1",
        }
    ],
    "allocationPolicy": {
        "instances": [{"policy": {"machineType": "e2-standard-2", "provisioningModel": "SPOT"}}]
    },
    "createTime": "2026-12-03T10:00:00.123456789Z",
    "status": {"state": "QUEUED", "statusEvents": []},
}


def event(text: str, at: str = "2026-12-03T10:01:00Z", **extra: Any) -> dict[str, Any]:
    return {"type": "STATUS_CHANGED", "description": text, "eventTime": at, **extra}


def job(state: str, *events: dict[str, Any], run: str | None = None) -> dict[str, Any]:
    doc = copy.deepcopy(JOB)
    doc["status"] = {"state": state, "statusEvents": list(events)}
    if run is not None:
        doc["status"]["runDuration"] = run
    return doc


RUNNING = event(f"Job state is set from SCHEDULED to RUNNING for job {NAME}.", "2026-12-03T10:00:30Z")


def failed_with(code: int) -> dict[str, Any]:
    return job(
        "FAILED",
        RUNNING,
        event(
            f"Job state is set from RUNNING to FAILED for job {NAME}. Job failed due to task failure. "
            'Specifically, task with index 0 failed due to the following task event: "Task state is '
            f'updated from RUNNING to FAILED on zones/europe-west1-b/instances/812 with exit code {code}."'
        ),
    )


@pytest.mark.parametrize(
    ("code", "failure"),
    [
        (1, Failure.USER),
        (3, Failure.USER),
        (50001, Failure.PREEMPTED),
        (50002, Failure.LOST),
        (50003, Failure.LOST),
        (50004, Failure.LOST),
        (50006, Failure.LOST),
        (50005, Failure.TIMEOUT),
        (96, Failure.CONFIG),
        (97, Failure.CONFIG),
    ],
)
def test_reserved_and_wrapper_exit_codes(code: int, failure: Failure) -> None:
    status = job_status(failed_with(code))
    assert (status.state, status.failure, status.exit_code) == (JobState.FAILED, failure, code)


def test_a_timeout_says_how_long() -> None:
    assert job_status(failed_with(50005)).reason == "timed out after 0:10:00"


def test_the_task_executions_exit_code_wins_over_older_descriptions() -> None:
    doc = job("FAILED", RUNNING, event("Task failed", taskExecution={"exitCode": 7}))
    assert exit_code(doc) == 7 and job_status(doc).failure is Failure.USER


def test_states_before_the_end() -> None:
    assert job_status(job("QUEUED")).state is JobState.QUEUED
    # SCHEDULED: VMs are being found; not run time (a quota wait must not count towards the timeout)
    assert job_status(job("SCHEDULED")).state is JobState.QUEUED
    running = job_status(job("RUNNING", RUNNING))
    assert running.state is JobState.RUNNING and running.started is not None
    # still stopping: the control plane keeps the job CANCELLING and asks again
    assert job_status(job("CANCELLATION_IN_PROGRESS", RUNNING)).state is JobState.RUNNING


def test_ends() -> None:
    ok = job_status(job("SUCCEEDED", RUNNING, event("Job state is set from RUNNING to SUCCEEDED")))
    assert (ok.state, ok.failure, ok.exit_code) == (JobState.SUCCEEDED, None, 0)
    assert ok.ended is not None and ok.started is not None and ok.ended > ok.started
    cancelled = job_status(job("CANCELLED", event("Job state is set from QUEUED to CANCELLED")))
    assert (cancelled.state, cancelled.failure) == (JobState.CANCELLED, Failure.CANCELLED)
    deleting = job_status(job("DELETION_IN_PROGRESS"))
    assert (deleting.state, deleting.failure) == (JobState.LOST, Failure.LOST)


def test_a_vm_that_never_came_is_start_failed_an_unpullable_image_config() -> None:
    never = job(
        "FAILED", event("VM in Managed Instance Group meets error: Batch Error: code - CODE_GCE_BAD_REQUEST")
    )
    assert job_status(never).failure is Failure.START_FAILED
    image = job(
        "FAILED",
        event(
            "Task state is updated from ASSIGNED to FAILED: "
            "failed to pull image docker.io/library/pyhton: not found"
        ),
    )
    assert job_status(image).failure is Failure.CONFIG


def test_capacity_problems_are_found_in_the_events() -> None:
    quota = (
        "VM in Managed Instance Group meets error: Batch Error: code - CODE_GCE_QUOTA_EXCEEDED, "
        "description - error count is 4, latest message example: Instance 'x' creation failed: "
        "Quota 'GPUS_PER_GPU_FAMILY' exceeded.  Limit: 0.0 in region europe-west1."
    )
    assert capacity_problem(job("SCHEDULED", event(quota))) == quota
    assert capacity_problem(job("SCHEDULED", event("ZONE_RESOURCE_POOL_EXHAUSTED in europe-west1-b")))
    assert capacity_problem(job("SCHEDULED", event("Job state is set from QUEUED to SCHEDULED"))) is None


def test_wire_formats() -> None:
    at = timestamp("2026-12-03T10:00:00.123456789Z")
    assert at is not None and at.microsecond == 123456 and at.utcoffset() == timedelta(0)
    assert timestamp("2026-12-03T10:00:00Z") is not None and timestamp("garbage") is None
    assert duration("3600s") == timedelta(hours=1) and duration("1.5s") == timedelta(seconds=1.5)
    assert duration("3600") is None


def test_cost_from_compute_resource_and_run_duration() -> None:
    doc = job("SUCCEEDED", RUNNING, run="3600s")
    resources, cost = _billed(
        doc, {"spot": {"vcpuHour": 0.01, "gibHour": 0.001}, "standard": {"vcpuHour": 1.0}}
    )
    assert resources is not None and resources.spot
    assert (resources.vcpu_seconds, resources.gib_seconds) == (7200.0, 14400.0)
    assert cost == pytest.approx(2 * 0.01 + 4 * 0.001)  # the spot prices: the job ran on Spot VMs
    assert _billed(doc, None)[1] is None  # no price table, no estimate
    assert _billed(job("SUCCEEDED"), None) == (None, None)  # no run duration: nothing billed known


@pytest.mark.parametrize(
    "name",
    ["etl-extract-3k2j4h5a", "Contract-ABC", "9starts-with-digit", "x" * 80, "a_b.c", "ends-with-dash-"],
)
def test_job_ids_are_valid_deterministic_and_keep_valid_names(name: str) -> None:
    found = batch_job_id(name)
    assert found == batch_job_id(name)
    assert len(found) <= 63 and found[0].isalpha() and found[-1].isalnum()
    assert all(c.islower() or c.isdigit() or c == "-" for c in found)
    if name == "etl-extract-3k2j4h5a":
        assert found == name
    assert request_id(found) == request_id(found) != request_id(found + "x")


def test_names_that_clean_to_the_same_text_get_different_ids() -> None:
    assert batch_job_id("A-b") != batch_job_id("a-B")


BASE = {"projectId": "p", "region": "europe-west1", "bucket": "squall-files"}


def test_kestra_options_validate() -> None:
    opts = validate_options(
        GoogleBatchRunner,
        {
            **BASE,
            "machineType": "n2-standard-4",
            "computeResource": {"cpu": "4000", "memory": "8 GiB", "bootDisk": "50 GiB"},
            "networkInterfaces": [{"network": "projects/p/global/networks/default", "subnetwork": "s"}],
            "waitUntilCompletion": "PT2H",
            "completionCheckInterval": "PT5S",
            "waitForLogInterval": "PT5S",
            "delete": False,
            "entryPoint": ["/bin/bash"],
            "reservation": "r1",
        },
    )
    assert isinstance(opts, GoogleBatchOptions)
    assert (opts.compute_resource.cpu_milli, opts.compute_resource.memory_mib) == (4000, 8192)
    assert opts.compute_resource.boot_disk_mib == 50 * 1024
    assert opts.wait_until_completion == timedelta(hours=2)


def test_the_resources_shape_of_other_runners_is_accepted() -> None:
    opts = validate_options(
        GoogleBatchRunner, {**BASE, "computeResource": {"request": {"cpu": "2", "memory": "4Gi"}}}
    )
    assert isinstance(opts, GoogleBatchOptions)
    assert (opts.compute_resource.cpu_milli, opts.compute_resource.memory_mib) == (2000, 4096)


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"resume": False}, "taskRunner.resume"),
        ({"bucket": "gs://b/with/path"}, "taskRunner.bucket"),
        ({"provisioningModel": "CHEAP"}, "taskRunner.provisioningModel"),
        ({"notificationTopic": "my-topic"}, "taskRunner.notificationTopic"),
        ({"entryPoint": ["sh"]}, "taskRunner.entryPoint"),
        ({"computeResource": {"memory": "lots"}}, "taskRunner.computeResource"),
        ({"spotty": True}, "taskRunner.spotty"),
        ({"queuedTimeout": "PT0S"}, "taskRunner.queuedTimeout"),
    ],
)
def test_bad_options_name_the_field(extra: dict[str, Any], field: str) -> None:
    with pytest.raises(RunnerOptionsError) as info:
        validate_options(GoogleBatchRunner, {**BASE, **extra})
    assert field in str(info.value)


def test_a_flow_cannot_send_google_credentials_to_an_endpoint_of_its_choice() -> None:
    runner = GoogleBatchRunner(defaults=BASE, anonymous=True)
    with pytest.raises(RunnerOptionsError) as info:
        runner._context("p", endpoint="https://evil.example")
    assert "taskRunner.endpoint" in str(info.value) and "evil.example" in str(info.value)


def test_the_runner_declares_quota_and_pubsub() -> None:
    assert Failure.QUOTA in GoogleBatchRunner.failures and GoogleBatchRunner.storage_schemes == {"gs"}
    assert GoogleBatchRunner.event_keys == {"gcp.pubsub"}


AWS_FEDERATION = {
    "type": "external_account",
    "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/squall/providers/aws",
    "subject_token_type": "urn:ietf:params:aws:token-type:aws4_request",
    "token_url": "https://sts.googleapis.com/v1/token",
    "credential_source": {
        "environment_id": "aws1",
        "region_url": "http://169.254.169.254/latest/meta-data/placement/availability-zone",
        "url": "http://169.254.169.254/latest/meta-data/iam/security-credentials",
        "regional_cred_verification_url": "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15",
    },
}


def test_a_federation_config_builds_aws_credentials_without_warnings_or_network() -> None:
    from google.auth import aws

    from runners.google_auth import google_credentials

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        credentials, project = google_credentials(
            "google-batch", key=None, impersonate=None, scopes=["s"], config=AWS_FEDERATION
        )
    assert isinstance(credentials, aws.Credentials) and project is None


@pytest.mark.parametrize(
    ("key", "config", "says"),
    [
        ("{not json", None, "taskRunner.serviceAccount: not a service-account JSON key"),
        (None, {"type": "service_account"}, "credentials_config: not an external_account"),
    ],
)
def test_bad_credentials_name_the_setting_without_echoing_it(key: str | None, config: Any, says: str) -> None:
    from runners.google_auth import google_credentials

    with pytest.raises(RunnerOptionsError) as info:
        google_credentials("google-batch", key=key, impersonate=None, scopes=["s"], config=config)
    assert says in str(info.value) and "{not json" not in str(info.value)
