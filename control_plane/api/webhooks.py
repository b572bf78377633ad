"""``/webhooks/<namespace>/<flow_id>/<key>``: start a flow from an outside system, Kestra's Webhook trigger.

The key in the path is the credential, so this route is exempt from the API's auth and
guards itself:

* The key is compared with ``hmac.compare_digest`` against *every* enabled Webhook trigger
  of the flow (no early exit), so the response time does not reveal how much of a key was
  right or which trigger exists.
* An unknown flow, a disabled flow and a wrong key get the same 404 with the same message:
  a caller cannot probe which flows exist.
* Replays: with an ``Idempotency-Key`` header the execution id is derived from (namespace,
  flow, trigger, key) by a hash, so a second delivery collides with the first in the store
  (``create_execution`` refuses a duplicate id) and gets 409 with the first execution's id;
  nothing new is stored. Without the header every delivery starts an execution.

The execution's ``trigger`` variables are Kestra's: ``id``, ``type``, ``body`` (parsed JSON
when the body is JSON, else the text), ``headers`` and ``parameters`` (name -> list of
values). The ``authorization`` and ``cookie`` headers are left out: they would be stored
with the execution and shown to anyone who can read it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote

from aws_lambda_powertools.event_handler.api_gateway import Router

from control_plane.api import common, telemetry
from control_plane.api.models import WebhookAccepted
from control_plane.errors import ConflictError, NotFoundError

if TYPE_CHECKING:
    from control_plane.engine.model import Execution
    from control_plane.flows.models import Flow, Webhook
    from control_plane.runtime import Runtime

__all__ = ["NOT_FOUND", "deliver", "router", "webhook_execution_id"]

router = Router()

NOT_FOUND = "no webhook for this flow and key"
_DROPPED_HEADERS = frozenset({"authorization", "cookie"})


def webhook_execution_id(namespace: str, flow_id: str, trigger_id: str, idempotency_key: str) -> str:
    """22 hex characters (the length of every execution id), the same for the same delivery."""
    seed = json.dumps(["webhook", namespace, flow_id, trigger_id, idempotency_key])
    return hashlib.blake2b(seed.encode(), digest_size=11).hexdigest()


def _match(flow: Flow, key: str) -> Webhook | None:
    """The enabled Webhook trigger whose key is ``key``, comparing against all in constant time."""
    from control_plane.flows.models import Webhook  # loaded with ``flow`` already (ADR 0006)

    found: Webhook | None = None
    given = key.encode()
    for trigger in flow.triggers or []:
        if not isinstance(trigger, Webhook) or trigger.disabled:
            continue
        matches = hmac.compare_digest(trigger.key.encode(), given)  # always run: no early exit
        if matches and found is None:
            found = trigger
    return found


def _body(event: dict[str, Any]) -> Any:
    """Kestra's ``trigger.body``: a JSON value when the body parses as JSON, else the text.

    JSON that parses but nests deeper than ``MAX_JSON_DEPTH`` or holds a lone surrogate is
    refused (400) rather than stored: the execution it started could not be read back.
    """
    raw = common.body_bytes(event)
    if not raw:
        return None
    text = raw.decode("utf-8", "replace")
    if text.lstrip()[:1] in ("{", "[", '"') or common.media_type(event)[0].endswith("json"):
        try:
            return common.parse_json(text)
        except common.JsonRefused as exc:
            raise common.ApiError(400, f"webhook body refused: {exc}") from None
        except ValueError:  # not JSON after all (or NaN, which JSON does not have): the text
            pass
    return text


def _headers(event: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in (event.get("headers") or {}).items():
        lowered = str(name).lower()
        if lowered not in _DROPPED_HEADERS:
            out.setdefault(lowered, []).extend(part.strip() for part in str(value).split(","))
    return out


def _parameters(event: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in parse_qsl(event.get("rawQueryString") or "", keep_blank_values=True):
        out.setdefault(name, []).append(value)
    return out


def deliver(rt: Runtime, namespace: str, flow_id: str, key: str) -> Execution:
    """Start ``namespace.flow_id`` through its Webhook trigger whose key is ``key`` (both webhook routes).

    404 (the same for an unknown flow, a disabled one and a wrong key), 409 for a replayed
    ``Idempotency-Key``; the execution otherwise.
    """
    from control_plane.flows.inputs import trigger_inputs

    event = router.current_event.raw_event
    telemetry.keys(namespace=namespace, flow_id=flow_id)
    try:
        flow = rt.service.flow(namespace, flow_id)
    except NotFoundError:
        flow = None
    trigger = _match(flow, unquote(key)) if flow is not None and not flow.disabled else None
    if flow is None or trigger is None:
        telemetry.metrics.add_metric(name="WebhooksRejected", unit="Count", value=1)
        raise common.ApiError(404, NOT_FOUND)
    idempotency = common.header(event, "idempotency-key")
    execution_id = (
        webhook_execution_id(namespace, flow_id, trigger.id, idempotency)
        if idempotency
        else rt.service.new_id()
    )
    variables = {
        "id": trigger.id,
        "type": trigger.type,
        "body": _body(event),
        "headers": _headers(event),
        "parameters": _parameters(event),
    }
    telemetry.keys(execution_id=execution_id)
    try:
        execution = rt.service.start(
            namespace,
            flow_id,
            trigger_inputs(flow, trigger.inputs, variables),
            revision=flow.revision,
            trigger=variables,
            execution_id=execution_id,
        )
    except ConflictError:
        telemetry.metrics.add_metric(name="WebhooksReplayed", unit="Count", value=1)
        raise common.ApiError(
            409,
            f"webhook delivery with Idempotency-Key {idempotency!r} already received",
            extra={"executionId": execution_id},
        ) from None
    telemetry.metrics.add_metric(name="ExecutionsStarted", unit="Count", value=1)
    return execution


@router.route(
    "/webhooks/<namespace>/<flow_id>/<key>",
    method=["POST", "GET", "PUT"],
    summary="Start a flow through its Webhook trigger",
    description="No API auth: the key is the credential. Idempotency-Key header: a replay gets 409.",
    tags=["webhooks"],
)
def webhook(rt: common.Served, namespace: str, flow_id: str, key: str) -> WebhookAccepted:
    execution = deliver(rt, namespace, flow_id, key)
    return WebhookAccepted(
        id=execution.id, namespace=execution.namespace, flowId=execution.flow_id, state=str(execution.state)
    )
