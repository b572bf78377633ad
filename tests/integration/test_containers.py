"""Each Lambda function in its own warm container: a container's memory is never the truth.

The handler tests in ``test_handlers.py`` mostly share one runtime between the functions. In
AWS the api, events and tick functions run in containers of their own, each kept warm between
invocations, so whatever one container remembers about an execution may be old news by its
next call. These tests run each function in its own container (:class:`Plane`) over one
backend, SQLite and DynamoDB Local, and check that every event is planned on the execution
as stored, whatever a container saw before (DESIGN.md, section 5).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from control_plane.engine.states import State
from control_plane.errors import ConflictError, StoreError
from control_plane.store.base import JobPhase, StateStore
from tests.integration.lambdas import SHELL_TASK, Plane

RETRIED = f"""
id: retried
namespace: squall.containers
tasks:
  - id: work{SHELL_TASK}
    retry:
      type: constant
      interval: PT1M
      maxAttempts: 2
"""

APPROVAL = f"""
id: approval
namespace: squall.containers
tasks:
  - id: work{SHELL_TASK}
  - id: approve
    type: io.kestra.plugin.core.flow.Pause
  - id: after
    type: io.kestra.plugin.core.debug.Return
    format: approved
"""

SHELL = f"""
id: one
namespace: squall.containers
tasks:
  - id: work{SHELL_TASK}
