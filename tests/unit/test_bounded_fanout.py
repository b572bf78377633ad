"""Bounded fan-out in the pure engine (ADR 0015): a plan starts at most ``lane_budget`` lanes
and asks for the rest with a ``fanout:`` timer; continuations are O(budget) and idempotent."""

from __future__ import annotations

import pytest

from control_plane.engine import (
    Action,
    Event,
    JobStatusChanged,
    Started,
    StartTimer,
    State,
    SubmitJob,
    TimerFired,
    plan,
)

from .helpers import T0, Driver, at


def wide(n: int, *, limit: int = 0, task: str = "shell") -> str:
    child = (
        'type: io.kestra.plugin.scripts.shell.Commands\n        commands: ["echo {{ taskrun.value }}"]'
        if task == "shell"
        else 'type: io.kestra.plugin.core.log.Log\n        message: "{{ taskrun.value }}"'
    )
    return f"""
id: wide
namespace: t
tasks:
  - id: each
    type: io.kestra.plugin.core.flow.ForEach
    values: {list(range(n))}
    concurrencyLimit: {limit}
    tasks:
      - id: work
        {child}
"""


class Budgeted(Driver):
    """The test driver, planning every event with a lane budget."""

    def __init__(self, source: str, budget: int) -> None:
        super().__init__(source)
        self.budget = budget

    def send(self, event: Event) -> list[Action]:
        self.history.append(event)
        self.execution, actions = plan(self.flow, self.execution, event, lane_budget=self.budget)
        self.actions.extend(actions)
        return actions


def timers(actions: list) -> list[StartTimer]:
    return [a for a in actions if isinstance(a, StartTimer) and a.key.startswith("fanout:")]


def continue_all(d: Budgeted, pending: list[StartTimer], now: float = 1) -> list[SubmitJob]:
    """Fire continuation timers until none is left; every SubmitJob they asked for, in order."""
    submits: list[SubmitJob] = []
    while pending:
        actions = d.send(TimerFired(at(now), pending.pop(0).key))
        submits += d.of_type(SubmitJob, actions)
        pending += timers(actions)
    return submits


def test_a_start_starts_at_most_the_budget_and_asks_for_a_continuation() -> None:
    d = Budgeted(wide(1000), budget=100)
    actions = d.start()
    # the budget counts the lanes of flowables (the root's one lane is free): the loop and 100 children
    assert len(d.of_type(SubmitJob, actions)) == 100
    assert len(d.execution.taskruns) == 101
    (timer,) = timers(actions)
    assert timer.at == T0
    each = d.run("each")
    assert (each.progress.started, each.progress.total, each.progress.deferred) == (100, 1000, 100)
    assert timer.key == f"fanout:{each.id}:100"


def test_continuations_start_every_lane_once_each_bounded_by_the_budget() -> None:
    d = Budgeted(wide(1000), budget=100)
    first = d.start()
    sizes = [len(d.of_type(SubmitJob, first))]
    pending = timers(first)
    while pending:
        actions = d.send(TimerFired(at(1), pending.pop(0).key))
        sizes.append(len(d.of_type(SubmitJob, actions)))
        pending += timers(actions)
    assert sizes == [100] * 10
    names = [s.job_name for s in d.of_type(SubmitJob)]
    assert len(names) == len(set(names)) == 1000
    assert d.run("each").progress.deferred is None


def test_a_redelivered_continuation_starts_nothing() -> None:
    d = Budgeted(wide(350), budget=100)
    (timer,) = timers(d.start())
    once = d.send(TimerFired(at(1), timer.key))
    assert len(d.of_type(SubmitJob, once)) == 100
    before = d.execution
    assert d.send(TimerFired(at(2), timer.key)) == []  # the same message again
    assert d.execution.version == before.version
    (following,) = timers(once)
    assert len(d.of_type(SubmitJob, d.send(TimerFired(at(3), following.key)))) == 100
    names = [s.job_name for s in d.of_type(SubmitJob)]
    assert len(names) == len(set(names)) == 300


def test_a_continuation_after_everything_started_changes_nothing() -> None:
    d = Budgeted(wide(150), budget=100)
    (timer,) = timers(d.start())
    continue_all(d, [timer])
    done = d.execution
    assert d.send(TimerFired(at(3), timer.key)) == []
    assert d.execution.version == done.version


