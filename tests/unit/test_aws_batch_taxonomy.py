"""The AWS Batch runner's pure parts: failure taxonomy, EventBridge events, globs, rate limit.

Job documents follow AWS's "Batch Job State Change" example (the event ``detail`` is the job
as DescribeJobs returns it), trimmed to the fields Squall reads.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from runners.aws_batch import TokenBucket, botocore_classifier
from runners.aws_batch.staging import layout
from runners.aws_batch.taxonomy import (
    PUSHED_STATES,
    classify,
    handle_from_event,
    job_from_event,
    log_stream_of,
    merge,
)
from runners.base import Failure, JobState

EVENT: dict[str, Any] = {
    "version": "0",
    "id": "c8f9c4b5-76e5-d76a-f980-7011e206042b",
    "detail-type": "Batch Job State Change",
    "source": "aws.batch",
    "account": "123456789012",
    "time": "2022-01-11T23:36:40Z",
    "region": "us-east-1",
    "resources": ["arn:aws:batch:us-east-1:123456789012:job/4c7599ae-0a82-49aa-ba5a-4727fcce14a8"],
    "detail": {
        "jobArn": "arn:aws:batch:us-east-1:123456789012:job/4c7599ae-0a82-49aa-ba5a-4727fcce14a8",
        "jobName": "etl-extract-3k2j4h5a",
        "jobId": "4c7599ae-0a82-49aa-ba5a-4727fcce14a8",
        "jobQueue": "arn:aws:batch:us-east-1:123456789012:job-queue/squall",
        "status": "RUNNING",
        "attempts": [],
        "createdAt": 1641944200058,
        "startedAt": 1641944210000,
        "retryStrategy": {"attempts": 1, "evaluateOnExit": []},
        "dependsOn": [],
        "jobDefinition": "arn:aws:batch:us-east-1:123456789012:job-definition/squall-abc:1",
        "parameters": {},
        "container": {
            "image": "public.ecr.aws/docker/library/python:3.12-slim",
            "command": ["sh", "-c", "..."],
            "logStreamName": "squall-abc/default/4c7599ae-0a82-49aa-ba5a-4727fcce14a8",
            "networkInterfaces": [],
            "resourceRequirements": [{"value": "1", "type": "VCPU"}, {"value": "2048", "type": "MEMORY"}],
        },
        "tags": {"squall:name": "etl.extract-3k2j4h5a"},
        "propagateTags": True,
        "platformCapabilities": ["EC2"],
    },
}


def ended(status: str, reason: str | None = None, exit_code: int | None = None, started: bool = True) -> Any:
    event = copy.deepcopy(EVENT)
    job = event["detail"]
    job["status"] = status
    job["stoppedAt"] = 1641944260000
    if not started:
        del job["startedAt"]
    if reason is not None:
        job["statusReason"] = reason
    attempt: dict[str, Any] = {"container": {"logStreamName": job["container"]["logStreamName"]}}
    if exit_code is not None:
        attempt["container"]["exitCode"] = exit_code
        job["container"]["exitCode"] = exit_code
    job["attempts"] = [attempt]
    return event


@pytest.mark.parametrize(
    ("reason", "code", "started", "state", "failure"),
    [
        ("Essential container in task exited", 0, True, JobState.SUCCEEDED, None),
        ("Essential container in task exited", 3, True, JobState.FAILED, Failure.USER),
        ("Host EC2 (instance i-0a1b2c3d4e5f) terminated.", None, True, JobState.FAILED, Failure.PREEMPTED),
        ("Your Spot Task was interrupted.", 143, True, JobState.FAILED, Failure.PREEMPTED),
        (
            "CannotPullContainerError: pull image manifest has been retried",
            None,
            False,
            JobState.FAILED,
            Failure.START_FAILED,
        ),
        (
            "ResourceInitializationError: unable to pull secrets",
            None,
            False,
            JobState.FAILED,
            Failure.START_FAILED,
        ),
        ("TaskFailedToStart: ...", None, False, JobState.FAILED, Failure.START_FAILED),
        (
            "CannotPullContainerError: pull image manifest has been retried 5 time(s): failed to resolve"
            " ref docker.io/library/pyhton:3.12: docker.io/library/pyhton:3.12: not found",
            None,
            False,
            JobState.FAILED,
            Failure.CONFIG,
        ),
        (
            "CannotPullContainerError: Error response from daemon: pull access denied for nosuch/image",
            None,
            False,
            JobState.FAILED,
            Failure.CONFIG,
        ),
        (
            "CannotStartContainerError: Error response from daemon: failed to create shim task:"
            ' exec: "pyhton": executable file not found in $PATH: unknown',
            None,
            False,
            JobState.FAILED,
            Failure.CONFIG,
        ),
        (
            "ResourceInitializationError: unable to pull secrets or registry auth: AccessDeniedException",
            None,
            False,
            JobState.FAILED,
            Failure.CONFIG,
        ),
        ("Job attempt duration exceeded timeout", 137, True, JobState.FAILED, Failure.TIMEOUT),
        ("Squall: timed out after 0:00:01", 137, True, JobState.FAILED, Failure.TIMEOUT),
        ("Squall: cancelled by Squall", 137, True, JobState.CANCELLED, Failure.CANCELLED),
        ("Squall: unschedulable: RUNNABLE for 0:30:00", None, False, JobState.FAILED, Failure.UNSCHEDULABLE),
        (None, None, False, JobState.FAILED, Failure.START_FAILED),
        ("Something nobody documented", None, True, JobState.FAILED, Failure.LOST),
    ],
)
def test_failure_taxonomy(
    reason: str | None, code: int | None, started: bool, state: JobState, failure: Failure | None
) -> None:
    batch_status = "SUCCEEDED" if state is JobState.SUCCEEDED else "FAILED"
    status = classify(ended(batch_status, reason, code, started)["detail"])
    assert (status.state, status.failure, status.exit_code) == (state, failure, code)
    if failure is Failure.TIMEOUT:
        assert status.reason is not None and "timed out" in status.reason
    if status.terminal:
        assert status.ended is not None


@pytest.mark.parametrize(
    ("batch", "state"),
    [
        ("SUBMITTED", JobState.QUEUED),
        ("PENDING", JobState.QUEUED),
        ("RUNNABLE", JobState.QUEUED),
        ("STARTING", JobState.STARTING),
        ("RUNNING", JobState.RUNNING),
        ("WEIRD", JobState.LOST),
    ],
)
def test_live_states(batch: str, state: JobState) -> None:
    job = {**EVENT["detail"], "status": batch}
    assert classify(job).state is state


def test_the_rule_passes_exactly_the_statuses_that_end_a_job() -> None:
    """The module's EventBridge rule filters on PUSHED_STATES: a status left out must never end a job."""
    ending = {
        batch
        for batch in ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED")
        if classify({**EVENT["detail"], "status": batch}).terminal
    }
    assert ending == set(PUSHED_STATES)


