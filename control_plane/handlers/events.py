"""The ``events`` Lambda: runner push events become progress of executions.

Push events arrive as EventBridge events (AWS Batch's "Batch Job State Change"), SQS batches
of them (a dead-letter queue being redriven), and authenticated HTTP pushes through the HTTP
API (Google Pub/Sub push with an OIDC token, signed webhooks from anything else).
:mod:`control_plane.ingress` turns each invocation into :class:`~runners.base.PushEvent` values,
checking the sender of an HTTP push; :func:`apply` is the one place they are applied.

Delivery is at-least-once and unordered, so every event is checked against the stored job: a
job already DONE ignores it, a non-terminal event only refreshes the job's last-news mark (the
reconciler then leaves it alone), and a terminal event reads the job's logs to the end and
advances its execution once. An event no runner recognises, or about a job this deployment
does not know, is logged and dropped: retrying it could never help.

An HTTP push is answered 200 ``{"applied": n, "received": m}`` once handled, dropped events
included (a Pub/Sub push answered otherwise is redelivered); a refused one gets the ingress's
4xx and nothing is applied; 503 when the store failed (a retry can help), 500 for a bug.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from control_plane.errors import StoreError
from control_plane.flows.loader import import_yaml
from control_plane.handlers import handler_logger
from control_plane.handlers.container import runtime
from control_plane.ingress import HttpRequest, Ingress, Refused, bus_events, http_request, response
from control_plane.runtime import Runtime
from control_plane.service.service import Service  # at init: see Runtime (ADR 0006)
from control_plane.tasks import limit_to_invocation
from runners.base import PushEvent

import_yaml()  # every request parses the flows it loads from their YAML: at init (ADR 0006)

__all__ = ["apply", "handle_event", "handler", "serve"]

logger = handler_logger("events")


def handle_event(rt: Runtime, event: Mapping[str, Any]) -> bool:
    """Apply one EventBridge event; True when it moved an execution (False: ignored, duplicate or early)."""
    source = event.get("source")
    return apply(rt, PushEvent(source if isinstance(source, str) else "", event))


def apply(rt: Runtime, event: PushEvent) -> bool:
    """Apply one push event, whatever carried it; True when it moved an execution."""
    service: Service = rt.service
    parsed = service.runners.parse_event(event)
    if parsed is None:
        logger.info("ignored an event no runner recognises", extra={"key": event.key})
        return False
    touch = timedelta(seconds=rt.settings.reconcile_after / 2)
    moved = service.job_event(parsed.event, touch_after=touch)
    # DEBUG, not INFO: one line per push event was ~430 bytes of CloudWatch Logs ingestion per
    # task, the largest log cost of a Batch task (issue 28). What an event did is in the
    # execution (its task run's state and attempt); AWS_LAMBDA_LOG_LEVEL=DEBUG brings it back.
    logger.debug(
        "job event",
        extra={
            "runner": parsed.runner,
            "job": parsed.event.name,
            "job_id": parsed.event.job_id,
            "state": parsed.event.status.state.value,
            "applied": moved,
        },
    )
    return moved


_ingress: tuple[Runtime, Ingress] | None = None


def ingress(rt: Runtime) -> Ingress:
    """The container's HTTP ingress over ``rt`` (kept warm with its key and secret caches)."""
    global _ingress
    if _ingress is None or _ingress[0] is not rt:
        built = Ingress(rt.settings, keys=lambda: rt.service.runners.event_keys(), secrets=rt.secrets)
        _ingress = (rt, built)
    return _ingress[1]


def serve(rt: Runtime, request: HttpRequest, gate: Ingress | None = None) -> dict[str, Any]:
    """Answer one HTTP push: authenticate it, apply its events, say how it went."""
    try:
        pushes = (gate or ingress(rt)).authenticate(request)
    except Refused as refused:
        logger.warning(
            "push refused",
            extra={"path": request.path, "status": refused.status, "reason": refused.message},
        )
        return response(refused.status, {"message": refused.message}, refused.headers)
    try:
        applied = sum(apply(rt, push) for push in pushes)
    except StoreError:  # throttled, unreachable: the sender's retry can succeed
        logger.exception("push not applied: the store failed", extra={"path": request.path})
        unavailable = {"message": "the store is unavailable, retry later", "requestId": request.request_id}
        return response(503, unavailable)
    except Exception:
        logger.exception("push not applied", extra={"path": request.path})
        return response(500, {"message": "internal error", "requestId": request.request_id})
    return response(200, {"applied": applied, "received": len(pushes)})


def handler(event: Any, context: Any) -> dict[str, Any]:
    limit_to_invocation(context)
    rt = runtime()
    try:
        request = http_request(event)
    except Refused as refused:
        return response(refused.status, {"message": refused.message})
    if request is not None:
        return serve(rt, request)
    applied = sum(apply(rt, e) for e in bus_events(event))
    return {"applied": applied}
