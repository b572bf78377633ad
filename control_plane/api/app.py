"""The HTTP API (API Gateway HTTP API, payload 2.0): one :class:`Api` over the runtime it serves.

``Api(runtime).handle(event, context)`` answers one request. The ``api`` Lambda
(:mod:`control_plane.handlers.api`) builds one over its container's runtime and ``squall
server`` one over its own; the API never builds, finds or caches a runtime itself, and
imports nothing from :mod:`control_plane.handlers`.

One powertools resolver (:data:`app`, built once per process: the routes do not depend on
the runtime) with a ``Router`` per resource: Kestra's tenant-scoped routes
(:mod:`control_plane.api.kestra_flows`, ``kestra_executions``, ``kestra_logs``...) and
Squall's ``/webhooks`` (:mod:`control_plane.api.webhooks`). Squall's older flows and
executions routes without a tenant under ``/api/v1`` are gone (ADR 0011); a request to one
gets a 404 that names the tenant path to use. :meth:`Api.handle` puts its runtime in the
request's resolver context and a route receives it through powertools' dependency
injection (``rt: common.Served``, that is
``Annotated[Runtime, Depends(common.served_runtime)]``); two ``Api`` objects over two
runtimes can serve requests at once. Domain errors become JSON responses in one place
(:func:`_register_errors`), so a route is a few lines of calls into the service.

The web UI's static files (``/ui``, :mod:`control_plane.ui`) are answered first, before auth
and routing: they hold no data, and the browser must load them before it has credentials.

Before any route runs, :meth:`Api.handle` checks what does not depend on the route:

1. **auth**, per ``SQUALL_AUTH``: ``gateway`` requires that an API Gateway authorizer (JWT,
   IAM or Lambda) ran for the request; a route deployed without one is refused (401) instead
   of being open by accident. ``token`` requires ``Authorization: Bearer <SQUALL_API_TOKEN>``,
   or basic credentials whose password is that token (Kestra's clients send either),
   compared in constant time. ``none`` is the explicit opt-out. Webhooks carry their own key
   and ``/openapi.json`` and ``/api/v1/configs`` are public: they describe the API and the
   server (its version), hold no data, and tools fetch them before any credentials (Kestra's
   open-source server serves ``configs`` to anonymous callers too);
2. **size**: a body over ``SQUALL_MAX_BODY_BYTES`` is 413, before it is decoded.

After the route, jobs the request submitted have their handles written (``service.flush``),
EMF metrics are flushed if any were added, and one structured log line records the request
with its ``execution_id``/``flow_id``/``namespace`` keys. Any exception a route did not
expect is a 500 ``{"message": "internal error", "requestId": ...}``: the traceback goes to
the log, never to the client.

Imports stay lean for cold starts: no boto3 (the DynamoDB store imports it when built), no
rich or typer, and not the service or the flow language, which a read never needs (``Runtime``
builds the service on first use; ADR 0006).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Mapping
from contextvars import ContextVar
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import BaseRouter, ResponseBuilder, Route
from aws_lambda_powertools.event_handler.exceptions import NotFoundError as NoRouteError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

from control_plane import ui
from control_plane.api import (
    common,
    kestra_executions,
    kestra_flow_bulk,
    kestra_flows,
    kestra_kv,
    kestra_logs,
    kestra_namespace_files,
    kestra_namespaces,
    kestra_server,
    telemetry,
    tenants,
    webhooks,
)
from control_plane.errors import (
    ConflictError,
    EngineError,
    ExpressionError,
    FlowValidationError,
    InputError,
    NotFoundError,
    ServiceError,
)
from control_plane.runtime import Runtime, Settings

__all__ = [
    "PUBLIC_PATHS",
    "WEBHOOK_PREFIX",
    "Api",
    "app",
    "is_webhook",
    "openapi_document",
    "read_only",
    "route_path",
    "unserved",
]

logger = telemetry.logger
PUBLIC_PATHS = ("/openapi.json", "/api/v1/configs")
WEBHOOK_PREFIX = "/webhooks/"
# Exactly Kestra's webhook route, three segments after webhook/: a prefix would also exempt
# POST /api/v1/main/executions/webhook/{flow} (starting a flow of namespace "webhook").
_KESTRA_WEBHOOK = re.compile(r"^/api/v1/[^/]+/executions/webhook/[^/]+/[^/]+/[^/]+$")


def is_webhook(path: str) -> bool:
    """Whether ``path`` is a webhook route: Squall's ``/webhooks/...`` or Kestra's
    ``/api/v1/{tenant}/executions/webhook/...``. Both carry their key in the path, so they are
    exempt from the API's auth, and a GET on them starts an execution (it is not a read)."""
    return path.startswith(WEBHOOK_PREFIX) or _KESTRA_WEBHOOK.match(path) is not None


