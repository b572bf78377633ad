"""The Http trigger's pure rules (control_plane/triggers/http.py): due, stop, condition, ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from control_plane.engine.states import State
from control_plane.errors import ExpressionError, FlowValidationError
from control_plane.flows.loader import parse_flow
from control_plane.flows.models import HttpTrigger
from control_plane.triggers.http import (
    PollState,
    condition_holds,
    due,
    fire_id,
    request_properties,
    stop_state,
    variables,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
FLOW = """id: f
namespace: squall.test
tasks:
  - {id: a, type: io.kestra.plugin.core.log.Log, message: x}
triggers:
  - id: poll
    type: io.kestra.plugin.fs.http.Trigger
    uri: http://example.com/x
"""


def trigger(extra: str = "") -> HttpTrigger:
    (t,) = parse_flow(FLOW + extra, "f.yaml").triggers or []
    assert isinstance(t, HttpTrigger)
    return t


def test_kestras_defaults_and_old_alias() -> None:
    t = trigger()
    assert (t.interval, t.method, t.responseCondition) == (
        timedelta(seconds=60),
        "GET",
        "{{ response.statusCode < 400 }}",
    )


def test_due_once_per_interval_never_stopped_or_disabled() -> None:
    t = trigger("    interval: PT30S\n")
    assert due(t, PollState(), T0)
    polled = PollState(last=T0.isoformat())
    assert not due(t, polled, T0 + timedelta(seconds=29))
    assert due(t, polled, T0 + timedelta(seconds=30))
    assert not due(t, PollState(stopped="SUCCESS", revision=2), T0, revision=2)
    assert due(t, PollState(stopped="SUCCESS", revision=2), T0, revision=3)  # redeployed: polls again
    assert not due(trigger("    disabled: true\n"), PollState(), T0)


def test_stop_after_names_the_state_that_stops_it() -> None:
    t = trigger("    stopAfter: [SUCCESS, WARNING]\n")
    assert stop_state(t, State.WARNING) == "WARNING"
    assert stop_state(t, State.FAILED) is None
    assert stop_state(trigger(), State.SUCCESS) is None


def test_the_condition_sees_status_body_and_headers() -> None:
    output = {"code": 200, "body": '{"n": 3}', "headers": {"X-Kind": ["a"]}}
    ctx: dict[str, object] = {}
    assert condition_holds(trigger(), output, ctx)
    assert not condition_holds(trigger(), {**output, "code": 404}, ctx)
    reads = trigger(
        '    responseCondition: "{{ json(response.body).n > 2'
        " and response.headers['X-Kind'][0] == 'a' }}\"\n"
    )
    assert condition_holds(reads, output, ctx)
    with pytest.raises(ExpressionError, match="responseCondition"):
        condition_holds(reads, {**output, "body": "<html>"}, ctx)


def test_properties_are_rendered_and_failed_statuses_allowed() -> None:
    t = trigger('    headers: {X-Flow: "{{ flow.id }}"}\n    body: "{{ flow.namespace }}"\n')
    props = request_properties(t, {"flow": {"id": "f", "namespace": "squall.test"}})
    assert props["headers"] == {"X-Flow": "f"} and props["body"] == "squall.test"
    assert props["allowFailed"] is True


def test_variables_are_request_outputs_and_ids_are_per_poll() -> None:
    out = {"uri": "http://example.com/x", "code": 201, "headers": {}, "body": None}
    assert variables(trigger(), out) == {
        "id": "poll",
        "type": "io.kestra.plugin.fs.http.Trigger",
        "uri": "http://example.com/x",
        "code": 201,
        "headers": {},
        "body": None,
    }
    assert fire_id("n", "f", "poll", "a") == fire_id("n", "f", "poll", "a") != fire_id("n", "f", "poll", "b")


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ("    interval: PT0S\n", "positive"),
        ("    encryptBody: true\n", "encryptBody"),
        ("    stopAfter: [DONE]\n", "'DONE' is not an execution state"),
        (
            "    conditions:\n"
            "      - {type: io.kestra.plugin.core.condition.ExecutionStatus, in: [SUCCESS]}\n",
            "only Flow triggers",
        ),
        ("    method: FETCH\n", "method"),
    ],
)
def test_bad_properties_are_refused_naming_them(extra: str, words: str) -> None:
    with pytest.raises(FlowValidationError, match=words):
        trigger(extra)


def test_a_uri_that_is_not_http_is_refused_at_validation() -> None:
    with pytest.raises(FlowValidationError, match="not an http"):
        parse_flow(FLOW.replace("http://example.com/x", "file:///etc/passwd"), "f.yaml")
