"""Sandboxed Pebble-compatible templates on Jinja2: Kestra's ``{{ }}`` expressions.

Pebble differs from Jinja in a few places that Kestra flows rely on: the ternary
``a ? b : c`` and null-coalescing ``a ?? b`` operators, strict undefined variables that still
allow ``a.b is defined``, booleans printed ``true``/``false`` and maps printed as JSON. Those
are added here to Jinja's lexer and parser; everything else is Jinja's own.

Attribute access is map-key access only: ``a.b`` and ``a['b']`` read keys of mappings and
indexes of lists, never a Python attribute, so no template can reach Python internals.

Jinja2 and the sandbox (:mod:`control_plane.expressions.environment`) are imported by the
first string that is a template: most values a step handles are plain, and every Lambda cold
start would otherwise pay for Jinja2 (about a tenth of a handler's import time).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from control_plane.expressions import limits
from control_plane.expressions.display import is_truthy, to_display

__all__ = ["is_truthy", "render", "render_value", "to_display"]


def render(template: str, context: Mapping[str, Any]) -> str:
    """Render one template against ``context`` (any Mapping, used as is, never copied).

    A string without ``{{``, ``{%`` or ``{#`` is returned untouched without reaching Jinja. Every
    failure is an ``ExpressionError`` whose message quotes the template.
    """
    if "{" not in template or ("{{" not in template and "{%" not in template and "{#" not in template):
        return template
    text = _text_at_path(template, context)
    if text is not None:
        return text
    from control_plane.expressions.environment import render as render_template

    return render_template(template, context)


# ``{{ taskrun.value }}``, ``{{ inputs.name }}``: a template that only prints a string found at
# a path of map keys is the most common one, rendered once per task run of a loop. Read here,
# it costs a tenth of a render by Jinja. Anything else (a missing key, a value that is not a
# string, a literal name, whitespace control, a filter) goes to Jinja, which answers exactly as
# before: a string prints as itself there too (``_finalize``), counted against the same limits.
_PATHS: dict[str, tuple[str, ...] | None] = {}
_MAX_PATHS = 4096
_LITERALS = frozenset({"true", "false", "True", "False", "none", "None", "null"})


def _path_of(template: str) -> tuple[str, ...] | None:
    if not (template.startswith("{{") and template.endswith("}}")):
        return None
    path = tuple(template[2:-2].strip().split("."))
    if path[0] in _LITERALS:
        return None
    for name in path:
        if not (name.isascii() and name.isidentifier()) or name.startswith("_"):
            return None
    return path


def _text_at_path(template: str, context: Mapping[str, Any]) -> str | None:
    """The string ``template`` prints when it is ``{{ a.b.c }}`` over plain dicts, else None."""
    try:
        path = _PATHS[template]
    except KeyError:
        if len(_PATHS) >= _MAX_PATHS:
            _PATHS.clear()
        path = _PATHS[template] = _path_of(template)
    if path is None:
        return None
    try:
        value = context[path[0]]
    except Exception:  # Jinja reads it again and reports whatever it is
        return None
    for name in path[1:]:
        if type(value) is not dict:
            return None
        value = value.get(name, _MISSING)
    if type(value) is not str:
        return None
    if len(value) > limits.current_limits().max_output:
        return None  # Jinja raises the limit's error
    limits.charge_print(len(value))  # inside another render, counted as Jinja counts it
    return value


_MISSING: Any = object()


def render_value(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every string in a structure, map keys included; other scalars are returned as is."""
    if isinstance(value, str):
        return render(value, context)
    if isinstance(value, Mapping):
        return {
            (render(k, context) if isinstance(k, str) else k): render_value(v, context)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [render_value(item, context) for item in value]
    return value