_WHOLE_LOGS = re.compile(r"^/api/v1/([^/]+)/logs/([^/]+)(?:/download)?$")
_REMOVED = re.compile(r"^/api/v1/(flows|executions)(/|$)")
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def read_only(event: Mapping[str, Any]) -> bool:
    """Whether the request only reads: ``squall server`` runs these without the service lock.

    Every GET, HEAD and OPTIONS route reads the store alone, except a webhook's GET, which
    starts an execution.
    """
    method = ((event.get("requestContext") or {}).get("http") or {}).get("method")
    return method in READ_METHODS and not is_webhook(route_path(event))


class _RequestState:
    """What powertools keeps about the request being resolved (a plain class: ADR 0006)."""

    __slots__ = ("context", "event", "lambda_context", "processed_stack_frames")

    def __init__(
        self, event: Any = None, lambda_context: Any = None, context: dict[str, Any] | None = None
    ) -> None:
        self.event = event
        self.lambda_context = lambda_context
        self.context: dict[str, Any] = {} if context is None else context
        self.processed_stack_frames: list[str] = []


class _Resolver(APIGatewayHttpResolver):
    """powertools' resolver with its per-request state kept per thread.

    The base class keeps the current event in class attributes of ``BaseRouter`` and the
    matched route in ``self.context``, so two threads resolving at once (``squall server``
    serves reads concurrently) would read each other's event and route. As powertools' own
    ASGI resolver (``HttpResolverLocal``) does, these are properties over a ContextVar here,
    set for the duration of :meth:`resolve`. A route's middleware stack is built on its first
    call, and two threads building it at once would wrap the validation twice: a lock makes
    that once. ``tests/integration/test_server_limits.py`` pins this against powertools.
    """

    def __init__(self, **options: Any) -> None:
        self._startup = _RequestState()
        self._request_state: ContextVar[_RequestState | None] = ContextVar("squall_request", default=None)
        self._build_lock = threading.Lock()
        super().__init__(**options)

    @property
    def _state(self) -> _RequestState:
        return self._request_state.get() or self._startup

    @property
    def current_event(self) -> Any:
        return self._state.event or BaseRouter.current_event

    @current_event.setter
    def current_event(self, value: Any) -> None:
        self._state.event = value

    @property
    def lambda_context(self) -> Any:
        return self._state.lambda_context or BaseRouter.lambda_context

    @lambda_context.setter
    def lambda_context(self, value: Any) -> None:
        self._state.lambda_context = value

    @property
    def context(self) -> dict[str, Any]:
        return self._state.context

    @context.setter
    def context(self, value: dict[str, Any]) -> None:
        self._state.context = value

    @property
    def processed_stack_frames(self) -> list[str]:
        return self._state.processed_stack_frames

    @processed_stack_frames.setter
    def processed_stack_frames(self, value: list[str]) -> None:
        self._state.processed_stack_frames = value

    def resolve(self, event: Mapping[str, Any], context: Any, **request_context: Any) -> dict[str, Any]:
        """Resolve ``event``; ``request_context`` joins the resolver context of this request only."""
        state = _RequestState(
            event=self._to_proxy_event(dict(event)),
            lambda_context=context,
            context={**self._startup.context, **request_context},
        )
        token = self._request_state.set(state)
        try:
            return super().resolve(event, context)
        finally:
            self._request_state.reset(token)

    def _call_route(self, route: Route, route_arguments: dict[str, str]) -> ResponseBuilder:
        if not route._middleware_stack_built:
            with self._build_lock:
                if not route._middleware_stack_built:
                    route._build_middleware_stack(router_middlewares=self._router_middlewares, app=self)
        return super()._call_route(route, route_arguments)


app = _Resolver(enable_validation=True, response_validation_error_http_code=HTTPStatus.INTERNAL_SERVER_ERROR)
app.include_router(webhooks.router)
# Kestra's tenant-scoped routes (/api/v1/{tenant}/...): a tenant named "flows" or "executions" is
# one like any other, the unknown tenant's 404 (the untenanted routes that took those names are gone).
app.include_router(kestra_namespaces.router)  # before flows: flows/distinct-namespaces is literal
app.include_router(kestra_flow_bulk.router)  # before flows: /flows/export/by-query is not a flow
app.include_router(kestra_flows.router)
app.include_router(kestra_executions.router)
app.include_router(kestra_logs.router)
app.include_router(kestra_kv.router)
app.include_router(kestra_namespace_files.router)
app.include_router(kestra_server.router)


