"""A one-job WorkingDirectory (ADR 0016) in the cloud: Google Batch's fake, DynamoDB Local, the handlers.

The deployment of ``test_google_batch_end_to_end`` (api, events and tick functions as warm
containers over one DynamoDB Local table): a WorkingDirectory of two script children is one
Google Batch job, each child's log is stored under its own task run, and a kill during the
second child stops the job's processes.
"""

from __future__ import annotations

import time
import uuid

import pytest

from control_plane.engine.states import State
from runners.testing import count_local_processes
from tests.integration.service_helpers import messages
from tests.integration.test_aws_batch_runner import batch_env  # noqa: F401  (a fixture)
from tests.integration.test_google_batch_end_to_end import (  # noqa: F401  (fixtures)
    DEADLINE,
    GOOGLE,
    PROJECT,
    REGION,
    SHELL,
    Cloud,
    _aws_credentials,
    cloud,
)
from tests.integration.test_ingress import issuer  # noqa: F401  (a fixture)

google_batch = pytest.importorskip("tests.emulators.google_batch")


def flow(token: str, second: str) -> str:
    return f"""
id: wd
namespace: e2e
tasks:
  - id: worker
    type: io.kestra.plugin.core.flow.WorkingDirectory
    inputFiles:
      seed.txt: "seeded"
    tasks:
      - id: first
        type: {SHELL}
        containerImage: python:3.12-slim
        taskRunner: {{type: {GOOGLE}, labels: {{e2e: {token}}}}}
        commands: ["echo \\"first wrote $(cat seed.txt)\\" > shared.txt", "echo first done"]
      - id: second
        type: {SHELL}
        containerImage: python:3.12-slim
        taskRunner: {{type: {GOOGLE}, labels: {{e2e: {token}}}}}
        commands: ["cat shared.txt", "{second}"]
"""


def test_a_working_directory_is_one_google_batch_job(cloud: Cloud) -> None:  # noqa: F811
    created = cloud.fake.calls.get("CreateJob", 0)
    execution_id = cloud.start(flow(f"wd-{uuid.uuid4().hex[:8]}", "echo second done"))
    assert cloud.drive(execution_id) is State.SUCCESS
    assert cloud.fake.calls.get("CreateJob", 0) - created == 1
    assert messages(cloud.api_rt, execution_id, "first") == ["first done"]
    assert messages(cloud.api_rt, execution_id, "second") == ["first wrote seeded", "second done"]
    execution = cloud.api_rt.store.get_execution(execution_id)
    states = {tr.task_id: tr.state for tr in execution.taskruns.values()}
    assert states == {"worker": State.SUCCESS, "first": State.SUCCESS, "second": State.SUCCESS}


def test_a_kill_during_the_second_child_stops_the_one_job(cloud: Cloud) -> None:  # noqa: F811
    token = f"wd-{uuid.uuid4().hex[:10]}"
    # The job's script holds the token as written; only the second child's running process
    # has it in capitals (built when it runs), so seeing it means the second child started.
    running = token.upper()
    second = f"sh -c 'sleep 120' \\\"$(printf %s {token} | tr a-z A-Z)\\\""
    execution_id = cloud.start(flow(token, second))
    deadline = time.monotonic() + DEADLINE
    while count_local_processes(running) == 0:
        assert time.monotonic() < deadline, "the second child never started"
        cloud.deliver_notifications()
        cloud.tick()
    assert cloud.call("DELETE", f"/api/v1/main/executions/{execution_id}/actions/kill")["statusCode"] == 202
    assert cloud.drive(execution_id) is State.KILLED
    assert count_local_processes(token) == 0 and count_local_processes(running) == 0
    execution = cloud.api_rt.store.get_execution(execution_id)
    states = {tr.task_id: tr.state for tr in execution.taskruns.values()}
    assert states == {"worker": State.KILLED, "first": State.SUCCESS, "second": State.KILLED}
    assert messages(cloud.api_rt, execution_id, "second")[:1] == ["first wrote seeded"]


def test_a_preempted_job_runs_all_children_again_and_keeps_its_lines_with_the_first(
    cloud: Cloud,  # noqa: F811
) -> None:
    label = f"wd-spot-{uuid.uuid4().hex[:8]}"
    cloud.fake.hold_labels.add(label)
    execution_id = cloud.start(flow(label, "sleep 1; echo second done"))
    deadline = time.monotonic() + DEADLINE
    jobs: list[str] = []
    while not jobs:
        assert time.monotonic() < deadline, "no job"
        listed = cloud.fake.client().list_jobs(parent=f"projects/{PROJECT}/locations/{REGION}")
        jobs = [j.name.rpartition("/")[2] for j in listed if label in j.labels.values()]
        cloud.tick()
    # the VM goes away half a second in: during the second child's sleep
    cloud.fake.outcomes[jobs[0]] = google_batch.Outcome.preempted(after=0.5)
    cloud.fake.hold_labels.discard(label)
    assert cloud.drive(execution_id) is State.SUCCESS
    runs = {tr.task_id: tr for tr in cloud.api_rt.store.get_execution(execution_id).taskruns.values()}
    assert (len(runs["first"].attempts), runs["first"].infra_attempts) == (2, 1)
    assert len(runs["second"].attempts) == 1
    assert runs["second"].attempts[0].job == runs["first"].attempts[1].job
    # the preempted run's lines stay with the first child's first attempt
    assert messages(cloud.api_rt, execution_id, "second") == ["first wrote seeded", "second done"]
    firsts = messages(cloud.api_rt, execution_id, "first")
    assert firsts.count("first done") == 2 and "first wrote seeded" in firsts
