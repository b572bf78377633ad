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
``comparison`` EQUALS/PREFIX/SUFFIX or the older ``prefix``) and ExecutionLabels (``labels``)
(control_plane/triggers/conditions.py); ``preconditions`` and the deprecated
MultipleCondition, conditions met within a time window (control_plane/triggers/
preconditions.py; the service keeps the window's state).

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
from control_plane.triggers.conditions import EVALUATED, holds
from control_plane.triggers.preconditions import MULTIPLE, multiple_problems
from control_plane.triggers.preconditions import problems as preconditions_problems

__all__ = ["TERMINATED", "fire_id", "input_context", "is_multiple", "matches", "unsupported", "variables"]

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
    if is_multiple(condition.type):
        return True  # counted in its window (service/flow_triggers.py), not here
    return holds(condition.type, condition.model_extra or {}, ex)


def is_multiple(kind: str) -> bool:
    """A MultipleCondition: several executions in a window, not a test of one execution."""
    return canonical_condition_type(kind) == MULTIPLE


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
                    f"{', '.join(EVALUATED)} and MultipleCondition",
                )
            )
        elif is_multiple(kind):
            problems += [
                (("conditions", i, *path), message) for path, message in multiple_problems(condition)
            ]
    pre = trigger.get("preconditions")
    if isinstance(pre, Mapping):
        problems += preconditions_problems(pre)
    elif pre is not None:
        problems.append((("preconditions",), "preconditions is a map: id, flows, timeWindow, resetOnSuccess"))
    return problems
