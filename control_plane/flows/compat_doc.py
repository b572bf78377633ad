"""Generate ``docs/kestra-compatibility.md`` from the code: ``python -m control_plane.flows.compat_doc``.

Why generated: the page must say what *this* build accepts. Its facts come from four places
only, each the one place its fact lives: the alias table (which type names Squall accepts), the
task and trigger models (which properties), :mod:`control_plane.flows.kestra_core` (Kestra's
reference lists and the reasons for what Squall does not do) and
:mod:`control_plane.expressions.catalog` (filters, functions, tests). A test fails when the
checked-in page differs from what this module prints.

Robust to change: a type added to the alias table shows as supported (with its model's
properties once it has a model class); a reason left in ``UNSUPPORTED_TYPES`` for a type that
became supported is ignored; a core type with neither alias nor reason says "not supported".
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping

from pydantic import BaseModel

from control_plane.flows import kestra_core
from control_plane.flows.aliases import ALIASES, CONDITION_ALIASES, RUNNER_ALIASES, TRIGGER_ALIASES

__all__ = ["main", "render", "type_rows"]

_YES = "supported"
_NO = "not supported"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> list[str]:
    head = list(header)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _accepted(
    full_name: str,
    tasks: Mapping[str, str],
    triggers: Mapping[str, str],
    runners: Mapping[str, str],
    conditions: Mapping[str, str],
) -> str | None:
    """Squall's canonical name for a Kestra type name, whichever table accepts it."""
    return (
        tasks.get(full_name) or triggers.get(full_name) or runners.get(full_name) or conditions.get(full_name)
    )


def type_rows(
    tasks: Mapping[str, str] = ALIASES,
    triggers: Mapping[str, str] = TRIGGER_ALIASES,
    runners: Mapping[str, str] = RUNNER_ALIASES,
    conditions: Mapping[str, str] = CONDITION_ALIASES,
) -> list[tuple[str, str, str, str]]:
    """(Kestra type, Squall type, status, reason) for every Kestra core type, sorted by name."""
    names = {**{k: v[0] for k, v in kestra_core.KESTRA_CORE_TYPES.items()}, **kestra_core.NEWER_TYPES}
    rows: list[tuple[str, str, str, str]] = []
    for short in sorted(names):
        full = kestra_core.CORE_PREFIX + short
        canonical = _accepted(full, tasks, triggers, runners, conditions)
        if canonical is not None:
            rows.append((full, canonical, _YES, ""))
        else:
            reason = kestra_core.UNSUPPORTED_TYPES.get(short, "no reason recorded (kestra_core.py)")
            rows.append((full, "", _NO, reason))
    return rows


def _model_classes() -> dict[str, type[BaseModel]]:
    from control_plane.flows.models import Trigger, task_classes

    classes: dict[str, type[BaseModel]] = dict(task_classes())
    stack: list[type[BaseModel]] = [Trigger]
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        canonical = getattr(cls, "canonical", "")
        if canonical:
            classes[canonical] = cls
    return classes


