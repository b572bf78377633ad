"""Firing Flow triggers when an execution ends, from an index written at deploy time.

Which flows listen: a store record (``flow-triggers/index``, a :class:`FlowIndex`) lists every
flow whose latest revision has a Flow trigger. A deploy adds or removes its flow; an
execution's end reads that one record instead of scanning every flow. An entry may be stale
(a deleted flow, a disabled one): each listed flow is read and checked again before anything
fires.

Exactly once: the started execution's id is derived from the upstream execution and the
trigger (``triggers.flow.fire_id``), so a second firing (a retried Lambda, a recovered
``Finish``) is a ConflictError on create, ignored. At least once: while any flow listens, the
save that ends an execution also writes a due timer (``flow-triggers:``, an outbox record);
the driver fires right after the save and then deletes it, and a process that died in
between leaves it for the tick (or the next local command) to fire.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from control_plane.engine.model import Execution
from control_plane.errors import ConflictError, InputError, NotFoundError
from control_plane.flows.models import Flow, FlowTrigger
from control_plane.service.flow_index import FlowIndex
from control_plane.store.base import StateStore, TriggerRecord
from control_plane.triggers.flow import fire_id, input_context, is_multiple, matches, variables
from control_plane.triggers.preconditions import (
    Preconditions,
    WindowState,
    advance,
    expression_context,
    parse_multiple,
    state_key,
)
from control_plane.triggers.preconditions import parse as parse_preconditions

__all__ = ["INDEX_KEY", "FlowTriggers"]

INDEX_KEY = "flow-triggers/index"
_WINDOW_ATTEMPTS = (
    20  # conditional writes of one window before giving up (each loss means progress elsewhere)
)

_log = logging.getLogger(__name__)


class FlowTriggers:
    """The index of flows with Flow triggers, and their firing."""

    def __init__(self, store: StateStore) -> None:
        self._index = FlowIndex(store, INDEX_KEY)
        self.store = store

    def listeners(self) -> list[tuple[str, str, int | None]]:
        """(namespace, flow id, revision) of every flow indexed as having a Flow trigger."""
        return self._index.flows()

    def index(self, flow: Flow, revision: int) -> None:
        """Record whether ``flow`` (just deployed as ``revision``, its latest) listens to others."""
        listens = any(isinstance(t, FlowTrigger) for t in flow.triggers or ())
        self._index.mark(flow.namespace, flow.id, listens, revision)

    def forget(self, namespace: str, flow_id: str) -> None:
        """The flow was deleted: it listens no more."""
        self._index.mark(namespace, flow_id, False)

    def fire(
        self,
        upstream: Execution,
        flow_of: Callable[[str, str, int | None], Flow],
        start: Callable[..., Any],
        listeners: list[tuple[str, str, int | None]] | None = None,
        *,
        now: Callable[[], datetime],
    ) -> list[str]:
        """Start what the end of ``upstream`` triggers; the ids started now (not the ones before).

        ``listeners``: the index as just read (else it is read here). ``now``: the clock a
        trigger's ``preconditions`` window is computed with.
        """
        from control_plane.flows.inputs import trigger_inputs

        started: list[str] = []
        for namespace, flow_id, revision in self.listeners() if listeners is None else listeners:
            if (namespace, flow_id) == (upstream.namespace, upstream.flow_id):
                continue  # Kestra never lets a flow trigger itself (FlowService.removeUnwanted)
            try:
                flow = flow_of(namespace, flow_id, revision)  # parsed once per process
            except NotFoundError:
                continue  # deleted since it was indexed
            if flow.disabled:
                continue
            for trigger in flow.triggers or ():
                if not isinstance(trigger, FlowTrigger) or not matches(trigger, upstream):
                    continue
                windows = [parse_preconditions(trigger.preconditions)] if trigger.preconditions else []
                windows += [
                    parse_multiple(c.model_dump()) for c in trigger.conditions or () if is_multiple(c.type)
                ]
                # evaluated one by one, as Kestra stores each window before testing any
                if not all([self._window_fires(flow, trigger, pre, upstream, now) for pre in windows]):
                    continue
                new_id = fire_id(upstream.id, namespace, flow_id, trigger.id)
                try:
                    start(
                        namespace,
                        flow_id,
                        trigger_inputs(flow, trigger.inputs, input_context(trigger, upstream)),
                        revision=flow.revision,
                        trigger=variables(trigger, upstream),
                        execution_id=new_id,
                    )
                except ConflictError:
                    continue  # fired before (a retried event)
                except InputError as exc:  # Kestra logs it and starts nothing (Flow.evaluate)
                    _log.warning(
                        "Failed to trigger flow %s.%s for trigger %s, invalid inputs: %s",
                        namespace,
                        flow_id,
                        trigger.id,
                        exc,
                    )
                    continue
                started.append(new_id)
        return started

    def _window_fires(
        self,
        flow: Flow,
        trigger: FlowTrigger,
        pre: Preconditions,
        upstream: Execution,
        now: Callable[[], datetime],
    ) -> bool:
        """Count ``upstream`` in the trigger's preconditions window; True when it completes it
        (or completed it before a crash). The new state is written with the version read: of
        two processes completing one window at once, one write wins and the other, having
        reloaded, finds its execution already counted in a fresh window, or not needed."""
        key = state_key(flow.namespace, flow.id, trigger.id, pre.id)
        context = expression_context(flow.namespace, flow.id, flow.revision, upstream)
        for _ in range(_WINDOW_ATTEMPTS):
            record = self.store.get_trigger(key)
            state = WindowState.of(record.data if record else None)
            step = advance(pre, state, upstream, now(), context)
            if step.state is None:
                return step.fire
            try:
                self.store.put_trigger(
                    TriggerRecord(key, step.state.to_data()), expected_version=record.version if record else 0
                )
            except ConflictError:
                continue  # another end was counted meanwhile: evaluate again on what it wrote
            return step.fire
        _log.error(
            "%s.%s: trigger %s: preconditions state kept changing; %s not counted",
            flow.namespace,
            flow.id,
            trigger.id,
            upstream.id,
        )
        return False
