"""The tick, events and schedule Lambdas, called the way AWS calls them, on a real store.

Jobs run on :class:`SimulatedRunner` (the compute is the test's: a job ends when the test
says so, and reports it as a push event shaped like EventBridge's); everything from the
handler down (runtime, service, engine, store) is the code that runs in Lambda. Time is a
virtual clock: the reconcile threshold, submit grace and schedule dates move only when the
test advances it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from control_plane.api.views import taskrun_view
from control_plane.engine.ids import job_name
from control_plane.engine.states import State
from control_plane.handlers import events, schedule, tick
from control_plane.handlers.container import install, reset
from control_plane.runtime import Runtime, load_settings, open_runtime
from control_plane.service.clock import VirtualClock
from control_plane.service.service import HANDED_TO_TICK
from control_plane.store.base import JobPhase, StateStore, TriggerRecord
from runners.base import JobState, TransientRunnerError
from runners.testing.simulated import SimulatedRunner
from tests.integration.lambdas import T0, TIMINGS

SHELL = """
id: one
namespace: squall.handlers
tasks:
  - id: work
    type: io.kestra.plugin.scripts.shell.Commands
    taskRunner:
      type: io.kestra.plugin.core.runner.Process
    commands:
      - echo hello
"""

SCHEDULED = """
id: nightly
namespace: squall.handlers
inputs:
  - id: who
    type: STRING
    defaults: world
triggers:
  - id: every5
    type: io.kestra.plugin.core.trigger.Schedule
    cron: "*/5 * * * *"
    inputs:
      who: "{{ flow.id }}'s {{ trigger.id }} for {{ trigger.date | date('HH:mm') }}"
tasks:
  - id: hello
    type: io.kestra.plugin.core.debug.Return
    format: "{{ inputs.who }} at {{ trigger.date }}"
