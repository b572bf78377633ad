"""The one duration parser against java.time.Duration.parse: its Javadoc examples and rejections."""

from __future__ import annotations

from datetime import timedelta

import pytest

from control_plane.errors import FlowValidationError
from control_plane.flows.durations import NANOS, java_duration_text, parse_nanos, parse_timedelta
from control_plane.flows.loader import parse_flow

S = NANOS

ACCEPTED = [
    # Duration.parse's Javadoc examples
    ("PT20.345S", 20 * S + 345_000_000),
    ("PT15M", 15 * 60 * S),
    ("PT10H", 10 * 3600 * S),
    ("P2D", 2 * 86_400 * S),
    ("P2DT3H4M", (2 * 86_400 + 3 * 3600 + 4 * 60) * S),
    ("PT-6H3M", (-6 * 3600 + 3 * 60) * S),
    ("-PT6H3M", -(6 * 3600 + 3 * 60) * S),
    ("-PT-6H+3M", (6 * 3600 - 3 * 60) * S),
    # the pattern is case-insensitive, takes ',' for '.', and up to nine fraction digits
    ("pt1m", 60 * S),
    ("Pt1M", 60 * S),
    ("PT0.25s", S // 4),
    ("PT0,25S", S // 4),
    ("PT1.S", S),
    ("PT0.000000001S", 1),
    ("PT-0.5S", -S // 2),
    ("P1DT2H", (86_400 + 7200) * S),
    ("p1d", 86_400 * S),
    ("+PT6H", 6 * 3600 * S),
    ("-PT6H", -6 * 3600 * S),
    ("PT0S", 0),
    ("P0D", 0),
]

REJECTED = [
    "",
    "P",
    "PT",
    "P1DT",
    "P1Y",  # years, months and weeks belong to java.time.Period
    "P1M",
    "P1W",
    "PT1.5M",  # a fraction only on seconds
    "PT1.5H",
    "PT0.1234567891S",  # ten fraction digits
    "01:00:00",
    "1H",
    "PT1H1H",
    " PT1H",
    "PT1H ",
    "P-T1H",
    "--PT1H",
    "PT1H30S15M",  # units out of order
    "1 day",
]


@pytest.mark.parametrize(("text", "nanos"), ACCEPTED)
def test_accepted_like_java(text: str, nanos: int) -> None:
    assert parse_nanos(text) == nanos


@pytest.mark.parametrize("text", REJECTED)
def test_rejected_like_java(text: str) -> None:
    with pytest.raises(ValueError, match="Text cannot be parsed to a Duration"):
        parse_nanos(text)


def test_timedelta_truncates_nanoseconds_toward_zero_and_refuses_what_python_cannot_hold() -> None:
    assert parse_timedelta("PT0.0000019S") == timedelta(microseconds=1)
    assert parse_timedelta("PT-0.0000019S") == timedelta(microseconds=-1)
    with pytest.raises(ValueError, match="Duration"):
        parse_timedelta("P9999999999D")  # Java holds it; timedelta does not


FLOW = """id: f
namespace: t
tasks:
  - id: nap
    type: io.kestra.plugin.core.flow.Sleep
    duration: {duration}
    timeout: pt1h
    retry: {{type: constant, interval: PT0.25s, maxAttempt: 2}}
"""


def test_task_properties_use_java_s_grammar() -> None:
    task = parse_flow(FLOW.format(duration="P1DT2H"), "f.yaml").tasks[0]
    assert task.duration == timedelta(days=1, hours=2)  # type: ignore[union-attr]
    assert task.timeout == timedelta(hours=1)
    assert task.retry is not None and task.retry.interval == timedelta(milliseconds=250)  # type: ignore[union-attr]


@pytest.mark.parametrize("bad", ["P1W", "01:00:00", "PT"])
def test_a_duration_java_rejects_is_a_violation_with_file_line_and_field(bad: str) -> None:
    with pytest.raises(FlowValidationError) as caught:
        parse_flow(FLOW.format(duration=bad), "f.yaml")
    assert f"f.yaml:6:15: tasks[0].duration: expected an ISO-8601 duration (PT5M), got '{bad}'" in str(
        caught.value
    )


NEGATIVE = """id: f
namespace: t
tasks:
  - id: nap
    type: io.kestra.plugin.core.flow.Sleep
    duration: {duration}
    timeout: {timeout}
    retry: {{type: {retry}, maxDuration: {max_duration}}}
  - id: hold
    type: io.kestra.plugin.core.flow.Pause
    pauseDuration: {duration}
"""

RETRIES = {
    "constant": "constant, interval: {d}",
    "exponential": "exponential, interval: {d}, maxInterval: {d}",
    "random": "random, minInterval: {d}, maxInterval: {d}",
}


@pytest.mark.parametrize("kind", sorted(RETRIES))
def test_a_negative_duration_is_a_violation_naming_each_field(kind: str) -> None:
    """Kestra bounds these below by zero (@DurationMin, kestra-io/kestra#18676) at validation."""
    text = NEGATIVE.format(
        duration="-PT1S", timeout="PT-5M", retry=RETRIES[kind].format(d="PT-0.25s"), max_duration="-P1D"
    )
    with pytest.raises(FlowValidationError) as caught:
        parse_flow(text, "f.yaml")
    fields = sorted(v.path for v in caught.value.violations)
    intervals = {"constant": ["interval"], "exponential": ["interval", "maxInterval"]}
    expected = [
        "tasks[0].duration",
        *(f"tasks[0].retry.{name}" for name in intervals.get(kind, ["maxInterval", "minInterval"])),
        "tasks[0].retry.maxDuration",
        "tasks[0].timeout",
        "tasks[1].pauseDuration",
    ]
    assert fields == sorted(expected)
    assert "f.yaml:6:15: tasks[0].duration: must not be a negative duration (task 'nap')" in str(caught.value)


def test_zero_durations_are_accepted() -> None:
    """Kestra's @DurationMin bound is inclusive: PT0S stays valid."""
    text = NEGATIVE.format(
        duration="PT0S", timeout="PT0S", retry=RETRIES["constant"].format(d="PT0S"), max_duration="PT1S"
    )
    task = parse_flow(text, "f.yaml").tasks[0]
    assert task.duration == timedelta(0)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(0), "PT0S"),
        (timedelta(seconds=2), "PT2S"),
        (timedelta(milliseconds=250), "PT0.25S"),
        (timedelta(hours=1, minutes=30), "PT1H30M"),
        (timedelta(days=2, seconds=1), "PT48H1S"),
        (timedelta(seconds=-90), "PT-1M-30S"),
    ],
)
def test_java_duration_text_is_duration_to_string(value: timedelta, text: str) -> None:
    assert java_duration_text(value) == text
    assert parse_timedelta(text) == value


