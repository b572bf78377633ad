"""Kestra's replay from a task run, as a pure engine function."""

from __future__ import annotations

import pytest

from control_plane.engine import Execution, JobStatusChanged, SubmitJob, plan, replay
from control_plane.engine.states import State
from control_plane.errors import EngineError
from runners.base import JobSpec
from tests.driving import Outcome, run

from .helpers import T0, at, flow

SOURCE = """
id: r
namespace: t
tasks:
  - id: first
    type: io.kestra.plugin.core.debug.Return
    format: one
  - id: loop
    type: io.kestra.plugin.core.flow.ForEach
    values: [a, b]
    tasks:
      - id: job
        type: io.kestra.plugin.scripts.shell.Commands
        commands: ["echo {{ taskrun.value }}"]
  - id: last
    type: io.kestra.plugin.core.debug.Return
    format: "{{ outputs.first.value }}-{{ outputs.job['b'].vars.n }}"
errors:
  - id: alert
    type: io.kestra.plugin.core.log.Log
    message: failed
"""
FLOW = flow(SOURCE)


def _run(fail_b: bool) -> Execution:
    """The flow run by the service, its jobs scripted: ``echo b`` fails when asked."""

    def jobs(spec: JobSpec) -> Outcome:
        if fail_b and "echo b" in spec.command[-1]:
            return Outcome(exit_code=1)
        return Outcome(outputs={"n": 7})

    return run(SOURCE, jobs=jobs).execution


def test_replay_keeps_what_ran_before_the_top_level_task_and_runs_the_rest() -> None:
    source = _run(fail_b=True)
    assert source.state is State.FAILED
    job_b = next(tr for tr in source.ordered_taskruns() if tr.task_id == "job" and tr.value == "b")
    new, actions = replay(FLOW, source, "ex2", at=at(60), taskrun_id=job_b.id)
    assert new.id == "ex2" and new.original_id == source.id and new.state is State.RUNNING
    by_task = {tr.task_id: tr for tr in new.ordered_taskruns()}
    # `first` is kept with its outputs, under an id derived from the new execution
    assert by_task["first"].outputs == {"value": "one"} and by_task["first"].id not in source.taskruns
    assert new.outputs_index["first"] == {"value": "one"}
    # the loop holding the target runs again from its start: two fresh jobs are asked for
    submits = [a for a in actions if isinstance(a, SubmitJob)]
    assert [a.properties["commands"][0] for a in submits] == ["echo a"]  # ForEach default limit 1
    assert "alert" not in by_task and "last" not in by_task
    # driven to the end, by hand, with jobs that now succeed
    execution, pending, second = new, submits, 61
    while pending:
        job = pending.pop(0)
        ended = JobStatusChanged(
            at(second), job.taskrun_id, job.attempt, "SUCCEEDED", outputs={"vars": {"n": 7}}
        )
        execution, actions = plan(FLOW, execution, ended)
        pending += [a for a in actions if isinstance(a, SubmitJob)]
        second += 1
    assert execution.state is State.SUCCESS
    last = next(tr for tr in execution.ordered_taskruns() if tr.task_id == "last")
    assert last.outputs == {"value": "one-7"}


def test_replay_rejects_unknown_task_runs_and_errors_branch() -> None:
    source = _run(fail_b=True)
    with pytest.raises(EngineError, match="no task run"):
        replay(FLOW, source, "ex2", at=T0, taskrun_id="nope")
    alert = next(tr for tr in source.ordered_taskruns() if tr.task_id == "alert")
    with pytest.raises(EngineError, match="errors branch"):
        replay(FLOW, source, "ex2", at=T0, taskrun_id=alert.id)


def test_replay_from_the_first_task_keeps_nothing() -> None:
    source = _run(fail_b=False)
    first = next(tr for tr in source.ordered_taskruns() if tr.task_id == "first")
    new, _ = replay(FLOW, source, "ex3", at=T0, taskrun_id=first.id)
    # `first` is inline: evaluated at once, the loop's first job is asked for
    assert [tr.task_id for tr in new.ordered_taskruns()][:2] == ["first", "loop"]
    assert all(tr.id not in source.taskruns for tr in new.taskruns.values())
