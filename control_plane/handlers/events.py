"""The ``events`` Lambda: runner push events (EventBridge) become progress of executions.

AWS Batch's "Batch Job State Change" is the first source; every runner that declares
``event_sources`` adds its own. Delivery is at-least-once and unordered, so every event is
checked against the stored job: a job already DONE ignores it, a non-terminal event only
refreshes the job's last-news mark (the reconciler then leaves it alone), and a terminal
event reads the job's logs to the end and advances its execution once. An event no runner
recognises, or about a job this deployment does not know, is logged and dropped: retrying it
could never help.

Accepted shapes: one EventBridge event (the rule's target), or an SQS batch whose records
carry events in their bodies (a dead-letter queue being redriven).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

from control_plane.handlers import handler_logger
from control_plane.handlers.container import runtime
from control_plane.runtime import Runtime
from control_plane.service.service import Service  # at init: see Runtime (ADR 0006)
from runners.base import PushEvent

__all__ = ["handle_event", "handler"]

logger = handler_logger("events")


def _events(payload: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(payload, Mapping) and isinstance(payload.get("Records"), list):
        for record in payload["Records"]:
            body = record.get("body") if isinstance(record, Mapping) else None
            try:
                event = json.loads(body) if isinstance(body, str) else None
            except json.JSONDecodeError:
                event = None
            if isinstance(event, Mapping):
                yield event
            else:
                logger.warning("dropped an SQS record without a JSON event body")
    elif isinstance(payload, Mapping):
        yield payload
    else:
        logger.warning("dropped a payload that is not an event", extra={"kind": type(payload).__name__})


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
    logger.info(
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


def handler(event: Any, context: Any) -> dict[str, Any]:
    rt = runtime()
    applied = sum(handle_event(rt, e) for e in _events(event))
    return {"applied": applied}
