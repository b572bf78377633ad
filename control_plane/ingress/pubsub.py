"""Google Pub/Sub push: the ``Authorization: Bearer <OIDC ID token>`` a push subscription sends.

A push subscription configured with a service account and an audience signs every request
with a Google ID token. It is genuine and for us when, in this order:

1. its signature verifies (RS256 only: the algorithm is ours to choose, never the token's)
   with the Google key its header names (``kid``), from Google's JWKS (``SQUALL_PUBSUB_CERTS_URL``);
2. it is within its lifetime: ``exp`` not past and ``iat`` not ahead, give or take
   :data:`CLOCK_SKEW` seconds;
3. ``iss`` is Google (:data:`ISSUERS`), ``aud`` is the configured audience, and ``email`` is
   the configured push service account with ``email_verified`` true.

A failure of 1 or 2 (or no token) is 401; a genuine token failing 3 is 403: someone else's
token, or one minted for another endpoint, is not a credential here.

Google's keys are cached by :class:`KeySet` for as long as the response's ``Cache-Control:
max-age`` says (Google sends hours), never fetched per request. A token naming a key the cache
lacks (Google rotated) refetches, at most once every :data:`MIN_REFRESH` seconds, so forged
``kid`` values cannot make the function hammer Google. When a refetch fails the keys already
held are kept; with none at all the push is answered 503 and Pub/Sub redelivers it.

PyJWT (with cryptography for RS256) is the verifier: imported with this module, which the
ingress imports on the first Pub/Sub push, never at the function's cold start.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

import jwt

from control_plane.ingress import Refused

__all__ = ["CLOCK_SKEW", "ISSUERS", "MIN_REFRESH", "KeySet", "PubSubVerifier", "fetch_json"]

ISSUERS = ("https://accounts.google.com", "accounts.google.com")
"""Both forms Google's ID tokens carry (Google's own libraries accept either)."""

CLOCK_SKEW = 60
"""Seconds of disagreement allowed between Google's clock and ours, on ``exp`` and ``iat``."""

MIN_REFRESH = 30.0
"""Seconds between two fetches of the keys caused by an unknown ``kid``."""

MIN_TTL, MAX_TTL, DEFAULT_TTL = 60.0, 86400.0, 300.0
"""Bounds on how long fetched keys are kept: ``max-age`` is clamped into [MIN_TTL, MAX_TTL], so a
``max-age=0`` cannot turn into a fetch per request; DEFAULT_TTL without a ``max-age``."""

_BEARER = "Bearer"
_MAX_AGE = re.compile(r"(?:^|[,\s])max-age\s*=\s*\"?(\d+)")


def fetch_json(url: str, timeout: float = 5.0) -> tuple[Any, str | None]:
    """GET ``url``: its JSON document and its Cache-Control header. OSError/ValueError on failure."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as answer:  # the URL is a validated http(s) setting
        return json.loads(answer.read()), answer.headers.get("Cache-Control")


class KeySet:
    """Google's signing keys by ``kid``, fetched when missing or expired; thread-safe.

    ``clock`` is monotonic seconds (tests advance their own); ``fetch`` returns the JWKS
    document and its Cache-Control header (:func:`fetch_json` by default).
    """

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        fetch: Callable[[str], tuple[Any, str | None]] = fetch_json,
    ) -> None:
        self.url = url
        self._clock = clock
        self._fetch = fetch
        self._keys: dict[str, jwt.PyJWK] = {}
        self._expires = float("-inf")
        self._fetched = float("-inf")
        self._lock = threading.Lock()
        self.fetches = 0
        """How many times the keys were fetched (the tests count them)."""

    def key(self, kid: str) -> jwt.PyJWK | None:
        """The key named ``kid``; None when Google does not publish it (after a refetch if allowed)."""
        with self._lock:
            now = self._clock()
            stale = now >= self._expires
            unknown = kid not in self._keys and now - self._fetched >= MIN_REFRESH
            if stale or unknown:
                self._refresh(now)
            return self._keys.get(kid)

    def _refresh(self, now: float) -> None:
        self._fetched = now
        try:
            document, cache_control = self._fetch(self.url)
            keys = {
                k.key_id: k
                for k in jwt.PyJWKSet.from_dict(document).keys
                if k.key_id and k.algorithm_name == "RS256"
            }
        except (OSError, ValueError, TypeError, AttributeError, jwt.PyJWTError) as exc:
            if not self._keys:
                raise Refused(503, f"cannot fetch the token signing keys from {self.url}: {exc}") from None
            # Keep what we have (Google's keys outlive their cache time): retry after MIN_REFRESH.
            self._expires = now + MIN_REFRESH
            return
        self.fetches += 1
        self._keys = keys
        self._expires = now + _ttl(cache_control)


def _ttl(cache_control: str | None) -> float:
    found = _MAX_AGE.search(cache_control or "")
    if found is None:
        return DEFAULT_TTL
    return min(max(float(found.group(1)), MIN_TTL), MAX_TTL)


class PubSubVerifier:
    """Checks a push request's bearer token; :meth:`verify` returns its claims or raises Refused."""

    def __init__(
        self,
        *,
        audience: str,
        service_account: str,
        keys: KeySet,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.audience = audience
        self.service_account = service_account
        self.keys = keys
        self._clock = clock

    def verify(self, authorization: str | None) -> Mapping[str, Any]:
        challenge = {"WWW-Authenticate": _BEARER}
        if not authorization:
            raise Refused(401, "missing Authorization: Bearer <OIDC token> header", headers=challenge)
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != _BEARER.lower() or not token.strip():
            raise Refused(401, "the Authorization header is not a Bearer token", headers=challenge)
        token = token.strip()
        invalid = {"WWW-Authenticate": f'{_BEARER} error="invalid_token"'}
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Refused(401, "the bearer token is not a JWT", headers=invalid) from None
        kid = header.get("kid")
        key = self.keys.key(kid) if isinstance(kid, str) else None
        if key is None:
            raise Refused(401, "the token is not signed by a Google key", headers=invalid)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=self.audience,
                issuer=ISSUERS,
                # Times are checked below against the injected clock, with the same skew.
                options={
                    "require": ["exp", "iat", "iss", "aud"],
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.InvalidSignatureError:
            raise Refused(401, "the token's signature does not verify", headers=invalid) from None
        except jwt.InvalidAlgorithmError:
            raise Refused(401, "the token is not signed with RS256", headers=invalid) from None
        except jwt.InvalidAudienceError:
            raise Refused(403, "the token's audience is not this endpoint's") from None
        except jwt.InvalidIssuerError:
            raise Refused(403, "the token was not issued by Google") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Refused(401, f"the token lacks the {exc.claim!r} claim", headers=invalid) from None
        except jwt.PyJWTError as exc:
            raise Refused(401, f"invalid token: {exc}", headers=invalid) from None
        self._check_times(claims, invalid)
        if claims.get("email") != self.service_account or claims.get("email_verified") is not True:
            raise Refused(403, "the token is not the push subscription's service account")
        return claims

    def _check_times(self, claims: Mapping[str, Any], invalid: Mapping[str, str]) -> None:
        now = self._clock()
        exp, iat = claims.get("exp"), claims.get("iat")
        if not isinstance(exp, int | float) or not isinstance(iat, int | float):
            raise Refused(401, "the token's exp and iat must be numbers", headers=invalid)
        if now > exp + CLOCK_SKEW:
            raise Refused(401, "the token has expired", headers=invalid)
        if iat > now + CLOCK_SKEW:
            raise Refused(401, "the token is issued in the future", headers=invalid)