"""


class World:
    """One control plane (store + clock + compute) that any number of 'Lambdas' share."""

    def __init__(self, store_factory: Any, tmp_path: Path) -> None:
        self.clock = VirtualClock(T0)
        self.compute = SimulatedRunner()
        self.tmp_path = tmp_path
        self.store_factory = store_factory
        self.settings = load_settings({}, data_dir=str(tmp_path / "data"), **TIMINGS)
        self.opened: list[Runtime] = []
        self.rt = self.lambda_()
        install(self.rt)

    def lambda_(self) -> Runtime:
        """A fresh container: its own store client and service cache, the same backend."""
        rt = open_runtime(
            self.settings, clock=self.clock, store=self.store_factory(), runners={"process": self.compute}
        )
        self.opened.append(rt)
        return rt

    @property
    def store(self) -> StateStore:
        return self.rt.store

    def advance(self, seconds: float) -> None:
        self.clock.sleep_until(self.clock.now() + timedelta(seconds=seconds))

    def start(self, source: str = SHELL) -> str:
        record = self.rt.service.deploy(source, "test.yaml")
        execution = self.rt.service.start(record.namespace, record.id)
        self.rt.service.flush()  # what the api handler does before returning
        return execution.id

    def job(self, execution_id: str) -> str:
        names = [
            n
            for n in self.compute.names()
            if self.compute.spec(n).labels.get("squall.io/execution") == execution_id
        ]
        assert len(names) == 1, names
        return names[0]

    def close(self) -> None:
        reset()
        for rt in self.opened:
            rt.close()


@pytest.fixture
def world(store_factory: Callable[[], StateStore], tmp_path: Path) -> Iterator[World]:
    w = World(store_factory, tmp_path)
    yield w
    w.close()


# ---------------------------------------------------------------------------- events


def test_a_terminal_event_completes_the_task_with_its_logs_and_outputs(world: World) -> None:
    ex = world.start()
    name = world.job(ex)
    world.compute.finish(name, lines=["hello", '::{"outputs":{"rows":42}}::'])

    assert events.handler(world.compute.event(name), None) == {"applied": 1}

    done = world.store.get_execution(ex)
    assert done.state is State.SUCCESS
    (run,) = done.taskruns.values()
    assert run.outputs is not None and run.outputs["vars"] == {"rows": 42}
    assert [line.message for line in world.store.read_logs(ex).items if line.task_id == "work"] == ["hello"]
    job = world.store.get_job(name)
    assert job is not None and job.phase is JobPhase.DONE


def test_an_ended_job_whose_last_lines_are_late_waits_for_them_and_keeps_its_outputs(world: World) -> None:
    """An empty log page is not the end: the outputs marker on the last line arrives late."""
    ex = world.start()
    name = world.job(ex)
    world.compute.finish(name, lines=["first"], log_complete=False)  # the service is still ingesting

    assert events.handler(world.compute.event(name), None) == {"applied": 0}  # waited, then left it
    assert world.store.get_execution(ex).state is State.RUNNING
    job = world.store.get_job(name)
    assert job is not None and job.phase is not JobPhase.DONE

    world.compute.ingest(name, ['::{"outputs":{"rows":42}}::'])
    world.advance(TIMINGS["reconcile_after"] + 1)  # the tick's reconciler asks again
    assert tick.handler({}, None)["polled"] == 1
    done = world.store.get_execution(ex)
    assert done.state is State.SUCCESS
    (run,) = done.taskruns.values()
    assert run.outputs is not None and run.outputs["vars"] == {"rows": 42}
    assert [x.message for x in world.store.read_logs(ex).items if x.task_id == "work"] == ["first"]


def test_a_log_the_runner_gave_up_on_says_it_may_be_incomplete(world: World) -> None:
    ex = world.start()
    name = world.job(ex)
    world.compute.finish(name, lines=["only"], log_complete=False)
    world.compute.ingest(name, truncated=True)
    assert events.handler(world.compute.event(name), None) == {"applied": 1}
    assert world.store.get_execution(ex).state is State.SUCCESS
    logs = [(x.level.value, x.message) for x in world.store.read_logs(ex).items if x.task_id == "work"]
    assert logs[0] == ("INFO", "only")
    assert logs[1][0] == "WARN"
    assert logs[1][1].startswith("the log may be incomplete: process stopped waiting")


def test_the_runners_cost_estimate_is_stored_on_the_attempt_and_shown_by_the_api(world: World) -> None:
    ex = world.start()
    name = world.job(ex)
    world.compute.finish(name, cost=0.0123)
    assert events.handler(world.compute.event(name), None) == {"applied": 1}

    (run,) = world.store.get_execution(ex).taskruns.values()
    assert [a.cost for a in run.attempts] == [0.0123]
    view = taskrun_view(world.store.get_execution(ex), run)
    assert (view.cost, [a.cost for a in view.attempts]) == (0.0123, [0.0123])


def test_a_duplicate_event_changes_nothing(world: World) -> None:
    ex = world.start()
    name = world.job(ex)
    world.compute.finish(name, lines=["once"])
    event = world.compute.event(name)
    events.handler(event, None)
    before = world.store.get_execution(ex)
    logs_before = world.store.read_logs(ex).items

    assert events.handler(event, None) == {"applied": 0}
    assert world.lambda_().store.get_execution(ex).version == before.version  # nothing written
    assert world.store.read_logs(ex).items == logs_before  # logs not stored twice


def test_a_late_running_event_after_the_end_is_ignored(world: World) -> None:
    ex = world.start()
    name = world.job(ex)
    world.compute.finish(name)
    events.handler(world.compute.event(name), None)
    version = world.store.get_execution(ex).version

    assert events.handler(world.compute.event(name, JobState.RUNNING), None) == {"applied": 0}
    assert world.store.get_execution(ex).version == version
    assert world.store.get_execution(ex).state is State.SUCCESS


def test_running_events_refresh_the_job_so_the_reconciler_leaves_it_alone(world: World) -> None:
    ex = world.start()
    name = world.job(ex)
    world.compute.start(name)
    world.advance(200)
    events.handler(world.compute.event(name), None)  # RUNNING, older than reconcile_after / 2: touched
    job = world.store.get_job(name)
    assert job is not None and job.updated == world.clock.now()
    world.advance(200)  # 400 s since submit, 200 s since the last news
    polls = world.compute.calls["poll"]
    assert tick.handler({}, None)["polled"] == 0
    assert world.compute.calls["poll"] == polls
    assert world.store.get_execution(ex).state is State.RUNNING


def test_an_event_that_beats_the_stored_handle_finds_the_job_by_name(world: World) -> None:
    record = world.rt.service.deploy(SHELL, "test.yaml")
    ex = world.rt.service.start(record.namespace, record.id).id  # submitted, handle not flushed yet
    name = world.job(ex)
    stored = world.store.get_job(name)
    assert stored is not None and stored.phase is JobPhase.SUBMITTING
    world.compute.finish(name, lines=["early"])

    other = world.lambda_()  # the events Lambda is another container
    assert events.handle_event(other, world.compute.event(name)) is True
    assert other.store.get_execution(ex).state is State.SUCCESS
    assert world.compute.calls["submit"] == 1

    world.rt.service.flush()  # the api Lambda writes its handle late: the DONE job keeps its logs once
    assert [x.message for x in other.store.read_logs(ex).items if x.task_id == "work"] == ["early"]
    job = other.store.get_job(name)
    assert job is not None and job.phase is JobPhase.DONE


def test_a_failed_job_fails_the_execution_with_the_reason(world: World) -> None:
    ex = world.start()
    name = world.job(ex)
    world.compute.finish(name, exit_code=3, lines=["boom"], reason="exit 3")
    events.handler(world.compute.event(name), None)
    done = world.store.get_execution(ex)
    assert done.state is State.FAILED


@pytest.mark.parametrize(
    "event",
    [
        {"source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification", "detail": {}},
        {
            "source": "squall.simulated",
            "detail-type": "Simulated Job State Change",
            "detail": {"status": "??"},
        },
        {"source": "squall.simulated", "detail-type": "Simulated Job State Change", "detail": {}},
        {"detail": {"jobName": "x"}},
        {},
    ],
    ids=["other-source", "bad-status", "no-detail", "no-source", "empty"],
)
def test_events_nobody_recognises_are_dropped(world: World, event: dict[str, Any]) -> None:
    ex = world.start()
    version = world.store.get_execution(ex).version
    assert events.handler(event, None) == {"applied": 0}
    assert world.store.get_execution(ex).version == version


def test_an_event_about_an_unknown_job_is_dropped(world: World) -> None:
    ex = world.start()
    name = world.job(ex)
    world.compute.finish(name)
    event = world.compute.event(name)
    event["detail"]["jobName"] = "someone-elses-job"
    assert events.handler(event, None) == {"applied": 0}
    assert world.store.get_execution(ex).state is State.RUNNING


def test_an_sqs_batch_of_events_is_applied_record_by_record(world: World) -> None:
    first, second = world.start(), world.start()
    for ex in (first, second):
        world.compute.finish(world.job(ex))
    batch = {
        "Records": [
            {"body": json.dumps(world.compute.event(world.job(first)))},
            {"body": "not json"},
            {"body": json.dumps(world.compute.event(world.job(second)))},
        ]
    }
    assert events.handler(batch, None) == {"applied": 2}
    assert {world.store.get_execution(x).state for x in (first, second)} == {State.SUCCESS}


# ---------------------------------------------------------------------------- tick


def test_the_tick_reconciles_jobs_whose_events_were_lost_in_one_batched_call(world: World) -> None:
    runs = [world.start() for _ in range(5)]
    for ex in runs:
        world.compute.finish(world.job(ex), lines=["done"])  # ...and every event is lost
    polls = world.compute.calls["poll"]

    world.advance(100)
    assert tick.handler({}, None)["polled"] == 0  # too early: events may still come
    world.advance(250)
    report = tick.handler({}, None)

    assert report["polled"] == 5 and report["ended"] == 5
    assert world.compute.calls["poll"] == polls + 1  # one call for all five jobs
    assert {world.store.get_execution(x).state for x in runs} == {State.SUCCESS}


class Crash(BaseException):
    """A Lambda killed mid-call (timeout, out of memory): nothing after this line runs."""


class CrashingSubmit(SimulatedRunner):
    def __init__(self) -> None:
        super().__init__()
        self.crash = True
        self.attempted: list[str] = []

    def submit(self, spec: Any) -> Any:
        if self.crash:
            self.attempted.append(spec.name)
            raise Crash
        return super().submit(spec)


def test_the_tick_submits_a_job_a_crashed_lambda_left_in_the_outbox_exactly_once(
    store_factory: Callable[[], StateStore], tmp_path: Path
) -> None:
    world = World(store_factory, tmp_path)
    world.compute = CrashingSubmit()
    world.rt = world.lambda_()
    install(world.rt)
    try:
        record = world.rt.service.deploy(SHELL, "test.yaml")
        with pytest.raises(Crash):
            world.rt.service.start(record.namespace, record.id)
        world.compute.crash = False
        (name,) = world.compute.attempted
        job = world.store.get_job(name)  # in the outbox (the active index may not list it yet)
        assert job is not None and job.phase is JobPhase.SUBMITTING and world.compute.names() == []

        world.advance(60)
        assert tick.handler({}, None)["recovered"] == 0  # the submitting Lambda may still be alive
        world.advance(61)
        assert tick.handler({}, None)["recovered"] == 1
        assert world.compute.names() == [job.name]
        world.advance(121)
        tick.handler({}, None)  # a second pass finds it SUBMITTED: no second submit
        assert world.compute.calls["submit"] == 1
        world.compute.finish(job.name)
        events.handler(world.compute.event(job.name), None)
        assert world.store.get_execution(job.execution_id).state is State.SUCCESS
    finally:
        world.close()


WIDE = """
id: wide
namespace: squall.handlers
tasks:
  - id: each
    type: io.kestra.plugin.core.flow.ForEach
    values: [VALUES]
    concurrencyLimit: 0
    tasks:
      - id: work
        type: io.kestra.plugin.scripts.shell.Commands
        taskRunner:
          type: io.kestra.plugin.core.runner.Process
        commands:
          - echo {{ taskrun.value }}
