"""Exactly once on AWS Batch (moto server, its executor running each job's command for real).

Issue 19, point 3, reproduced against real components: two tick Lambdas as two OS processes
over one DynamoDB Local table; a SubmitJob whose response is lost after moto created the job
(a botocore ``after-call`` hook on the runner's session raises a connection error); the
terminal event of a duplicate job arriving for an attempt whose handle is not stored yet.
Every job's command appends a line to a file, so "ran once" is counted, not inferred.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import tests.integration.test_aws_batch_runner as batch
from control_plane.engine.ids import job_name
from control_plane.engine.states import State
from control_plane.service.runners import RunnerRegistry
from control_plane.service.service import Service
from control_plane.service.storage import LocalStorage
from control_plane.store.base import StateStore
from control_plane.store.sqlite import SqliteStore
from runners.aws_batch import AwsBatchRunner, batch_job_name
from runners.base import PushEvent
from runners.testing import wait_until
from tests.servers import ROOT

batch_env = batch.batch_env  # the module's moto Batch environment (queues, bucket, executor)
BatchEnv = batch.BatchEnv


def _flow(marker: Path) -> str:
    return f"""
id: once
namespace: squall.once
tasks:
  - id: work
    type: io.kestra.plugin.scripts.shell.Commands
    taskRunner:
      type: io.kestra.plugin.ee.aws.runner.Batch
    commands:
      - echo ran >> {marker}
