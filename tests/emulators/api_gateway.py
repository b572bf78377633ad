"""API Gateway's HTTP API in front of the api handler, over real HTTP, with its JWT authorizer.

What a browser meets in AWS, reproduced for the tests: each request is matched against the
module's route table (``infra/modules/squall/api.tf``, read by :func:`module_routes`), the
routes that carry the JWT authorizer have their token verified the way API Gateway documents
it ("Validating JWTs", HTTP API developer guide), and the request reaches the handler as the
payload-2.0 event Lambda receives, with the verified claims in
``requestContext.authorizer.jwt``. A token that fails gets API Gateway's own
``401 {"message":"Unauthorized"}`` and never reaches the handler.

The authorizer's checks, each of which refuses the token:

* the identity source (``Authorization``) is present; a ``Bearer`` prefix is optional;
* the JWT's ``kid`` is a key of the issuer's JWKS (from its discovery document's
  ``jwks_uri``) and the RS256 signature verifies with it;
* ``iss`` equals the configured issuer;
* ``aud`` is one of the configured audiences, or, when there is no ``aud``, ``client_id`` is
  (Cognito's access tokens carry ``client_id``);
* ``exp`` is in the future, ``nbf`` (when present) and ``iat`` (when present) not after now,
  against the injected clock.

Unmatched routes get ``404 {"message":"Not Found"}`` as API Gateway answers them.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import jwt

from tests.integration.api_events import LambdaContext, event

__all__ = ["ApiGateway", "JwtAuthorizer", "api_gateway", "match_route", "module_routes"]

API_TF = Path(__file__).resolve().parents[2] / "infra" / "modules" / "squall" / "api.tf"

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def module_routes(authorization: str = "JWT", api_tf: Path = API_TF) -> dict[str, str]:
    """The module's ``locals.routes`` (route key -> authorization), with ``api_authorization`` set."""
    import hcl2

    with api_tf.open() as handle:
        parsed = hcl2.load(handle)
    for block in parsed.get("locals", []):
        if "routes" in block:
            routes = block["routes"]
            break
    else:
        raise AssertionError(f"no locals.routes in {api_tf}")
    resolved: dict[str, str] = {}
    for key, value in routes.items():
        text = str(value)
        resolved[key.strip('"')] = authorization if "api_authorization" in text else text.strip('"')
    return resolved


def match_route(routes: Mapping[str, str], method: str, path: str) -> str | None:
    """The route key API Gateway picks for ``method path``: exact paths over greedy ones, the
    longest greedy prefix first, a method's own route over ``ANY``."""
    best: tuple[int, int, int, str] | None = None
    for key in routes:
        route_method, _, route_path = key.partition(" ")
        if route_method not in (method, "ANY"):
            continue
        if route_path.endswith("/{proxy+}"):
            prefix = route_path[: -len("{proxy+}")]
            # /ui/ (an empty proxy) matches /ui/{proxy+}: HTTP APIs route /x/ like /x (a report
            # in aws-powertools/powertools-lambda-python#1552; AWS's route docs do not say), and
            # both /ui routes are public, so either choice gives the same authorization
            if not path.startswith(prefix):
                continue
            rank = (0, len(prefix))
        elif route_path == path:
            rank = (1, len(path))
        else:
            continue
        candidate = (*rank, int(route_method != "ANY"), key)
        if best is None or candidate[:3] > best[:3]:
            best = candidate
    return None if best is None else best[3]