""".replace("VALUES", ", ".join(str(i) for i in range(40)))


def test_a_wide_step_submits_its_budget_and_hands_the_rest_to_the_tick(world: World) -> None:
    world.settings = load_settings(
        {}, data_dir=str(world.tmp_path / "data"), submit_budget=10, tick_submits=20, **TIMINGS
    )
    world.rt = world.lambda_()
    install(world.rt)
    ex = world.start(WIDE)
    assert world.compute.calls["submit"] == 10  # the API call's share; it returns at once
    handed = [job for job in world.store.active_jobs() if job.updated == HANDED_TO_TICK]
    assert len(handed) == 30 and all(job.phase is JobPhase.SUBMITTING for job in handed)

    reports = [tick.handler({}, None) for _ in range(3)]  # no clock advance: they are due at once
    assert [report["recovered"] for report in reports] == [20, 10, 0]
    assert (world.compute.calls["find"], world.compute.calls["submit"]) == (30, 40)
    assert len(world.compute.names()) == 40  # every lane has one job, none twice
    for name in world.compute.names():
        world.compute.finish(name)
        assert events.handler(world.compute.event(name), None) == {"applied": 1}
    assert world.store.get_execution(ex).state is State.SUCCESS


def test_the_tick_fires_due_timers(world: World) -> None:
    source = """
