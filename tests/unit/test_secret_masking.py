"""secret() and SECRET inputs in the pure engine: the value reaches the job, never what is stored."""

from __future__ import annotations

import pytest

from control_plane.engine import Emit, Started, SubmitJob, new_execution, plan
from control_plane.engine.states import State
from control_plane.errors import SquallError
from control_plane.flows.inputs import MASK
from tests.unit.helpers import T0, flow

SOURCE = """
id: secrets
namespace: test
inputs:
  - id: password
    type: SECRET
tasks:
  - id: log
    type: io.kestra.plugin.core.log.Log
    message: "token={{ secret('API_TOKEN') }} password={{ inputs.password }}"
  - id: ret
    type: io.kestra.plugin.core.debug.Return
    format: "{{ secret('API_TOKEN') }}/{{ inputs.password }}"
  - id: out
    type: io.kestra.plugin.core.output.OutputValues
    values:
      nested: {"key": "{{ secret('API_TOKEN') }}", "list": ["{{ inputs.password }}"]}
  - id: labels
    type: io.kestra.plugin.core.execution.Labels
    labels:
      token: "{{ secret('API_TOKEN') }}"
  - id: script
    type: io.kestra.plugin.scripts.shell.Commands
    commands: ["echo {{ secret('API_TOKEN') }}"]
outputs:
  - id: flow_out
    type: STRING
    value: "{{ secret('API_TOKEN') }}"
"""

TOKEN = "tok-9f8e7d6c"
PASSWORD = "pw-1a2b3c4d"


class _Lookup:
    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.asked: list[str] = []

    def get(self, name: str) -> str:
        self.asked.append(name)
        if name not in self.values:
            raise SquallError(f"secret '{name}' not found (looked in: test)")
        return self.values[name]

    def revealed(self) -> list[str]:
        return []


def test_secret_values_reach_the_job_and_are_masked_everywhere_else() -> None:
    f = flow(SOURCE)
    lookup = _Lookup({"API_TOKEN": TOKEN})
    execution = new_execution(f, "ex1", at=T0, inputs={"password": PASSWORD})
    execution, actions = plan(f, execution, Started(at=T0), secrets=lookup)
    jobs = [a for a in actions if isinstance(a, SubmitJob)]
    assert jobs and f"echo {TOKEN}" in str(jobs[0].properties["commands"])  # the job gets the value
    logs = [line.message for a in actions if isinstance(a, Emit) for line in a.logs]
    stored = repr(
        (
            logs,
            [(tr.outputs, tr.error) for tr in execution.taskruns.values()],
            dict(execution.labels),
            dict(execution.outputs_index),
        )
    )
    assert TOKEN not in stored and PASSWORD not in stored
    assert f"token={MASK} password={MASK}" in logs
    runs = {tr.task_id: tr for tr in execution.taskruns.values()}
    assert runs["ret"].outputs == {"value": f"{MASK}/{MASK}"}
    assert runs["out"].outputs == {"values": {"nested": {"key": MASK, "list": [MASK]}}}
    assert execution.labels["token"] == MASK
    assert lookup.asked.count("API_TOKEN") >= 1


def test_an_unknown_secret_fails_the_task_with_the_backends_message() -> None:
    f = flow(SOURCE.replace("API_TOKEN') }} password", "NOPE') }} password"))
    execution = new_execution(f, "ex1", at=T0, inputs={"password": PASSWORD})
    execution, _ = plan(f, execution, Started(at=T0), secrets=_Lookup({"API_TOKEN": TOKEN}))
    log = next(tr for tr in execution.taskruns.values() if tr.task_id == "log")
    assert log.state is State.FAILED
    assert "secret 'NOPE' not found (looked in: test)" in (log.error or "")
    assert PASSWORD not in (log.error or "")


def test_without_a_backend_secret_says_so() -> None:
    f = flow(SOURCE)
    execution = new_execution(f, "ex1", at=T0, inputs={"password": PASSWORD})
    execution, _ = plan(f, execution, Started(at=T0))
    log = next(tr for tr in execution.taskruns.values() if tr.task_id == "log")
    assert "no secret backend is configured" in (log.error or "")


@pytest.mark.parametrize("message", ["{{ secret('API_TOKEN') }}", "x{{ inputs.password }}x"])
def test_a_fail_tasks_error_is_masked(message: str) -> None:
    f = flow(
        "id: f\nnamespace: test\ninputs:\n  - id: password\n    type: SECRET\ntasks:\n"
        f'  - id: fail\n    type: io.kestra.plugin.core.execution.Fail\n    errorMessage: "{message}"\n'
    )
    execution = new_execution(f, "ex1", at=T0, inputs={"password": PASSWORD})
    execution, actions = plan(f, execution, Started(at=T0), secrets=_Lookup({"API_TOKEN": TOKEN}))
    fail = next(iter(execution.taskruns.values()))
    assert fail.state is State.FAILED
    assert MASK in (fail.error or "")
    text = repr((fail.error, [line.message for a in actions if isinstance(a, Emit) for line in a.logs]))
    assert TOKEN not in text and PASSWORD not in text