def test_event_parsing_handle_and_foreign_events() -> None:
    handle = handle_from_event(EVENT)
    assert handle is not None
    assert (handle.id, handle.data["region"]) == ("4c7599ae-0a82-49aa-ba5a-4727fcce14a8", "us-east-1")
    assert handle.data["queue"].endswith("job-queue/squall")
    assert job_from_event({**EVENT, "source": "aws.ecs"}) is None
    assert job_from_event({**EVENT, "detail-type": "Batch Job Queue Blocked"}) is None
    assert job_from_event({**EVENT, "detail": {"status": "RUNNING"}}) is None
    assert handle_from_event({"source": "aws.batch"}) is None


def test_duplicate_and_out_of_order_events_keep_the_final_status() -> None:
    running = classify(EVENT["detail"])
    succeeded = classify(ended("SUCCEEDED", "Essential container in task exited", 0)["detail"])
    starting = classify({**EVENT["detail"], "status": "STARTING"})
    # Delivered: SUCCEEDED, then a late RUNNING, a duplicate SUCCEEDED and a late STARTING.
    seen = None
    for status in (succeeded, running, succeeded, starting):
        seen = merge(seen, status)
    assert seen == succeeded
    # In order, live states only advance.
    seen = None
    for status in (starting, running, starting):
        seen = merge(seen, status)
    assert seen is not None and seen.state is JobState.RUNNING
    assert classify(EVENT["detail"]) == classify(copy.deepcopy(EVENT)["detail"])  # duplicates agree


def staged_job(
    status: str, main: int | None, out: int | None, reason: str = "Essential container in task exited"
) -> dict[str, Any]:
    """A DescribeJobs item of a staged (ECS multi-container) job, as the API model shapes it."""
    containers = [
        {"name": "squall-stage-in-0", "exitCode": 0, "logStreamName": "squall/in/1"},
        {"name": "main", "exitCode": main, "logStreamName": "squall/main/1"},
        {"name": "squall-stage-out", "exitCode": out, "logStreamName": "squall/out/1"},
    ]
    job = {
        **ended(status, reason, None)["detail"],
        "ecsProperties": {"taskProperties": [{"containers": containers}]},
    }
    job.pop("container", None)  # an ECS-properties job has no single container
    job["attempts"] = [{"taskProperties": [{"containers": [{"name": c["name"]} for c in containers]}]}]
    return job