id: sleepy
namespace: squall.handlers
tasks:
  - id: nap
    type: io.kestra.plugin.core.flow.Sleep
    duration: PT10M
  - id: after
    type: io.kestra.plugin.core.debug.Return
    format: awake
"""
    ex = world.start(source)
    world.advance(300)
    tick.handler({}, None)
    assert world.store.get_execution(ex).state is State.RUNNING
    world.advance(301)
    assert tick.handler({}, None)["timersFired"] is True
    done = world.store.get_execution(ex)
    assert done.state is State.SUCCESS


# ---------------------------------------------------------------------------- schedules


def _scheduled(world: World) -> list[Any]:
    page = world.store.list_executions(namespace="squall.handlers", flow_id="nightly")
    return page.items


def test_a_schedule_starts_one_execution_per_date_with_the_trigger_variables(world: World) -> None:
    world.rt.service.deploy(SCHEDULED, "nightly.yaml")
    assert tick.handler({}, None)["scheduled"] == []  # a new trigger counts from now: nothing in the past
    world.advance(5 * 60)  # 12:05:30: the 12:05 date is due
    started = tick.handler({}, None)["scheduled"]
    assert len(started) == 1
    ex = world.store.get_execution(started[0])
    assert ex.state is State.SUCCESS
    assert ex.trigger is not None and ex.trigger["date"] == "2026-03-01T12:05:00+00:00"
    (run,) = ex.taskruns.values()
    # The trigger's inputs are rendered with its variables (they were passed as the template's text).
    assert run.outputs == {"value": "nightly's every5 for 12:05 at 2026-03-01T12:05:00+00:00"}

    assert tick.handler({}, None)["scheduled"] == []  # the same minute again: nothing new
    assert len(_scheduled(world)) == 1


def test_a_disabled_flow_s_schedule_does_not_fire(world: World) -> None:
    """Kestra's scheduler skips disabled flows; their due dates start nothing."""
    world.rt.service.deploy(
        SCHEDULED.replace("namespace: squall.handlers\n", "namespace: squall.handlers\ndisabled: true\n"),
        "nightly.yaml",
    )
    assert tick.handler({}, None)["scheduled"] == []
    world.advance(10 * 60)  # 12:10:30: 12:05 and 12:10 would be due
    assert tick.handler({}, None)["scheduled"] == []
    assert world.rt.service.fire_schedules(namespace="squall.handlers", flow_id="nightly") == []
    assert _scheduled(world) == []


