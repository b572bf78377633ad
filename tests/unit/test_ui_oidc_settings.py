"""``SQUALL_UI_OIDC``: the web UI's login settings, parsed from the environment or refused by name."""

from __future__ import annotations

import json

import pytest

from control_plane.runtime import SettingsError, load_settings

COGNITO = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123"
DOMAIN = "https://squall-login.auth.eu-west-1.amazoncognito.com"


def _load(value: object) -> object:
    raw = value if isinstance(value, str) else json.dumps(value)
    return load_settings({"SQUALL_UI_OIDC": raw}).ui_oidc


def test_unset_means_no_oidc_login() -> None:
    assert load_settings({}).ui_oidc is None


def test_the_terraform_shaped_json_is_read_with_defaults() -> None:
    oidc = _load({"issuer": COGNITO, "client_id": "5abc", "origins": [DOMAIN]})
    assert oidc is not None
    assert oidc.scopes == ("openid",) and oidc.token == "access"  # type: ignore[attr-defined]
    assert oidc.public() == {  # type: ignore[attr-defined]
        "issuer": COGNITO,
        "clientId": "5abc",
        "scopes": ["openid"],
        "token": "access",
        "origins": ["https://cognito-idp.eu-west-1.amazonaws.com", DOMAIN],
    }


def test_a_local_http_issuer_is_allowed_for_development() -> None:
    oidc = _load({"issuer": "http://127.0.0.1:8123", "client_id": "ui", "token": "id"})
    assert oidc.connect_origins() == ("http://127.0.0.1:8123",)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{not json", "not a JSON object"),
        ({"issuer": "http://idp.example.com", "client_id": "ui"}, "issuer must be an https:// URL"),
        ({"issuer": COGNITO, "client_id": ""}, "client_id"),
        ({"issuer": COGNITO, "client_id": "ui", "scopes": ["email"]}, "scopes must include openid"),
        ({"issuer": COGNITO, "client_id": "ui", "scopes": ["openid email"]}, "a scope is one word"),
        ({"issuer": COGNITO, "client_id": "ui", "token": "refresh"}, "token"),
        ({"issuer": COGNITO, "client_id": "ui", "origins": [DOMAIN + "/oauth2"]}, "no path"),
        ({"issuer": COGNITO, "client_id": "ui", "client_secret": "s"}, "client_secret"),
        ({"issuer": COGNITO + "?x=1", "client_id": "ui"}, "no query"),
    ],
)
def test_bad_values_are_refused_naming_the_variable_and_the_rule(value: object, message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        _load(value)
    assert "SQUALL_UI_OIDC" in str(caught.value) and message.lower() in str(caught.value).lower()


@pytest.mark.parametrize("auth", ["token", "none"])
def test_the_oidc_login_needs_the_gateway_auth_mode(auth: str) -> None:
    env = {
        "SQUALL_UI_OIDC": json.dumps({"issuer": COGNITO, "client_id": "ui"}),
        "SQUALL_AUTH": auth,
        "SQUALL_API_TOKEN": "t",
    }
    with pytest.raises(SettingsError, match="SQUALL_UI_OIDC needs SQUALL_AUTH=gateway"):
        load_settings(env)