def test_a_staged_job_is_judged_by_its_containers_not_by_batchs_verdict() -> None:
    # Batch derives the job's status from the essential container (stage-out): main's code counts.
    failed_main = classify(staged_job("SUCCEEDED", 1, 0))
    assert (failed_main.state, failed_main.failure, failed_main.exit_code) == (
        JobState.FAILED,
        Failure.USER,
        1,
    )
    ok = classify(staged_job("FAILED", 0, 0))
    assert (ok.state, ok.exit_code) == (JobState.SUCCEEDED, 0)
    upload = classify(staged_job("FAILED", 0, 1))
    assert (upload.state, upload.failure) == (JobState.FAILED, Failure.CONFIG)
    assert upload.reason is not None and "squall-stage-out" in upload.reason
    fetch = classify(staged_job("FAILED", 97, 0))
    assert (fetch.failure, fetch.exit_code) == (Failure.CONFIG, 97)
    missing = classify(staged_job("FAILED", 96, 0))
    assert missing.failure is Failure.CONFIG and "command not found" in (missing.reason or "")
    assert log_stream_of(staged_job("SUCCEEDED", 0, 0)) == "squall/main/1"
    cancelled = classify(staged_job("FAILED", 137, None, "Squall: cancelled by Squall"))
    assert cancelled.state is JobState.CANCELLED


def test_the_wrappers_exit_codes_are_config_in_a_single_container_job_too() -> None:
    assert (
        classify(ended("FAILED", "Essential container in task exited", 97)["detail"]).failure
        is Failure.CONFIG
    )
    assert (
        classify(ended("FAILED", "Essential container in task exited", 96)["detail"]).failure
        is Failure.CONFIG
    )
    assert (
        classify(ended("FAILED", "Essential container in task exited", 95)["detail"]).failure is Failure.USER
    )


def test_the_sidecar_layout_groups_inputs_by_prefix() -> None:
    plan = layout(
        ("python", "main.py"),
        token="0" * 32,
        inline_files={"main.py": b"print('hi')\n"},
        remote={"a.csv": "s3://b/out/t1/a.csv", "d/b.csv": "s3://b/out/t1/d/b.csv", "x": "s3://c/other/y"},
        output_globs=("*.csv",),
        output_prefix="s3://b/out/t2/",
        cli=False,
    )
    assert plan.command[:2] == ["sh", "-c"] and plan.command[3:] == ["squall", "python", "main.py"]
    assert "base64 -d > main.py" in plan.command[2] and "aws" not in plan.command[2]
    assert plan.stage_in == (
        (
            "s3",
            "cp",
            "--recursive",
            "--only-show-errors",
            "s3://b/out/t1/",
            "/squall/in/",
            "--exclude",
            "*",
            "--include",
            "a.csv",
            "--include",
            "d/b.csv",
        ),
        ("s3", "cp", "--only-show-errors", "s3://c/other/y", "/squall/in/x"),
    )
    assert plan.stage_out == (
        "s3",
        "cp",
        "--recursive",
        "--only-show-errors",
        "/squall/out/",
        "s3://b/out/t2/",
    )
    single = layout(
        ("true",), token="0" * 32, inline_files={}, remote={}, output_globs=(), output_prefix=None, cli=False
    )
    assert not single.multi


def test_token_bucket_paces_calls_without_real_sleeping() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    bucket = TokenBucket(40.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(120):
        bucket.acquire()
    assert now[0] == pytest.approx(2.0, abs=0.05)  # 40 at once, then 80 at 40 per second


def client_error(code: str, status: int) -> Exception:
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "SubmitJob")


def test_botocore_errors_are_classified() -> None:
    from botocore.exceptions import EndpointConnectionError, ParamValidationError

    assert botocore_classifier(client_error("TooManyRequestsException", 429)) is True
    assert botocore_classifier(client_error("ThrottlingException", 400)) is True
    assert botocore_classifier(client_error("ServerException", 500)) is True
    assert botocore_classifier(client_error("ClientException", 400)) is False
    assert botocore_classifier(EndpointConnectionError(endpoint_url="http://x")) is True
    assert botocore_classifier(ParamValidationError(report="bad")) is False
    assert botocore_classifier(ValueError("x")) is None
