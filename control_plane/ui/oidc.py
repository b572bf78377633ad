"""The web UI's OIDC login settings (``SQUALL_UI_OIDC``): which IdP the browser signs in with.

In AWS the API sits behind API Gateway's JWT authorizer, and a browser cannot sign SigV4
requests: it logs in with the authorization code flow and PKCE against the IdP that issues
the tokens the authorizer accepts (``js/oidc.js``). The browser learns where to go from
``GET /api/v1/configs`` (public, like the UI's files), which publishes :meth:`UiOidc.public`.
Nothing here is a secret: the client is a public client (no client secret; PKCE instead),
so the issuer and client id are as public as the login page they lead to.

``origins`` exists because of the UI's Content-Security-Policy (``connect-src``): the page
fetches the IdP's discovery document (at the issuer) and its token endpoint, which is not
always on the issuer's origin (Cognito: the issuer is ``cognito-idp.<region>.amazonaws.com``,
the token endpoint the user pool domain ``<domain>.auth.<region>.amazoncognito.com``).
"""

from __future__ import annotations

import json
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["UiOidc", "origin_of"]

_LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of ``url`` (what CSP and CORS compare)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _secure(url: str, what: str) -> str:
    """``url`` when it is https, or http on this machine (a developer's or a test's IdP)."""
    parts = urlsplit(url)
    local = parts.scheme == "http" and (parts.hostname or "") in {h.strip("[]") for h in _LOCAL_HOSTS}
    if not parts.netloc or not (parts.scheme == "https" or local):
        raise ValueError(f"{what} must be an https:// URL (http only on localhost), not {url!r}")
    return url


class UiOidc(BaseModel):
    """``SQUALL_UI_OIDC``, a JSON object: ``{"issuer", "client_id", "scopes", "token", "origins"}``.

    * ``issuer``: the OIDC issuer, exactly as the tokens' ``iss`` and the JWT authorizer's
      issuer say it (Cognito: ``https://cognito-idp.<region>.amazonaws.com/<pool id>``).
    * ``client_id``: the IdP's public client for the UI; the authorizer's audience lists it.
    * ``scopes``: asked for at login; ``openid`` is required (the id token carries the nonce).
    * ``token``: the token sent as ``Authorization: Bearer``: ``access`` (default: what an API
      is meant to receive; Cognito's carries ``client_id``, which API Gateway matches against
      the audience when there is no ``aud``) or ``id`` (for IdPs whose access tokens are opaque
      or meant for another audience; its ``aud`` is the client id).
    * ``origins``: more origins the page may fetch from besides the issuer's (the token
      endpoint's, when it is elsewhere).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    issuer: str
    client_id: str = Field(min_length=1)
    scopes: tuple[str, ...] = ("openid",)
    token: Literal["access", "id"] = "access"
    origins: tuple[str, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _from_json(cls, raw: Any) -> Any:
        if isinstance(raw, str | bytes):
            try:
                return json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not a JSON object: {exc}") from None
        return raw

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, url: str) -> str:
        _secure(url, "issuer")
        if urlsplit(url).query or urlsplit(url).fragment:
            raise ValueError(f"issuer must have no query or fragment, not {url!r}")
        return url

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, scopes: tuple[str, ...]) -> tuple[str, ...]:
        for scope in scopes:
            if not scope or any(c.isspace() for c in scope):
                raise ValueError(f"a scope is one word, not {scope!r}")
        if "openid" not in scopes:
            raise ValueError("scopes must include openid: the id token carries the login's nonce")
        return scopes

    @field_validator("origins")
    @classmethod
    def _origins(cls, origins: tuple[str, ...]) -> tuple[str, ...]:
        for origin in origins:
            _secure(origin, "each of origins")
            if origin_of(origin) != origin:
                raise ValueError(f"an origin is scheme://host[:port] with no path, not {origin!r}")
        return origins

    def connect_origins(self) -> tuple[str, ...]:
        """Every origin the page fetches from at login: the issuer's, then ``origins``."""
        return tuple(dict.fromkeys((origin_of(self.issuer), *self.origins)))

    def public(self) -> dict[str, Any]:
        """What ``/api/v1/configs`` publishes for the browser (``uiOidc``)."""
        return {
            "issuer": self.issuer,
            "clientId": self.client_id,
            "scopes": list(self.scopes),
            "token": self.token,
            "origins": list(self.connect_origins()),
        }
