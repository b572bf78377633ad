"""Sandboxed Pebble-compatible templates on Jinja2: Kestra's ``{{ }}`` expressions.

Pebble differs from Jinja in a few places that Kestra flows rely on: the ternary
``a ? b : c`` and null-coalescing ``a ?? b`` operators, strict undefined variables that still
allow ``a.b is defined``, booleans printed ``true``/``false`` and maps printed as JSON. Those
are added here to Jinja's lexer and parser; everything else is Jinja's own.

Attribute access is map-key access only: ``a.b`` and ``a['b']`` read keys of mappings and
indexes of lists, never a Python attribute, so no template can reach Python internals.
"""

from __future__ import annotations

from control_plane.expressions.display import is_truthy, to_display
from control_plane.expressions.environment import render, render_value

__all__ = ["is_truthy", "render", "render_value", "to_display"]
