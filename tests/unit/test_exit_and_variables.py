"""Exit and SetVariables: pure tasks that end the execution or change ``{{ vars }}``.

Kestra's Exit.java: KILLED kills what runs; another state ends the Exit's task run, its
parents and the execution in that state at once. SetVariables (kestra.io plugin docs): the
rendered map is deep-merged into ``vars``; ``overwrite: false`` fails when a value exists.
"""

from __future__ import annotations

import pytest

from control_plane.engine import CancelJob, Finish, JobStatusChanged, State, SubmitJob
from control_plane.errors import FlowValidationError

from .helpers import Driver, at, flow

PARALLEL = """
id: ex
namespace: t
tasks:
  - id: both
    type: io.kestra.plugin.core.flow.Parallel
    tasks:
      - id: slow
        type: io.kestra.plugin.scripts.shell.Commands
        commands: ["sleep 60"]
      - id: stop
        type: io.kestra.plugin.core.execution.Exit
        state: {state}
  - id: later
    type: io.kestra.plugin.core.log.Log
    message: never
"""


def test_exit_ends_the_execution_at_once_and_leaves_a_running_branch_alone() -> None:
    d = Driver(PARALLEL.format(state="WARNING"))
    actions = d.start()
    [job] = d.of_type(SubmitJob, actions)
    [finish] = d.of_type(Finish, actions)
    assert finish.state is State.WARNING and d.execution.state is State.WARNING
    assert d.of_type(CancelJob) == []
    assert d.states() == {"both": "WARNING", "slow": "RUNNING", "stop": "WARNING"}
    later = d.send(JobStatusChanged(at(5), job.taskrun_id, job.attempt, "FAILED", exit_code=1))
    assert d.of_type(Finish, later) == [] and d.execution.state is State.WARNING
    assert "later" not in d.states()


def test_exit_killed_kills_what_runs_and_ends_killed() -> None:
    d = Driver(PARALLEL.format(state="KILLED"))
    actions = d.start()
    [job] = d.of_type(SubmitJob, actions)
    [cancel] = d.of_type(CancelJob, actions)
    assert cancel.taskrun_id == job.taskrun_id
    assert d.of_type(Finish, actions) == []
    actions = d.send(JobStatusChanged(at(1), job.taskrun_id, job.attempt, "CANCELLED"))
    [finish] = d.of_type(Finish, actions)
    assert finish.state is State.KILLED
    assert d.states() == {"both": "KILLED", "slow": "KILLED", "stop": "KILLED"}


def test_a_literal_exit_state_kestra_does_not_know_is_a_validation_error() -> None:
    with pytest.raises(FlowValidationError, match=r"tasks\[0\]\.state: must be one of SUCCESS, WARNING"):
        flow(
            """
id: ex
namespace: t
tasks:
  - {id: stop, type: io.kestra.plugin.core.execution.Exit, state: DONE}
"""
        )


VARS = """
id: v
namespace: t
variables: {{name: World, deep: {{a: 1, b: 2}}}}
tasks:
  - id: set
    type: io.kestra.plugin.core.execution.SetVariables
    overwrite: "{overwrite}"
    variables: {{name: "{{{{ vars.name }}}}!", deep: {{b: 3, c: 4}}, new: x}}
  - id: read
    type: io.kestra.plugin.core.debug.Return
    format: >-
      {{{{ vars.name }}}} {{{{ vars.deep.a }}}}{{{{ vars.deep.b }}}}{{{{ vars.deep.c }}}}
      {{{{ vars.new }}}}
"""


def test_set_variables_deep_merges_into_vars_for_the_tasks_after_it() -> None:
    d = Driver(VARS.format(overwrite="{{ true }}"))
    [finish] = d.of_type(Finish, d.start())
    assert finish.state is State.SUCCESS
    assert d.run("read").outputs == {"value": "World! 134 x"}
    assert d.execution.variables == {"name": "World!", "deep": {"a": 1, "b": 3, "c": 4}, "new": "x"}


def test_set_variables_without_overwrite_names_every_value_it_would_replace() -> None:
    d = Driver(VARS.format(overwrite="false"))
    [finish] = d.of_type(Finish, d.start())
    assert finish.state is State.FAILED
    assert d.run("set").error == "Variables `name`, `deep.b` already exist and overwrite is false"
    assert d.execution.variables is None


UNSET = """
id: v
namespace: t
variables: {{name: World}}
tasks:
  - id: set
    type: io.kestra.plugin.core.execution.SetVariables
    variables: {{message: Hello}}
  - id: unset
    type: io.kestra.plugin.core.execution.UnsetVariables
    ignoreMissing: {ignore}
    variables: [message, "{{{{ 'na' ~ 'me' }}}}", {extra}]
  - id: read
    type: io.kestra.plugin.core.debug.Return
    format: "{{{{ vars.message ?? 'gone' }}}} {{{{ vars.name ?? 'gone' }}}}"
"""


def test_unset_variables_removes_them_for_later_tasks() -> None:
    d = Driver(UNSET.format(ignore="true", extra="never-set"))
    [finish] = d.of_type(Finish, d.start())
    assert finish.state is State.SUCCESS
    assert d.run("read").outputs == {"value": "gone gone"}
    assert d.execution.variables == {}


def test_unsetting_a_variable_that_is_not_set_fails_unless_ignore_missing() -> None:
    d = Driver(UNSET.format(ignore="false", extra="never-set"))
    [finish] = d.of_type(Finish, d.start())
    assert finish.state is State.FAILED
    assert d.run("unset").error == "Variables `never-set` are not set and ignoreMissing is false"
    assert d.execution.variables == {"name": "World", "message": "Hello"}


def test_nothing_starts_after_an_exit_not_even_in_a_sibling_branch() -> None:
    d = Driver(
        """
id: ex
namespace: t
tasks:
  - id: both
    type: io.kestra.plugin.core.flow.Parallel
    tasks:
      - id: stop
        type: io.kestra.plugin.core.execution.Exit
      - id: other
        type: io.kestra.plugin.core.flow.Sequential
        tasks:
          - {id: one, type: io.kestra.plugin.core.log.Log, message: one}
          - {id: job, type: io.kestra.plugin.scripts.shell.Commands, commands: ["true"]}
"""
    )
    actions = d.start()
    [finish] = d.of_type(Finish, actions)
    assert finish.state is State.SUCCESS
    assert d.of_type(SubmitJob, actions) == []
    assert set(d.states()) == {"both", "stop"}