def _error(
    status: int, message: str, headers: Mapping[str, str] | None = None, **extra: Any
) -> Response[Any]:
    body = {"message": message, **extra}
    route = app.context.get("_route")
    if route is not None and tenants.is_scoped(route):  # Kestra's clients read its error envelope
        body = tenants.kestra_envelope(app.current_event.path, body)
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=body,
        headers=dict(headers or {}),
    )


def _request_id() -> str | None:
    event = app.current_event.raw_event if app.current_event is not None else {}
    return (event.get("requestContext") or {}).get("requestId")


def _register_errors() -> None:
    @app.exception_handler(common.ApiError)
    def api_error(exc: common.ApiError) -> Response[Any]:
        return _error(exc.status, exc.message, exc.headers, **exc.extra)

    @app.exception_handler(FlowValidationError)
    def invalid_flow(exc: FlowValidationError) -> Response[Any]:
        count = len(exc.violations)
        errors = [
            {"line": v.line, "column": v.column, "path": v.path, "message": v.message} for v in exc.violations
        ]
        return _error(422, f"invalid flow: {count} violation{'' if count == 1 else 's'}", errors=errors)

    @app.exception_handler(InputError)
    def invalid_inputs(exc: InputError) -> Response[Any]:
        return _error(422, "; ".join(exc.messages), errors=[{"message": m} for m in exc.messages])

    @app.exception_handler(ExpressionError)
    def bad_expression(exc: ExpressionError) -> Response[Any]:
        return _error(422, str(exc))

    @app.exception_handler(NotFoundError)
    def not_found(exc: NotFoundError) -> Response[Any]:
        return _error(404, str(exc))

    @app.exception_handler([ServiceError, EngineError])
    def refused(exc: Exception) -> Response[Any]:
        return _error(409, str(exc))

    @app.exception_handler(ConflictError)
    def conflict(exc: ConflictError) -> Response[Any]:
        return _error(409, f"the record changed while this request ran, try again: {exc}")

    @app.exception_handler(RequestValidationError)
    def bad_parameters(exc: RequestValidationError) -> Response[Any]:
        errors = []
        for err in exc.errors():
            loc = [str(part) for part in err.get("loc", ())]
            where, name = (loc[0], loc[1]) if len(loc) > 1 else ("request", "".join(loc))
            item = f" (value {int(loc[2]) + 1})" if len(loc) > 2 and loc[2].isdigit() else ""
            errors.append({"name": name, "in": where, "message": f"{err.get('msg', 'invalid')}{item}"})
        detail = "; ".join(f"{e['in']} parameter '{e['name']}': {e['message']}" for e in errors)
        return _error(422, f"invalid {detail}", errors=errors)

    @app.not_found
    def no_route(exc: NoRouteError) -> Response[Any]:
        event = app.current_event
        message = f"no route for {event.http_method} {event.path}"
        if _REMOVED.match(event.path):
            message += (
                "; Squall's flows and executions routes without a tenant were removed:"
                f" use Kestra's /api/v1/{tenants.DEFAULT_TENANT}/... (docs/api.md)"
            )
        return _error(404, message)

    @app.exception_handler(Exception)
    def internal(exc: Exception) -> Response[Any]:
        telemetry.metrics.add_metric(name="InternalErrors", unit="Count", value=1)
        logger.exception("unhandled error")
        return _error(500, "internal error", requestId=_request_id())


_register_errors()


# ---------------------------------------------------------------- OpenAPI

_openapi: str | None = None
_openapi_lock = threading.Lock()


def openapi_document() -> str:
    """The OpenAPI 3.1 document, generated once per container from the routes and models."""
    global _openapi
    if _openapi is not None:
        return _openapi
    with _openapi_lock:  # concurrent first readers wait for one generation instead of racing
        if _openapi is not None:
            return _openapi
        from importlib.metadata import PackageNotFoundError, version

        from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer

        try:
            squall_version = version("squall")
        except PackageNotFoundError:
            squall_version = "0.0.0"
        schema = json.loads(
            app.get_openapi_json_schema(
                title="Squall",
                version=squall_version,
                description="Serverless orchestrator for Kestra-style YAML flows: deploy flows, start and"
                " control executions, read logs; webhooks start flows from outside.",
                security_schemes={"bearerAuth": HTTPBearer()},
                security=[{"bearerAuth": []}],
            )
        )
        _document_errors(schema)
        _openapi = json.dumps(schema, separators=(",", ":"))
    return _openapi


