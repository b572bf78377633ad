"""The Azure Batch taxonomy on task documents shaped as Batch returns them (REST ``BatchTask``)."""

from __future__ import annotations

from typing import Any

import pytest

from runners.azure_batch.taxonomy import requeues, task_status
from runners.base import Failure, JobState

START, END = "2026-01-01T10:00:00.000Z", "2026-01-01T10:00:05.000Z"


def _task(state: str = "completed", *, limit: str | None = None, **info: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": "t",
        "state": state,
        "executionInfo": {"retryCount": 0, "requeueCount": 0, **info},
    }
    if limit is not None:
        doc["constraints"] = {"maxWallClockTime": limit}
    return doc


def _failed(code: str, message: str = "", category: str = "usererror", **info: Any) -> dict[str, Any]:
    return _task(
        startTime=START,
        endTime=END,
        result="failure",
        failureInfo={"category": category, "code": code, "message": message},
        **info,
    )


@pytest.mark.parametrize(
    ("doc", "state", "failure", "exit_code"),
    [
        (_task("active"), JobState.QUEUED, None, None),
        (_task("preparing"), JobState.QUEUED, None, None),
        (_task("running", startTime=START), JobState.RUNNING, None, None),
        (_task(startTime=START, endTime=END, exitCode=0, result="success"), JobState.SUCCEEDED, None, 0),
        (_failed("FailureExitCode", exitCode=3), JobState.FAILED, Failure.USER, 3),
        (_failed("FailureExitCode", exitCode=137), JobState.FAILED, Failure.USER, 137),
        (_failed("FailureExitCode", exitCode=96), JobState.FAILED, Failure.CONFIG, 96),
        (_failed("FailureExitCode", exitCode=97), JobState.FAILED, Failure.CONFIG, 97),
        (
            _failed("BlobNotFound", "Failed to download resource file in/x.txt"),
            JobState.FAILED,
            Failure.CONFIG,
            None,
        ),
        (_failed("BlobAccessDenied"), JobState.FAILED, Failure.CONFIG, None),
        (_failed("FileUploadContainerNotFound", exitCode=0), JobState.FAILED, Failure.CONFIG, 0),
        (_failed("ContainerInvalidImage"), JobState.FAILED, Failure.CONFIG, None),
        (_failed("ContainerRegistryAccessDenied"), JobState.FAILED, Failure.CONFIG, None),
        (_failed("ContainerPoolingError"), JobState.FAILED, Failure.START_FAILED, None),
        (_failed("SomethingNew", category="servererror"), JobState.FAILED, Failure.START_FAILED, None),
        (_failed("TaskEnded", "The task was terminated."), JobState.CANCELLED, Failure.CANCELLED, None),
        (
            _failed("TaskEnded", "The task exceeded its maximum wall clock time", exitCode=137),
            JobState.FAILED,
            Failure.TIMEOUT,
            137,
        ),
    ],
)
def test_documented_payloads(
    doc: dict[str, Any], state: JobState, failure: Failure | None, exit_code: int | None
) -> None:
    status = task_status(doc)
    assert (status.state, status.failure, status.exit_code) == (state, failure, exit_code)
    if status.state.terminal and status.state is not JobState.SUCCEEDED:
        assert status.reason


def test_a_task_ended_at_its_wall_clock_limit_is_a_timeout_whatever_the_message() -> None:
    doc = {**_failed("TaskEnded", "Task ended"), "constraints": {"maxWallClockTime": "PT5S"}}
    status = task_status(doc)
    assert (status.failure, status.reason is not None and "timed out after 0:00:05" in status.reason) == (
        Failure.TIMEOUT,
        True,
    )
    earlier = {**_failed("TaskEnded", "Task ended"), "constraints": {"maxWallClockTime": "PT1M"}}
    assert task_status(earlier).failure is Failure.CANCELLED


def test_an_unlimited_wall_clock_is_no_limit() -> None:
    doc = {
        **_failed("TaskEnded", "Task ended"),
        "constraints": {"maxWallClockTime": "P10675199DT2H48M5.4775807S"},
    }
    assert task_status(doc).failure is Failure.CANCELLED


def test_a_requeued_task_is_queued_not_failed_and_counted() -> None:
    doc = _task("active", requeueCount=2, lastRequeueTime=END)
    status = task_status(doc)
    assert (status.state, status.failure, requeues(doc)) == (JobState.QUEUED, None, 2)
    assert status.reason == "requeued 2 time(s) after its node was preempted"
    done = task_status(_task(startTime=START, endTime=END, exitCode=0, result="success", requeueCount=1))
    assert done.state is JobState.SUCCEEDED and done.reason is not None and "requeued 1" in done.reason


def test_times_come_from_execution_info() -> None:
    status = task_status(_task(startTime=START, endTime=END, exitCode=0, result="success"))
    assert status.started is not None and status.ended is not None
    assert (status.ended - status.started).total_seconds() == 5
    never_ran = _task(
        endTime=END, result="failure", failureInfo={"category": "usererror", "code": "TaskEnded"}
    )
    assert task_status(never_ran).started is None  # cancelled while queued: its log is complete at once
