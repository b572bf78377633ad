"""Exactly once, and cancel as a durable phase, through the Lambda handlers on a real store.

Each function runs in a container of its own (:class:`~tests.integration.lambdas.Plane`), over
SQLite and DynamoDB Local; the compute is a :class:`SimulatedRunner` that can fail a submit or
a cancel transiently, forget a job, or leave one out of ``poll`` (issue 19, point 3). Time is
a virtual clock: the tick's grace, the submit timeout and the LOST horizon pass only when the
test advances it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from control_plane.engine.states import State
from control_plane.store.base import JobPhase, StateStore
from runners.base import JobHandle, JobSpec, JobStatus, TransientRunnerError
from runners.testing.simulated import SimulatedRunner
from tests.integration.lambdas import SHELL_TASK, Plane

SHELL = f"""
id: once
namespace: squall.once
tasks:
  - id: work{SHELL_TASK}
"""


class Flaky(SimulatedRunner):
    """The simulated compute, with the faults a cloud backend has.

    ``submit_failures`` / ``cancel_failures``: that many calls raise TransientRunnerError
    (the submit's job is not created); ``hidden``: names ``poll`` leaves out (no news);
    ``forget``: the backend loses a job.
    """

    def __init__(self, *, submit_failures: int = 0, cancel_failures: int = 0) -> None:
        super().__init__()
        self.submit_failures = submit_failures
        self.cancel_failures = cancel_failures
        self.tried: list[str] = []
        self.hidden: set[str] = set()

    def submit(self, spec: JobSpec) -> JobHandle:
        self.tried.append(spec.name)
        if self.submit_failures > 0:
            self.submit_failures -= 1
            raise TransientRunnerError("Too Many Requests (retries spent)", runner=self.name)
        return super().submit(spec)

    def cancel(self, handle: JobHandle) -> None:
        if self.cancel_failures > 0:
            self.cancel_failures -= 1
            raise TransientRunnerError("Service Unavailable (retries spent)", runner=self.name)
        super().cancel(handle)

    def poll(self, handles: Sequence[JobHandle]) -> Mapping[str, JobStatus]:
        return super().poll([h for h in handles if h.name not in self.hidden])

    def forget(self, name: str) -> None:
        with self._lock:
            del self._jobs[name]

    def state(self, name: str) -> str:
        with self._lock:
            return self._jobs[name].state.value


@pytest.fixture
def plane(store_factory: Callable[[], StateStore], tmp_path: Path) -> Iterator[Plane]:
    p = Plane(store_factory, tmp_path)
    yield p
    p.close()


def _start(plane: Plane, api: Any) -> str:
    deployed = plane.api(api, "POST", "/api/v1/main/flows", body=SHELL, content_type="application/x-yaml")
    if deployed["statusCode"] == 422 and "already exists" in deployed["body"]:  # Kestra's create
        deployed = plane.api(
            api, "PUT", "/api/v1/main/flows/squall.once/once", body=SHELL, content_type="application/x-yaml"
        )
    assert deployed["statusCode"] == 200, deployed["body"]
    started = plane.api(api, "POST", "/api/v1/main/executions/squall.once/once", json_body={})
    assert started["statusCode"] == 200, started["body"]
    return str(json.loads(started["body"])["id"])


def _flaky(plane: Plane, **faults: int) -> Flaky:
    plane.compute = Flaky(**faults)
    return plane.compute


def test_a_transient_submit_error_keeps_the_attempt_and_its_name_until_the_tick_submits_it(
    plane: Plane,
) -> None:
    compute = _flaky(plane, submit_failures=1)
    api, ticker = plane.container(), plane.container()
    ex = _start(plane, api)
    (name,) = compute.tried
    store = plane.store_factory()
    job = store.get_job(name)
    assert job is not None and job.phase is JobPhase.SUBMITTING and job.claim is None  # claim given back
    assert plane.jobs(ex) == [] and store.get_execution(ex).state is State.RUNNING

    plane.advance(121)  # past the submit grace
    assert plane.tick(ticker)["recovered"] == 1

    assert plane.jobs(ex) == [name], "the tick submitted the same attempt under the same name"
    plane.compute.finish(name)
    assert plane.deliver(plane.container(), plane.compute.event(name)) == {"applied": 1}
    done = store.get_execution(ex)
    assert done.state is State.SUCCESS
    (run,) = done.taskruns.values()
    assert len(run.attempts) == 1


def test_a_submit_failing_past_submit_timeout_fails_start_and_the_next_attempt_runs(plane: Plane) -> None:
    compute = _flaky(plane, submit_failures=1_000)
    api, ticker = plane.container(), plane.container()
    ex = _start(plane, api)
    first = compute.tried[0]
    for _ in range(7):  # every ~2 minutes, 14 minutes: still the same attempt
        plane.advance(121)
        plane.tick(ticker)
    assert set(compute.tried) == {first} and plane.jobs(ex) == []
    plane.advance(121)  # past the 15-minute submit_timeout since the first try
    plane.tick(ticker)  # START_FAILED: the engine asks for attempt 2, under a new name
    (second,) = set(compute.tried) - {first}
    store = plane.store_factory()
    old = store.get_job(first)
    assert old is not None and old.phase is JobPhase.CANCELLING  # a lost response may have made it
    compute.submit_failures = 0
    plane.advance(121)
    plane.tick(ticker)  # attempt 2 submitted; attempt 1's job found nowhere: DONE
    assert plane.jobs(ex) == [second]
    old = store.get_job(first)
    assert old is not None and old.phase is JobPhase.DONE


def test_a_cancel_that_fails_is_cancelled_again_by_the_tick_until_the_job_ends(plane: Plane) -> None:
    compute = _flaky(plane, cancel_failures=2)
    api, ticker = plane.container(), plane.container()
    ex = _start(plane, api)
    (name,) = plane.jobs(ex)
    assert plane.api(api, "DELETE", f"/api/v1/main/executions/{ex}/actions/kill")["statusCode"] in (200, 202)
    store = plane.store_factory()
    job = store.get_job(name)
    assert job is not None and job.phase is JobPhase.CANCELLING
    assert store.get_execution(ex).state is State.KILLING

    plane.advance(121)  # the tick looks at jobs older than the store's visit delay (DynamoDB: 120 s)
    assert plane.tick(ticker)["cancelling"] == 1  # fails again: still CANCELLING
    assert store.get_execution(ex).state is State.KILLING
    plane.tick(ticker)

    assert compute.state(name) == "CANCELLED"
    assert store.get_execution(ex).state is State.KILLED
    job = store.get_job(name)
    assert job is not None and job.phase is JobPhase.DONE


def test_a_second_kill_cancels_again_at_once(plane: Plane) -> None:
    compute = _flaky(plane, cancel_failures=1)
    api, other = plane.container(), plane.container()
    ex = _start(plane, api)
    (name,) = plane.jobs(ex)
    plane.api(api, "DELETE", f"/api/v1/main/executions/{ex}/actions/kill")
    store = plane.store_factory()
    assert store.get_execution(ex).state is State.KILLING

    again = plane.api(other, "DELETE", f"/api/v1/main/executions/{ex}/actions/kill")

    assert again["statusCode"] in (200, 202), again["body"]
    assert compute.state(name) == "CANCELLED"
    assert store.get_execution(ex).state is State.KILLED


def test_a_cancelling_job_its_backend_lost_ends_cancelled_not_lost(plane: Plane) -> None:
    compute = _flaky(plane, cancel_failures=1)
    api, ticker = plane.container(), plane.container()
    ex = _start(plane, api)
    (name,) = plane.jobs(ex)
    plane.api(api, "DELETE", f"/api/v1/main/executions/{ex}/actions/kill")
    compute.forget(name)  # the backend deleted it meanwhile

    plane.advance(121)  # past the submit claim of the container that submitted it
    plane.tick(ticker)

    store = plane.store_factory()
    done = store.get_execution(ex)
    assert done.state is State.KILLED
    (run,) = done.taskruns.values()
    assert len(run.attempts) == 1, "a LOST would have been resubmitted as an infrastructure failure"
    assert plane.jobs(ex) == []


def test_a_job_left_out_of_every_poll_ends_lost_after_the_horizon_and_is_cancelled_before_its_retry(
    plane: Plane,
) -> None:
    compute = _flaky(plane)
    api, ticker = plane.container(), plane.container()
    ex = _start(plane, api)
    (first,) = plane.jobs(ex)
    compute.start(first)
    compute.hidden.add(first)  # the backend says nothing about it, which is no evidence
    for _ in range(11):  # 55 minutes of ticks: found by name, polled, unheard of, still running
        plane.advance(300)
        plane.tick(ticker)
    store = plane.store_factory()
    assert plane.jobs(ex) == [first] and store.get_execution(ex).state is State.RUNNING

    plane.advance(600)  # an hour since the tick found it and nobody heard of it since (lost_after)
    plane.tick(ticker)

    assert compute.state(first) == "CANCELLED", "the old job was not cancelled before its next attempt"
    jobs = plane.jobs(ex)
    assert len(jobs) == 2 and jobs[0] == first
    messages = [line.message for line in store.read_logs(ex).items]
    assert any("lost_after" in m and "control plane" in m for m in messages), messages
    old = store.get_job(first)
    assert old is not None and old.phase is JobPhase.DONE
