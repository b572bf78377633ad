"""core.execution Count and Resume through the production driver on a SQLite store.

Each test runs in a scratch runtime (``open_local`` on a temporary SQLite file, a virtual
clock): the handlers read and resume real executions, as ``squall run`` would.
"""

from __future__ import annotations

import pytest

from control_plane.conformance import run_flow, scratch_runtime
from control_plane.engine.states import State
from control_plane.errors import FlowValidationError
from control_plane.flows.loader import parse_flow

PAUSED = """
id: waits
namespace: t.ex
tasks:
  - id: wait
    type: io.kestra.plugin.core.flow.Pause
    onResume:
      - id: who
        type: STRING
  - id: after
    type: io.kestra.plugin.core.debug.Return
    format: "resumed by {{ outputs.wait.onResume.who }}"
"""

RESUMER = """
id: resumer
namespace: t.ex
inputs:
  - id: target
    type: STRING
tasks:
  - id: resume
    type: io.kestra.plugin.core.execution.Resume
    executionId: "{{ inputs.target }}"
    inputs:
      who: "{{ flow.id }}"
"""

SELF = """
id: itself
namespace: t.ex
tasks:
  - id: both
    type: io.kestra.plugin.core.flow.Parallel
    tasks:
      - id: wait
        type: io.kestra.plugin.core.flow.Pause
      - id: resume
        type: io.kestra.plugin.core.execution.Resume
"""

COUNT = """
id: counter
namespace: t.ex
tasks:
  - id: count
    type: io.kestra.core.tasks.executions.Counts
    startDate: "{{ now() | dateAdd(-1, 'HOURS') }}"
    flows:
      - {namespace: t.ex, flowId: waits}
      - {namespace: t.ex, flowId: never}
    namespaces: [t.ex]
    states: [PAUSED]
    expression: "{{ count > 0 }}"
  - id: bad
    type: io.kestra.plugin.core.execution.Count
    startDate: yesterday
    namespaces: [t.ex]
    expression: "{{ count > 0 }}"
"""


def test_resume_another_execution_with_inputs() -> None:
    with scratch_runtime() as runtime:
        paused = run_flow(runtime, PAUSED).execution
        assert paused.state is State.PAUSED
        run = run_flow(runtime, RESUMER, {"target": paused.id})
        assert run.execution.state is State.SUCCESS
        resumed = runtime.service.run(paused.id)
        assert resumed.state is State.SUCCESS
        after = next(tr for tr in resumed.taskruns.values() if tr.task_id == "after")
        assert after.outputs == {"value": "resumed by resumer"}


def test_resume_the_current_execution_by_default_and_fail_on_an_unknown_one() -> None:
    with scratch_runtime() as runtime:
        assert run_flow(runtime, SELF).execution.state is State.SUCCESS
        run = run_flow(runtime, RESUMER, {"target": "nosuchexecution"})
        assert run.execution.state is State.FAILED
        [tr] = run.execution.taskruns.values()
        assert tr.error == "No execution found for execution id nosuchexecution"


def test_count_filters_by_flows_namespaces_states_and_expression() -> None:
    with scratch_runtime() as runtime:
        run_flow(runtime, PAUSED)
        run_flow(runtime, PAUSED)
        run = run_flow(runtime, COUNT)
        runs = {tr.task_id: tr for tr in run.execution.taskruns.values()}
        assert runs["count"].outputs == {
            "results": [
                {"namespace": "t.ex", "flowId": "waits", "count": 2},
                {"namespace": "t.ex", "count": 2},  # flowId null: left out, as Jackson does
            ],
            "total": 4,
        }
        assert runs["bad"].state is State.FAILED
        assert runs["bad"].error is not None and runs["bad"].error.startswith("property 'startDate':")


@pytest.mark.parametrize(
    ("task", "message"),
    [
        (
            "type: io.kestra.plugin.core.execution.Count\n    startDate: x\n    expression: y",
            "flows or namespaces",
        ),
        ("type: io.kestra.plugin.core.execution.Count\n    namespaces: [a]\n    startDate: x", "expression"),
        ("type: io.kestra.plugin.core.execution.Resume\n    namespace: a", "should only be set when"),
        (
            "type: io.kestra.plugin.core.execution.Resume\n    executionId: e\n    flowId: f",
            "Both `namespace`",
        ),
    ],
)
def test_bad_properties_are_validation_errors(task: str, message: str) -> None:
    with pytest.raises(FlowValidationError, match=message):
        parse_flow(f"id: c\nnamespace: t.ex\ntasks:\n  - id: t\n    {task}\n", "c.yaml")
