"""RETRY_FLOWABLE: a flowable retried as a unit, each round without the last one's children.

Expectations from Kestra's RetryCaseTest.retryFlowableBehavior* (newer than the Dec 2024
snapshot, where the behavior does not exist yet).
"""

from __future__ import annotations

from control_plane.engine import Finish, JobStatusChanged, Kill, StartTimer, State, SubmitJob, TimerFired
from runners.base import JobSpec
from tests.driving import Outcome, run

from .helpers import Driver, at

ROUND = """
id: rf
namespace: t
tasks:
  - id: seq1
    type: io.kestra.plugin.core.flow.{kind}
    retry: {{type: constant, interval: PT1S, maxAttempt: {attempts}, behavior: RETRY_FLOWABLE}}
    tasks:
      - id: get_token
        type: io.kestra.plugin.core.debug.Return
        format: "token"
      - id: call_api
        type: io.kestra.plugin.scripts.shell.Commands
        commands: ["call"]
        {leaf_retry}
  - id: after
    type: io.kestra.plugin.core.log.Log
    message: after
"""


def driver(*, kind: str = "Sequential", attempts: int = 3, leaf_retry: str = "") -> Driver:
    return Driver(ROUND.format(kind=kind, attempts=attempts, leaf_retry=leaf_retry))


def job_ends(d: Driver, status: str, seconds: float) -> list:
    """End the newest job (the one running) with ``status``."""
    job = d.of_type(SubmitJob)[-1]
    assert d.execution.taskruns[job.taskrun_id].state is State.RUNNING
    code = 0 if status == "SUCCEEDED" else 1
    return d.send(JobStatusChanged(at(seconds), job.taskrun_id, job.attempt, status, exit_code=code))


def next_round(d: Driver, actions: list) -> None:
    [timer] = d.of_type(StartTimer, actions)
    assert timer.key.startswith("retry:")
    d.send(TimerFired(timer.at, timer.key))


def test_the_flowable_is_retried_as_a_unit_and_its_children_are_not() -> None:
    d = driver()
    d.start()
    for second in (1, 3):
        next_round(d, job_ends(d, "FAILED", second))
    [finish] = d.of_type(Finish, job_ends(d, "FAILED", 5))
    assert finish.state is State.FAILED
    assert len(d.run("seq1").attempts) == 3
    assert len(d.run("get_token").attempts) == 1  # one task run: only the last round's remain
    assert len(d.run("call_api").attempts) == 1
    assert "after" not in d.states()
    names = [s.job_name for s in d.of_type(SubmitJob)]
    assert len(set(names)) == 3  # each round's job is a new one


def test_a_round_that_succeeds_ends_the_retries() -> None:
    d = driver()
    d.start()
    next_round(d, job_ends(d, "FAILED", 1))
    [finish] = d.of_type(Finish, job_ends(d, "SUCCEEDED", 3))
    assert finish.state is State.SUCCESS
    assert len(d.run("seq1").attempts) == 2 and d.run("seq1").state is State.SUCCESS
    assert d.states()["after"] == "SUCCESS"


def test_allow_failure_only_applies_after_the_last_round() -> None:
    d = driver(kind="AllowFailure", attempts=2)
    d.start()
    next_round(d, job_ends(d, "FAILED", 1))
    [finish] = d.of_type(Finish, job_ends(d, "FAILED", 3))
    assert finish.state is State.WARNING
    assert len(d.run("seq1").attempts) == 2 and d.run("seq1").state is State.WARNING
    assert d.states()["after"] == "SUCCESS"


def test_a_leaf_keeps_its_own_retry_inside_each_round() -> None:
    d = driver(attempts=2, leaf_retry="retry: {type: constant, interval: PT1S, maxAttempt: 2}")
    d.start()
    next_round(d, job_ends(d, "FAILED", 1))  # the leaf's own retry
    next_round(d, job_ends(d, "FAILED", 3))  # the flowable's second round
    next_round(d, job_ends(d, "FAILED", 5))
    [finish] = d.of_type(Finish, job_ends(d, "FAILED", 7))
    assert finish.state is State.FAILED
    assert len(d.run("seq1").attempts) == 2
    assert len(d.run("call_api").attempts) == 2


def test_a_kill_while_the_flowable_waits_for_its_next_round_ends_the_execution() -> None:
    d = driver()
    d.start()
    job_ends(d, "FAILED", 1)
    assert d.run("seq1").state is State.RETRYING
    [finish] = d.of_type(Finish, d.send(Kill(at(1.5))))
    assert finish.state is State.KILLED
    assert d.run("seq1").state is State.KILLED


def test_rounds_run_new_jobs_through_the_production_driver() -> None:
    """Each round's job has a new name, so a runner that keys jobs by name runs it again."""
    calls: list[str] = []

    def jobs(spec: JobSpec) -> Outcome:
        calls.append(spec.name)
        return Outcome(exit_code=0 if len(calls) == 3 else 1)

    result = run(ROUND.format(kind="Sequential", attempts=3, leaf_retry=""), jobs=jobs)
    assert result.state is State.SUCCESS
    assert len(set(calls)) == 3
    seq1 = next(tr for tr in result.execution.taskruns.values() if tr.task_id == "seq1")
    assert len(seq1.attempts) == 3
