"""The trigger conditions Squall evaluates on an ended execution, one place for all triggers.

ExecutionStatus (``in``/``notIn``), ExecutionFlow (``namespace``/``flowId``),
ExecutionNamespace (``namespace`` with ``comparison`` EQUALS/PREFIX/SUFFIX or the older
``prefix``) and ExecutionLabels (``labels``), as Kestra's ``plugin/core/condition`` classes
test them. A Flow trigger's own ``conditions`` use them, and so do the named conditions of a
(deprecated) MultipleCondition, which triggers/preconditions.py counts in a window.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from control_plane.engine.model import Execution
from control_plane.flows.aliases import canonical_condition_type

__all__ = ["EVALUATED", "PROPERTIES", "holds"]

EVALUATED = ("ExecutionStatus", "ExecutionFlow", "ExecutionNamespace", "ExecutionLabels")

#: the properties each evaluated condition reads (the compatibility page lists them)
PROPERTIES: dict[str, tuple[str, ...]] = {
    "ExecutionStatus": ("in", "notIn"),
    "ExecutionFlow": ("namespace", "flowId"),
    "ExecutionNamespace": ("namespace", "comparison", "prefix"),
    "ExecutionLabels": ("labels",),
    "MultipleCondition": ("id", "conditions", "timeWindow", "window", "windowAdvance", "resetOnSuccess"),
}


def holds(kind: str, props: Mapping[str, Any], ex: Execution) -> bool:
    """Whether the condition of type ``kind`` with properties ``props`` holds for ``ex``."""
    match canonical_condition_type(kind):
        case "squall.condition.ExecutionStatus":
            allowed, denied = props.get("in"), props.get("notIn")
            return (allowed is None or ex.state.value in allowed) and (
                denied is None or ex.state.value not in denied
            )
        case "squall.condition.ExecutionFlow":
            return ex.namespace == props.get("namespace") and ex.flow_id == props.get("flowId")
        case "squall.condition.ExecutionNamespace":
            wanted = str(props.get("namespace"))
            how = props.get("comparison") or ("PREFIX" if props.get("prefix") else "EQUALS")
            return {
                "EQUALS": ex.namespace == wanted,
                "PREFIX": ex.namespace.startswith(wanted),
                "SUFFIX": ex.namespace.endswith(wanted),
            }[how]
        case "squall.condition.ExecutionLabels":
            return all(ex.labels.get(k) == v for k, v in _labels(props.get("labels")).items())
    raise AssertionError(f"condition {kind} passed validation unevaluated")  # flow.unsupported()


def _labels(raw: Any) -> dict[str, str]:
    """ExecutionLabels' ``labels``: a map, or Kestra's list of ``{key, value}``."""
    if isinstance(raw, Mapping):
        return {str(k): str(v) for k, v in raw.items()}
    return {str(item["key"]): str(item["value"]) for item in raw or ()}
