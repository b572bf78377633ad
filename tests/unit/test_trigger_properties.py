"""Trigger properties no Squall code acts on are refused with their position, never ignored."""

from __future__ import annotations

import pytest

from control_plane.errors import FlowValidationError
from control_plane.flows.loader import parse_flow

HEAD = """id: t
namespace: squall.test
tasks:
  - id: a
    type: io.kestra.plugin.core.debug.Return
    format: x
triggers:
"""


@pytest.mark.parametrize(
    ("trigger", "line", "path", "words"),
    [
        (
            "  - id: nightly\n    type: io.kestra.plugin.core.trigger.Schedule\n    cron: '0 2 * * *'\n"
            "    stopAfter: [FAILED]\n",
            11,
            "triggers[0].stopAfter",
            "stops itself",
        ),
        (
            "  - id: nightly\n    type: io.kestra.plugin.core.trigger.Schedule\n    cron: '0 2 * * *'\n"
            "    scheduleConditions:\n      - type: io.kestra.plugin.core.condition.Weekend\n",
            11,
            "triggers[0].scheduleConditions",
            "schedule conditions",
        ),
        (
            "  - id: hook\n    type: io.kestra.plugin.core.trigger.Webhook\n    key: k-0123456789\n"
            "    conditions:\n      - type: io.kestra.plugin.core.condition.ExecutionStatus\n"
            "        in: [SUCCESS]\n",
            11,
            "triggers[0].conditions",
            "only Flow triggers",
        ),
    ],
)
def test_a_property_nothing_honours_is_refused_where_it_is_written(
    trigger: str, line: int, path: str, words: str
) -> None:
    with pytest.raises(FlowValidationError) as caught:
        parse_flow(HEAD + trigger, "flow.yaml")
    (violation,) = caught.value.violations
    assert (violation.line, violation.path) == (line, path)
    assert words in violation.message


def test_a_flow_trigger_keeps_its_conditions() -> None:
    flow = parse_flow(
        HEAD + "  - id: after\n    type: io.kestra.plugin.core.trigger.Flow\n    conditions:\n"
        "      - type: io.kestra.plugin.core.condition.ExecutionStatus\n        in: [SUCCESS]\n",
        "flow.yaml",
    )
    assert flow.triggers is not None and flow.triggers[0].conditions is not None
