"""Event ingress: a raw ``events`` invocation becomes authenticated push events.

The ``events`` function is reached three ways, and this package is the one place that tells
them apart and vouches for what they carry; :func:`control_plane.handlers.events.apply` then
applies each push event, whatever carried it::

    EventBridge event ──────────────┐  no check here: only the rules and queues IAM lets
    SQS batch of such events ───────┤  invoke the function can send these
                                    ├─> PushEvent(key, body, attributes) ─> events.apply
    HTTP (API Gateway, payload 2.0) │
      POST /events/pubsub ──────────┤  Google Pub/Sub push: OIDC ID token (ingress.pubsub)
      POST /events/webhook/<key> ───┘  signed webhook: HMAC-SHA256 (ingress.webhook)

Routing keys. An EventBridge event is routed by its ``source`` (``aws.batch``). A Pub/Sub
push is routed by ``gcp.pubsub``, whatever the subscription: the Google runners tell their
notifications apart by the message (its attributes), and one fixed key needs no per-
subscription configuration kept in step with Terraform. A webhook is routed by the ``<key>``
in its path, which must be a key some installed runner declares (``Evented.event_keys``):
the sender chooses which runner reads it, never a key nobody handles.

Refusals (:class:`Refused`) carry their HTTP status and a message naming what failed, never
which part of a secret::

    400  the body is not what the route takes (not JSON, not a Pub/Sub envelope)
    401  no credentials, or credentials that do not verify (signature, expiry, replay window)
    403  a genuine token, but not for us (audience, issuer, service account)
    404  no such route, the route is not configured, or a webhook key no runner declares
    405  not POST;  413  body over SQUALL_MAX_BODY_BYTES
    503  what the check needs is unreachable (Google's keys, the secrets backend): retry

Nothing is applied unless the whole request verified. Only this package's light modules load
at the function's cold start; PyJWT and rsa load with the first Pub/Sub push, boto3
with the first webhook secret read from a Secrets Manager ARN.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from msgspec import Struct, field

from control_plane.errors import SquallError
from runners.base import PushEvent

if TYPE_CHECKING:
    from control_plane.ingress.pubsub import PubSubVerifier
    from control_plane.ingress.webhook import WebhookVerifier
    from control_plane.runtime import Settings
    from control_plane.secrets import SecretChain

__all__ = [
    "PUBSUB_KEY",
    "PUBSUB_PATH",
    "WEBHOOK_PREFIX",
    "HttpRequest",
    "Ingress",
    "Refused",
    "bus_events",
    "http_request",
    "response",
]

PUBSUB_KEY = "gcp.pubsub"
PUBSUB_PATH = "/events/pubsub"
WEBHOOK_PREFIX = "/events/webhook/"

# A child of the events function's logger (handlers.handler_logger("events")): its level and
# JSON lines, without this package importing the layer above it.
logger = logging.getLogger("squall.events.ingress")


class Refused(SquallError):
    """An HTTP push turned away: ``status`` and a message saying what failed (sent to the caller)."""

    def __init__(self, status: int, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


class HttpRequest(Struct, frozen=True):
    """One HTTP request, from an API Gateway HTTP API (or function URL) payload 2.0 event.

    ``headers`` are lowercased (API Gateway already does; a function URL too); ``body`` is the
    bytes as sent, base64 undone: a webhook's signature covers exactly these.
    """

    method: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    request_id: str | None = None

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


def http_request(invocation: Any) -> HttpRequest | None:
    """The request an HTTP invocation carries; None for anything else (EventBridge, SQS).

    Raises :class:`Refused` (400) for a body marked base64 that is not.
    """
    if not isinstance(invocation, Mapping) or invocation.get("version") != "2.0":
        return None
    context = invocation.get("requestContext")
    http = context.get("http") if isinstance(context, Mapping) else None
    if not isinstance(http, Mapping):
        return None
    path = str(invocation.get("rawPath") or http.get("path") or "/")
    stage = context.get("stage") if isinstance(context, Mapping) else None
    if stage and stage != "$default" and path.startswith(f"/{stage}/"):
        path = path[len(stage) + 1 :]
    headers = {str(k).lower(): str(v) for k, v in (invocation.get("headers") or {}).items()}
    raw = invocation.get("body") or ""
    if invocation.get("isBase64Encoded"):
        try:
            body = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise Refused(400, "the body is marked isBase64Encoded but is not valid base64") from None
    else:
        body = str(raw).encode("utf-8", "surrogatepass")
    return HttpRequest(
        method=str(http.get("method") or "").upper(),
        path=path,
        headers=headers,
        body=body,
        request_id=context.get("requestId") if isinstance(context, Mapping) else None,
    )


def bus_events(invocation: Any) -> Iterator[PushEvent]:
    """The push events of an EventBridge event or of an SQS batch of them (a redriven DLQ)."""
    if isinstance(invocation, Mapping) and isinstance(invocation.get("Records"), list):
        for record in invocation["Records"]:
            body = record.get("body") if isinstance(record, Mapping) else None
            try:
                event = json.loads(body) if isinstance(body, str) else None
            except json.JSONDecodeError:
                event = None
            if isinstance(event, Mapping):
                yield _bus_event(event)
            else:
                logger.warning("dropped an SQS record without a JSON event body")
    elif isinstance(invocation, Mapping):
        yield _bus_event(invocation)
    else:
        logger.warning("dropped a payload that is not an event", extra={"kind": type(invocation).__name__})


def _bus_event(event: Mapping[str, Any]) -> PushEvent:
    source = event.get("source")
    return PushEvent(source if isinstance(source, str) else "", event)


def response(
    status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """A payload-2.0 HTTP response with a JSON body."""
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", **(headers or {})},
        "body": json.dumps(body, separators=(",", ":")),
        "isBase64Encoded": False,
    }


def _json(body: bytes, what: str) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise Refused(400, f"{what} is not JSON: {exc}") from None


class Ingress:
    """The HTTP ingress of one container: its verifiers, their key and secret caches.

    ``keys`` answers which routing keys installed runners declare (the registry's
    :meth:`~control_plane.service.runners.RunnerRegistry.event_keys`); ``secrets`` is the
    deployment's ``secret()`` chain, through which webhook secrets given by name are read.
    Verifiers are built on first use: a container that only ever sees webhooks never imports
    PyJWT. Thread-safe as its verifiers are (``squall server`` may share one).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        keys: Callable[[], frozenset[str]],
        secrets: SecretChain | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.settings = settings
        self._keys = keys
        self._secrets = secrets
        self._clock = clock
        self._pubsub: PubSubVerifier | None = None
        self._webhook: WebhookVerifier | None = None

    def authenticate(self, request: HttpRequest) -> list[PushEvent]:
        """The push events of a verified request; :class:`Refused` otherwise (nothing to apply)."""
        if request.path != PUBSUB_PATH and not request.path.startswith(WEBHOOK_PREFIX):
            raise Refused(404, f"no event ingress at {request.path}")
        if request.method != "POST":
            raise Refused(405, "event ingress takes POST only", headers={"Allow": "POST"})
        if len(request.body) > self.settings.max_body_bytes:
            raise Refused(
                413,
                f"body too large: {len(request.body)} bytes, at most {self.settings.max_body_bytes} accepted",
            )
        if request.path == PUBSUB_PATH:
            return [self._pubsub_event(request)]
        return self._webhook_events(request, request.path.removeprefix(WEBHOOK_PREFIX))

    # -- Pub/Sub

    def pubsub(self) -> PubSubVerifier:
        if self._pubsub is None:
            settings = self.settings
            if settings.pubsub_audience is None or settings.pubsub_service_account is None:
                raise Refused(404, "Pub/Sub push ingress is not configured on this deployment")
            from control_plane.ingress.pubsub import KeySet, PubSubVerifier

            self._pubsub = PubSubVerifier(
                audience=settings.pubsub_audience,
                service_account=settings.pubsub_service_account,
                keys=KeySet(settings.pubsub_certs_url),
                **({"clock": self._clock} if self._clock is not None else {}),
            )
        return self._pubsub

    def _pubsub_event(self, request: HttpRequest) -> PushEvent:
        claims = self.pubsub().verify(request.header("authorization"))
        envelope = _json(request.body, "the Pub/Sub push body")
        message = envelope.get("message") if isinstance(envelope, Mapping) else None
        if not isinstance(message, Mapping):
            raise Refused(400, 'not a Pub/Sub push envelope: no "message" object')
        attributes = message.get("attributes") or {}
        if not isinstance(attributes, Mapping) or not all(isinstance(v, str) for v in attributes.values()):
            raise Refused(400, "Pub/Sub message attributes must be an object of strings")
        body = _pubsub_data(message.get("data"))
        logger.info(
            "Pub/Sub push verified",
            extra={
                "subscription": envelope.get("subscription"),
                "message_id": message.get("messageId"),
                "sender": claims.get("email"),
            },
        )
        return PushEvent(PUBSUB_KEY, body, {str(k): v for k, v in attributes.items()})

    # -- webhooks

    def webhook(self) -> WebhookVerifier:
        if self._webhook is None:
            if not self.settings.webhook_secrets:
                raise Refused(404, "signed webhook ingress is not configured on this deployment")
            from control_plane.ingress.webhook import WebhookSecrets, WebhookVerifier

            secrets = WebhookSecrets(self.settings.webhook_secrets, chain=self._secrets)
            clock = {"clock": self._clock} if self._clock is not None else {}
            self._webhook = WebhookVerifier(secrets, **clock)
        return self._webhook

    def _webhook_events(self, request: HttpRequest, key: str) -> list[PushEvent]:
        self.webhook().verify(request.header("x-squall-signature"), request.body)
        if key not in self._keys():  # after the signature: an unsigned caller learns nothing
            raise Refused(404, f"no installed runner takes events with key {key!r}")
        document = _json(request.body, "the webhook body")
        documents = document if isinstance(document, list) else [document]
        if not documents or not all(isinstance(d, Mapping) for d in documents):
            raise Refused(400, "a webhook body is a JSON object, or an array of objects (one event each)")
        return [PushEvent(key, d) for d in documents]


def _pubsub_data(data: Any) -> Mapping[str, Any]:
    """The message's ``data``: its JSON object; ``{}`` when absent; ``{"data": text}`` when not JSON.

    Some Google services notify in the attributes and put prose in ``data``: such a message is
    still a valid notification, so it reaches the runners rather than being refused (a refused
    push is redelivered until it expires).
    """
    if data is None or data == "":
        return {}
    if not isinstance(data, str):
        raise Refused(400, "Pub/Sub message data must be a base64 string")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise Refused(400, "Pub/Sub message data is not valid base64") from None
    try:
        decoded = json.loads(raw)
    except (ValueError, RecursionError):
        decoded = None
    if isinstance(decoded, Mapping):
        return decoded
    return {"data": raw.decode("utf-8", "replace")}
