"""Load-time checks of every ``{{ }}`` in a flow: what Kestra only finds when a task runs.

Every string of the raw flow that is a template (task properties, inputs, outputs, triggers,
listeners...) is parsed once (:func:`control_plane.expressions.analysis.analyze`) and reported
with its path:

- a syntax error (``{{ outputs.t.value }``, an unclosed ``{% if %}``);
- a filter, function or test that neither Pebble nor Kestra defines, or that Squall does not
  support (the reason comes from :mod:`control_plane.expressions.catalog`);
- ``outputs.<id>`` naming no task of the flow, ``inputs.<id>`` naming no input.

Only the second kind refuses a flow at load time; the others are ``squall validate``'s
(``lint``), see :func:`check_templates`.

The reference checks know only the flow itself, so they stay silent where a name can be valid
without being declared here: guarded reads (``??``, ``is defined``, ``default``), dynamic keys
(``outputs[name]``), names a template binds itself, a Subflow's ``outputs`` map (rendered
against the subflow's execution), ``description`` texts (never rendered) and
``pluginDefaults`` (checked once merged into the tasks they apply to).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel

from control_plane.flows.aliases import canonical_type
from control_plane.flows.models import FOR_EACH_ITEM_PARTS
from control_plane.flows.validation import Issue, PathTuple

__all__ = ["check_templates", "strings_in", "templates_in"]

#: keys of a flow, task, input or trigger whose values Kestra never renders, or that are checked
#: elsewhere (a user's map may use the same words as keys: those values are still read)
_SKIPPED_KEYS = frozenset({"description", "pluginDefaults", "taskDefaults"})


def check_templates(data: Mapping[str, Any], *, lint: bool = False) -> list[Issue]:
    """Template problems of a raw flow mapping (after plugin defaults were merged).

    Always: names Squall cannot run (unknown or unsupported filters, functions, tests): a flow
    Kestra would run must not be accepted here and then fail for a Squall gap. With ``lint``
    (``squall validate``): also what Kestra itself accepts at save time and fails only when
    the expression is rendered (syntax errors, unknown ``outputs``/``inputs`` keys), because a
    flow may rely on that failure at run time (Kestra's own ``task-runif`` test does).
    """
    from control_plane.expressions.analysis import analyze, is_template

    task_ids, input_ids = _declared(data)
    foreign = _foreign_contexts(data)
    issues: list[Issue] = []
    for path, text in _strings(data, ()):
        if not is_template(text):
            continue
        analysis = analyze(text)
        for finding in analysis.findings:
            if finding.syntax and not lint:
                continue
            message = finding.message + _at(finding.line)
            issues.append(Issue(path, f"template:{finding.message}", message, text_line=finding.line))
        in_foreign = any(path[: len(prefix)] == prefix for prefix in foreign)
        for ref in analysis.references if lint and not in_foreign else ():
            known = task_ids if ref.root == "outputs" else input_ids
            if ref.key in known:
                continue
            what = "task" if ref.root == "outputs" else "input"
            message = f"'{ref.root}.{ref.key}' refers to no {what} of this flow (none has id '{ref.key}')"
            kind = f"reference:{ref.root}.{ref.key}"
            issues.append(Issue(path, kind, message + _at(ref.line), text_line=ref.line))
    return issues


def _foreign_contexts(data: Mapping[str, Any]) -> list[PathTuple]:
    """Paths whose templates Kestra renders against another execution: a Subflow's ``outputs``
    map reads the *subflow's* task outputs, so its ``outputs.<id>`` names tasks of that flow."""
    from control_plane.flows.aliases import canonical_type
    from control_plane.flows.validation import iter_tasks

    return [
        (*path, "outputs")
        for path, task in iter_tasks(data)
        if canonical_type(str(task.get("type"))) == "squall.flow.Subflow"
    ]


def _at(line: int) -> str:
    return f" (line {line} of the expression)" if line > 1 else ""


def _strings(node: Any, path: PathTuple) -> Iterator[tuple[PathTuple, str]]:
    """Every string in the data with its path (map keys included: Squall renders them too)."""
    stack: list[tuple[PathTuple, Any]] = [(path, node)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, str):
            yield where, value
        elif isinstance(value, Mapping):
            described = not where or "id" in value or "type" in value  # a flow, task, input, trigger...
            for key, child in value.items():
                if key in _SKIPPED_KEYS and described:
                    continue
                if isinstance(key, str):
                    yield (*where, key), key
                stack.append(((*where, key), child))
        elif isinstance(value, list):
            stack.extend(((*where, i), child) for i, child in enumerate(value))


def _declared(data: Mapping[str, Any]) -> tuple[frozenset[str], frozenset[str]]:
    """Task ids and input ids that templates may name.

    Task ids are read from every mapping that has both ``id`` and ``type`` anywhere in the flow,
    not only from known task slots: a task nested in a property Squall does not model as a
    task slot still has outputs in Kestra; a ForEachItem adds its generated ``<id>_split``,
    ``_items`` and ``_merge``. Input ids are the flow's own and every Pause
    ``onResume`` input; a dotted id (``user.name``) is read as ``inputs.user``.
    """
    tasks: set[str] = set()
    inputs: set[str] = set()
    stack: list[tuple[Any, bool]] = [(data, False)]
    while stack:
        value, in_inputs = stack.pop()
        if isinstance(value, Mapping):
            ident = value.get("id")
            if isinstance(ident, str):
                if "type" in value:
                    tasks.add(ident)
                    if canonical_type(str(value["type"])) == "squall.flow.ForEachItem":
                        tasks.update(ident + suffix for suffix in FOR_EACH_ITEM_PARTS)  # its generated tasks
                if in_inputs:
                    inputs.update({ident, ident.split(".")[0]})
            for key, child in value.items():
                stack.append((child, key in ("inputs", "onResume") and isinstance(child, list)))
        elif isinstance(value, list):
            stack.extend((child, in_inputs) for child in value)
    return frozenset(tasks), frozenset(inputs)


def strings_in(flow: BaseModel) -> tuple[str, ...]:
    """Every string a parsed flow holds, map keys included, read from the models' fields (no
    serializer: building pydantic's for every task type costs more than a small flow's run).

    Found once per flow object: a run asks twice (the templates to load, the names passed to
    ``secret()``), ~2 ms each for 200 tasks. A flow is frozen and nothing changes its lists or
    maps in place, so the strings stay what they were; the entry goes with the flow.
    """
    key = id(flow)
    hit = _STRINGS.get(key)
    if hit is not None and hit[0]() is flow:
        return hit[1]
    found: list[str] = []
    stack: list[Any] = [flow]
    while stack:
        node = stack.pop()
        if node is None or type(node) in _NO_STRINGS:  # most fields: checked first
            continue
        if isinstance(node, str):
            found.append(node)
        elif isinstance(node, BaseModel):
            stack.extend(node.__dict__.values())
            if node.__pydantic_extra__:
                stack.extend(node.__pydantic_extra__.values())
        elif isinstance(node, Mapping):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list | tuple | set | frozenset):
            stack.extend(node)
    strings = tuple(found)
    _STRINGS[key] = (weakref.ref(flow, lambda _: _STRINGS.pop(key, None)), strings)
    return strings


_NO_STRINGS = frozenset({bool, int, float})
_STRINGS: dict[int, tuple[weakref.ref[BaseModel], tuple[str, ...]]] = {}


def templates_in(flow: BaseModel) -> set[str]:
    """Every template string a parsed flow holds (task properties, inputs, outputs, triggers...):
    what a compiled-template cache loads before the flow is planned."""
    from control_plane.expressions.analysis import is_template

    return {text for text in strings_in(flow) if is_template(text)}
