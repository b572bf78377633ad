"""Pebble-compatible templates: operators, filters, functions, strictness and the sandbox."""

from __future__ import annotations

from datetime import UTC, datetime
from types import MappingProxyType

import immutables
import pytest
from hypothesis import given
from hypothesis import strategies as st

from control_plane.errors import ExpressionError, ExpressionSecurityError
from control_plane.expressions import is_truthy, render, render_value, to_display

CTX = {
    "inputs": {"name": "Ada", "n": 3, "nothing": None},
    "taskrun": {"attemptsCount": 3, "value": "b"},
    "outputs": immutables.Map(
        {"return": {"value": "x"}, "loop": immutables.Map({"a": {"v": 1}, "b": {"v": 2}})}
    ),
    "@now": datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
    "@loop_values": ("b",),
    "@error_logs": [{"taskId": "failed", "message": "Task failure"}],
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ inputs.name }}", "Ada"),
        ("{{ taskrun.attemptsCount == 3 ? 'ok' : ko }}", "ok"),
        ("{{ inputs.n > 5 ? 'big' : inputs.n > 1 ? 'mid' : 'small' }}", "mid"),
        ("{{ inputs.missing ?? 'd' }}", "d"),
        ("{{ inputs.nothing ?? 'd' }}", "d"),
        ("{{ outputs.x.y.z ?? 'deep' }}", "deep"),
        ("{{ inputs.missing is defined }}", "false"),
        ("{{ inputs.name is defined }}", "true"),
        ("{{ inputs.nothing is null }}", "true"),
        ("{{ inputs.name ~ '!' }}", "Ada!"),
        ("{{ outputs.return }}", '{"value":"x"}'),
        ("{{ outputs.loop['a'].v }}", "1"),
        ("{{ currentEachOutput(outputs.loop).v }}", "2"),
        ("{{ [1, 2] }}", "[1,2]"),
        ("{{ {'a': true} }}", '{"a":true}'),
        ("{{ now() }}", "2026-01-02T03:04:05.678Z"),
        ("{{ '{\"a\": [1, 2]}' | fromJson | jq('.a[1]') | first }}", "2"),
        ("{{ fromJson('{\"k\": 5}').k }}", "5"),
        ("{{ '2026-01-02T03:04:05Z' | date('yyyy-MM-dd HH:mm') }}", "2026-01-02 03:04"),
        ("{{ '2026-01-31T00:00:00Z' | dateAdd(1, 'MONTHS') | date('yyyy-MM-dd') }}", "2026-02-28"),
        ("{{ inputs.nothing | default('x') }}", "x"),
        ("{{ 'a b' | upper | replace({'A': 'x'}) }}", "x B"),
        ("{{ 'a,b' | split(',') | join('-') }}", "a-b"),
        ("{{ {'k': 1, 'j': 2} | keys | length }}", "2"),
        ("{{ 'Hello World!' | slugify }}", "hello-world"),
        ("{{ 'abc' | startsWith('ab') }}", "true"),
        ("{{ render('{{ inputs.name }}') }}", "Ada"),
        (
            "{%- for log in errorLogs() -%}\n"
            "- task: {{ log.taskId }}, message: {{ log.message }}\n"
            "{%- endfor -%}\n",
            "- task: failed, message: Task failure",
        ),
    ],
)
def test_renders(template: str, expected: str) -> None:
    assert render(template, CTX) == expected


@pytest.mark.parametrize(
    "template",
    [
        "{{ ko }}",
        "{{ taskrun.attemptsCount == 2 ? 'ok' : ko }}",
        "{{ outputs.notexists == 2 }}",
        "{{ 1 +",
        "{{ ko.a }}",
    ],
)
def test_strict_failures(template: str) -> None:
    with pytest.raises(ExpressionError):
        render(template, CTX)


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ self.__init__.__globals__ }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ lipsum.__globals__['os'].popen('id').read() }}",
        "{{ ''.join }}",
        "{{ ''.upper() }}",
        "{{ request }}",
        "{{ config }}",
        "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
        "{{ range.__class__ }}",
    ],
)
def test_sandbox_escapes_fail_cleanly(template: str) -> None:
    with pytest.raises(ExpressionError):
        render(template, CTX)


def test_dunder_access_is_a_security_error() -> None:
    with pytest.raises(ExpressionSecurityError):
        render("{{ inputs.name.__class__ }}", CTX)


def test_any_mapping_is_a_map() -> None:
    ctx = {"m": MappingProxyType({"a": immutables.Map({"b": "c"})})}
    assert render("{{ m.a.b }}-{{ m['a']['b'] }}", ctx) == "c-c"


def test_render_value_and_truthiness() -> None:
    assert render_value({"{{ inputs.name }}": ["{{ inputs.n }}", 1, None]}, CTX) == {"Ada": ["3", 1, None]}
    assert [is_truthy(v) for v in (None, "", "false", "FALSE", "0", "-0", 0, False)] == [False] * 8
    assert [is_truthy(v) for v in ("true", "1", "x", 1, True)] == [True] * 5
    assert to_display(True) == "true" and to_display(None) == "" and to_display([1, "a"]) == '[1,"a"]'


@given(st.text().filter(lambda s: "{" not in s))
def test_plain_text_is_unchanged(text: str) -> None:
    assert render(text, {}) == text
