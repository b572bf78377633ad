"""Flow trigger ``preconditions`` windows (control_plane/triggers/preconditions.py), pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from control_plane.engine.model import Execution
from control_plane.engine.states import State
from control_plane.triggers.preconditions import WindowState, advance, parse, window_for

DAY = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday, 00:00 UTC


def at(hours: float) -> datetime:
    return DAY + timedelta(hours=hours)


def ex(execution_id: str, flow_id: str, state: State = State.SUCCESS, **labels: str) -> Execution:
    return Execution(execution_id, "team", flow_id, 1, state, DAY, labels=labels)


def pre(window: dict[str, Any] | None = None, **extra: Any) -> Any:
    raw: dict[str, Any] = {
        "id": "both",
        "flows": [
            {"namespace": "team", "flowId": "a", "states": ["SUCCESS"]},
            {"namespace": "team", "flowId": "b"},
        ],
        **extra,
    }
    if window is not None:
        raw["timeWindow"] = window
    return parse(raw)


def run(p: Any, events: list[tuple[Execution, datetime]]) -> list[bool]:
    """Feed ends in order, keeping the state as a store would; whether each fired."""
    state, fired = WindowState(), []
    for execution, now in events:
        step = advance(p, state, execution, now)
        state = step.state or state
        fired.append(step.fire)
    return fired


def test_fires_once_when_every_upstream_flow_has_ended_in_its_states_then_resets() -> None:
    p = pre()
    assert run(p, [(ex("1", "a"), at(1)), (ex("2", "a"), at(2)), (ex("3", "b", State.FAILED), at(3))]) == [
        False,
        False,
        True,
    ]
    # reset on success: both must end again
    events = [(ex("1", "a"), at(1)), (ex("2", "b"), at(2)), (ex("3", "b"), at(3)), (ex("4", "a"), at(4))]
    assert run(p, events) == [False, True, False, True]


def test_a_state_outside_the_upstream_states_counts_for_nothing() -> None:
    assert run(pre(), [(ex("1", "a", State.FAILED), at(1)), (ex("2", "b"), at(2))]) == [False, False]


def test_without_reset_each_later_matching_end_fires_again_within_the_window() -> None:
    p = pre(resetOnSuccess=False)
    events = [(ex("1", "a"), at(1)), (ex("2", "b"), at(2)), (ex("3", "b"), at(3)), (ex("4", "x"), at(4))]
    assert run(p, events) == [False, True, True, False]


def test_the_default_window_is_the_utc_day_and_a_new_day_starts_empty() -> None:
    assert window_for(pre(), at(13.5)) == (DAY, DAY + timedelta(days=1, milliseconds=-1))
    assert run(pre(), [(ex("1", "a"), at(23)), (ex("2", "b"), at(25))]) == [False, False]


def test_duration_windows_floor_to_their_unit_and_shift_by_the_advance() -> None:
    ten = pre({"type": "DURATION_WINDOW", "window": "PT10M"})
    assert window_for(ten, at(1) + timedelta(minutes=37, seconds=5))[0] == at(1) + timedelta(minutes=30)
    six = pre({"window": "PT6H", "windowAdvance": "PT3H"})
    assert window_for(six, at(7.5)) == (at(10), at(16) - timedelta(milliseconds=1))
    # Kestra's getOrCreate: a window that starts after now is not valid, nothing is evaluated
    assert run(six, [(ex("1", "a"), at(7.5)), (ex("2", "b"), at(7.6))]) == [False, False]


def test_a_sliding_window_runs_from_the_first_met_condition() -> None:
    p = pre({"type": "SLIDING_WINDOW", "window": "PT1H"})
    assert run(p, [(ex("1", "a"), at(1)), (ex("2", "b"), at(1.9))]) == [False, True]
    assert run(p, [(ex("1", "a"), at(1)), (ex("2", "b"), at(2.1)), (ex("3", "a"), at(2.5))]) == [
        False,
        False,
        True,
    ]


def test_a_daily_deadline_and_a_daily_window() -> None:
    deadline = pre({"type": "DAILY_TIME_DEADLINE", "deadline": "09:00:00"})
    assert run(deadline, [(ex("1", "a"), at(8)), (ex("2", "b"), at(8.5))]) == [False, True]
    assert run(deadline, [(ex("1", "a"), at(8)), (ex("2", "b"), at(9.5))]) == [False, False]
    daily = pre({"type": "DAILY_TIME_WINDOW", "startTime": "06:00:00", "endTime": "09:00:00"})
    assert run(daily, [(ex("1", "a"), at(5)), (ex("2", "b"), at(7)), (ex("3", "a"), at(8))]) == [
        False,
        False,
        True,
    ]
    assert run(daily, [(ex("1", "a"), at(7)), (ex("2", "b"), at(7 + 24))]) == [False, False]


def test_an_end_delivered_twice_is_counted_once_and_a_fired_one_fires_again() -> None:
    p = pre()
    first = advance(p, WindowState(), ex("1", "a"), at(1))
    assert first.state is not None and not first.fire
    assert advance(p, first.state, ex("1", "a"), at(1.1)) == type(first)(None, False)
    done = advance(p, first.state, ex("2", "b"), at(2))
    assert done.fire and done.state is not None and done.state.results == {}
    again = advance(p, done.state, ex("2", "b"), at(2.1))
    assert again.fire and again.state is None  # the start is idempotent: its id is the same


def test_labels_of_an_upstream_flow_must_all_be_present() -> None:
    p = parse({"id": "p", "flows": [{"namespace": "team", "flowId": "a", "labels": {"env": "prod"}}]})
    assert run(p, [(ex("1", "a", env="dev"), at(1)), (ex("2", "a", env="prod"), at(2))]) == [False, True]


def test_the_state_survives_its_store_form() -> None:
    p = pre()
    step = advance(p, WindowState(), ex("1", "a"), at(1))
    assert step.state is not None
    assert WindowState.of(step.state.to_data()) == step.state


@pytest.mark.parametrize("unquoted", [32400, "09:00:00", "09:00"])
def test_a_deadline_written_unquoted_in_yaml_is_read_as_a_time(unquoted: Any) -> None:
    p = pre({"type": "DAILY_TIME_DEADLINE", "deadline": unquoted})
    assert window_for(p, at(3))[1] == at(9)


def test_where_filters_are_conditions_of_their_own_named_as_kestra_names_them() -> None:
    from control_plane.triggers.preconditions import expression_context, met_by

    p = parse(
        {
            "id": "p",
            "flows": [{"namespace": "team", "flowId": "a"}],
            "where": [
                {
                    "id": "labelled",
                    "filters": [
                        {"field": "NAMESPACE", "type": "STARTS_WITH", "value": "te"},
                        {"field": "EXPRESSION", "type": "IS_TRUE", "value": "{{ labels.some == 'label' }}"},
                    ],
                },
                {
                    "id": "either",
                    "operand": "OR",
                    "filters": [
                        {"field": "FLOW_ID", "type": "IN", "values": ["x", "y"]},
                        {"field": "STATE", "type": "REGEX", "value": "FAIL.*"},
                    ],
                },
            ],
        }
    )
    assert p.conditions() == ["condition_1", "condition_2_labelled", "condition_3_either"]

    def met(execution: Execution) -> list[str]:
        return met_by(p, execution, expression_context("team", "down", 1, execution))

    assert met(ex("1", "a", some="label")) == ["condition_1", "condition_2_labelled"]
    assert met(ex("2", "a")) == ["condition_1"]
    assert met(ex("3", "z", State.FAILED)) == ["condition_3_either"]
    assert met(ex("4", "y")) == ["condition_3_either"]


def test_a_multiple_condition_counts_its_named_conditions_in_its_window() -> None:
    from control_plane.triggers.preconditions import multiple_problems, parse_multiple

    raw = {
        "id": "multiple",
        "type": "io.kestra.plugin.core.condition.MultipleCondition",
        "window": "P1D",
        "windowAdvance": "P0D",
        "conditions": {
            "success": {"type": "io.kestra.plugin.core.condition.ExecutionStatus", "in": ["SUCCESS"]},
            "flow-a": {
                "type": "io.kestra.core.models.conditions.types.ExecutionFlowCondition",
                "namespace": "team",
                "flowId": "a",
            },
            "flow-b": {
                "type": "io.kestra.plugin.core.condition.ExecutionFlow",
                "namespace": "team",
                "flowId": "b",
            },
        },
    }
    assert multiple_problems(raw) == []
    p = parse_multiple(raw)
    assert p.conditions() == ["success", "flow-a", "flow-b"]
    assert window_for(p, at(13)) == (DAY, DAY + timedelta(days=1, milliseconds=-1))
    events = [(ex("1", "a", State.FAILED), at(1)), (ex("2", "b"), at(2)), (ex("3", "a"), at(3))]
    # each named condition is met on its own: a failed flow-a still meets flow-a, and b's
    # success meets `success` (as in Kestra, where they are independent conditions)
    assert run(p, events) == [False, True, False]
    bad = {**raw, "conditions": {"w": {"type": "io.kestra.plugin.core.condition.Weekend"}}, "sla": {}}
    paths = [path for path, _ in multiple_problems(bad)]
    assert paths == [("sla",), ("conditions", "w", "type")]
