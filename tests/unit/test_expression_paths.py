"""``{{ a.b.c }}`` printing a string is answered without Jinja, and always as Jinja answers it.

Each case renders through ``render`` (which may take the shortcut) and through the
environment's own ``render`` (always Jinja), and compares results or errors.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from control_plane.errors import ExpressionError, ExpressionLimitError
from control_plane.expressions import _text_at_path, limits, render
from control_plane.expressions.environment import render as jinja_render

CONTEXT: dict[str, Any] = {
    "taskrun": {"value": "v1", "id": "tr", "iteration": 0, "parentId": None},
    "outputs": {"step": {"value": "out", "nested": {"deep": "d"}, "list": ["a"], "map": {"k": 1}}},
    "inputs": {"name": "Ada 🌧", "empty": "", "json": '{"a": 1}', "_private": "p"},
    "null": {"x": "shadowed"},
    "true": "literal",
    "text": "top",
}


@pytest.fixture(autouse=True)
def default_limits() -> Iterator[None]:
    limits.configure(None)
    yield
    limits.configure(None)


def _answer(call: Any, template: str, context: Any) -> tuple[str, Any]:
    try:
        return ("ok", call(template, context))
    except ExpressionError as exc:
        return (type(exc).__name__, str(exc))


@pytest.mark.parametrize(
    "template",
    [
        "{{ taskrun.value }}",
        "{{taskrun.value}}",
        "{{  inputs.name\n}}",
        "{{ inputs.empty }}",
        "{{ inputs.json }}",
        "{{ text }}",
        "{{ outputs.step.nested.deep }}",
        "{{ outputs.step.map }}",  # a map: printed as JSON by Jinja
        "{{ outputs.step.list }}",
        "{{ taskrun.iteration }}",  # a number
        "{{ taskrun.parentId }}",  # null
        "{{ taskrun.missing }}",  # strict undefined: an error
        "{{ missing.value }}",
        "{{ outputs.step.value.more }}",  # a key of a string
        "{{ inputs._private }}",  # the sandbox refuses names starting with _
        "{{ null.x }}",  # Pebble's literal, not the context's key
        "{{ true }}",
        "{{- taskrun.value -}}",
        "{{ taskrun . value }}",
        "{{ taskrun['value'] }}",
        "{{ taskrun.value | upper }}",
        "{{ taskrun.value }} and {{ text }}",
        "{{ now }}",  # a function, not a context key
    ],
)
def test_the_shortcut_answers_as_jinja_does(template: str) -> None:
    assert _answer(render, template, CONTEXT) == _answer(jinja_render, template, CONTEXT)


def test_the_shortcut_is_taken_for_strings_at_paths_only() -> None:
    assert _text_at_path("{{ taskrun.value }}", CONTEXT) == "v1"
    assert _text_at_path("{{ outputs.step.nested.deep }}", CONTEXT) == "d"
    for template in ("{{ outputs.step.map }}", "{{ null.x }}", "{{ inputs._private }}", "{{ a }}{{ b }}"):
        assert _text_at_path(template, CONTEXT) is None


def test_a_string_over_the_output_limit_fails_as_jinja_fails() -> None:
    limits.configure(limits.Limits(max_output=10))
    context = {"inputs": {"long": "x" * 11, "fits": "x" * 10}}
    assert render("{{ inputs.fits }}", context) == "x" * 10
    with pytest.raises(ExpressionLimitError, match="SQUALL_EXPRESSION_MAX_OUTPUT"):
        render("{{ inputs.long }}", context)


def test_inside_a_render_what_the_shortcut_prints_is_counted() -> None:
    limits.configure(limits.Limits(max_output=10))
    with limits.budget() as budget:
        render("{{ inputs.fits }}", {"inputs": {"fits": "x" * 10}})
        assert budget.printed == 10


class _Lazy(dict[str, Any]):
    """A context that computes a key when read, and fails for one."""

    def __getitem__(self, key: str) -> Any:
        if key == "boom":
            raise RuntimeError("computed value failed")
        return super().__getitem__(key)


def test_a_context_read_that_fails_is_left_to_jinja() -> None:
    context = _Lazy(text="top")
    assert render("{{ text }}", context) == "top"
    assert _answer(render, "{{ boom }}", context) == _answer(jinja_render, "{{ boom }}", context)
    assert "computed value failed" in _answer(render, "{{ boom }}", context)[1]
