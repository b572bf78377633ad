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

PyJWT parses the token and checks its header and claims; the RS256 signature itself is checked
by the pure-Python ``rsa`` package (RSASSA-PKCS1-v1_5, and the hash inside the signature must be
SHA-256: no other, so no downgrade), not by ``cryptography``, whose compiled wheels are 4.6 MiB of
the Lambda zip and must match Lambda's architecture. Google's keys become :class:`GoogleKey`, a
PyJWT key bound to that verifier and to RS256 (PyJWT's own RSA keys need cryptography); the
process-wide PyJWT algorithms are left alone. Both libraries are imported with this module,
which the ingress imports on the first Pub/Sub push, never at the function's cold start.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

import jwt
import rsa

from control_plane.ingress import Refused

__all__ = ["CLOCK_SKEW", "ISSUERS", "MIN_REFRESH", "GoogleKey", "KeySet", "PubSubVerifier", "fetch_json"]

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


MIN_KEY_BITS = 2048
"""Smallest RSA modulus accepted from the JWKS (Google's are 2048 bits)."""


class _RS256(jwt.algorithms.Algorithm):
    """RS256 verification (RSASSA-PKCS1-v1_5 with SHA-256, RFC 7518 §3.3) by the ``rsa`` package.

    ``rsa.verify`` rebuilds the whole padded block and compares it, and reports the hash named by
    the DigestInfo inside the signature: anything but SHA-256 (a SHA-1 or SHA-512 signature under
    an ``RS256`` header) does not verify. Verification only: this side never signs.
    """

    def prepare_key(self, key: Any) -> rsa.PublicKey:
        if not isinstance(key, rsa.PublicKey):
            raise jwt.InvalidKeyError("an RS256 key is an rsa.PublicKey here")
        return key

    def sign(self, msg: bytes, key: Any) -> bytes:
        raise NotImplementedError("Google signs the tokens; this verifier never does")

    def verify(self, msg: bytes, key: Any, sig: bytes) -> bool:
        try:
            return bool(rsa.verify(msg, sig, self.prepare_key(key)) == "SHA-256")
        except (rsa.VerificationError, ValueError, OverflowError):
            return False

    @staticmethod
    def to_jwk(key_obj: Any, as_dict: bool = False) -> Any:
        raise NotImplementedError("this verifier publishes no keys")

    @staticmethod
    def from_jwk(jwk: str | Mapping[str, Any]) -> rsa.PublicKey:
        """An RSA signing key for RS256 from its JWK; ValueError for any other key."""
        entry = json.loads(jwk) if isinstance(jwk, str) else jwk
        if not isinstance(entry, Mapping) or entry.get("kty") != "RSA":
            raise ValueError("not an RSA key")
        if entry.get("alg", "RS256") != "RS256" or entry.get("use", "sig") != "sig":
            raise ValueError("not an RS256 signing key")
        n, e = _b64_int(entry.get("n")), _b64_int(entry.get("e"))
        if n.bit_length() < MIN_KEY_BITS or not 3 <= e < n or e % 2 == 0:
            raise ValueError("not a usable RSA public key")
        return rsa.PublicKey(n, e)


def _b64_int(value: Any) -> int:
    """The unsigned big-endian integer a JWK writes as base64url without padding (RFC 7518 §6.3)."""
    if not isinstance(value, str) or not value or "=" in value:
        raise ValueError("an RSA key parameter must be unpadded base64url")
    try:
        raw = base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_", validate=True)
    except binascii.Error:
        raise ValueError("an RSA key parameter must be unpadded base64url") from None
    return int.from_bytes(raw, "big")


class GoogleKey(jwt.PyJWK):
    """One of Google's signing keys (a JWKS entry) as the key PyJWT verifies a token with.

    PyJWK's own constructor builds RSA keys with cryptography; this one builds an ``rsa`` key,
    accepting only ``kty: RSA`` with ``alg`` RS256 or absent and ``use`` sig or absent (else
    ValueError), and binds it to :class:`_RS256` as PyJWK binds its keys: given one,
    ``jwt.decode`` refuses a token whose ``alg`` is not ``RS256`` and verifies with this key's
    algorithm, never with one looked up by the token's name for it.
    """

    def __init__(self, entry: Mapping[str, Any]) -> None:  # not PyJWK's: that one needs cryptography
        kid = entry.get("kid")
        if not isinstance(kid, str) or not kid:
            raise ValueError("a signing key without a kid")
        self._entry = dict(entry)
        self.algorithm_name = "RS256"
        self.Algorithm = _RS256()
        self.key = _RS256.from_jwk(entry)

    @property
    def key_type(self) -> str | None:
        return "RSA"

    @property
    def key_id(self) -> str | None:
        return str(self._entry["kid"])

    @property
    def public_key_use(self) -> str | None:
        return "sig"


def google_keys(document: Any) -> dict[str, GoogleKey]:
    """The RS256 signing keys of a JWKS document by ``kid``, other entries skipped.

    ValueError when it is not a JWKS or holds no such key (as PyJWT's PyJWKSet refuses one).
    """
    entries = document.get("keys") if isinstance(document, Mapping) else None
    if not isinstance(entries, list):
        raise ValueError("the signing keys document is not a JWKS")
    keys: dict[str, GoogleKey] = {}
    for entry in entries:
        if isinstance(entry, Mapping):
            try:
                key = GoogleKey(entry)
            except ValueError:
                continue
            keys[str(key.key_id)] = key
    if not keys:
        raise ValueError("the JWKS holds no RS256 signing key")
    return keys


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
        self._keys: dict[str, GoogleKey] = {}
        self._expires = float("-inf")
        self._fetched = float("-inf")
        self._lock = threading.Lock()
        self.fetches = 0
        """How many times the keys were fetched (the tests count them)."""

    def key(self, kid: str) -> GoogleKey | None:
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
            keys = google_keys(document)
        except (OSError, ValueError, TypeError) as exc:
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
