"""Polling Http triggers: the I/O around control_plane/triggers/http.py.

Which flows: those in the ``http-triggers/index`` record, written at deploy (a
:class:`~control_plane.service.flow_index.FlowIndex`), so a tick reads one record, not every
flow. Who calls it: the tick (each minute in the cloud, every ``tick_interval`` under
``squall server``) and the ``schedule`` Lambda when EventBridge Scheduler names one trigger
(a ``rate(...)`` schedule in the Terraform ``schedules`` list makes an interval under a minute
reachable in the cloud). A poll is claimed before the request is sent: the trigger record's
``last`` is written with the version the caller read, so of two processes polling at once
one sends the request and the other skips it. The execution a poll starts has an id derived
from that claimed instant (``fire_id``): a poll retried after a crash starts it once.

The request is core.http's Request (control_plane/tasks/http.py: its timeouts, size limits,
proxy and TLS options), bounded by the poll's own budget. Anything that goes wrong in one
poll (a URI that does not render or is not http(s), a timeout, a refused connection, a
condition reading JSON from a body that is not JSON, the flow's inputs) is written to the
trigger's state as ``error`` and logged, and the next trigger is polled: one bad trigger never
stops the loop.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from control_plane.errors import ConflictError, ExpressionError, InputError, NotFoundError, SquallError
from control_plane.flows.models import Flow, HttpTrigger
from control_plane.store.base import StateStore, TriggerRecord
from control_plane.triggers.http import (
    PollState,
    condition_holds,
    due,
    fire_id,
    request_properties,
    state_key,
    stop_state,
    variables,
)

__all__ = ["INDEX_KEY", "HttpTriggers"]

INDEX_KEY = "http-triggers/index"  # flows whose latest revision has an Http trigger (FlowIndex)

_log = logging.getLogger(__name__)

POLL_BUDGET = 30.0  # seconds one poll may take at most, whatever its readTimeout says


class _Secrets(Mapping[str, str]):
    """``secret()`` in a trigger's properties (an Authorization header): asks the chain."""

    def __init__(self, chain: Any) -> None:
        self._chain = chain

    def __getitem__(self, name: str) -> str:
        if self._chain is None:
            raise KeyError(name)
        return str(self._chain.get(name))

    def __iter__(self) -> Any:
        return iter(())

    def __len__(self) -> int:
        return 0


class HttpTriggers:
    """Polls the Http triggers of deployed flows and starts what their responses fire."""

    def __init__(
        self,
        store: StateStore,
        *,
        now: Callable[[], datetime],
        start: Callable[..., Any],
        storage: Any,
        secrets: Any = None,
        budget: float = POLL_BUDGET,
    ) -> None:
        self.store = store
        self.now = now
        self.start = start
        self.storage = storage
        self.secrets = secrets
        self.budget = budget

    def poll(self, flows: Iterable[Flow], *, trigger_id: str | None = None) -> list[str]:
        """Poll every due Http trigger of ``flows`` (or the one named); the execution ids started."""
        started: list[str] = []
        for flow in flows:
            if flow.disabled:
                continue  # Kestra's scheduler skips disabled flows
            for trigger in flow.triggers or ():
                if isinstance(trigger, HttpTrigger) and trigger_id in (None, trigger.id):
                    started += self._poll_one(flow, trigger)
        return started

    def _poll_one(self, flow: Flow, trigger: HttpTrigger) -> list[str]:
        key = state_key(flow.namespace, flow.id, trigger.id)
        record = self.store.get_trigger(key)
        state = PollState.of(record.data if record else None)
        now = self.now()
        if not due(trigger, state, now, flow.revision):
            return []  # the cheap checks first: no execution read while nothing is due
        running, ended_in = self._last_execution(trigger, state)
        if running:
            return []  # Kestra holds a trigger while the execution it started runs
        if ended_in is not None:
            self._write(key, record, PollState(state.last, state.executionId, ended_in, None, flow.revision))
            _log.info(
                "%s.%s: http trigger %s stopped after %s", flow.namespace, flow.id, trigger.id, ended_in
            )
            return []
        polled = now.isoformat()
        previous = None if state.stopped is not None else state.executionId  # restarted: forget it
        claimed = self._write(key, record, PollState(polled, previous, None, state.error))
        if claimed is None:
            return []  # another process claimed this poll
        try:
            started = self._request_and_fire(flow, trigger, polled)
        except (SquallError, ExpressionError) as exc:
            message = str(exc)
            _log.warning("%s.%s: http trigger %s: %s", flow.namespace, flow.id, trigger.id, message)
            self._write(key, claimed, PollState(polled, previous, None, message))
            return []
        execution_id = started or previous
        self._write(key, claimed, PollState(polled, execution_id, None, None))
        return [started] if started else []

    def _last_execution(self, trigger: HttpTrigger, state: PollState) -> tuple[bool, str | None]:
        """(still running, the stopAfter state it ended in) for the execution it started last;
        one that ended before a new revision restarted the trigger stops nothing again."""
        if state.executionId is None or state.stopped is not None:
            return False, None
        try:
            execution = self.store.get_execution_meta(state.executionId)
        except NotFoundError:
            return False, None  # deleted: nothing holds the trigger
        if not execution.state.terminal:
            return True, None
        return False, stop_state(trigger, execution.state)

    def _request_and_fire(self, flow: Flow, trigger: HttpTrigger, polled: str) -> str | None:
        from control_plane.tasks import EffectContext, TaskFailure, deadline_for
        from control_plane.tasks.http import request

        context: dict[str, Any] = {
            "flow": {"id": flow.id, "namespace": flow.namespace, "revision": flow.revision},
            "trigger": {"id": trigger.id, "type": trigger.type},
            "@secrets": _Secrets(self.secrets),
        }
        props = request_properties(trigger, context)
        ctx = EffectContext(
            storage=self.storage,
            store=self.store,
            now=self.now,
            namespace=flow.namespace,
            flow_id=flow.id,
            execution_id="",
            taskrun_id=trigger.id,
            attempt=1,
            # the Lambda's remaining time too (limit_to_invocation), as a task's request has
            deadline=min(time.monotonic() + self.budget, deadline_for(None)),
        )
        try:
            output = request(props, ctx)
        except TaskFailure as exc:
            raise _PollError(str(exc)) from None
        if not condition_holds(trigger, output, context):
            return None
        new_id = fire_id(flow.namespace, flow.id, trigger.id, polled)
        try:
            self.start(
                flow.namespace,
                flow.id,
                None,
                revision=flow.revision,
                labels=dict(trigger.labels or {}),
                trigger=variables(trigger, output),
                execution_id=new_id,
            )
        except ConflictError:
            pass  # this poll started it before a crash
        except InputError as exc:
            raise _PollError(f"the flow's inputs: {exc}") from None
        return new_id

    def _write(self, key: str, record: TriggerRecord | None, state: PollState) -> TriggerRecord | None:
        """The new state if the record was still as read; None when someone else wrote it."""
        with contextlib.suppress(ConflictError):
            return self.store.put_trigger(
                TriggerRecord(key, state.to_data()), expected_version=record.version if record else 0
            )
        return None


class _PollError(SquallError):
    """One poll failed; its message goes to the trigger's state."""