def _model_properties(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def _property_rows(
    short: str, kestra_props: Iterable[str], model: type[BaseModel] | None
) -> list[tuple[str, str, str]]:
    ours = _model_properties(model) if model is not None else []
    theirs = list(dict.fromkeys(kestra_props))
    rows: list[tuple[str, str, str]] = []
    for prop in dict.fromkeys([*theirs, *ours]):
        ignored = kestra_core.NOT_HONOURED_PROPERTIES.get(f"{short}.{prop}") or (
            None
            if f"{short}.{prop}" in kestra_core.HONOURED_ON
            else kestra_core.NOT_HONOURED_PROPERTIES.get(prop)
        )
        if prop == "timeout" and model is not None and not getattr(model, "timeout_honoured", True):
            rows.append(
                (prop, _NO, "refused at validation: Kestra ignores it on this task (runnable tasks only)")
            )
        elif prop in kestra_core.UNSUPPORTED_PROPERTIES:
            rows.append((prop, _NO, kestra_core.UNSUPPORTED_PROPERTIES[prop]))
        elif ignored and prop in ours:
            rows.append((prop, _NO, ignored))
        elif prop in ours and prop in theirs:
            rows.append((prop, _YES, ""))
        elif prop in ours:
            rows.append((prop, _YES, "Squall addition (not a Kestra property of this type)"))
        elif model is None:
            rows.append((prop, "unknown", "no Squall model class found for this type"))
        else:
            rows.append((prop, _NO, "not modelled: validation refuses it as an unknown property"))
    return rows


def _condition_rows(short: str, declared: Iterable[str]) -> list[tuple[str, str, str]]:
    """A condition has no model class: the trigger layer reads its properties (triggers/conditions.py)."""
    from control_plane.triggers.conditions import PROPERTIES

    read = PROPERTIES.get(short.removeprefix("condition."), ())
    rows = [(p, _YES, "") if p in read else (p, _NO, "not read by Squall's trigger layer") for p in declared]
    return rows + [
        (p, _YES, "Squall addition (not a Kestra property of this type)") for p in read if p not in declared
    ]


def _expression_rows() -> list[tuple[str, str, str, str, str]]:
    from control_plane.expressions.catalog import Status, entries

    return [
        (
            e.kind.value,
            e.name,
            e.origin.value,
            e.status.value,
            e.reason if e.status is not Status.IMPLEMENTED else "",
        )
        for e in entries()
    ]


def render() -> str:
    """The whole page, as checked in at ``docs/kestra-compatibility.md``."""
    out = [
        "# Kestra compatibility",
        "",
        "<!-- Generated by `python -m control_plane.flows.compat_doc > docs/kestra-compatibility.md`;",
        "     do not edit by hand (tests/unit/test_compat_doc.py fails when this page is stale). -->",
        "",
        "What Squall accepts from a Kestra flow, read from the code: the alias table",
        "(`control_plane/flows/aliases.py`), the task and trigger models (`control_plane/flows/models.py`),",
        "the reference list of Kestra's core types and the reasons for what is not supported",
        "(`control_plane/flows/kestra_core.py`, read from Kestra's Apache-2.0 sources, December 2024",
        "snapshot, plus newer types named in Kestra's docs) and the expression catalog",
        "(`control_plane/expressions/catalog.py`).",
        "",
        "A type or property marked not supported is a validation error (`squall validate` names the",
        "file, line, column and path), with the reason given here.",
        "",
        "## Core types (`io.kestra.plugin.core`)",
        "",
    ]
    rows = type_rows()
    out += _table(("Kestra type", "Squall type", "Status", "Reason"), rows)
    supported = sum(1 for r in rows if r[2] == _YES)
    out += ["", f"{supported} of {len(rows)} core types supported.", ""]

    core_canonicals = {r[1] for r in rows if r[1]}
    extra: dict[str, list[str]] = {}
    for table in (ALIASES, TRIGGER_ALIASES, RUNNER_ALIASES):
        for name, canonical in table.items():
            if canonical not in core_canonicals and not name.startswith(kestra_core.CORE_PREFIX):
                extra.setdefault(canonical, []).append(name)
    out += ["## Other accepted types", ""]
    out += _table(
        ("Squall type", "Accepted names"),
        ((c, ", ".join(f"`{n}`" for n in sorted(names))) for c, names in sorted(extra.items())),
    )

    classes = _model_classes()
    out += ["", "## Properties of supported types", ""]
    out += [
        "Kestra's properties (with the base `Task` or `AbstractTrigger` ones) beside Squall's model.",
        "",
    ]
    for full, canonical, status, _ in rows:
        short = full.removeprefix(kestra_core.CORE_PREFIX)
        if status != _YES or short not in kestra_core.KESTRA_CORE_TYPES:
            continue
        base, declared = kestra_core.KESTRA_CORE_TYPES[short]
        common: tuple[str, ...] = {
            "Task": kestra_core.TASK_BASE_PROPERTIES,
            "AbstractTrigger": kestra_core.TRIGGER_BASE_PROPERTIES,
        }.get(base, ())
        model = classes.get(canonical)
        if model is None and base == "TaskRunner":
            continue  # runner options are validated by each runner (docs/runners)
        out += [f"### {short}", ""]
        if base == "Condition":
            out += _table(("Property", "Status", "Note"), _condition_rows(short, declared))
        else:
            out += _table(("Property", "Status", "Note"), _property_rows(short, (*common, *declared), model))
        out += [""]

    out += [
        "## What `squall validate` reports beyond Kestra",
        "",
        "Loading a flow (deploy, run) refuses what Squall cannot run: unknown types and properties,",
        "and expressions naming a filter, function or test that Squall does not implement.",
        "`squall validate` also reports what Kestra accepts and finds only when an expression is",
        "rendered, each with file, line, column and path:",
        "",
        "- a template syntax error in any `{{ }}` or `{% %}` of the flow (tasks, inputs, outputs,",
        "  triggers, listeners; `description` texts are never rendered and are not read);",
        "- `outputs.<id>` naming no task and `inputs.<id>` naming no input of the flow (Pause",
        "  `onResume` inputs count as inputs). Not reported: guarded reads (`??`, `is defined`,",
        "  `is null`, `default`, anywhere in the same expression), dynamic keys (`outputs[name]`),",
        "  names the template binds itself, a Subflow's `outputs` map (rendered against the subflow);",
        "- input `defaults` that do not convert to their input's type (templated defaults are",
        "  rendered per execution and not judged).",
        "",
        "A flow may rely on such a failure at run time (Kestra's own `task-runif` test does), so",
        "these findings do not stop a deploy; only `squall validate` reports them.",
        "",
    ]
    out += ["## Expressions: filters, functions and tests", ""]
    out += [
        "Every name Pebble 3.2's core extension or Kestra defines; a flow using a name marked",
        "not supported, or one nobody defines, is refused at load time with its position.",
        "",
    ]
    out += _table(("Kind", "Name", "Defined by", "Status", "Reason"), _expression_rows())
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    del argv
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
