"""Http triggers (``io.kestra.plugin.core.http.Trigger``) as pure functions: when a trigger is
due, what it sends, whether a response fires it, and under which execution id.

Kestra (``plugin/core/http/Trigger.java``, a ``PollingTriggerInterface``): every ``interval``
(60 s by default) the scheduler sends the request, failed statuses allowed (``allowFailed``),
and renders ``responseCondition`` (default ``{{ response.statusCode < 400 }}``) with
``response.statusCode``, ``response.body`` (the body as a string, or null) and
``response.headers`` (name -> list of values). When it is truthy (Kestra's TruthUtils) a new
execution starts with the request's output as ``trigger``: ``uri``, ``code``, ``headers``,
``body``. While an execution the trigger started is running, the trigger is not evaluated
(Kestra's scheduler locks a trigger until its execution ends); once it ended in a state listed
in ``stopAfter``, the trigger stops (Kestra disables it) until a new revision of the flow is
deployed.

The state of one trigger is one store record (:class:`PollState` in its ``data``), written
with a version check: ``last`` (the poll's instant), ``executionId`` (the execution it started
last), ``stopped`` (the state that stopped it), ``error`` (the last poll's failure, for
whoever looks at the trigger: an invalid URI, a timeout, a condition that does not render).
Nothing here reads a clock, the network or a store: service/http_triggers.py does, and
passes ``now`` and the response in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from msgspec import Struct

from control_plane.engine.states import State
from control_plane.errors import ExpressionError
from control_plane.expressions import is_truthy, render, render_value
from control_plane.flows.models import HttpTrigger

__all__ = [
    "PollState",
    "condition_holds",
    "due",
    "fire_id",
    "request_properties",
    "state_key",
    "stop_state",
    "stopped",
    "variables",
]


class PollState(Struct, frozen=True):
    """What one Http trigger remembers between polls (the trigger record's ``data``)."""

    last: str | None = None  # ISO instant of the last poll that was claimed
    executionId: str | None = None  # the execution it started last
    stopped: str | None = None  # the stopAfter state that stopped it
    error: str | None = None  # why the last poll did not get an answer to evaluate
    revision: int | None = None  # the flow revision it stopped at: a new one polls again

    @classmethod
    def of(cls, data: Mapping[str, Any] | None) -> PollState:
        data = data or {}
        return cls(
            last=data.get("last"),
            executionId=data.get("executionId"),
            stopped=data.get("stopped"),
            error=data.get("error"),
            revision=data.get("revision"),
        )

    def to_data(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in (
                ("last", self.last),
                ("executionId", self.executionId),
                ("stopped", self.stopped),
                ("error", self.error),
                ("revision", self.revision),
            )
            if v is not None
        }


def state_key(namespace: str, flow_id: str, trigger_id: str) -> str:
    return f"http/{namespace}/{flow_id}/{trigger_id}"


def stopped(state: PollState, revision: int | None) -> bool:
    """Stopped by ``stopAfter`` at this flow revision (deploying a new one starts it again,
    Squall having no API to re-enable a trigger)."""
    return state.stopped is not None and state.revision == revision


def due(trigger: HttpTrigger, state: PollState, now: datetime, revision: int | None = None) -> bool:
    """Poll now, unless its last execution still runs (the caller asks that next)? Not when
    disabled or stopped, nor within ``interval`` of the last poll."""
    if trigger.disabled or stopped(state, revision):
        return False
    return state.last is None or now >= datetime.fromisoformat(state.last) + trigger.interval


def stop_state(trigger: HttpTrigger, ended: State | None) -> str | None:
    """The ``stopAfter`` state its last execution ended in, if it did (then it polls no more)."""
    if ended is None or not trigger.stopAfter:
        return None
    return ended.value if ended.value in trigger.stopAfter else None


def request_properties(trigger: HttpTrigger, context: Mapping[str, Any]) -> dict[str, Any]:
    """What core.http's Request is given, rendered as Kestra renders a trigger's properties
    (ExpressionError when a template fails); failed statuses are the condition's to judge."""
    props: dict[str, Any] = {
        "uri": render(trigger.uri, context),
        "method": trigger.method,
        "allowFailed": True,
    }
    for name in ("body", "contentType"):
        value = getattr(trigger, name)
        if value is not None:
            props[name] = render(value, context)
    if trigger.headers:
        props["headers"] = {k: render(v, context) for k, v in trigger.headers.items()}
    if trigger.formData is not None:
        props["formData"] = render_value(dict(trigger.formData), context)
    if trigger.options is not None:
        props["options"] = trigger.options.model_dump(exclude_none=True)
    if trigger.sslOptions is not None:
        props["sslOptions"] = trigger.sslOptions.model_dump(exclude_none=True)
    return props


def condition_holds(trigger: HttpTrigger, output: Mapping[str, Any], context: Mapping[str, Any]) -> bool:
    """``responseCondition`` rendered over the response; ExpressionError says why it cannot be."""
    response = {
        "statusCode": output.get("code"),
        "body": output.get("body"),
        "headers": output.get("headers"),
    }
    try:
        return is_truthy(render(trigger.responseCondition, {**context, "response": response}))
    except ExpressionError as exc:
        raise ExpressionError(f"responseCondition: {exc}") from None


def variables(trigger: HttpTrigger, output: Mapping[str, Any]) -> dict[str, Any]:
    """The new execution's ``trigger``: Request.Output (``uri``, ``code``, ``headers``, ``body``)."""
    return {
        "id": trigger.id,
        "type": trigger.type,
        "uri": output.get("uri"),
        "code": output.get("code"),
        "headers": output.get("headers"),
        "body": output.get("body"),
    }


def fire_id(namespace: str, flow_id: str, trigger_id: str, polled: str) -> str:
    """The id of the execution one poll starts: the same poll, claimed twice, starts one."""
    return hashlib.blake2b(
        f"http\x1f{namespace}\x1f{flow_id}\x1f{trigger_id}\x1f{polled}".encode(), digest_size=11
    ).hexdigest()
