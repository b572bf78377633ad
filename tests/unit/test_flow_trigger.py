"""Flow triggers (pure): which ended executions fire them, with what, and what is refused."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from control_plane.engine.model import Execution
from control_plane.engine.states import State
from control_plane.errors import FlowValidationError
from control_plane.flows.loader import parse_flow
from control_plane.flows.models import FlowTrigger
from control_plane.triggers.flow import fire_id, input_context, matches, variables
from control_plane.triggers.preconditions import met_by, parse

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def upstream(state: State = State.SUCCESS, **changes: Any) -> Execution:
    ex = Execution("up1", "company.team", "extract", 3, state, T0, labels={"owner": "ada"})
    return ex.evolve(**changes) if changes else ex


def trigger(**fields: Any) -> FlowTrigger:
    return FlowTrigger(id="t", type="io.kestra.plugin.core.trigger.Flow", **fields)


def test_by_default_every_terminated_state_fires_and_no_other() -> None:
    # Flow.java: states defaults to State.Type.terminatedTypes()
    for state in (State.SUCCESS, State.WARNING, State.FAILED, State.KILLED, State.CANCELLED):
        assert matches(trigger(), upstream(state))
    for state in (State.RUNNING, State.PAUSED, State.CREATED, State.QUEUED):
        assert not matches(trigger(), upstream(state))
    assert not matches(trigger(states=["FAILED"]), upstream(State.SUCCESS))
    assert not matches(trigger(disabled=True), upstream())


C = "io.kestra.plugin.core.condition."
OLD = "io.kestra.core.models.conditions.types."


@pytest.mark.parametrize(
    ("condition", "fires"),
    [
        ({"type": C + "ExecutionStatus", "in": ["SUCCESS"]}, True),
        ({"type": C + "ExecutionStatus", "notIn": ["SUCCESS"]}, False),
        ({"type": C + "ExecutionFlow", "namespace": "company.team", "flowId": "extract"}, True),
        ({"type": C + "ExecutionFlow", "namespace": "company", "flowId": "extract"}, False),
        ({"type": C + "ExecutionNamespace", "namespace": "company.team"}, True),
        ({"type": C + "ExecutionNamespace", "namespace": "company"}, False),
        ({"type": C + "ExecutionNamespace", "namespace": "company", "prefix": True}, True),
        ({"type": C + "ExecutionNamespace", "namespace": ".team", "comparison": "SUFFIX"}, True),
        ({"type": OLD + "ExecutionLabelsCondition", "labels": {"owner": "ada"}}, True),
        ({"type": C + "ExecutionLabels", "labels": [{"key": "owner", "value": "bob"}]}, False),
    ],
)
def test_each_condition_is_evaluated_as_kestra_does(condition: dict[str, Any], fires: bool) -> None:
    flow = parse_flow(
        "id: down\nnamespace: company.other\ntasks:\n  - id: a\n    type: io.kestra.plugin.core.log.Log\n"
        "    message: x\ntriggers:\n  - id: t\n    type: io.kestra.plugin.core.trigger.Flow\n"
    )
    assert flow.triggers is not None
    base = flow.triggers[0]
    assert isinstance(base, FlowTrigger)
    from control_plane.flows.models import Condition

    with_condition = base.model_copy(update={"conditions": [Condition(**condition)]})
    assert matches(with_condition, upstream()) is fires


def test_single_flow_preconditions_filter_on_flow_and_states() -> None:
    pre = parse(
        {"id": "p", "flows": [{"namespace": "company.team", "flowId": "extract", "states": ["SUCCESS"]}]}
    )
    assert met_by(pre, upstream()) == ["condition_1"]
    assert met_by(pre, upstream(State.FAILED)) == []
    other = parse({"id": "p", "flows": [{"namespace": "company.team", "flowId": "load"}]})
    assert met_by(other, upstream()) == []


def test_the_trigger_variables_are_kestras_flow_output_and_inputs_also_see_outputs() -> None:
    done = upstream(outputs={"date": "2026-01-02"})
    got = variables(trigger(), done)
    assert got == {
        "id": "t",
        "type": "io.kestra.plugin.core.trigger.Flow",
        "executionId": "up1",
        "namespace": "company.team",
        "flowId": "extract",
        "flowRevision": 3,
        "state": "SUCCESS",
    }
    assert input_context(trigger(), done) == {**got, "outputs": {"date": "2026-01-02"}}
    assert "outputs" not in input_context(trigger(), upstream())


def test_the_started_id_is_one_per_upstream_execution_and_trigger() -> None:
    one = fire_id("up1", "ns", "down", "t")
    assert one == fire_id("up1", "ns", "down", "t")
    assert len({one, fire_id("up2", "ns", "down", "t"), fire_id("up1", "ns", "down", "u")}) == 3


@pytest.mark.parametrize(
    ("block", "needle"),
    [
        ("    states: [PAUSED]\n", "triggers[0].states[0]"),
        ("    conditions:\n      - type: io.kestra.plugin.core.condition.Weekend\n", "Weekend"),
        ("    preconditions:\n      id: p\n      flows: []\n", "preconditions.flows"),
        (
            "    preconditions:\n      id: p\n      where:\n        - {id: w, filters: []}\n      flows:\n"
            "        - {namespace: a, flowId: b}\n",
            "preconditions.where",
        ),
        (
            "    preconditions:\n      id: p\n      timeWindow: {type: DAILY_TIME_DEADLINE, window: PT1H}\n"
            "      flows:\n        - {namespace: a, flowId: b}\n",
            "must have deadline",
        ),
        (
            "    preconditions:\n      id: p\n      timeWindow: {type: HOURLY}\n"
            "      flows:\n        - {namespace: a, flowId: b}\n",
            "HOURLY",
        ),
        ("    preconditions:\n      flows:\n        - {namespace: a, flowId: b}\n", "preconditions.id"),
        (
            "    preconditions:\n      id: p\n      flows:\n"
            "        - {namespace: a, flowId: b, states: [PAUSED]}\n",
            "preconditions state PAUSED",
        ),
    ],
)
def test_what_squall_cannot_honour_is_refused_with_its_line(block: str, needle: str) -> None:
    source = (
        "id: down\nnamespace: n\ntasks:\n  - id: a\n    type: io.kestra.plugin.core.log.Log\n    message: x\n"
        "triggers:\n  - id: t\n    type: io.kestra.plugin.core.trigger.Flow\n" + block
    )
    with pytest.raises(FlowValidationError) as caught:
        parse_flow(source, "down.yaml")
    assert needle in str(caught.value) and "down.yaml:1" in str(caught.value)
