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

from control_plane.expressions.display import is_truthy, to_display

__all__ = ["is_truthy", "render", "render_value", "to_display"]


def render(template: str, context: Mapping[str, Any]) -> str:
    """Render one template against ``context`` (any Mapping, used as is, never copied).

    A string without ``{{``, ``{%`` or ``{#`` is returned untouched without reaching Jinja. Every
    failure is an ``ExpressionError`` whose message quotes the template.
    """
    if "{" not in template or ("{{" not in template and "{%" not in template and "{#" not in template):
        return template
    from control_plane.expressions.environment import render as render_template

    return render_template(template, context)


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