"""


def _service(store: StateStore, runner: AwsBatchRunner, tmp_path: Path, **options: Any) -> Service:
    registry = RunnerRegistry(instances={"aws-batch": runner})
    return Service(store, runners=registry, storage=LocalStorage(tmp_path / "storage"), **options)


def _jobs_named(env: BatchEnv, name: str) -> list[dict[str, Any]]:
    """Every Batch job of that name in the run queue, whatever its status, described."""
    client = env.client("batch")
    ids = []
    for status in ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED"):
        page = client.list_jobs(jobQueue=env.run_queue, jobStatus=status)
        ids += [j["jobId"] for j in page.get("jobSummaryList", []) if j["jobName"] == name]
    return list(client.describe_jobs(jobs=ids)["jobs"]) if ids else []


def _all_ended(env: BatchEnv, name: str) -> Callable[[], bool]:
    return lambda: (
        bool(jobs := _jobs_named(env, name)) and all(j["status"] in ("SUCCEEDED", "FAILED") for j in jobs)
    )


def _runs(marker: Path) -> int:
    return len(marker.read_text().splitlines()) if marker.exists() else 0


def _event(job: dict[str, Any]) -> PushEvent:
    body = {
        "detail-type": "Batch Job State Change",
        "source": "aws.batch",
        "region": batch.REGION,
        "detail": job,
    }
    return PushEvent("aws.batch", body)


def test_two_tick_processes_recovering_one_job_run_its_command_once(
    batch_env: BatchEnv, dynamodb_table: tuple[Any, str], dynamodb_local: Any, tmp_path: Path
) -> None:
    from control_plane.store.dynamodb import DynamoDBStore

    client, table = dynamodb_table
    marker = tmp_path / "runs"
    service = _service(DynamoDBStore(table, client=client), batch_env.runner(), tmp_path, submit_budget=0)
    service.deploy(_flow(marker))
    service.start("squall.once", "once")  # over its budget: the job is left to the tick
    service.flush()
    (job,) = service.store.active_jobs()
    go = tmp_path / "go"
    command = [
        sys.executable,
        "-m",
        "tests.integration.batch_submitter",
        dynamodb_local.endpoint,
        table,
        batch_env.endpoint,
        batch_env.run_queue,
        batch_env.bucket,
        str(go),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ticks = [
        subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    go.touch()
    outputs = [proc.communicate(timeout=120) for proc in ticks]
    assert [proc.returncode for proc in ticks] == [0, 0], [err.decode()[-2000:] for _, err in outputs]

    wait_until(_all_ended(batch_env, job.name), 30.0, "the jobs did not end")
    assert len(_jobs_named(batch_env, job.name)) == 1, "both processes submitted the job"
    assert _runs(marker) == 1
    recovered = sorted(json.loads(out)["recovered"] for out, _ in outputs)
    assert recovered == [0, 1] or recovered == [1, 1]  # the loser of the claim submits nothing


def test_a_lost_submit_response_leaves_one_job_and_the_task_ends_with_its_outcome(
    batch_env: BatchEnv, tmp_path: Path
) -> None:
    from botocore.exceptions import ConnectionClosedError

    lost: list[str] = []

    def lose_first_response(http_response: Any, parsed: Any, model: Any, **_kwargs: Any) -> None:
        if not lost:  # moto created the job; the caller never hears of it
            lost.append(parsed["jobId"])
            raise ConnectionClosedError(endpoint_url=batch_env.endpoint)

    def session(**kwargs: Any) -> Any:
        made = batch._session(**kwargs)
        made.events.register("after-call.batch.SubmitJob", lose_first_response)
        return made

    runner = AwsBatchRunner(
        session_factory=session,
        endpoint_url=batch_env.endpoint,
        region=batch.REGION,
        defaults={"jobQueueArn": batch_env.run_queue, "bucket": batch_env.bucket},
        policy=batch.FAST_POLICY,
        sleep=batch.no_sleep,
    )
    marker = tmp_path / "runs"
    service = _service(SqliteStore(tmp_path / "squall.db"), runner, tmp_path, poll_interval=0.05)
    service.deploy(_flow(marker))
    ex = service.start("squall.once", "once")

    done = service.run(ex.id)

    assert lost, "the fault was not injected"
    (job,) = _jobs_named(batch_env, _job_name(service, ex.id))
    assert job["jobId"] == lost[0] and job["status"] == "SUCCEEDED"
    assert done.state is State.SUCCESS
    assert _runs(marker) == 1


def _job_name(service: Service, execution_id: str) -> str:
    execution = service.get(execution_id)
    (run,) = execution.taskruns.values()
    return job_name(execution.namespace, execution.flow_id, run.task_id, execution.id, run.id, run.attempt)


def test_a_duplicate_jobs_end_does_not_end_a_task_whose_handle_is_not_stored(
    batch_env: BatchEnv, tmp_path: Path
) -> None:
    marker = tmp_path / "runs"
    runner = batch_env.runner()
    service = _service(SqliteStore(tmp_path / "squall.db"), runner, tmp_path)
    service.deploy(_flow(marker))
    ex = service.start("squall.once", "once")
    service.flush()
    (record,) = service.store.active_jobs()
    assert record.handle is None  # Batch's events carry handles: none is written after the submit
    # Another process raced it (before any claim existed): its job lost the convergence and was
    # terminated. Its end arrives first.
    _, spec = service.jobs.spec(record)
    # The racer neither looked first nor took the submit lock (a runner without a bucket has none).
    batch_env.runner(resume=False, bucket=None).submit(spec)
    wait_until(_all_ended(batch_env, record.name), 30.0, "the jobs did not end")
    kept, duplicate = sorted(_jobs_named(batch_env, record.name), key=lambda j: j["createdAt"])
    # The duplicate is terminated (FAILED), unless its short command beat the TerminateJob:
    # either way its end is not the attempt's.
    assert kept["status"] == "SUCCEEDED"

    fresh = _service(SqliteStore(tmp_path / "squall.db"), batch_env.runner(), tmp_path)  # the events Lambda
    parsed = fresh.runners.get("aws-batch").parse_event(_event(duplicate))  # type: ignore[attr-defined]
    assert parsed is not None and parsed.job_id == duplicate["jobId"]
    assert fresh.job_event(parsed, touch_after=timedelta(minutes=2)) is False
    assert fresh.get(ex.id).state is State.RUNNING

    parsed = fresh.runners.get("aws-batch").parse_event(_event(kept))  # type: ignore[attr-defined]
    assert parsed is not None and fresh.job_event(parsed, touch_after=timedelta(minutes=2)) is True
    assert fresh.get(ex.id).state is State.SUCCESS


def test_a_job_the_tick_submits_costs_no_handle_write_and_its_event_ends_the_task(
    batch_env: BatchEnv, tmp_path: Path
) -> None:
    """Batch's events carry the handle, so a job submitted by the tick (handed over by a step
    over its budget, or out of its submit seconds) is not written SUBMITTED (issue 28: one
    write less per job, ~5 write units on a 10-job document); a job found by name is."""
    marker = tmp_path / "runs"
    service = _service(SqliteStore(tmp_path / "squall.db"), batch_env.runner(), tmp_path, submit_budget=0)
    service.deploy(_flow(marker))
    ex = service.start("squall.once", "once")  # over its budget: the job is left to the tick
    service.flush()
    (handed,) = service.store.active_jobs()
    grace = timedelta(minutes=2)
    report = service.tick(reconcile_after=timedelta(minutes=5), submit_grace=grace)
    assert report.recovered == 1
    wait_until(_all_ended(batch_env, handed.name), 30.0, "the job did not end")
    (record,) = service.store.active_jobs()
    assert record.phase.value == "SUBMITTING" and record.handle is None  # claimed, submitted, not rewritten
    assert record.version == handed.version + 1  # the claim's write only
    assert record.claim is not None  # held by the tick: no other process submits it meanwhile

    fresh = _service(SqliteStore(tmp_path / "squall.db"), batch_env.runner(), tmp_path)  # the events Lambda
    (job,) = _jobs_named(batch_env, handed.name)
    parsed = fresh.runners.get("aws-batch").parse_event(_event(job))  # type: ignore[attr-defined]
    assert parsed is not None and fresh.job_event(parsed, touch_after=grace) is True
    assert fresh.get(ex.id).state is State.SUCCESS
    assert _runs(marker) == 1


def test_a_job_the_tick_finds_by_name_is_written_submitted(batch_env: BatchEnv, tmp_path: Path) -> None:
    """A recovery that finds the job stores its handle: else every tick after the grace would
    look for it again."""
    marker = tmp_path / "runs"
    runner = batch_env.runner()
    service = _service(SqliteStore(tmp_path / "squall.db"), runner, tmp_path, submit_budget=0)
    service.deploy(_flow(marker))
    service.start("squall.once", "once")
    service.flush()
    (handed,) = service.store.active_jobs()
    _, spec = service.jobs.spec(handed)
    submitted = runner.submit(spec)  # a process that died before writing anything
    service.tick(reconcile_after=timedelta(minutes=5), submit_grace=timedelta(minutes=2))
    stored = service.store.get_job(handed.name)
    assert stored is not None and stored.handle is not None and stored.handle["id"] == submitted.id
    assert stored.phase.value in ("SUBMITTED", "DONE")  # DONE: its poll, in the same tick, saw it end
    wait_until(_all_ended(batch_env, handed.name), 30.0, "the job did not end")
    assert len(_jobs_named(batch_env, handed.name)) == 1


def _submit_lock_exists(env: BatchEnv, name: str) -> bool:
    key = f"squall/{batch_job_name(name)}/submit.lock"
    listed = env.client("s3").list_objects_v2(Bucket=env.bucket, Prefix=key)
    return bool(listed.get("KeyCount"))


def test_the_cloud_store_claim_replaces_the_bucket_lock_and_local_processes_keep_it(
    batch_env: BatchEnv, dynamodb_table: tuple[Any, str], tmp_path: Path
) -> None:
    """On DynamoDB a claim's holder cannot outlive it (every function's timeout is under the
    submit lease), so the runner is told it holds the only claim and writes no lock (issue 28:
    $5 per 1M tasks). Local processes steal claims from a stalled owner after a 30-second
    lease: their submits still take the lock in the bucket."""
    from control_plane.store.dynamodb import DynamoDBStore

    client, table = dynamodb_table
    names = {}
    for kind, store in (
        ("dynamodb", DynamoDBStore(table, client=client)),
        ("sqlite", SqliteStore(tmp_path / "squall.db")),
    ):
        marker = tmp_path / f"runs-{kind}"
        service = _service(store, batch_env.runner(), tmp_path / kind)
        service.deploy(_flow(marker))
        ex = service.start("squall.once", "once")
        names[kind] = _job_name(service, ex.id)
        wait_until(_all_ended(batch_env, names[kind]), 30.0, f"the {kind} job did not end")
        assert len(_jobs_named(batch_env, names[kind])) == 1
    assert not _submit_lock_exists(batch_env, names["dynamodb"])
    assert _submit_lock_exists(batch_env, names["sqlite"])
