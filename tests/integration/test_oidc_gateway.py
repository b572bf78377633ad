"""The UI login's server side over real HTTP: the fake IdP's checks, the API-Gateway front's
JWT authorizer in front of the api handler (``SQUALL_AUTH=gateway``), and what the handler
publishes for the browser (``uiOidc`` in ``/api/v1/configs``, the CSP's ``connect-src``).

The browser flow itself is ``tests/browser/test_oidc_login.py``; here each refusal is one
request, so every way a token or a code can be wrong is pinned quickly.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from control_plane.server import Server
from tests.emulators.api_gateway import ApiGateway, JwtAuthorizer, api_gateway, match_route, module_routes
from tests.emulators.oidc_idp import FakeIdp, fake_idp
from tests.integration.service_helpers import server_settings

CLIENT = "ui-client"
VERIFIER = "v" * 50
CHALLENGE = base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).rstrip(b"=").decode()


@dataclass
class Deployed:
    idp: FakeIdp
    gateway: ApiGateway
    skew: list[float]

    def token(self, **claims: Any) -> str:
        now = int(time.time())
        base = {"iss": self.idp.issuer, "sub": "ada", "client_id": CLIENT, "iat": now, "exp": now + 600}
        return self.idp.mint(**{**base, **claims})

    def get(self, path: str, token: str | None = None, scheme: str = "Bearer ") -> httpx.Response:
        headers = {} if token is None else {"Authorization": f"{scheme}{token}"}
        return httpx.get(f"{self.gateway.url}{path}", headers=headers, timeout=10)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    skew = [0.0]
    with fake_idp(CLIENT, redirect_uris=["http://127.0.0.1:1/ui/"], allowed_origins=[]) as idp:
        oidc = {"issuer": idp.issuer, "client_id": CLIENT, "origins": ["https://login.example.com"]}
        settings = server_settings(tmp_path_factory.mktemp("gw"), "unused", auth="gateway", ui_oidc=oidc)
        with Server(settings, host="127.0.0.1", port=0, tick_interval=0.5) as server:
            assert server.api is not None
            authorizer = JwtAuthorizer(idp.issuer, [CLIENT], clock=lambda: time.time() + skew[0])
            front = ApiGateway(server.api.handle, module_routes("JWT"), authorizer, server.lock)
            with api_gateway(front) as gateway:
                yield Deployed(idp, gateway, skew)


SEARCH = "/api/v1/main/flows/search"


def test_a_valid_token_reaches_the_handler_with_its_claims(deployed: Deployed) -> None:
    assert deployed.get(SEARCH, deployed.token()).status_code == 200
    assert deployed.get(SEARCH, deployed.token(), scheme="").status_code == 200  # Bearer is optional
    # an id token: aud instead of client_id
    assert deployed.get(SEARCH, deployed.token(client_id=None, aud=CLIENT)).status_code == 200


def _other_key_token(deployed: Deployed) -> str:
    with fake_idp(CLIENT, [], []) as other:  # same kid, another key
        now = int(time.time())
        return other.mint(iss=deployed.idp.issuer, sub="x", client_id=CLIENT, iat=now, exp=now + 60)


@pytest.mark.parametrize(
    "bad",
    [
        "none",
        "garbage",
        "issuer",
        "audience",
        "aud_wins",
        "expired",
        "not_yet",
        "no_exp",
        "tampered",
        "alg_none",
        "key",
    ],
)
def test_the_authorizer_refuses_every_bad_token_before_the_handler(deployed: Deployed, bad: str) -> None:
    now = int(time.time())
    token: str | None = {
        "none": lambda: None,
        "garbage": lambda: "not.a.jwt",
        "issuer": lambda: deployed.token(iss="https://other.example.com"),
        "audience": lambda: deployed.token(client_id="someone-else"),
        "aud_wins": lambda: deployed.token(aud="someone-else"),  # aud present: client_id is not looked at
        "expired": lambda: deployed.token(exp=now - 1),
        "not_yet": lambda: deployed.token(nbf=now + 300),
        "no_exp": lambda: deployed.token(exp=None),
        "tampered": lambda: re.sub(r"\.([^.]+)\.", ".eyJzdWIiOiJtYWxsb3J5In0.", deployed.token()),
        "alg_none": lambda: (
            "eyJhbGciOiJub25lIiwia2lkIjoiZmFrZS1pZHAtMSJ9."
            + base64.urlsafe_b64encode(b'{"sub":"x"}').rstrip(b"=").decode()
            + "."
        ),
        "key": lambda: _other_key_token(deployed),
    }[bad]()
    refused = len(deployed.gateway.refused)
    response = deployed.get(SEARCH, token)
    assert response.status_code == 401 and response.json() == {"message": "Unauthorized"}
    assert len(deployed.gateway.refused) == refused + 1


def test_a_token_expires_by_the_authorizers_clock(deployed: Deployed) -> None:
    token = deployed.token()
    assert deployed.get(SEARCH, token).status_code == 200
    deployed.skew[0] = 601
    try:
        assert deployed.get(SEARCH, token).status_code == 401
    finally:
        deployed.skew[0] = 0


def test_public_routes_need_no_token_and_publish_the_login(deployed: Deployed) -> None:
    configs = deployed.get("/api/v1/configs")
    assert configs.status_code == 200
    assert configs.json()["uiOidc"] == {
        "issuer": deployed.idp.issuer,
        "clientId": CLIENT,
        "scopes": ["openid"],
        "token": "access",
        "origins": [deployed.idp.issuer, "https://login.example.com"],
    }
    page = deployed.get("/ui/")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert f"connect-src 'self' {deployed.idp.issuer} https://login.example.com;" in csp
    assert deployed.get("/nowhere").status_code == 404


def test_the_route_table_is_the_modules() -> None:
    routes = module_routes("JWT")
    assert routes["ANY /api/{proxy+}"] == "JWT" and routes["GET /api/v1/configs"] == "NONE"
    assert match_route(routes, "GET", "/api/v1/configs") == "GET /api/v1/configs"  # exact beats greedy
    assert match_route(routes, "DELETE", "/api/v1/main/flows/a/b") == "ANY /api/{proxy+}"
    assert match_route(routes, "GET", "/ui/js/main.js") == "GET /ui/{proxy+}"
    assert match_route(routes, "POST", "/ui/x") is None


# ------------------------------------------------------------------ the fake IdP's own checks


def _authorize(idp: FakeIdp, **overrides: str) -> httpx.Response:
    params = {
        "response_type": "code",
        "client_id": CLIENT,
        "redirect_uri": "http://127.0.0.1:1/ui/",
        "scope": "openid",
        "state": "s1",
        "nonce": "n1",
        "code_challenge": CHALLENGE,
        "code_challenge_method": "S256",
        **overrides,
    }
    return httpx.post(f"{idp.issuer}/authorize", data=params, timeout=10)


def _code(idp: FakeIdp) -> str:
    answer = _authorize(idp)
    assert answer.status_code == 302
    back = urlsplit(answer.headers["location"])
    assert back.path == "/ui/" and parse_qs(back.query)["state"] == ["s1"]
    return parse_qs(back.query)["code"][0]


def _exchange(idp: FakeIdp, code: str, **overrides: str) -> httpx.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": CLIENT,
        "redirect_uri": "http://127.0.0.1:1/ui/",
        "code_verifier": VERIFIER,
        **overrides,
    }
    return httpx.post(f"{idp.issuer}/token", data=form, timeout=10)


def test_the_idp_exchanges_a_code_once_for_tokens_the_authorizer_accepts(deployed: Deployed) -> None:
    code = _code(deployed.idp)
    answer = _exchange(deployed.idp, code)
    assert answer.status_code == 200, answer.text
    assert deployed.get(SEARCH, answer.json()["access_token"]).status_code == 200
    assert deployed.get(SEARCH, answer.json()["id_token"]).status_code == 200
    again = _exchange(deployed.idp, code)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("code_verifier", "w" * 50, "invalid_grant"),
        ("code_verifier", "short", "invalid_grant"),
        ("redirect_uri", "http://127.0.0.1:1/elsewhere/", "invalid_grant"),
        ("client_id", "another-client", "invalid_client"),
        ("grant_type", "password", "unsupported_grant_type"),
    ],
)
def test_the_idp_refuses_a_wrong_exchange(deployed: Deployed, field: str, value: str, error: str) -> None:
    answer = _exchange(deployed.idp, _code(deployed.idp), **{field: value})
    assert answer.status_code == 400 and answer.json()["error"] == error


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("redirect_uri", "https://attacker.example.com/"),
        ("client_id", "unknown"),
        ("code_challenge_method", "plain"),
        ("code_challenge", ""),
        ("response_type", "token"),
        ("scope", "email"),
    ],
)
def test_the_idp_refuses_a_bad_authorize_request_without_redirecting(
    deployed: Deployed, field: str, value: str
) -> None:
    answer = _authorize(deployed.idp, **{field: value})
    assert answer.status_code == 400 and "location" not in answer.headers


def test_the_idp_answers_cors_only_to_allowed_origins(deployed: Deployed) -> None:
    deployed.idp.allowed_origins.append("http://127.0.0.1:1")
    code = _code(deployed.idp)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": CLIENT,
        "redirect_uri": "http://127.0.0.1:1/ui/",
        "code_verifier": VERIFIER,
    }
    allowed = httpx.post(f"{deployed.idp.issuer}/token", data=form, headers={"Origin": "http://127.0.0.1:1"})
    assert allowed.headers["access-control-allow-origin"] == "http://127.0.0.1:1"
    other = httpx.get(f"{deployed.idp.issuer}/jwks", headers={"Origin": "https://evil.example.com"})
    assert "access-control-allow-origin" not in other.headers
