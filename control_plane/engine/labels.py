"""Execution labels Squall sets itself (``system.*``), in one place for every kind of start.

Kestra gives every new execution ``system.correlationId``: its own id, unless the start
carried one. A child (Subflow or a ForEachItem batch) carries its parent's, so every
execution of one call tree shares the root execution's id and can be found by it
(Kestra's ``Execution.newExecution`` and ``ExecutableUtils.subflowExecution``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["CORRELATION_ID", "child_labels", "context_labels", "with_correlation"]

CORRELATION_ID = "system.correlationId"
SYSTEM_PREFIX = "system."


def with_correlation(labels: Mapping[str, str], execution_id: str) -> dict[str, str]:
    """``labels`` with a correlation id: the one they carry, else the execution's own id."""
    return {**labels, CORRELATION_ID: labels.get(CORRELATION_ID) or execution_id}


def child_labels(
    parent_labels: Mapping[str, str], parent_id: str, own: Mapping[str, str], *, inherit: bool
) -> dict[str, str]:
    """A child execution's labels: its task's ``labels``, the parent's when ``inherit``, and
    always the parent's correlation id (the root's), which the task cannot override."""
    inherited = {k: v for k, v in parent_labels.items() if not k.startswith(SYSTEM_PREFIX)} if inherit else {}
    correlation = parent_labels.get(CORRELATION_ID) or parent_id
    return {**inherited, **own, CORRELATION_ID: correlation}


def context_labels(labels: Mapping[str, str]) -> dict[str, Any]:
    """``labels`` as templates see them: Kestra nests ``system.*`` keys under ``system``
    (``{{ labels.system.correlationId }}``); the flat keys stay readable too."""
    system = {k[len(SYSTEM_PREFIX) :]: v for k, v in labels.items() if k.startswith(SYSTEM_PREFIX)}
    return {**labels, "system": system} if system else dict(labels)