def test_completions_while_deferred_start_more_but_never_a_second_timer() -> None:
    d = Budgeted(wide(300), budget=100)
    first = d.start()
    submits = d.of_type(SubmitJob, first)
    ended = d.send(JobStatusChanged(at(1), submits[0].taskrun_id, submits[0].attempt, "SUCCEEDED"))
    assert len(d.of_type(SubmitJob, ended)) == 100  # the completion's wake continues the loop, bounded
    assert timers(ended) == []  # the first continuation is still pending
    assert d.run("each").progress.started == 200


def test_the_loop_ends_once_every_lane_ended() -> None:
    d = Budgeted(wide(230), budget=50)
    first = d.start()
    submits = d.of_type(SubmitJob, first) + continue_all(d, timers(first))
    assert len(submits) == 230
    for i, s in enumerate(submits):
        d.send(JobStatusChanged(at(2 + i / 1000), s.taskrun_id, s.attempt, "SUCCEEDED"))
    assert d.execution.state is State.SUCCESS
    assert d.run("each").progress.done == 230


def test_inline_children_under_a_budget_end_the_loop_through_continuations() -> None:
    d = Budgeted(wide(120, task="log"), budget=25)
    first = d.start()
    continue_all(d, timers(first))
    assert d.execution.state is State.SUCCESS
    assert sum(1 for tr in d.execution.taskruns.values() if tr.task_id == "work") == 120


def test_a_concurrency_limit_under_the_budget_needs_no_continuation() -> None:
    d = Budgeted(wide(500, limit=10), budget=100)
    first = d.start()
    assert len(d.of_type(SubmitJob, first)) == 10
    assert timers(first) == []


def test_a_killed_loop_ignores_its_continuation() -> None:
    from control_plane.engine import Kill

    d = Budgeted(wide(300), budget=100)
    (timer,) = timers(d.start())
    d.send(Kill(at(1)))
    actions = d.send(TimerFired(at(2), timer.key))
    assert d.of_type(SubmitJob, actions) == []


def test_without_a_budget_every_lane_starts_at_once() -> None:
    d = Driver(wide(300))
    actions = d.start()
    assert len(d.of_type(SubmitJob, actions)) == 300
    assert timers(actions) == []


def test_a_budget_below_one_is_refused() -> None:
    d = Driver(wide(3))
    with pytest.raises(ValueError, match="lane_budget"):
        plan(d.flow, d.execution, Started(at=T0), lane_budget=0)


def test_the_continuation_key_differs_from_the_timer_it_fires() -> None:
    d = Budgeted(wide(300), budget=100)
    (timer,) = timers(d.start())
    (following,) = timers(d.send(TimerFired(at(1), timer.key)))
    assert following.key != timer.key  # the driver deletes the fired key after saving the new one


def test_a_failed_deferred_loop_restarted_starts_its_remaining_lanes() -> None:
    from control_plane.engine import Restart

    d = Budgeted(wide(250), budget=100)
    first = d.of_type(SubmitJob, d.start())
    d.send(JobStatusChanged(at(1), first[0].taskrun_id, first[0].attempt, "FAILED", exit_code=1))
    for s in first[1:]:
        d.send(JobStatusChanged(at(2), s.taskrun_id, s.attempt, "SUCCEEDED"))
    assert d.execution.state is State.FAILED
    assert d.run("each").progress.deferred is None  # ended: no continuation is waited for
    restarted = d.send(Restart(at(3)))
    pending = timers(restarted)
    submits = d.of_type(SubmitJob, restarted) + continue_all(d, pending, now=4)
    assert d.run("each").progress.started == 250
    for s in submits:
        d.send(JobStatusChanged(at(5), s.taskrun_id, s.attempt, "SUCCEEDED"))
    assert d.execution.state is State.SUCCESS


def test_the_benchmarks_flow_loops_over_exactly_n_values() -> None:
    from benchmarks.fanout import flow

    d = Budgeted(flow(7), budget=3)
    first = d.start()
    each = d.run("each")
    assert (each.progress.total, each.progress.values[-1]) == (7, "6")
    assert len(d.of_type(SubmitJob, first)) == 3
    assert d.of_type(SubmitJob, first)[0].properties["commands"] == ["true"]