RETRY = """id: f
namespace: t
tasks:
  - id: t
    type: io.kestra.plugin.core.execution.Fail
    retry: {retry}
"""


@pytest.mark.parametrize(
    ("retry", "messages"),
    [
        (
            "{type: constant, interval: PT1S, maxDuration: PT1S}",
            ["'interval' must be less than 'maxDuration'"],
        ),
        (
            "{type: exponential, interval: PT2S, maxInterval: PT2S, maxDuration: PT1S}",
            ["'interval' must be less than 'maxDuration'", "'interval' must be less than 'maxInterval'"],
        ),
        (
            "{type: random, minInterval: PT1S, maxInterval: PT3S, maxDuration: PT2S}",
            ["'maxInterval' must be less than 'maxDuration' but is PT3S"],
        ),
    ],
)
def test_retry_bounds_are_checked_as_kestra_s_validators_do(retry: str, messages: list[str]) -> None:
    with pytest.raises(FlowValidationError) as caught:
        parse_flow(RETRY.format(retry=retry), "f.yaml")
    found = [v.message for v in caught.value.violations]
    assert len(found) == len(messages)
    for message in messages:
        assert any(message in f for f in found), found


def test_retry_bounds_in_order_are_accepted() -> None:
    retry = "{type: random, minInterval: PT0.25s, maxInterval: PT0.5S, maxDuration: PT1S}"
    parse_flow(RETRY.format(retry=retry), "f.yaml")
