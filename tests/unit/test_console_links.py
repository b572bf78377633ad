"""A job's console link is built from its handle alone, for each cloud whose console one can address."""

from __future__ import annotations

from datetime import UTC, datetime

from control_plane.engine.events import JobFailure
from control_plane.engine.model import Attempt
from control_plane.engine.states import State
from control_plane.store.codec import _attempt_from_json, _attempt_to_json
from runners.base import JobHandle
from runners.console import job_link


def test_aws_batch_links_to_the_job_in_its_region() -> None:
    link = job_link(JobHandle("n", "aws-batch", "8f0e-1", {"region": "eu-west-1", "queue": "q"}))
    assert link.job_id == "8f0e-1"
    assert (
        link.url == "https://eu-west-1.console.aws.amazon.com/batch/home?region=eu-west-1#jobs/detail/8f0e-1"
    )


def test_aws_batch_at_a_private_endpoint_or_without_a_region_has_no_link() -> None:
    assert (
        job_link(JobHandle("n", "aws-batch", "j", {"region": "us-east-1", "endpoint": "http://x"})).url
        is None
    )
    assert job_link(JobHandle("n", "aws-batch", "j", {})) == ("j", None)


def test_google_batch_and_cloud_run_link_to_the_project_and_location() -> None:
    batch = job_link(
        JobHandle("n", "google-batch", "uid", {"job": "projects/p1/locations/europe-west1/jobs/j-9"})
    )
    assert batch == (
        "j-9",
        "https://console.cloud.google.com/batch/jobsDetail/regions/europe-west1/jobs/j-9/details?project=p1",
    )
    data = {
        "job": "projects/p1/locations/us-central1/jobs/j-9",
        "execution": "projects/p1/locations/us-central1/jobs/j-9/executions/j-9-abc",
    }
    run = job_link(JobHandle("n", "cloud-run", "uid", data))
    assert run == (
        "j-9-abc",
        "https://console.cloud.google.com/run/jobs/executions/details/us-central1/j-9-abc/tasks?project=p1",
    )
    assert job_link(JobHandle("n", "google-batch", "uid", {"job": "not/a/name"})) == ("uid", None)


def test_azure_batch_kubernetes_and_unknown_runners_show_an_id_without_a_link() -> None:
    assert job_link(JobHandle("n", "azure-batch", "j/t/nonce", {"job": "j", "task": "t"})) == ("j/t", None)
    assert job_link(JobHandle("n", "kubernetes", "uid", {"namespace": "jobs", "job": "sq-1"})) == (
        "jobs/sq-1",
        None,
    )
    assert job_link(JobHandle("n", "process", "tok", {"dir": "/tmp/x"})) == ("tok", None)


def test_an_attempt_keeps_where_it_ran_and_its_timeout_through_the_store_codec() -> None:
    attempt = Attempt(
        State.FAILED,
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(2026, 1, 1, 0, 1, tzinfo=UTC),
        "job-name",
        0.5,
        True,
        "aws-batch",
        "8f0e-1",
        "https://console",
        JobFailure.QUOTA,
    )
    assert _attempt_from_json(_attempt_to_json(attempt)) == attempt
    bare = Attempt(State.RUNNING, datetime(2026, 1, 1, tzinfo=UTC))
    assert _attempt_from_json(_attempt_to_json(bare)) == bare
