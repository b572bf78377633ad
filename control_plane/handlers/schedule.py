"""The ``schedule`` Lambda: Schedule and Http triggers, fired by EventBridge Scheduler (or by the tick).

A schedule created for one trigger invokes this function with its target input
``{"namespace": ..., "flowId": ..., "triggerId": ...}``; an empty payload evaluates every
deployed Schedule trigger and polls every due Http trigger (the tick does that each minute
anyway, so a schedule the Scheduler misses still fires, late but once). Each date starts
exactly one execution: its id is derived from the trigger and the date, so a date fired twice
is a no-op; an Http trigger's poll is claimed once (service/http_triggers.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from control_plane.flows.loader import import_yaml
from control_plane.handlers import handler_logger
from control_plane.handlers.container import runtime
from control_plane.service.service import Service  # at init: see Runtime (ADR 0006)
from control_plane.tasks import limit_to_invocation

import_yaml()  # every request parses the flows it loads from their YAML: at init (ADR 0006)

__all__ = ["handler"]

logger = handler_logger("schedule")

_FIELDS = {"namespace": "namespace", "flowId": "flow_id", "triggerId": "trigger_id"}


def handler(event: Any, context: Any) -> dict[str, Any]:
    limit_to_invocation(context)
    payload = event if isinstance(event, Mapping) else {}
    selection: dict[str, str] = {}
    for field, name in _FIELDS.items():
        value = payload.get(field)
        if value is None:
            continue
        if not isinstance(value, str) or not value:
            logger.error("bad schedule payload: %s must be a non-empty string", field)
            return {"started": [], "error": f"{field} must be a non-empty string"}
        selection[name] = value
    if "trigger_id" in selection and not {"namespace", "flow_id"} <= selection.keys():
        return {"started": [], "error": "triggerId needs namespace and flowId"}
    rt = runtime()
    service: Service = rt.service
    started = service.fire_schedules(**selection)
    started += service.poll_http_triggers(**selection)  # an Http trigger on a rate(...) schedule
    # What rides along with the started executions (a submit's warning, a non-evented job's
    # handle) is written now, at the end of the call, as the api and events functions do: a
    # warm container that kept it would write it with some later save of the same execution
    # (never, in this function) or lose it. Lazy handles (an evented runner's) are dropped.
    rt.flush()
    logger.info("schedules fired", extra={**selection, "started": started})
    return {"started": started}
