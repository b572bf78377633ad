"""``afterExecution``: run once the execution's final state is known, never changing it.

Kestra's documentation (kestra.io/docs/workflow-components/afterexecution): the tasks run after
the flow has finished, see its final state in ``execution.state`` and cannot change it.
"""

from __future__ import annotations

from control_plane.engine import Finish, JobStatusChanged, Kill, Restart, State, SubmitJob

from .helpers import Driver, at

FLOW = """
id: ae
namespace: t
tasks:
  - id: work
    type: io.kestra.plugin.scripts.shell.Commands
    commands: ["true"]
outputs:
  - id: out
    type: STRING
    value: "{{ outputs.work.exitCode ?? 'none' }}"
afterExecution:
  - id: seen
    type: io.kestra.plugin.core.debug.Return
    format: "{{ execution.state }}"
  - id: notify
    type: io.kestra.plugin.scripts.shell.Commands
    commands: ["echo {{ execution.state }}"]
"""


def test_execution_finishes_only_after_its_after_execution_tasks_and_keeps_its_state() -> None:
    d = Driver(FLOW)
    work = d.of_type(SubmitJob, d.start())[0]
    actions = d.send(JobStatusChanged(at(1), work.taskrun_id, work.attempt, "SUCCEEDED"))
    assert d.of_type(Finish, actions) == []
    assert d.execution.state is State.RUNNING
    assert d.run("seen").outputs == {"value": "SUCCESS"}
    notify = d.of_type(SubmitJob, actions)[0]
    assert notify.properties["commands"] == ["echo SUCCESS"]
    actions = d.send(JobStatusChanged(at(2), notify.taskrun_id, notify.attempt, "FAILED", exit_code=1))
    [finish] = d.of_type(Finish, actions)
    assert finish.state is State.SUCCESS and d.execution.state is State.SUCCESS
    assert d.execution.outputs == {"out": "none"}
    assert d.states() == {"work": "SUCCESS", "seen": "SUCCESS", "notify": "FAILED"}


def test_a_killed_execution_runs_its_after_execution_tasks_and_stays_killed() -> None:
    d = Driver(FLOW)
    work = d.of_type(SubmitJob, d.start())[0]
    d.send(Kill(at(1)))
    actions = d.send(JobStatusChanged(at(2), work.taskrun_id, work.attempt, "CANCELLED"))
    assert d.run("seen").outputs == {"value": "KILLED"}
    notify = d.of_type(SubmitJob, actions)[0]
    actions = d.send(JobStatusChanged(at(3), notify.taskrun_id, notify.attempt, "SUCCEEDED"))
    [finish] = d.of_type(Finish, actions)
    assert finish.state is State.KILLED


def test_finally_sees_running_and_after_execution_sees_the_failed_state() -> None:
    d = Driver(
        """
id: ae
namespace: t
tasks:
  - id: boom
    type: io.kestra.plugin.core.execution.Fail
finally:
  - id: fin
    type: io.kestra.plugin.core.debug.Return
    format: "{{ execution.state }}"
afterExecution:
  - id: after
    type: io.kestra.plugin.core.debug.Return
    format: "{{ execution.state }}"
"""
    )
    [finish] = d.of_type(Finish, d.start())
    assert finish.state is State.FAILED
    assert d.run("fin").outputs == {"value": "RUNNING"}
    assert d.run("after").outputs == {"value": "FAILED"}
    assert [tr.task_id for tr in d.execution.ordered_taskruns()] == ["boom", "fin", "after"]


def test_a_restarted_execution_runs_its_after_execution_tasks_again_with_the_new_state() -> None:
    d = Driver(
        """
id: ae
namespace: t
tasks:
  - id: flaky
    type: io.kestra.plugin.scripts.shell.Commands
    commands: ["true"]
  - id: seen-in-tasks
    type: io.kestra.plugin.core.debug.Return
    format: "{{ execution.state }}"
afterExecution:
  - id: after
    type: io.kestra.plugin.core.debug.Return
    format: "{{ execution.state }}"
"""
    )
    job = d.of_type(SubmitJob, d.start())[0]
    d.send(JobStatusChanged(at(1), job.taskrun_id, job.attempt, "FAILED", exit_code=1))
    assert d.execution.state is State.FAILED and d.run("after").outputs == {"value": "FAILED"}
    job = d.of_type(SubmitJob, d.send(Restart(at(2))))[0]
    actions = d.send(JobStatusChanged(at(3), job.taskrun_id, job.attempt, "SUCCEEDED"))
    [finish] = d.of_type(Finish, actions)
    assert finish.state is State.SUCCESS
    assert d.run("seen-in-tasks").outputs == {"value": "RUNNING"}
    assert d.run("after").outputs == {"value": "SUCCESS"}
