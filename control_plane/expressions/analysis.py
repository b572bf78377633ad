"""Read a template without rendering it: its syntax errors, the names it calls, what it reads.

Why: Kestra finds a typo in ``{{ }}``, an unknown filter or an ``outputs.tsak`` only when the
task runs. ``squall validate`` reports them before a flow is deployed, from the parsed tree
alone (no context, no I/O). The checks lean to silence: a reference is reported only when it
cannot be valid in any run, so a guarded read (``inputs.x ?? 'd'``, ``inputs.x is defined``,
``inputs.x | default('d')``, anywhere in the same template) is never reported, nor is a
dynamic one (``outputs[name]``), nor a name the template binds itself (``set``, ``for``, macro).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

from jinja2 import nodes
from jinja2.exceptions import TemplateSyntaxError
from msgspec import Struct

from control_plane.expressions.catalog import Kind, is_internal, lookup

__all__ = ["Analysis", "Finding", "Reference", "analyze", "is_template"]

#: tests and filters that make reading a missing key safe in Pebble (strict variables)
_GUARD_TESTS = frozenset({"defined", "null", "present", "empty"})
_GUARD_FILTERS = frozenset({"default"})
_ROOTS = frozenset({"outputs", "inputs"})


class Finding(Struct, frozen=True):
    """A problem in one template; ``line`` is 1-based inside the template text."""

    line: int
    message: str
    syntax: bool = False  # a parse error (as opposed to a name Squall cannot run)


class Reference(Struct, frozen=True):
    """``outputs.<key>`` or ``inputs.<key>`` read without a guard, at ``line`` of the template."""

    root: str
    key: str
    line: int


class Analysis(Struct, frozen=True):
    findings: tuple[Finding, ...]
    references: tuple[Reference, ...]


def is_template(text: str) -> bool:
    """Whether Squall's renderer would treat ``text`` as a template (the same test ``render`` makes)."""
    return "{{" in text or "{%" in text or "{#" in text


@lru_cache(maxsize=1024)
def analyze(template: str) -> Analysis:
    """Syntax errors, unsupported names and unguarded ``outputs``/``inputs`` reads of one template."""
    from control_plane.expressions.environment import _ENV, keep_tree

    try:
        tree = _ENV.parse(template)
    except TemplateSyntaxError as exc:
        return Analysis((Finding(exc.lineno or 1, f"invalid expression: {exc.message}", syntax=True),), ())
    bound = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    bound |= {m.name for m in tree.find_all(nodes.Macro)}
    findings = list(_names(tree, bound))
    guarded: set[tuple[str, str]] = set()
    reads: list[Reference] = []
    _walk(tree, False, bound, guarded, reads)
    references = tuple(r for r in reads if (r.root, r.key) not in guarded)
    keep_tree(template, tree)  # after the walk: compiling it rewrites it
    return Analysis(tuple(findings), references)


def _names(tree: nodes.Template, bound: set[str]) -> Iterator[Finding]:
    seen: set[tuple[Kind, str]] = set()
    found: list[tuple[int, Kind, str]] = []
    for node in tree.find_all((nodes.Filter, nodes.Test, nodes.Call)):
        if isinstance(node, nodes.Filter):
            if node.name.startswith("_"):  # Squall's own, added by the parser (``for``, ``..``)
                continue
            found.append((node.lineno, Kind.FILTER, node.name))
        elif isinstance(node, nodes.Test):
            if is_internal(Kind.TEST, node.name):  # ``??``'s own test, put there by the parser
                continue
            found.append((node.lineno, Kind.TEST, node.name))
        elif isinstance(node, nodes.Call):
            callee = node.node
            if isinstance(callee, nodes.Name) and callee.name not in bound:
                found.append((node.lineno, Kind.FUNCTION, callee.name))
    for line, kind, name in found:
        if (kind, name) in seen:
            continue
        seen.add((kind, name))
        entry = lookup(kind, name)
        if entry is None:
            yield Finding(
                line,
                f"unknown {kind.value} '{name}': Squall knows no such {kind.value} "
                "(see docs/kestra-compatibility.md)",
            )
        elif entry.status.name == "UNSUPPORTED":
            yield Finding(line, f"the {kind.value} '{name}' is not supported by Squall: {entry.reason}")


def _root_key(node: nodes.Node, bound: set[str]) -> tuple[str, str] | None:
    """``outputs.x`` / ``outputs['x']`` -> ("outputs", "x"); anything dynamic -> None."""
    if isinstance(node, nodes.Getattr):
        target, key = node.node, node.attr
    elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        target, key = node.node, node.arg.value
    else:
        return None
    if isinstance(target, nodes.Name) and target.name in _ROOTS and target.name not in bound:
        return (target.name, key) if isinstance(key, str) else None
    return None


def _is_guard(node: nodes.Node) -> bool:
    if isinstance(node, nodes.Test):
        return node.name in _GUARD_TESTS
    return isinstance(node, nodes.Filter) and node.name in _GUARD_FILTERS


def _walk(
    node: nodes.Node,
    guarded_here: bool,
    bound: set[str],
    guarded: set[tuple[str, str]],
    reads: list[Reference],
) -> None:
    """Collect reads; a read under a guard marks its key as guarded for the whole template."""
    found = _root_key(node, bound)
    if found is not None:
        if guarded_here:
            guarded.add(found)
        else:
            reads.append(Reference(found[0], found[1], node.lineno))
    for field, child in node.iter_fields():
        children = child if isinstance(child, list) else [child]
        for item in children:
            if isinstance(item, nodes.Node):
                guards_child = _is_guard(node) and field == "node"
                _walk(item, guarded_here or guards_child, bound, guarded, reads)