"""


@pytest.fixture
def plane(store_factory: Callable[[], StateStore], tmp_path: Path) -> Iterator[Plane]:
    p = Plane(store_factory, tmp_path)
    yield p
    p.close()


def _start(plane: Plane, api: Any, source: str) -> str:
    deployed = plane.api(api, "POST", "/api/v1/main/flows", body=source, content_type="application/x-yaml")
    if deployed["statusCode"] == 422 and "already exists" in deployed["body"]:  # Kestra's create: PUT updates
        parsed = yaml.safe_load(source)
        path = f"/api/v1/main/flows/{parsed['namespace']}/{parsed['id']}"
        deployed = plane.api(api, "PUT", path, body=source, content_type="application/x-yaml")
    assert deployed["statusCode"] == 200, deployed["body"]
    flow = json.loads(deployed["body"])
    started = plane.api(
        api, "POST", f"/api/v1/main/executions/{flow['namespace']}/{flow['id']}", json_body={}
    )
    assert started["statusCode"] == 200, started["body"]
    return str(json.loads(started["body"])["id"])


def test_a_retried_jobs_second_attempt_ends_the_execution_in_a_warm_events_container(plane: Plane) -> None:
    api, events, ticker = plane.container(), plane.container(), plane.container()
    ex = _start(plane, api, RETRIED)
    (first,) = plane.jobs(ex)
    plane.compute.finish(first, exit_code=1, reason="exit 1")
    assert plane.deliver(events, plane.compute.event(first)) == {"applied": 1}  # RETRYING, timer in 1 min
    plane.advance(61)
    assert plane.tick(ticker)["timersFired"] is True  # attempt 2 submitted by the tick
    first_job, second = plane.jobs(ex)
    assert first_job == first
    plane.compute.finish(second, lines=["second time lucky"])

    plane.deliver(events, plane.compute.event(second))  # the events container still knows attempt 1

    store = plane.store_factory()
    done = store.get_execution(ex)
    assert done.state is State.SUCCESS
    (run,) = done.taskruns.values()
    assert [a.state for a in run.attempts] == [State.FAILED, State.SUCCESS]
    job = store.get_job(second)
    assert job is not None and job.phase is JobPhase.DONE


def test_a_warm_tick_fires_a_retry_timer_it_has_an_old_copy_for(plane: Plane) -> None:
    api, events, ticker = plane.container(), plane.container(), plane.container()
    ex = _start(plane, api, RETRIED)
    (first,) = plane.jobs(ex)
    plane.advance(121)  # the job outlives the submit grace: the tick finds it by name, reading the execution
    assert plane.tick(ticker)["recovered"] == 1
    plane.compute.finish(first, exit_code=1, reason="exit 1")
    assert plane.deliver(events, plane.compute.event(first)) == {"applied": 1}  # RETRYING, timer in 1 min
    plane.advance(61)

    assert plane.tick(ticker)["timersFired"] is True  # the tick container still knows attempt 1 RUNNING

    store = plane.store_factory()
    jobs = plane.jobs(ex)
    assert len(jobs) == 2, "the retry timer fired without submitting attempt 2"
    assert store.next_timer() is None
    plane.compute.finish(jobs[1])
    assert plane.deliver(events, plane.compute.event(jobs[1])) == {"applied": 1}
    assert store.get_execution(ex).state is State.SUCCESS


def test_a_warm_api_container_resumes_an_execution_paused_since_it_last_saw_it(plane: Plane) -> None:
    api, events = plane.container(), plane.container()
    ex = _start(plane, api, APPROVAL)  # the api container keeps a RUNNING copy
    (job,) = plane.jobs(ex)
    plane.compute.finish(job)
    assert plane.deliver(events, plane.compute.event(job)) == {"applied": 1}
    store = plane.store_factory()
    assert store.get_execution(ex).state is State.PAUSED

    resumed = plane.api(api, "POST", f"/api/v1/main/executions/{ex}/actions/resume", json_body={})

    assert resumed["statusCode"] == 200, resumed["body"]
    assert json.loads(resumed["body"])["state"]["current"] == "SUCCESS"
    assert store.get_execution(ex).state is State.SUCCESS


def test_a_warm_api_container_kills_an_execution_restarted_since_it_killed_it(plane: Plane) -> None:
    one, other = plane.container(), plane.container()
    ex = _start(plane, one, SHELL)
    assert plane.api(one, "DELETE", f"/api/v1/main/executions/{ex}/actions/kill")["statusCode"] in (200, 202)
    store = plane.store_factory()
    assert store.get_execution(ex).state is State.KILLED  # the container keeps a KILLED copy
    restarted = plane.api(other, "POST", f"/api/v1/main/executions/{ex}/actions/restart")
    assert restarted["statusCode"] == 200, restarted["body"]
    _, second = plane.jobs(ex)  # attempt 2 runs

    killed = plane.api(one, "DELETE", f"/api/v1/main/executions/{ex}/actions/kill")

    assert killed["statusCode"] in (200, 202), killed["body"]
    assert store.get_execution(ex).state is State.KILLED
    assert plane.compute.event(second)["detail"]["status"] == "CANCELLED"


class Contended:
    """A store client whose execution writes all lose the version race while ``contended``."""

    def __init__(self, store: StateStore) -> None:
        self._store = store
        self.contended = True

    def save_execution(self, *args: Any, **kwargs: Any) -> None:
        if self.contended:
            raise ConflictError("someone else wrote first")
        self._store.save_execution(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_a_job_end_that_could_not_be_stored_leaves_the_job_active(plane: Plane) -> None:
    api = plane.container()
    ex = _start(plane, api, SHELL)
    (job,) = plane.jobs(ex)
    contended = Contended(plane.store_factory())
    events = plane.container(contended)  # type: ignore[arg-type]
    plane.compute.finish(job, lines=["done"])

    with pytest.raises(StoreError, match="gave up"):
        plane.deliver(events, plane.compute.event(job))  # the Lambda fails: EventBridge delivers again
    events.flush()  # what the container's next invocation ends with

    store = plane.store_factory()
    stored = store.get_job(job)
    assert stored is not None and stored.phase is not JobPhase.DONE
    contended.contended = False
    assert plane.deliver(events, plane.compute.event(job)) == {"applied": 1}
    assert store.get_execution(ex).state is State.SUCCESS
    assert [x.message for x in store.read_logs(ex).items if x.task_id == "work"] == ["done"]