_ERRORS = {
    "400": "malformed body (JSON with its line and column, UTF-8, base64, multipart), JSON nested too"
    " deep, or a response over SQUALL_MAX_RESPONSE_BYTES (ask for smaller pages)",
    "401": "missing or wrong credentials",
    "404": "unknown flow, execution or route",
    "409": "the execution's state refuses the request, or a replayed webhook",
    "413": "body over SQUALL_MAX_BODY_BYTES",
    "415": "a Content-Type this endpoint does not take",
    "422": "invalid flow, inputs or query parameters",
    "500": "internal error: the traceback is in the log under requestId",
}


def _document_errors(schema: dict[str, Any]) -> None:
    """Replace powertools' own validation-error schemas with Squall's one error body."""
    from control_plane.api.models import ErrorBody

    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
        components.pop(name, None)
    body = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(body.pop("$defs", {}))
    components["ErrorBody"] = body
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    for path, operations in schema.get("paths", {}).items():
        webhook = is_webhook(path)
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            for code, description in _ERRORS.items():
                if code == "401" and webhook:
                    continue
                responses[code] = {"description": description, "content": error}
            if webhook:  # the key in the path is the credential
                operation["security"] = []


@app.get("/openapi.json", include_in_schema=False, enable_validation=False)
def openapi_json() -> Response[str]:
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=openapi_document())


# ---------------------------------------------------------------- the API over a runtime


def _plain(status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A payload-2.0 response built without the resolver (auth and size run before routing)."""
    return {
        "statusCode": status,
        "headers": {"Content-Type": content_types.APPLICATION_JSON, **(headers or {})},
        "body": json.dumps(body, separators=(",", ":")),
        "isBase64Encoded": False,
        "cookies": [],
    }


def route_path(event: Mapping[str, Any]) -> str:
    """The path the routes see: ``rawPath`` without a named stage prefix (as powertools strips it)."""
    path = str(event.get("rawPath") or "/")
    stage = (event.get("requestContext") or {}).get("stage")
    if stage and stage != "$default" and path.startswith(f"/{stage}/"):
        return path[len(stage) + 1 :]
    return path


def _authorized(event: Mapping[str, Any], settings: Settings) -> dict[str, Any] | None:
    """None when the request may go on, else the 401 response."""
    import hmac

    if settings.auth == "none":
        return None
    if settings.auth == "gateway":
        authorizer = (event.get("requestContext") or {}).get("authorizer")
        if isinstance(authorizer, Mapping) and any(k in authorizer for k in ("jwt", "iam", "lambda")):
            return None
        return _plain(401, {"message": "unauthorized: no API Gateway authorizer ran for this route"})
    expected = settings.api_token.get_secret_value() if settings.api_token is not None else ""
    given = common.header(event, "authorization") or ""
    scheme, _, token = given.strip().partition(" ")
    if not given:
        return _plain(
            401,
            {"message": "unauthorized: send Authorization: Bearer <token>"},
            {"WWW-Authenticate": "Bearer"},
        )
    if scheme.lower() == "basic":  # Kestra's clients' other scheme: any user name, the token as password
        token = _basic_password(token.strip())
        scheme = "bearer"
    matches = hmac.compare_digest(token.strip().encode(), expected.encode())
    if scheme.lower() != "bearer" or not expected or not matches:
        return _plain(
            401,
            {"message": "unauthorized: invalid bearer token"},
            {"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    return None


def _basic_password(credentials: str) -> str:
    """The password of HTTP basic credentials (``base64(user:password)``); "" when they do not decode."""
    import base64
    import binascii

    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return ""
    _, sep, password = decoded.partition(":")
    return password if sep else ""


def _gate(event: Mapping[str, Any], settings: Settings) -> dict[str, Any] | None:
    path = route_path(event)
    if path not in PUBLIC_PATHS and not is_webhook(path):
        refused = _authorized(event, settings)
        if refused is not None:
            telemetry.metrics.add_metric(name="AuthRejected", unit="Count", value=1)
            return refused
    size = common.body_size(event)
    if size > settings.max_body_bytes:
        return _plain(
            413,
            {"message": f"request body too large: {size} bytes, at most {settings.max_body_bytes} accepted"},
        )
    return None


def _response_size(response: Mapping[str, Any], limit: int) -> int:
    """The body's size in bytes, counted exactly only when it could be near ``limit``."""
    body = str(response.get("body") or "")
    if response.get("isBase64Encoded"):
        return len(body) * 3 // 4
    if len(body) > limit or len(body) * 4 <= limit:  # UTF-8 takes 1 to 4 bytes a character
        return len(body)
    return len(body.encode("utf-8", "surrogatepass"))


def _bounded(response: dict[str, Any], event: Mapping[str, Any], limit: int) -> dict[str, Any]:
    """``response``, or a 400 saying why when its body is over ``limit`` bytes: never a cut body.

    The routes page what can grow (task runs, logs, listings), so this is the last guard: a
    page asked too large, or one item bigger than the limit by itself.
    """
    size = _response_size(response, limit)
    if size <= limit:
        return response
    telemetry.metrics.add_metric(name="ResponsesTooLarge", unit="Count", value=1)
    done = "" if read_only(event) else "the request was carried out, but "
    message = (
        f"{done}the response would be {size} bytes, over the {limit} bytes this API sends"
        " (SQUALL_MAX_RESPONSE_BYTES): ask for smaller pages (a lower limit=) and follow the cursor"
    )
    whole_logs = _WHOLE_LOGS.match(route_path(event))
    if whole_logs is not None:  # Kestra's log list has no pages: Squall's extension has
        tenant, execution_id = whole_logs.groups()
        message += f" of /api/v1/{tenant}/executions/{execution_id}/logs"
    return _plain(400, {"message": message, "size": size, "limit": limit})


def _as_get(event: dict[str, Any]) -> dict[str, Any]:
    """HEAD is GET without the body (RFC 9110 9.3.2): routed as GET; the HTTP server drops the body."""
    request = event.get("requestContext") or {}
    http = {**(request.get("http") or {}), "method": "GET"}
    return {**event, "requestContext": {**request, "http": http}}


def _lower_headers(event: Mapping[str, Any]) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}


