"""Load-time checks of every ``{{ }}`` in a flow (control_plane/flows/template_checks.py).

Two sides are tested with equal care: what is reported (with file, line, column and path), and
what must not be (valid Kestra flows whose names are only known at run time).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from control_plane.conformance import load_cases
from control_plane.errors import FlowValidationError
from control_plane.expressions.analysis import analyze
from control_plane.flows.loader import Violation, parse_flow

REPO = Path(__file__).resolve().parents[2]


def _violations(body: str, *, lint: bool = True) -> list[Violation]:
    text = textwrap.dedent(body)
    try:
        parse_flow(text, "flow.yaml", lint=lint)
    except FlowValidationError as exc:
        return list(exc.violations)
    return []


def _flow(tasks: str, head: str = "") -> str:
    return (
        "id: f\nnamespace: squall.test\n"
        + textwrap.dedent(head)
        + "tasks:\n"
        + textwrap.indent(textwrap.dedent(tasks), "  ")
    )


def test_an_unsupported_filter_is_refused_even_without_lint_with_its_position() -> None:
    flow = _flow(
        """\
        - id: a
          type: io.kestra.plugin.core.log.Log
          message: "{{ outputs | className }}"
        """
    )
    (found,) = _violations(flow, lint=False)
    assert (found.line, found.column, found.path) == (6, 14, "tasks[0].message")
    assert "filter 'className' is not supported by Squall" in found.message
    assert "Java class name" in found.message


def test_unknown_function_and_test_are_named() -> None:
    flow = _flow(
        """\
        - id: a
          type: io.kestra.plugin.core.log.Log
          message: |
            first line
            {{ nope() }} {{ 1 is prime }}
        """
    )
    found = _violations(flow, lint=False)
    assert {(v.line, v.column) for v in found} == {(8, 7)}  # the expression's own line in the file
    messages = sorted(v.message for v in found)
    where = "(line 2 of the expression) (task 'a')"
    assert messages == [
        f"unknown function 'nope': Squall knows no such function (see docs/kestra-compatibility.md) {where}",
        f"unknown test 'prime': Squall knows no such test (see docs/kestra-compatibility.md) {where}",
    ]


def test_a_user_map_key_named_description_is_still_read() -> None:
    flow = _flow(
        """\
        - id: a
          type: io.kestra.plugin.core.output.OutputValues
          description: "{{ 1 | toIon }} is documentation, never rendered"
          values:
            description: "{{ 1 | toIon }}"
        """
    )
    (found,) = _violations(flow, lint=False)
    assert found.path == "tasks[0].values.description"


def test_kv_is_accepted_as_provided_by_the_engine() -> None:
    flow = _flow(
        """\
        - id: a
          type: io.kestra.plugin.core.log.Log
          message: "{{ kv('KEY') }}"
        """
    )
    assert _violations(flow) == []


def test_syntax_error_reference_and_bad_default_are_lint_findings() -> None:
    flow = _flow(
        """\
        - id: a
          type: io.kestra.plugin.core.log.Log
          message: "{{ outputs.a.value }"
        - id: b
          type: io.kestra.plugin.core.log.Log
          message: "{{ outputs.typo.value }} {{ inputs.nme }}"
        """,
        head="""\
        inputs:
          - id: n
            type: INT
            defaults: twelve
        triggers:
          - id: t
            type: io.kestra.plugin.core.trigger.Schedule
            cron: "0 * * * *"
            inputs:
              n: "{{ trigger.date | date('yyyy' }}"
        """,
    )
    assert _violations(flow, lint=False) == []
    found = [(v.line, v.column, v.path, v.message) for v in _violations(flow)]
    assert found == [
        (6, 15, "inputs[0].defaults", "invalid defaults: Expected `INT` but received `twelve`"),
        (12, 10, "triggers[0].inputs.n", "invalid expression: unexpected '}', expected ')'"),
        (16, 14, "tasks[0].message", "invalid expression: unexpected '}' (task 'a')"),
        (
            19,
            14,
            "tasks[1].message",
            "'inputs.nme' refers to no input of this flow (none has id 'nme') (task 'b')",
        ),
        (
            19,
            14,
            "tasks[1].message",
            "'outputs.typo' refers to no task of this flow (none has id 'typo') (task 'b')",
        ),
    ]


def test_templated_and_well_typed_defaults_are_not_judged() -> None:
    flow = _flow(
        """\
        - id: a
          type: io.kestra.plugin.core.log.Log
          message: "{{ inputs.n }} {{ inputs.when }}"
        """,
        head="""\
        inputs:
          - id: n
            type: INT
            defaults: 12
          - id: when
            type: DATETIME
            defaults: "{{ now() }}"
        """,
    )
    assert _violations(flow) == []


def test_valid_kestra_reads_that_only_resolve_at_run_time_are_not_reported() -> None:
    flow = _flow(
        """\
        - id: loop
          type: io.kestra.plugin.core.flow.ForEach
          values: ["a", "b"]
          tasks:
            - id: inner
              type: io.kestra.plugin.core.debug.Return
              format: "{{ taskrun.value }} {{ parent.taskrun.value }} {{ parents[0].taskrun.value }}"
        - id: pause
          type: io.kestra.plugin.core.flow.Pause
          onResume:
            - id: approved
              type: BOOLEAN
        - id: child
          type: io.kestra.plugin.core.flow.Subflow
          namespace: squall.test
          flowId: other
          inputs:
            fromParent: "{{ inputs.name }}"
          outputs:
            fromChild: "{{ outputs.taskOfTheSubflow.value }}"
        - id: use
          type: io.kestra.plugin.core.log.Log
          message: >-
            {{ outputs.inner['a'].value }} {{ outputs[inputs.name].value ?? '' }}
            {{ outputs.child.outputs.result }} {{ outputs.pause.onResume.approved }}
            {{ inputs.approved }} {{ inputs.maybe ?? 'none' }} {{ inputs.opt | default('x') }}
            {% if inputs.late is defined %}{{ inputs.late }}{% endif %}
            {% set outputs = {'x': 1} %}{{ outputs.x }}
            {% for inputs in [1] %}{{ inputs }}{% endfor %}
            {{ trigger.outputs.any ?? '' }} {{ execution.id }} {{ flow.namespace }} {{ labels.team ?? '' }}
          description: "{{ outputs.notATask }} is only text"
        """,
        head="""\
        inputs:
          - id: name
            type: STRING
            defaults: loop
        """,
    )
    assert _violations(flow) == []


def test_plugin_defaults_are_checked_once_in_the_tasks_they_reach() -> None:
    flow = _flow(
        """\
        - id: a
          type: io.kestra.plugin.core.log.Log
        """,
        head="""\
        pluginDefaults:
          - type: io.kestra.plugin.core.log.Log
            values:
              message: "{{ 1 | toIon }}"
        """,
    )
    (found,) = _violations(flow, lint=False)
    assert "filter 'toIon' is not supported" in found.message


@pytest.mark.parametrize(
    ("template", "kinds"),
    [
        ("{{ outputs.a.b }}", [("outputs", "a")]),
        ("{{ outputs['a'] }}", [("outputs", "a")]),
        ("{{ outputs[x] }}", []),
        ("{{ outputs.a ?? outputs.b }}", [("outputs", "b")]),
        ("{{ (outputs.a | default('x')) ~ outputs.a }}", []),
        ("{{ inputs.a is null ? 1 : inputs.a }}", []),
        ("{% macro inputs() %}{% endmacro %}{{ inputs() }}", []),
    ],
)
def test_analysis_reports_only_unguarded_static_reads(template: str, kinds: list[tuple[str, str]]) -> None:
    assert [(r.root, r.key) for r in analyze(template).references] == kinds


def test_every_sample_and_conformance_flow_passes_lint() -> None:
    """No valid flow of the repository is refused by the new checks (task-runif's own test reads
    ``outputs.notexists`` on purpose and is in the shared Kestra corpus, not here)."""
    refused_on_purpose = {
        (cases.parent / case["flow"]).resolve()
        for cases in (REPO / "tests" / "conformance").rglob("*cases.yaml")
        for case in load_cases(cases)
        if case.get("invalid") and "flow" in case
    }
    flows = [
        p
        for root in ("samples", "tests/conformance")
        for p in sorted((REPO / root).rglob("*.y*ml"))
        if "cases" not in p.name and "invalid" not in p.parts and p.resolve() not in refused_on_purpose
    ]
    assert len(flows) > 30
    refused = []
    for path in flows:
        text = path.read_text(encoding="utf-8")
        if "namespace:" not in text or "\ntasks:" not in text:
            continue
        try:
            parse_flow(text, str(path), lint=True)
        except FlowValidationError as exc:
            new = [v for v in exc.violations if _is_template_finding(v.message)]
            refused += new
    assert refused == []


def _is_template_finding(message: str) -> bool:
    words = ("invalid expression", "Squall:", "unknown filter", "unknown function", "unknown test")
    return any(w in message for w in words) or "refers to no" in message or "invalid defaults" in message


def test_a_flow_s_strings_are_found_once_per_flow_object() -> None:
    """``strings_in`` walks a flow once (a run asks twice), keyed by the object itself: a copy
    with another value is walked anew, and the entry goes when the flow does."""
    import gc

    from control_plane.flows import template_checks
    from control_plane.flows.template_checks import strings_in

    flow = parse_flow(
        "id: f\nnamespace: t\ntasks:\n  - id: a\n    type: io.kestra.plugin.core.debug.Return\n"
        "    format: '{{ 1 }}'\n    retry: {type: constant, interval: PT1S, maxAttempt: 2}\n",
        "f.yaml",
    )
    first = strings_in(flow)
    assert "{{ 1 }}" in first and "f" in first and "a" in first
    assert strings_in(flow) is first
    task = flow.tasks[0].model_copy(update={"format": "{{ 2 }}"})
    other = flow.model_copy(update={"tasks": [task]})
    assert "{{ 2 }}" in strings_in(other) and "{{ 1 }}" not in strings_in(other)
    held = len(template_checks._STRINGS)
    del other, task
    gc.collect()
    assert len(template_checks._STRINGS) == held - 1
