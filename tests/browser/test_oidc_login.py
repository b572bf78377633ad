"""The web UI's OIDC login as it runs in AWS, in headless Chromium (issue 25).

The api handler (``SQUALL_AUTH=gateway``, ``SQUALL_UI_OIDC`` set) sits behind an
API-Gateway-shaped HTTP front (:mod:`tests.emulators.api_gateway`) with the module's own route
table and a JWT authorizer that verifies signature, issuer, audience and expiry against the
fake IdP's JWKS (:mod:`tests.emulators.oidc_idp`, a real HTTP server on another origin, so
the page's CSP and the IdP's CORS are exercised too). The browser does everything itself:
discovery, PKCE with WebCrypto, the redirect, the code exchange, the Bearer header.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest

from control_plane.server import Server
from tests.browser.flows import GREET
from tests.emulators.api_gateway import ApiGateway, JwtAuthorizer, api_gateway, module_routes
from tests.emulators.oidc_idp import FakeIdp, fake_idp
from tests.integration.service_helpers import server_settings

CLIENT_ID = "squall-ui-client"
expect: Any = None


@pytest.fixture(autouse=True)
def _expect(browser: Any) -> None:
    global expect
    from playwright.sync_api import expect as playwright_expect

    playwright_expect.set_options(timeout=30_000)
    expect = playwright_expect


@dataclass
class Aws:
    idp: FakeIdp
    gateway: ApiGateway
    skew: list[float]  # seconds the authorizer's clock is ahead of the real one

    @property
    def ui(self) -> str:
        return f"{self.gateway.url}/ui/"


@contextmanager
def _deployed(directory: Path, token: str) -> Iterator[Aws]:
    """The handler behind the gateway front, the fake IdP as its issuer, ``greet`` deployed."""
    skew = [0.0]
    with fake_idp(CLIENT_ID, redirect_uris=[], allowed_origins=[]) as idp:
        oidc = {"issuer": idp.issuer, "client_id": CLIENT_ID, "scopes": ["openid", "email"], "token": token}
        settings = server_settings(directory, "unused", auth="gateway", ui_oidc=oidc)
        with Server(settings, host="127.0.0.1", port=0, tick_interval=0.2) as server:
            api = server.api
            assert api is not None
            front = ApiGateway(
                handle=api.handle,
                routes=module_routes("JWT"),
                authorizer=JwtAuthorizer(idp.issuer, [CLIENT_ID], clock=lambda: time.time() + skew[0]),
                lock=server.lock,
            )
            with api_gateway(front) as gateway:
                # The app client's callback URL and the origin its token endpoint answers (CORS)
                idp.redirect_uris.append(f"{gateway.url}/ui/")
                idp.allowed_origins.append(gateway.url)
                now = int(time.time())
                deployer = idp.mint(iss=idp.issuer, sub="ci", client_id=CLIENT_ID, iat=now, exp=now + 600)
                response = httpx.post(
                    f"{gateway.url}/api/v1/main/flows",
                    content=GREET,
                    headers={"Content-Type": "application/x-yaml", "Authorization": f"Bearer {deployer}"},
                    timeout=30,
                )
                assert response.status_code == 200, response.text
                yield Aws(idp, gateway, skew)


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory, browser: Any) -> Iterator[Aws]:
    with _deployed(tmp_path_factory.mktemp("oidc"), "access") as deployed:
        yield deployed


@pytest.fixture(autouse=True)
def _fresh(aws: Aws) -> Iterator[None]:
    aws.skew[0] = 0.0
    aws.idp.nonce_override = None
    yield
    aws.skew[0] = 0.0
    aws.idp.nonce_override = None


def _sign_in_at_the_idp(page: Any, aws: Aws) -> None:
    expect(page).to_have_url(re.compile(rf"^{re.escape(aws.idp.issuer)}/authorize\?"))
    query = page.url.split("?", 1)[1]
    assert "code_challenge_method=S256" in query and "state=" in query and "nonce=" in query
    page.get_by_role("button", name="Sign in as ada").click()


def _session(page: Any) -> dict[str, Any]:
    return dict(json.loads(page.evaluate("sessionStorage.getItem('squall.oidc.session')") or "{}"))


def test_opening_the_ui_sends_the_browser_to_the_idp_and_back_logged_in(page: Any, aws: Aws) -> None:
    exchanges = len(aws.idp.token_requests)
    page.goto(f"{aws.ui}#/flows/squall.ui/greet")
    _sign_in_at_the_idp(page, aws)
    expect(page.get_by_role("heading", name="squall.ui.greet")).to_be_visible()  # the deep link kept
    assert "code=" not in page.url and page.url.startswith(aws.ui)
    assert len(aws.idp.token_requests) == exchanges + 1
    exchange = aws.idp.token_requests[-1]
    assert exchange["client_id"] == CLIENT_ID and exchange["redirect_uri"] == aws.ui
    assert len(exchange["code_verifier"]) == 43 and "client_secret" not in exchange
    claims = jwt.decode(_session(page)["token"], options={"verify_signature": False})
    assert claims["token_use"] == "access" and claims["client_id"] == CLIENT_ID  # the access token
    page.get_by_role("link", name="Flows").click()
    expect(page.get_by_role("link", name="greet")).to_be_visible()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


@pytest.mark.parametrize("how", ["tampered", "expired"])
def test_a_token_the_authorizer_refuses_makes_the_ui_ask_to_log_in_again(
    page: Any, aws: Aws, how: str
) -> None:
    page.goto(aws.ui)
    _sign_in_at_the_idp(page, aws)
    expect(page.get_by_role("link", name="greet")).to_be_visible()
    refused = len(aws.gateway.refused)
    if how == "tampered":  # the payload says another user; the signature no longer matches
        page.evaluate(
            """() => {
              const s = JSON.parse(sessionStorage.getItem('squall.oidc.session'));
              const [h, p, sig] = s.token.split('.');
              const claims = JSON.parse(atob(p.replace(/-/g, '+').replace(/_/g, '/')));
              claims.sub = 'mallory';
              s.token = [h, btoa(JSON.stringify(claims)).replace(/=+$/, ''), sig].join('.');
              sessionStorage.setItem('squall.oidc.session', JSON.stringify(s));
            }"""
        )
    else:  # the authorizer's clock is past the token's exp; the browser's is not
        aws.skew[0] = 2 * 3600
    page.get_by_role("link", name="Executions").click()
    dialog = page.get_by_role("dialog", name="Log in again")
    expect(dialog).to_be_visible()
    assert len(aws.gateway.refused) > refused  # API Gateway refused it, the handler never saw it
    aws.skew[0] = 0.0
    dialog.get_by_role("button", name="Log in again").click()
    _sign_in_at_the_idp(page, aws)
    expect(page.get_by_role("heading", name="Executions")).to_be_visible()
    assert page.url.endswith("#/executions")


def test_past_its_expiry_the_browser_logs_in_again_before_calling_the_api(page: Any, aws: Aws) -> None:
    page.goto(aws.ui)
    _sign_in_at_the_idp(page, aws)
    expect(page.get_by_role("link", name="greet")).to_be_visible()
    page.evaluate(
        """() => {
              const s = JSON.parse(sessionStorage.getItem('squall.oidc.session'));
              s.expiresAt = Date.now() - 1000;
              sessionStorage.setItem('squall.oidc.session', JSON.stringify(s));
            }"""
    )
    refused = len(aws.gateway.refused)
    page.get_by_role("link", name="Executions").click()
    _sign_in_at_the_idp(page, aws)  # straight to the IdP, no dialog, no 401
    expect(page.get_by_role("heading", name="Executions")).to_be_visible()
    assert len(aws.gateway.refused) == refused


def test_an_answer_to_a_login_this_tab_did_not_start_is_refused_without_an_exchange(
    page: Any, aws: Aws
) -> None:
    page.goto(aws.ui)
    expect(page).to_have_url(re.compile(rf"^{re.escape(aws.idp.issuer)}/authorize\?"))
    exchanges = len(aws.idp.token_requests)
    page.goto(f"{aws.ui}?code=stolen-code&state=not-the-one-sent")  # a forged or replayed answer
    expect(page.get_by_role("heading", name="Login refused")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("state mismatch")
    assert "code=" not in page.url
    assert len(aws.idp.token_requests) == exchanges
    assert _session(page) == {}
    page.get_by_role("button", name="Log in").click()  # and a fresh login still works
    _sign_in_at_the_idp(page, aws)
    expect(page.get_by_role("link", name="greet")).to_be_visible()


def test_an_id_token_with_another_nonce_is_refused(page: Any, aws: Aws) -> None:
    aws.idp.nonce_override = "a-nonce-from-another-login"
    page.goto(aws.ui)
    _sign_in_at_the_idp(page, aws)
    expect(page.get_by_role("heading", name="Login refused")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("nonce")
    assert _session(page) == {}


def test_sign_out_forgets_the_token_and_passes_by_the_idp(page: Any, aws: Aws) -> None:
    page.goto(aws.ui)
    _sign_in_at_the_idp(page, aws)
    expect(page.get_by_role("link", name="greet")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Signed out")).to_be_visible()
    assert _session(page) == {}
    page.get_by_role("button", name="Log in").click()
    _sign_in_at_the_idp(page, aws)
    expect(page.get_by_role("link", name="greet")).to_be_visible()


def test_with_token_id_the_id_token_is_what_the_api_receives(page: Any, browser: Any, tmp_path: Path) -> None:
    with _deployed(tmp_path, "id") as aws:
        page.goto(aws.ui)
        _sign_in_at_the_idp(page, aws)
        expect(page.get_by_role("link", name="greet")).to_be_visible()
        claims = jwt.decode(_session(page)["token"], options={"verify_signature": False})
        assert claims["token_use"] == "id" and claims["aud"] == CLIENT_ID and claims["nonce"]


def test_a_login_the_idp_refused_says_why(page: Any, aws: Aws) -> None:
    page.goto(aws.ui)
    expect(page).to_have_url(re.compile(rf"^{re.escape(aws.idp.issuer)}/authorize\?"))
    state = parse_qs(urlsplit(page.url).query)["state"][0]
    exchanges = len(aws.idp.token_requests)
    page.goto(f"{aws.ui}?error=access_denied&error_description=The+user+cancelled&state={state}")
    expect(page.get_by_role("heading", name="Login refused")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("The user cancelled")
    assert len(aws.idp.token_requests) == exchanges