def _request_id_of(event: Mapping[str, Any], context: Any) -> str | None:
    return (event.get("requestContext") or {}).get("requestId") or getattr(context, "aws_request_id", None)


def unserved(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """The 500 for a request no :class:`Api` could take (its runtime could not be built); logs why.

    Call it from the ``except`` block that caught the failure: the traceback goes to the log,
    the client gets ``{"message": "internal error", "requestId": ...}`` like any other 500.
    """
    logger.exception("no runtime to serve the request")
    return _plain(500, {"message": "internal error", "requestId": _request_id_of(event, context)})


class Api:
    """The HTTP API serving one runtime's store and service.

    Built by whoever owns the runtime (the ``api`` Lambda, ``squall server``, a test) and
    called once per request; it keeps nothing of a request between calls.
    """

    __slots__ = ("runtime",)

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def handle(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """One request, as API Gateway sends it, to the response dict it expects."""
        started = time.monotonic()
        method = ((event.get("requestContext") or {}).get("http") or {}).get("method")
        if method == "HEAD" and not is_webhook(route_path(event)):  # a webhook's GET starts a flow
            event = _as_get(event)
        request_id = _request_id_of(event, context)
        telemetry.new_request(request_id=request_id)
        rt = self.runtime
        path = route_path(event)
        if ui.is_ui_path(path):  # public static files, not the API: no auth, no store, no service
            oidc = rt.settings.ui_oidc
            connect = () if oidc is None else oidc.connect_origins()
            response = ui.respond(path, str(method), _lower_headers(event), connect)
            logger.info("request", extra={"method": method, "path": path, "status": response["statusCode"]})
            return response
        try:
            response = _gate(event, rt.settings) or _bounded(
                app.resolve(event, context, **{common.RUNTIME_KEY: rt}), event, rt.settings.max_response_bytes
            )
            if not read_only(
                event
            ):  # a read submits nothing, and must not touch the service a write may hold
                try:
                    rt.flush()  # handles of jobs this request submitted: visible to the tick and events
                except (
                    Exception
                ):  # the outbox still has them; the tick finds the jobs by name after submit_grace
                    logger.exception("could not write job handles after the request")
        except Exception:
            logger.exception("unhandled error outside the routes")
            response = _plain(500, {"message": "internal error", "requestId": request_id})
        finally:
            telemetry.flush_metrics()
        logger.info(
            "request",
            extra={
                "method": method,
                "path": event.get("rawPath"),
                "status": response.get("statusCode"),
                "duration_ms": round((time.monotonic() - started) * 1000, 1),
            },
        )
        return response
