"""Task retries in the engine, against Kestra's TaskRun.nextRetryDate and retry types.

The next attempt is due at the failed attempt's end + the policy's delay; none is made when
``maxAttempt`` attempts were made, or when that date reaches the first attempt's start +
``maxDuration`` (see the comment in ``retry_later`` for the boundary).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from control_plane.engine import Finish, JobStatusChanged, StartTimer, State, SubmitJob, TimerFired
from tests.driving import run

from .helpers import T0, Driver, at, flow

FLOW = """
id: r
namespace: t
tasks:
  - id: job
    type: io.kestra.plugin.scripts.shell.Commands
    commands: ["false"]
    retry: {retry}
"""


def delays(retry: str, *, run_for: float = 0.1) -> tuple[list[timedelta], State]:
    """Fail every attempt after ``run_for`` seconds; the waits before each retry, and the end."""
    d = Driver(FLOW.format(retry=retry))
    submit = d.of_type(SubmitJob, d.start())[0]
    now = 0.0
    waits: list[timedelta] = []
    while True:
        now += run_for
        actions = d.send(JobStatusChanged(at(now), submit.taskrun_id, submit.attempt, "FAILED", exit_code=1))
        finish = d.of_type(Finish, actions)
        if finish:
            return waits, finish[0].state
        [timer] = d.of_type(StartTimer, actions)
        waits.append(timer.at - at(now))
        now = (timer.at - T0).total_seconds()
        submit = d.of_type(SubmitJob, d.send(TimerFired(timer.at, timer.key)))[0]


def test_constant_fractional_interval_and_max_attempt() -> None:
    waits, state = delays("{type: constant, interval: PT0.25s, maxAttempt: 3}")
    assert waits == [timedelta(milliseconds=250)] * 2 and state is State.FAILED


def test_exponential_grows_by_the_factor_and_stops_at_max_interval() -> None:
    waits, _ = delays("{type: exponential, interval: PT0.25S, maxInterval: PT1S, maxAttempt: 5}")
    assert waits == [timedelta(milliseconds=ms) for ms in (250, 500, 1000, 1000)]


@pytest.mark.parametrize(
    ("max_duration", "attempts"),
    [("PT1.3S", 4), ("PT1.05S", 3), ("PT1.051S", 4)],
)
def test_max_duration_counts_from_the_first_attempt_s_start(max_duration: str, attempts: int) -> None:
    """Attempts run 0.1 s and wait 0.25 s: they start at 0, 0.35, 0.7 and 1.05 s."""
    waits, state = delays(f"{{type: constant, interval: PT0.25S, maxDuration: {max_duration}}}")
    assert len(waits) + 1 == attempts and state is State.FAILED


NEW_EXECUTION = """
id: again
namespace: t
{flow_retry}
tasks:
  - id: fail
    type: io.kestra.plugin.core.execution.Fail
    {task_retry}
"""


@pytest.mark.parametrize(
    ("flow_retry", "task_retry"),
    [
        ("", "retry: {behavior: CREATE_NEW_EXECUTION, type: constant, maxAttempt: 3, interval: PT1S}"),
        ("", "retry: {behavior: CREATE_NEW_EXECUTION, type: constant, maxDuration: PT6S, interval: PT2S}"),
        ("retry: {behavior: CREATE_NEW_EXECUTION, type: constant, maxAttempt: 3, interval: PT1S}", ""),
        ("retry: {behavior: CREATE_NEW_EXECUTION, type: constant, maxDuration: PT6S, interval: PT2S}", ""),
    ],
    ids=["task-attempts", "task-duration", "flow-attempts", "flow-duration"],
)
def test_create_new_execution_ends_retried_twice_then_failed(flow_retry: str, task_retry: str) -> None:
    """RetryCaseTest.retryNewExecution*: RETRIED, RETRIED, FAILED, one attempt each."""
    result = run(NEW_EXECUTION.format(flow_retry=flow_retry, task_retry=task_retry), start=T0)
    chain = sorted(result.executions, key=lambda e: e.created)
    assert [e.state for e in chain] == [State.RETRIED, State.RETRIED, State.FAILED]
    assert [e.labels.get("system.retryAttempt", "1") for e in chain] == ["1", "2", "3"]
    assert [e.taskruns[next(iter(e.taskruns))].state for e in chain] == [
        State.RETRIED,
        State.RETRIED,
        State.FAILED,
    ]
    assert all(e.retry_origin == T0 for e in chain[1:])


def test_a_flow_retry_without_behavior_retries_the_failed_task_in_place() -> None:
    """AbstractRetry's behavior defaults to RETRY_FAILED_TASK."""
    result = run(
        NEW_EXECUTION.format(
            flow_retry="retry: {type: constant, maxAttempt: 3, interval: PT1S}", task_retry=""
        ),
        start=T0,
    )
    assert [e.state for e in result.executions] == [State.FAILED]
    assert len(result.execution.taskruns[next(iter(result.execution.taskruns))].attempts) == 3


def test_delays_are_whole_milliseconds_as_kestra_computes_them() -> None:
    """Exponential: Math.round(interval ms * factor^(n-1)), capped; Random: [min, max) in ms."""
    expo = flow_retry("{type: exponential, interval: PT0.1S, maxInterval: PT1S, delayFactor: 1.5}")
    assert [expo.delay(n) for n in (1, 2, 3, 4, 5, 6, 60_000)] == [
        timedelta(milliseconds=ms) for ms in (100, 150, 225, 338, 506, 759, 1000)
    ]
    rand = flow_retry("{type: random, minInterval: PT0.2S, maxInterval: PT0.5S}")
    assert rand.delay(1, 0.0) == timedelta(milliseconds=200)
    assert rand.delay(1, 0.99999) == timedelta(milliseconds=499)


def flow_retry(text: str) -> Any:
    task = "{id: a, type: io.kestra.plugin.core.log.Log, message: m}"
    return flow(f"id: r\nnamespace: t\nretry: {text}\ntasks:\n  - {task}\n").retry
