"""The Kubernetes taxonomy (runners/kubernetes/taxonomy.py) on Job and Pod documents shaped as the
API reference shows them (batch/v1 Job status conditions, v1 Pod container states); no server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from runners.base import Failure, JobState
from runners.kubernetes import taxonomy

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
T0 = "2026-01-01T11:59:00Z"


def job(
    *conditions: dict[str, Any], annotations: dict[str, str] | None = None, **status: Any
) -> dict[str, Any]:
    return {
        "metadata": {"name": "j", "namespace": "ns", "annotations": annotations or {}},
        "spec": {"activeDeadlineSeconds": 5},
        "status": {"startTime": T0, "conditions": list(conditions), **status},
    }


def cond(kind: str, reason: str = "", message: str = "", status: str = "True") -> dict[str, Any]:
    return {"type": kind, "status": status, "reason": reason, "message": message, "lastTransitionTime": T0}


def pod(
    *containers: dict[str, Any], phase: str = "Running", conditions: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "metadata": {"name": "j-abcde", "creationTimestamp": T0},
        "status": {
            "phase": phase,
            "conditions": conditions if conditions is not None else [cond("PodScheduled")],
            "containerStatuses": list(containers),
        },
    }


def container(name: str, **state: Any) -> dict[str, Any]:
    return {"name": name, "state": state}


def test_complete_is_success() -> None:
    verdict = taxonomy.classify(job(cond("Complete", "CompletionsReached")), None, NOW)
    assert (verdict.status.state, verdict.status.exit_code, verdict.stop) == (JobState.SUCCEEDED, 0, None)


def test_deadline_exceeded_is_a_timeout() -> None:
    status = taxonomy.classify(job(cond("Failed", "DeadlineExceeded")), None, NOW).status
    assert (status.failure, status.reason) == (Failure.TIMEOUT, "timed out after 0:00:05")


@pytest.mark.parametrize(
    ("code", "failure"), [(3, Failure.USER), (96, Failure.CONFIG), (97, Failure.CONFIG), (137, Failure.USER)]
)
def test_the_exit_code_survives_in_the_pod_failure_policy_message(code: int, failure: Failure) -> None:
    message = (
        f"Container main for pod ns/j-abcde failed with exit code {code} matching FailJob rule at index 1"
    )
    status = taxonomy.classify(job(cond("Failed", "PodFailurePolicy", message)), None, NOW).status
    assert (status.state, status.failure, status.exit_code) == (JobState.FAILED, failure, code)


def test_oom_killed_is_the_users_and_says_so() -> None:
    message = "Container main for pod ns/j-abcde failed with exit code 137 matching FailJob rule at index 1"
    pods = [pod(container("main", terminated={"exitCode": 137, "reason": "OOMKilled"}), phase="Failed")]
    status = taxonomy.classify(job(cond("Failed", "PodFailurePolicy", message)), pods, NOW).status
    assert status.failure is Failure.USER and status.reason is not None and "OOMKilled" in status.reason


def test_a_staging_container_failure_is_config_with_its_termination_message() -> None:
    message = (
        "Container squall-stage-out for pod ns/j-abcde failed with exit code 97"
        " matching FailJob rule at index 2"
    )
    said = "cannot upload output result.txt to s3://nope/result.txt: NoSuchBucket"
    pods = [pod(container(taxonomy.STAGE_OUT, terminated={"exitCode": 97, "message": said}), phase="Failed")]
    status = taxonomy.classify(job(cond("Failed", "PodFailurePolicy", message)), pods, NOW).status
    assert (status.failure, status.reason) == (Failure.CONFIG, said)


def test_disruption_is_preemption() -> None:
    message = "Pod ns/j-abcde has condition DisruptionTarget matching FailJob rule at index 0"
    pods = [
        pod(phase="Failed", conditions=[cond("DisruptionTarget", "TerminationByKubelet", "node shutdown")])
    ]
    status = taxonomy.classify(job(cond("Failed", "PodFailurePolicy", message)), pods, NOW).status
    assert (
        status.failure is Failure.PREEMPTED
        and status.reason is not None
        and "TerminationByKubelet" in status.reason
    )


def test_cancel_is_final_only_once_suspended_and_no_pod_runs() -> None:
    stopping = job(annotations={taxonomy.CANCELLED: "now"}, active=1)
    assert taxonomy.classify(stopping, None, NOW).status.state is JobState.RUNNING
    done = job(cond("Suspended", "JobSuspended"), annotations={taxonomy.CANCELLED: "now"}, active=0)
    assert taxonomy.classify(done, [pod()], NOW).status.state is JobState.RUNNING  # a pod still runs
    status = taxonomy.classify(done, [], NOW).status
    assert (status.state, status.failure) == (JobState.CANCELLED, Failure.CANCELLED)


def test_a_stop_by_the_runner_reads_its_failure_back() -> None:
    value = taxonomy.stopped_value(Failure.UNSCHEDULABLE, "Unschedulable: 0/3 nodes are available")
    done = job(cond("Suspended", "JobSuspended"), annotations={taxonomy.STOPPED: value}, active=0)
    status = taxonomy.classify(done, [], NOW).status
    assert (status.state, status.failure, status.reason) == (
        JobState.FAILED,
        Failure.UNSCHEDULABLE,
        "Unschedulable: 0/3 nodes are available",
    )


@pytest.mark.parametrize("reason", sorted(taxonomy.CONFIG_WAITING))
def test_an_image_or_config_error_past_its_dwell_asks_for_a_config_stop(reason: str) -> None:
    annotations = {taxonomy.CONFIG_ERROR_TIMEOUT: "30"}
    waiting = [pod(container("main", waiting={"reason": reason, "message": "back-off"}), phase="Pending")]
    early = taxonomy.classify(
        job(annotations=annotations), waiting, datetime(2026, 1, 1, 11, 59, 10, tzinfo=UTC)
    )
    assert early.stop is None and early.status.state is JobState.STARTING
    late = taxonomy.classify(job(annotations=annotations), waiting, NOW)
    assert late.stop is not None and late.stop[0] is Failure.CONFIG and reason in late.stop[1]


def test_unschedulable_past_its_dwell_asks_for_an_unschedulable_stop() -> None:
    annotations = {taxonomy.PENDING_TIMEOUT: "30"}
    pending = [
        pod(phase="Pending", conditions=[cond("PodScheduled", "Unschedulable", "0/1 nodes", status="False")])
    ]
    verdict = taxonomy.classify(job(annotations=annotations), pending, NOW)
    assert verdict.status.state is JobState.QUEUED
    assert verdict.stop is not None and verdict.stop[0] is Failure.UNSCHEDULABLE
    assert taxonomy.classify(job(annotations=annotations), pending, NOW - timedelta(seconds=45)).stop is None


def test_running_and_pods_are_listed_only_when_they_tell_more() -> None:
    running = job(active=1, ready=1)
    verdict = taxonomy.classify(running, None, NOW)
    assert verdict.status.state is JobState.RUNNING and not taxonomy.needs_pods(running, verdict)
    pending = job(active=1, ready=0)
    assert taxonomy.needs_pods(pending, taxonomy.classify(pending, None, NOW))
    main = [pod(container("main", running={"startedAt": T0}))]
    assert taxonomy.classify(pending, main, NOW).status.state is JobState.RUNNING
    ok = job(cond("Complete"))
    assert not taxonomy.needs_pods(ok, taxonomy.classify(ok, None, NOW))


def test_a_quota_refusal_past_the_dwell_is_quota() -> None:
    refused = job(annotations={taxonomy.PENDING_TIMEOUT: "30"})
    refused["metadata"].update(uid="u1", creationTimestamp=T0)
    event = {
        "involvedObject": {"kind": "Job", "name": "j", "uid": "u1"},
        "reason": "FailedCreate",
        "message": 'Error creating: pods "j-x" is forbidden: exceeded quota: compute-resources',
    }
    stop = taxonomy.quota_stop(refused, [event], NOW)
    assert stop is not None and stop[0] is Failure.QUOTA and "exceeded quota" in stop[1]
    assert taxonomy.quota_stop(refused, [event], NOW - timedelta(seconds=45)) is None  # within the dwell
    other = {**event, "involvedObject": {"kind": "Job", "name": "other", "uid": "u2"}}
    assert taxonomy.quota_stop(refused, [other], NOW) is None
