"""Core tasks that are pure functions of their context, evaluated inside ``plan``.

Log, Echo, Return, OutputValues, Fail, Labels, Exit, SetVariables and UnsetVariables read nothing but the
rendered context and write nothing but outputs, log lines, labels, the execution's variables
or the state it ends in, so running them in the engine is deterministic and
saves a round trip through the shell per task (a 100,000-item ForEach of Return tasks is one
``plan`` call, not 100,000).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from msgspec import Struct, field

from control_plane.engine.states import State
from control_plane.errors import ExpressionError
from control_plane.expressions import is_truthy, render, render_value
from control_plane.flows.models import (
    EXIT_STATES,
    Echo,
    Exit,
    Fail,
    Log,
    OutputValues,
    Return,
    SetLabels,
    SetVariables,
    Task,
    UnsetVariables,
)
from control_plane.levels import Level

__all__ = ["InlineResult", "run_inline"]


class InlineResult(Struct):
    state: State
    outputs: Mapping[str, Any] | None = None
    logs: list[tuple[Level, str]] = field(default_factory=list)
    error: str | None = None
    labels: Mapping[str, str] | None = None
    exit: State | None = None
    """Exit: the state the whole execution ends in, now."""
    variables: Mapping[str, Any] | None = None
    """SetVariables: the execution's whole ``vars`` from now on."""


def run_inline(task: Task, context: Mapping[str, Any]) -> InlineResult:
    """Evaluate one attempt of an inline task; a rendering error fails the attempt."""
    try:
        return _EVALUATORS[type(task)](task, context)
    except ExpressionError as exc:
        return InlineResult(State.FAILED, error=str(exc))


def _log(task: Log, context: Mapping[str, Any]) -> InlineResult:
    messages = task.message if isinstance(task.message, list) else [task.message]
    return InlineResult(State.SUCCESS, logs=[(task.level, render(m, context)) for m in messages])


def _echo(task: Echo, context: Mapping[str, Any]) -> InlineResult:
    return InlineResult(State.SUCCESS, logs=[(task.level, render(task.format, context))])


def _return(task: Return, context: Mapping[str, Any]) -> InlineResult:
    value = render(task.format, context) if task.format is not None else None
    return InlineResult(State.SUCCESS, outputs={"value": value})


def _output_values(task: OutputValues, context: Mapping[str, Any]) -> InlineResult:
    return InlineResult(State.SUCCESS, outputs={"values": render_value(task.values, context)})


def _fail(task: Fail, context: Mapping[str, Any]) -> InlineResult:
    if task.condition is not None:
        condition = task.condition if isinstance(task.condition, bool) else render(task.condition, context)
        if not is_truthy(condition):
            return InlineResult(State.SUCCESS)
    return InlineResult(State.FAILED, error=render(task.errorMessage, context))


def _labels(task: SetLabels, context: Mapping[str, Any]) -> InlineResult:
    labels = {render(k, context): render(v, context) for k, v in task.labels.items()}
    bad = sorted(k for k in labels if k.startswith("system."))
    if bad:
        return InlineResult(
            State.FAILED, error=f"System labels can only be set by Squall itself: {', '.join(bad)}"
        )
    return InlineResult(State.SUCCESS, labels=labels)


def _exit(task: Exit, context: Mapping[str, Any]) -> InlineResult:
    """Kestra's Exit.executionState: the task run and the execution both end in the state."""
    name = render(task.state, context).strip()
    if name not in EXIT_STATES:
        return InlineResult(
            State.FAILED, error=f"Exit state must be one of {', '.join(EXIT_STATES)}, got '{name}'"
        )
    state = State.CANCELLED if name == "CANCELED" else State(name)
    return InlineResult(state, exit=state)


def _set_variables(task: SetVariables, context: Mapping[str, Any]) -> InlineResult:
    """Deep-merge the rendered map into ``vars``; with ``overwrite: false`` a value already set fails."""
    new = render_value(task.variables, context)
    overwrite = (
        task.overwrite if isinstance(task.overwrite, bool) else is_truthy(render(task.overwrite, context))
    )
    current = context.get("vars") or {}
    if not overwrite:
        taken = _collisions(current, new)
        if taken:
            names = ", ".join(f"`{name}`" for name in taken)
            return InlineResult(State.FAILED, error=f"Variables {names} already exist and overwrite is false")
    return InlineResult(State.SUCCESS, variables=_deep_merge(current, new))


def _unset_variables(task: UnsetVariables, context: Mapping[str, Any]) -> InlineResult:
    """Remove the named (rendered) variables; naming one that is not set fails unless ignoreMissing."""
    names = [render(name, context) for name in task.variables]
    ignore = task.ignoreMissing
    if not isinstance(ignore, bool):
        ignore = is_truthy(render(ignore, context))
    current = dict(context.get("vars") or {})
    missing = [name for name in names if name not in current]
    if missing and not ignore:
        listed = ", ".join(f"`{name}`" for name in missing)
        return InlineResult(State.FAILED, error=f"Variables {listed} are not set and ignoreMissing is false")
    return InlineResult(State.SUCCESS, variables={k: v for k, v in current.items() if k not in names})


def _deep_merge(base: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in new.items():
        old = merged.get(key)
        merged[key] = (
            _deep_merge(old, value) if isinstance(old, Mapping) and isinstance(value, Mapping) else value
        )
    return merged


def _collisions(base: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the values ``new`` would replace (nested maps merge, so only leaves count)."""
    found: list[str] = []
    for key, value in new.items():
        if key not in base:
            continue
        old = base[key]
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            found.extend(_collisions(old, value, f"{prefix}{key}."))
        else:
            found.append(f"{prefix}{key}")
    return found


_EVALUATORS: dict[type[Task], Any] = {
    Log: _log,
    Echo: _echo,
    Return: _return,
    OutputValues: _output_values,
    Fail: _fail,
    SetLabels: _labels,
    Exit: _exit,
    SetVariables: _set_variables,
    UnsetVariables: _unset_variables,
}
