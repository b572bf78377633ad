"""The ``tick`` Lambda, on an EventBridge rate rule (one minute): the control plane's heartbeat.

Each tick fires due timers (retry delays, Sleep, Pause and task timeouts), submits jobs a
crashed Lambda left in the outbox, polls jobs whose push events have gone quiet (one batched
call per runner), and starts due Schedule triggers. It is also the fallback for everything
event-driven: a lost EventBridge event costs a delay of at most ``reconcile_after``, never a
stuck execution. ``squall server`` calls :func:`run_tick` in a loop.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from control_plane.flows.loader import import_yaml
from control_plane.handlers import handler_logger
from control_plane.handlers.container import runtime
from control_plane.runtime import Runtime
from control_plane.service.service import Service  # at init: see Runtime (ADR 0006)
from control_plane.tasks import limit_to_invocation

import_yaml()  # every request parses the flows it loads from their YAML: at init (ADR 0006)

__all__ = ["handler", "run_tick"]

logger = handler_logger("tick")


def run_tick(rt: Runtime) -> dict[str, Any]:
    """One pass; returns what it did (logged by the Lambda, asserted by tests)."""
    settings = rt.settings
    service: Service = rt.service
    report = service.tick(
        reconcile_after=timedelta(seconds=settings.reconcile_after),
        submit_grace=timedelta(seconds=settings.submit_grace),
        recover_limit=settings.tick_submits,
        within=settings.tick_seconds,
    )
    started = service.fire_schedules()
    http_triggered = service.poll_http_triggers()
    return {
        "timersFired": report.timers_fired,
        "recovered": report.recovered,
        "polled": report.polled,
        "ended": report.ended,
        "cancelling": report.cancelling,
        "scheduled": started,
        "httpTriggered": http_triggered,
    }


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    limit_to_invocation(context)
    result = run_tick(runtime())
    logger.info("tick", extra=result)
    return result