def test_a_date_fired_twice_by_racing_lambdas_starts_one_execution(world: World) -> None:
    world.rt.service.deploy(SCHEDULED, "nightly.yaml")
    schedule.handler({}, None)
    key = "schedule/squall.handlers/nightly/every5"
    before = world.store.get_trigger(key)
    assert before is not None
    world.advance(10 * 60)  # 12:10:30: 12:05 and 12:10 due
    selection = {"namespace": "squall.handlers", "flow_id": "nightly", "trigger_id": "every5"}
    first = world.rt.service.fire_schedules(**selection)
    assert len(first) == 2
    # A second Lambda read the trigger state before the first stored its new date: roll the
    # stored date back to what that Lambda saw, then let it fire.
    now = world.store.get_trigger(key)
    assert now is not None
    world.store.put_trigger(TriggerRecord(key, before.data), expected_version=now.version)
    second = world.lambda_().service.fire_schedules(**selection)
    assert second == []  # same dates, same execution ids: both creates were refused
    assert len(_scheduled(world)) == 2


def test_missed_dates_follow_recover_missed_schedules(world: World) -> None:
    source = SCHEDULED.replace('cron: "*/5 * * * *"', 'cron: "*/5 * * * *"\n    recoverMissedSchedules: LAST')
    world.rt.service.deploy(source, "nightly.yaml")
    tick.handler({}, None)
    world.advance(60 * 60)  # an hour without ticks: 12 dates missed
    assert len(tick.handler({}, None)["scheduled"]) == 1


@pytest.mark.parametrize(
    "payload",
    [{"namespace": 3}, {"triggerId": "every5"}, {"namespace": ""}],
    ids=["not-a-string", "trigger-without-flow", "empty"],
)
def test_a_bad_schedule_payload_is_refused_and_starts_nothing(world: World, payload: dict[str, Any]) -> None:
    world.rt.service.deploy(SCHEDULED, "nightly.yaml")
    schedule.handler({}, None)
    world.advance(5 * 60)
    result = schedule.handler(payload, None)
    assert result["started"] == [] and "error" in result
    assert _scheduled(world) == []


SCHEDULED_JOB = """
id: nightly
namespace: squall.handlers
triggers:
  - id: every5
    type: io.kestra.plugin.core.trigger.Schedule
    cron: "*/5 * * * *"
tasks:
  - id: work
    type: io.kestra.plugin.scripts.shell.Commands
    taskRunner:
      type: io.kestra.plugin.core.runner.Process
    commands:
      - echo hello
"""


def test_the_schedule_handler_writes_what_rides_with_its_executions_before_returning(world: World) -> None:
    """A submit's warning rides with the execution's next save; the schedule Lambda makes no
    other save of it, so it writes it before returning (else another container never sees it)."""
    world.rt.service.deploy(SCHEDULED_JOB, "nightly.yaml")
    schedule.handler({}, None)
    world.advance(5 * 60)

    def throttled(spec: Any) -> Any:
        raise TransientRunnerError("throttled", runner="process")

    world.compute.submit = throttled  # type: ignore[method-assign]
    (started,) = schedule.handler({"namespace": "squall.handlers", "flowId": "nightly"}, None)["started"]

    other = world.lambda_().store  # another container reads the table
    ex = other.get_execution(started)
    (run,) = ex.taskruns.values()
    job = other.get_job(job_name(ex.namespace, ex.flow_id, run.task_id, ex.id, run.id, run.attempt))
    assert job is not None and job.phase is JobPhase.SUBMITTING
    assert job.claim is None  # left to the tick, its claim given back
    warnings = [x.message for x in other.read_logs(started).items if x.level.value == "WARN"]
    assert len(warnings) == 1 and warnings[0].startswith(f"could not submit job {job.name} yet: throttled")