@dataclass
class JwtAuthorizer:
    """API Gateway's JWT authorizer: issuer, audience, and the issuer's keys from its discovery."""

    issuer: str
    audience: Sequence[str]
    clock: Callable[[], float] = time.time
    _keys: dict[str, Any] = field(default_factory=dict)

    def _key(self, kid: str) -> Any:
        if kid not in self._keys:  # a new kid: read the JWKS again (keys rotate)
            with httpx.Client(timeout=10) as client:
                discovery = client.get(f"{self.issuer}/.well-known/openid-configuration").json()
                keys = client.get(discovery["jwks_uri"]).json()["keys"]
            self._keys = {k["kid"]: jwt.PyJWK(k).key for k in keys}
        return self._keys.get(kid)

    def claims(self, authorization: str | None) -> dict[str, Any] | None:
        """The verified claims of the token in ``authorization``, or None: refused."""
        if not authorization:
            return None
        token = authorization.strip()
        if token[:7].lower() == "bearer ":
            token = token[7:].strip()
        try:
            header = jwt.get_unverified_header(token)
            key = self._key(str(header.get("kid", "")))
            if key is None or header.get("alg") != "RS256":
                return None
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                options={"verify_exp": False, "verify_aud": False, "verify_iat": False, "verify_nbf": False},
            )
        except jwt.PyJWTError:
            return None
        now = self.clock()
        if claims.get("iss") != self.issuer:
            return None
        if "aud" in claims:
            audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
            if not set(map(str, audiences)) & set(self.audience):
                return None
        elif str(claims.get("client_id")) not in self.audience:
            return None
        if not isinstance(claims.get("exp"), int | float) or claims["exp"] <= now:
            return None
        for name in ("nbf", "iat"):
            if name in claims and (not isinstance(claims[name], int | float) or claims[name] > now):
                return None
        return claims


def _as_authorizer(claims: Mapping[str, Any]) -> dict[str, Any]:
    """The ``requestContext.authorizer`` API Gateway builds: every claim a string, plus scopes."""
    text = {k: v if isinstance(v, str) else str(v) for k, v in claims.items()}
    scopes = str(claims.get("scope") or "").split()
    return {"jwt": {"claims": text, "scopes": scopes or None}}


@dataclass
class ApiGateway:
    """The front's configuration; :func:`api_gateway` serves it and sets :attr:`url`."""

    handle: Handler
    routes: Mapping[str, str]
    authorizer: JwtAuthorizer | None
    lock: Any = None  # taken around writes, as squall server's own HTTP handler does
    url: str = ""
    refused: list[str] = field(default_factory=list)  # the paths the authorizer refused

    def respond(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(target)
        route = match_route(self.routes, method, parts.path)
        if route is None:
            return 404, {"Content-Type": "application/json"}, b'{"message":"Not Found"}'
        authorizer: dict[str, Any] | None = None
        if self.routes[route] == "JWT":
            claims = None if self.authorizer is None else self.authorizer.claims(headers.get("authorization"))
            if claims is None:
                self.refused.append(parts.path)
                unauthorized = {
                    "Content-Type": "application/json",
                    "www-authenticate": 'Bearer error="invalid_token"',
                }
                return 401, unauthorized, b'{"message":"Unauthorized"}'
            authorizer = _as_authorizer(claims)
        kind = headers.get("content-type", "")
        text = kind.startswith(("text/", "application/json", "application/x-yaml", "application/x-www-form"))
        raw = event(
            method,
            parts.path,
            query=parse_qsl(parts.query, keep_blank_values=True),
            headers=dict(headers),
            body=(body.decode() if text else body) if body else None,
            authorizer=authorizer,
        )
        from control_plane.api.app import read_only

        if read_only(raw) or self.lock is None:
            answer = self.handle(raw, LambdaContext())
        else:
            with self.lock:
                answer = self.handle(raw, LambdaContext())
        out = {str(k): str(v) for k, v in (answer.get("headers") or {}).items()}
        data = answer.get("body") or ""
        payload = base64.b64decode(data) if answer.get("isBase64Encoded") else str(data).encode()
        return int(answer.get("statusCode", 200)), out, payload


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _any(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]},{value}" if key in headers else value
        status, out, payload = self.server.gateway.respond(self.command, self.path, headers, body)
        self.send_response(status)
        for name, value in out.items():
            if name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _any


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, gateway: ApiGateway) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.gateway = gateway


@contextmanager
def api_gateway(gateway: ApiGateway) -> Iterator[ApiGateway]:
    """``gateway`` served on a free port of 127.0.0.1 (its ``url``) until the block ends."""
    server = _Server(gateway)
    gateway.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield gateway
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
