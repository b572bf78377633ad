"""A small OpenID Connect provider over real HTTP: what the web UI's login talks to in the tests.

It speaks the parts of OIDC a public client with PKCE uses, the way Cognito's hosted UI does:

* ``GET /.well-known/openid-configuration``: discovery (issuer, endpoints, ``S256`` only);
* ``GET /authorize``: checks ``client_id``, ``redirect_uri`` (exact match with a registered
  one; a bad one gets an error page, never a redirect), ``response_type=code``, and an S256
  ``code_challenge``; then shows a page with one "Sign in" button (a real browser clicks it);
* ``POST /authorize``: the button: a one-time code bound to the client, redirect URI,
  challenge, nonce and scopes, sent back to the redirect URI with the request's ``state``;
* ``POST /token``: ``grant_type=authorization_code``: the code must be unused and unexpired,
  ``client_id`` and ``redirect_uri`` those of the authorize request, and
  ``BASE64URL(SHA256(code_verifier))`` the challenge; answers RS256-signed JWTs: an access
  token shaped like Cognito's (``client_id``, ``scope``, ``token_use: access``, no ``aud``)
  and an id token (``aud`` = client id, the ``nonce``). CORS headers for the allowed origins
  (the browser calls this endpoint from the UI's page);
* ``GET /jwks``: the RSA public key;
* ``GET /logout``: clears nothing (there is no IdP session) and redirects to
  ``post_logout_redirect_uri`` when it is registered.

Test controls: :attr:`clock` (seconds; inject to expire tokens), :attr:`token_requests`
(every token request seen, for "no exchange happened" assertions), :meth:`mint` (a token
signed by this IdP with any claims), and :attr:`nonce_override` (answers an id token with a
wrong nonce, as a replayed response would).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = ["FakeIdp", "fake_idp"]

CODE_LIFETIME_S = 300


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class _Grant:
    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str | None
    scopes: list[str]
    user: str
    issued_at: float


@dataclass
class FakeIdp:
    """The provider's state; :func:`fake_idp` serves it. ``issuer`` is its base URL."""

    client_id: str
    redirect_uris: Sequence[str]
    allowed_origins: Sequence[str]
    user: str = "ada"
    token_lifetime_s: int = 3600
    clock: Callable[[], float] = time.time
    issuer: str = ""
    kid: str = "fake-idp-1"
    nonce_override: str | None = None
    token_requests: list[dict[str, str]] = field(default_factory=list)
    _codes: dict[str, _Grant] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))

    # ------------------------------------------------------------------ tokens

    def mint(self, **claims: Any) -> str:
        """A JWT signed with this IdP's key (RS256, its ``kid``): whatever the claims say."""
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid})

    def jwks(self) -> dict[str, Any]:
        numbers = self._key.public_key().public_numbers()

        def as_b64(n: int) -> str:
            return _b64url(n.to_bytes((n.bit_length() + 7) // 8, "big"))

        key = {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid}
        return {"keys": [{**key, "n": as_b64(numbers.n), "e": as_b64(numbers.e)}]}

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "end_session_endpoint": f"{self.issuer}/logout",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code"],
            "code_challenge_methods_supported": ["S256"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["none"],
        }

    # ------------------------------------------------------------------ endpoints

    def authorize_check(self, query: dict[str, str]) -> tuple[int, str] | None:
        """None when the authorize request may be shown the button, else (status, reason)."""
        if query.get("client_id") != self.client_id:
            return 400, f"unknown client_id {query.get('client_id')!r}"
        if query.get("redirect_uri") not in self.redirect_uris:
            return 400, f"redirect_uri {query.get('redirect_uri')!r} is not registered"
        if query.get("response_type") != "code":
            return 400, "response_type must be code"
        if query.get("code_challenge_method") != "S256" or len(query.get("code_challenge", "")) != 43:
            return 400, "PKCE required: code_challenge (43 characters) with code_challenge_method=S256"
        if "openid" not in query.get("scope", "").split():
            return 400, "scope must include openid"
        return None

    def approve(self, query: dict[str, str]) -> str:
        """The redirect after the button: a fresh one-time code and the request's state."""
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = _Grant(
                client_id=query["client_id"],
                redirect_uri=query["redirect_uri"],
                challenge=query["code_challenge"],
                nonce=query.get("nonce"),
                scopes=query.get("scope", "").split(),
                user=self.user,
                issued_at=self.clock(),
            )
        back = {"code": code, **({"state": query["state"]} if "state" in query else {})}
        return f"{query['redirect_uri']}?{urlencode(back)}"

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """The token endpoint's answer to ``form`` (RFC 6749 4.1.3 and RFC 7636 4.6)."""
        self.token_requests.append(dict(form))
        if form.get("grant_type") != "authorization_code":
            return 400, {"error": "unsupported_grant_type"}
        with self._lock:
            grant = self._codes.pop(form.get("code", ""), None)  # one use, even when refused
        if grant is None or self.clock() - grant.issued_at > CODE_LIFETIME_S:
            return 400, {"error": "invalid_grant", "error_description": "unknown, used or expired code"}
        if form.get("client_id") != grant.client_id:
            return 400, {"error": "invalid_client", "error_description": "client_id is not the code's"}
        if form.get("redirect_uri") != grant.redirect_uri:
            return 400, {
                "error": "invalid_grant",
                "error_description": "redirect_uri differs from authorize's",
            }
        verifier = form.get("code_verifier", "")
        computed = _b64url(hashlib.sha256(verifier.encode("ascii", "replace")).digest())
        if not 43 <= len(verifier) <= 128 or not secrets.compare_digest(computed, grant.challenge):
            return 400, {"error": "invalid_grant", "error_description": "code_verifier does not match"}
        now = int(self.clock())
        common = {"iss": self.issuer, "sub": grant.user, "iat": now, "exp": now + self.token_lifetime_s}
        access = self.mint(
            **common,
            client_id=grant.client_id,
            scope=" ".join(grant.scopes),
            token_use="access",
            jti=secrets.token_hex(8),
        )
        nonce = self.nonce_override if self.nonce_override is not None else grant.nonce
        identity = self.mint(
            **common,
            aud=grant.client_id,
            token_use="id",
            **({"nonce": nonce} if nonce is not None else {}),
            email=f"{grant.user}@example.com",
        )
        return 200, {
            "access_token": access,
            "id_token": identity,
            "token_type": "Bearer",
            "expires_in": self.token_lifetime_s,
        }


def _page(title: str, body: str) -> bytes:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"</head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    ).encode()


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, kind: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _cors(self) -> dict[str, str]:
        origin = self.headers.get("Origin", "")
        if origin in self.server.idp.allowed_origins:
            return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
        return {}

    def _json(self, status: int, body: Any) -> None:
        self._send(status, json.dumps(body).encode(), "application/json", self._cors())

    def _query(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.path).query, keep_blank_values=True).items()}

    def _form(self) -> dict[str, str]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode()
        return {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}

    def do_OPTIONS(self) -> None:  # a CORS preflight: only simple requests are allowed
        self._send(204, b"", "text/plain", {**self._cors(), "Access-Control-Allow-Methods": "GET, POST"})

    def do_GET(self) -> None:
        idp = self.server.idp
        path = urlsplit(self.path).path
        if path == "/.well-known/openid-configuration":
            self._json(200, idp.discovery())
        elif path == "/jwks":
            self._json(200, idp.jwks())
        elif path == "/authorize":
            query = self._query()
            refused = idp.authorize_check(query)
            if refused is not None:
                self._send(
                    refused[0], _page("Login refused", f"<p>{html.escape(refused[1])}</p>"), "text/html"
                )
                return
            hidden = "".join(
                f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                for k, v in query.items()
            )
            button = f'<button type="submit">Sign in as {html.escape(idp.user)}</button>'
            form = f'<form method="post" action="/authorize">{hidden}{button}</form>'
            self._send(200, _page("Fake IdP", form), "text/html; charset=utf-8")
        elif path == "/logout":
            target = self._query().get("post_logout_redirect_uri", "")
            if target in idp.redirect_uris:
                self._send(302, b"", "text/plain", {"Location": target})
            else:
                self._send(200, _page("Signed out", "<p>You are signed out.</p>"), "text/html")
        else:
            self._json(404, {"error": "not_found"})

    def do_POST(self) -> None:
        idp = self.server.idp
        path = urlsplit(self.path).path
        if path == "/authorize":
            query = self._form()
            refused = idp.authorize_check(query)
            if refused is not None:
                self._send(
                    refused[0], _page("Login refused", f"<p>{html.escape(refused[1])}</p>"), "text/html"
                )
                return
            self._send(302, b"", "text/plain", {"Location": idp.approve(query)})
        elif path == "/token":
            status, body = idp.token(self._form())
            self._json(status, body)
        else:
            self._json(404, {"error": "not_found"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, idp: FakeIdp) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.idp = idp


@contextmanager
def fake_idp(
    client_id: str,
    redirect_uris: Sequence[str],
    allowed_origins: Sequence[str],
    **options: Any,
) -> Iterator[FakeIdp]:
    """A running :class:`FakeIdp` on a free port of 127.0.0.1; its ``issuer`` is set."""
    idp = FakeIdp(
        client_id=client_id,
        redirect_uris=list(redirect_uris),
        allowed_origins=list(allowed_origins),
        **options,
    )
    server = _Server(idp)
    idp.issuer = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield idp
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
