"""Flow triggers (``io.kestra.plugin.core.trigger.Flow``) as pure functions: does an ended
execution start a flow, with which trigger variables, under which execution id.

Kestra (``FlowTriggerService``, ``plugin/core/trigger/Flow.java``): when an execution changes
state, every enabled flow with an enabled Flow trigger is considered, except the execution's
own flow (``FlowService.removeUnwanted``: no recursion). The trigger matches when the
execution's state is in ``states`` (default: the terminated states), every condition holds
and the ``preconditions`` hold. The new execution gets ``trigger.executionId``,
``namespace``, ``flowId``, ``flowRevision`` and ``state`` (``Flow.Output``); the trigger's
``inputs`` are rendered with them plus, when the upstream flow has outputs,
``trigger.outputs`` (``Flow.evaluate`` adds them for the inputs only: the execution's own
``trigger`` has no ``outputs``).

What Squall evaluates (anything else is refused when the flow is deployed, by
:func:`unsupported`): ``states`` made of terminated states (Squall reacts to an execution's
end, not to every transition), the conditions ExecutionStatus (``in``/``notIn``),
ExecutionFlow (``namespace``/``flowId``), ExecutionNamespace (``namespace`` with
``comparison`` EQUALS/PREFIX/SUFFIX or the older ``prefix``), ExecutionLabels (``labels``),
and ``preconditions`` (upstream ``flows`` met within a ``timeWindow``, without ``where``:
control_plane/triggers/preconditions.py, whose window state the service keeps).

Exactly once: the new execution's id is derived from the upstream execution id, the flow and
the trigger id (:func:`fire_id`); firing twice (a retried Lambda) is a ConflictError on create.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from control_plane.engine.model import Execution
from control_plane.engine.states import State
from control_plane.flows.aliases import canonical_condition_type
from control_plane.flows.models import Condition, FlowTrigger
from control_plane.triggers.preconditions import problems as preconditions_problems

__all__ = ["TERMINATED", "fire_id", "input_context", "matches", "unsupported", "variables"]

TERMINATED = frozenset(
    {
        State.SUCCESS,
        State.WARNING,
        State.FAILED,
        State.KILLED,
        State.CANCELLED,
        State.RETRIED,
        State.SKIPPED,
    }
)
"""Kestra's ``State.Type.terminatedTypes()``: a Flow trigger's default ``states``."""


def fire_id(upstream_id: str, namespace: str, flow_id: str, trigger_id: str) -> str:
    """The id of the execution a Flow trigger starts for one upstream execution (deterministic)."""
    key = f"{upstream_id}/flow-trigger/{namespace}/{flow_id}/{trigger_id}"
    return hashlib.blake2b(key.encode(), digest_size=11).hexdigest()


def variables(trigger: FlowTrigger, upstream: Execution) -> dict[str, Any]:
    """The ``trigger`` variables of the execution it starts (``Flow.Output``)."""
    return {
        "id": trigger.id,
        "type": trigger.type,
        "executionId": upstream.id,
        "namespace": upstream.namespace,
        "flowId": upstream.flow_id,
        "flowRevision": upstream.flow_revision,
        "state": upstream.state.value,
    }


def input_context(trigger: FlowTrigger, upstream: Execution) -> dict[str, Any]:
    """What the trigger's ``inputs`` are rendered with: the variables plus the upstream outputs."""
    context = variables(trigger, upstream)
    if upstream.outputs:
        context["outputs"] = dict(upstream.outputs)
    return context


def matches(trigger: FlowTrigger, upstream: Execution) -> bool:
    """Whether the ended ``upstream`` execution passes ``trigger``'s ``states`` and ``conditions``
    (its flow already filtered); its ``preconditions``, which need the trigger's window state,
    are then triggers/preconditions.py's."""
    if trigger.disabled:
        return False
    states = TERMINATED if trigger.states is None else {State(s) for s in trigger.states}
    if upstream.state not in states:
        return False
    return all(_holds(condition, upstream) for condition in trigger.conditions or ())


def _holds(condition: Condition, ex: Execution) -> bool:
    extra: Mapping[str, Any] = condition.model_extra or {}
    match canonical_condition_type(condition.type):
        case "squall.condition.ExecutionStatus":
            allowed, denied = extra.get("in"), extra.get("notIn")
            return (allowed is None or ex.state.value in allowed) and (
                denied is None or ex.state.value not in denied
            )
        case "squall.condition.ExecutionFlow":
            return ex.namespace == extra.get("namespace") and ex.flow_id == extra.get("flowId")
        case "squall.condition.ExecutionNamespace":
            wanted = str(extra.get("namespace"))
            how = extra.get("comparison") or ("PREFIX" if extra.get("prefix") else "EQUALS")
            return {
                "EQUALS": ex.namespace == wanted,
                "PREFIX": ex.namespace.startswith(wanted),
                "SUFFIX": ex.namespace.endswith(wanted),
            }[how]
        case "squall.condition.ExecutionLabels":
            return all(ex.labels.get(k) == v for k, v in _labels(extra.get("labels")).items())
    raise AssertionError(f"condition {condition.type} passed validation unevaluated")  # unsupported()


def _labels(raw: Any) -> dict[str, str]:
    """ExecutionLabels' ``labels``: a map, or Kestra's list of ``{key, value}``."""
    if isinstance(raw, Mapping):
        return {str(k): str(v) for k, v in raw.items()}
    return {str(item["key"]): str(item["value"]) for item in raw or ()}


def unsupported(trigger: Mapping[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    """What a raw Flow trigger asks that Squall cannot honour: (path inside it, message) pairs."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    states = trigger.get("states")
    if isinstance(states, list):
        for i, state in enumerate(states):
            if state not in {s.value for s in TERMINATED}:
                problems.append(
                    (
                        ("states", i),
                        f"Flow trigger state {state} is not supported: Squall fires Flow triggers when "
                        "an execution ends, so only terminated states "
                        f"({', '.join(sorted(s.value for s in TERMINATED))}) can be listened to",
                    )
                )
    for i, condition in enumerate(trigger.get("conditions") or ()):
        kind = condition.get("type") if isinstance(condition, Mapping) else None
        if not isinstance(kind, str) or canonical_condition_type(kind) is None:
            problems.append(
                (
                    ("conditions", i, "type"),
                    f"condition {kind} is not supported on a Flow trigger: Squall evaluates "
                    "ExecutionStatus, ExecutionFlow, ExecutionNamespace and ExecutionLabels",
                )
            )
    pre = trigger.get("preconditions")
    if isinstance(pre, Mapping):
        problems += preconditions_problems(pre)
    elif pre is not None:
        problems.append((("preconditions",), "preconditions is a map: id, flows, timeWindow, resetOnSuccess"))
    return problems