def test_the_schedule_handler_fires_the_trigger_it_names(world: World) -> None:
    world.rt.service.deploy(SCHEDULED, "nightly.yaml")
    schedule.handler({"namespace": "squall.handlers", "flowId": "nightly"}, None)
    world.advance(5 * 60)
    assert schedule.handler({"namespace": "squall.handlers", "flowId": "unknown"}, None) == {"started": []}
    started = schedule.handler(
        {"namespace": "squall.handlers", "flowId": "nightly", "triggerId": "every5"}, None
    )
    assert len(started["started"]) == 1


def test_the_same_event_handled_by_two_lambdas_at_once_completes_the_task_once(world: World) -> None:
    ex = world.start()
    name = world.job(ex)
    world.compute.finish(name, lines=["only once"])
    event = world.compute.event(name)
    lambdas = [world.lambda_(), world.lambda_()]
    barrier = threading.Barrier(len(lambdas))
    results: list[bool] = []
    errors: list[BaseException] = []

    def deliver(rt: Runtime) -> None:
        try:
            barrier.wait(timeout=30)
            results.append(events.handle_event(rt, event))
        except BaseException as exc:  # reported below, with the thread's traceback
            errors.append(exc)

    threads = [threading.Thread(target=deliver, args=(rt,)) for rt in lambdas]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert True in results and len(results) == 2  # both may have read the job before either finished
    done = world.store.get_execution(ex)
    assert done.state is State.SUCCESS
    (run,) = done.taskruns.values()
    assert len(run.attempts) == 1
    stored = [x.message for x in world.store.read_logs(ex).items if x.task_id == "work"]
    assert stored == ["only once"]


# ---------------------------------------------------------------------------- flow concurrency, Flow triggers

LIMITED = SHELL.replace("id: one\n", "id: limited\n").replace("tasks:", "concurrency:\n  limit: 1\ntasks:", 1)

DOWNSTREAM = """
id: downstream
namespace: squall.handlers
inputs:
  - id: from
    type: STRING
triggers:
  - id: after_one
    type: io.kestra.plugin.core.trigger.Flow
    inputs:
      from: "{{ trigger.flowId }}/{{ trigger.executionId }}"
    preconditions:
      id: one
      flows:
        - {namespace: squall.handlers, flowId: one, states: [SUCCESS]}
tasks:
  - id: said
    type: io.kestra.plugin.core.debug.Return
    format: "{{ inputs.from }} {{ trigger.state }}"
"""


def test_a_limited_flows_second_execution_waits_in_another_lambda_and_starts_on_the_first_ones_end(
    world: World,
) -> None:
    first = world.start(LIMITED)
    other = world.lambda_()  # a second API call, in another container
    record = other.service.deploy(LIMITED, "test.yaml")
    second = other.service.start(record.namespace, record.id).id
    assert world.store.get_execution(second).state is State.QUEUED
    name = world.job(first)
    world.compute.finish(name, lines=["hello"])

    assert events.handler(world.compute.event(name), None) == {"applied": 1}

    assert world.store.get_execution(first).state is State.SUCCESS
    assert world.store.get_execution(second).state is State.RUNNING  # started by the event's Lambda
    world.compute.finish(world.job(second), lines=["hello"])
    events.handler(world.compute.event(world.job(second)), None)
    assert world.store.get_execution(second).state is State.SUCCESS


def test_an_executions_end_in_the_events_lambda_fires_a_flow_trigger_once(world: World) -> None:
    from control_plane.triggers.flow import fire_id

    world.rt.service.deploy(DOWNSTREAM, "downstream.yaml")
    upstream = world.start()
    name = world.job(upstream)
    world.compute.finish(name, lines=["hello"])
    event = world.compute.event(name)

    assert events.handler(event, None) == {"applied": 1}
    events.handler(event, None)  # delivered twice

    started = fire_id(upstream, "squall.handlers", "downstream", "after_one")
    down = world.store.get_execution(started)
    assert down.state is State.SUCCESS
    assert down.trigger is not None and down.trigger["executionId"] == upstream
    (run,) = down.taskruns.values()
    assert run.outputs == {"value": f"one/{upstream} SUCCESS"}
    flows = [s.flow_id for s in world.store.list_executions().items]
    assert sorted(flows) == ["downstream", "one"]
