"""Signed webhooks: any sender holding the shared secret (an Azure Event Grid relay, a Kubernetes
watcher, a script) pushes events to ``POST /events/webhook/<key>``.

The signature header, as Stripe and others shape it::

    X-Squall-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>

The timestamp is inside what is signed, so it cannot be changed; a request whose ``t`` is more
than :data:`TOLERANCE` seconds away from our clock is refused as a possible replay (duplicates
inside the window are harmless: the control plane checks every event against the stored job).
Several ``v1=`` entries may be sent (one per secret the sender holds); the request verifies
when any matches any secret we accept. Every pair is compared, with ``hmac.compare_digest``,
and none is skipped, so the time taken says nothing about which part matched.

Secrets (``SQUALL_WEBHOOK_SECRETS``, at most two sources) rotate without downtime:

* a Secrets Manager ARN: its ``AWSCURRENT`` and ``AWSPREVIOUS`` values are both accepted, so
  ``put-secret-value`` with a new secret keeps the old one valid until the next put;
* a name read like ``secret('NAME')`` (``SECRET_<NAME>`` base64 variables, Secrets Manager or SSM
  under the prefix): list the new name beside the old one, move the senders, drop the old.

Values are kept :data:`SECRETS_TTL` seconds. A signature that matches none of them re-reads
the secrets once (at most every :data:`RELOAD_AFTER` seconds) before refusing, so a rotation
is honoured within seconds rather than at the end of the cache time.

:func:`sign` is the sender's side (tests and the docs use it).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from control_plane.ingress import Refused

if TYPE_CHECKING:
    from control_plane.secrets import SecretChain

__all__ = ["HEADER", "RELOAD_AFTER", "SECRETS_TTL", "TOLERANCE", "WebhookSecrets", "WebhookVerifier", "sign"]

HEADER = "X-Squall-Signature"
TOLERANCE = 300
"""Seconds a signature's timestamp may be away from now (either way): the replay window."""

SECRETS_TTL = 300.0
RELOAD_AFTER = 30.0

_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:([a-z0-9-]+):\d{12}:secret:.+$")
_ENTRY = re.compile(r"^\s*(t|v1)=(\S+?)\s*$")
_HEX = re.compile(r"^[0-9a-fA-F]{64}$")


def sign(secret: str | bytes, body: bytes, timestamp: int) -> str:
    """The ``X-Squall-Signature`` value for ``body`` sent at ``timestamp`` (unix seconds)."""
    return f"t={timestamp},v1={_digest(_bytes(secret), timestamp, body)}"


def _bytes(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def _digest(secret: bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


class WebhookSecrets:
    """The secret values accepted now, read from their sources and cached; thread-safe.

    ``chain`` reads the names; ``secretsmanager`` is a boto3 client factory by region (tests
    pass one bound to moto), built on the first ARN read.
    """

    def __init__(
        self,
        sources: Sequence[str],
        *,
        chain: SecretChain | None = None,
        secretsmanager: Callable[[str], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not sources:
            raise ValueError("no webhook secret source")
        self.sources = tuple(sources)
        self._chain = chain
        self._client_for = secretsmanager or _boto3_client
        self._clients: dict[str, Any] = {}
        self._clock = clock
        self._values: tuple[bytes, ...] = ()
        self._loaded = float("-inf")
        self._lock = threading.Lock()

    def values(self, *, reload: bool = False) -> tuple[bytes, ...]:
        """The accepted secrets; ``reload`` re-reads them unless that was done very recently."""
        with self._lock:
            now = self._clock()
            age = now - self._loaded
            if age >= SECRETS_TTL or (reload and age >= RELOAD_AFTER):
                self._values = self._read()
                self._loaded = now
            return self._values

    def _read(self) -> tuple[bytes, ...]:
        from control_plane.secrets import SecretError

        found: list[bytes] = []
        for source in self.sources:
            try:
                values = self._from_arn(source) if _ARN.match(source) else [self._from_chain(source)]
            except SecretError as exc:
                raise Refused(503, f"cannot read the webhook secret: {exc}") from None
            found += [_bytes(v) for v in values if v]
        if not found:
            raise Refused(503, "the webhook secrets are empty")
        return tuple(dict.fromkeys(found))  # in order, once each

    def _from_chain(self, name: str) -> str:
        from control_plane.secrets import SecretError, open_chain

        chain = self._chain if self._chain is not None else open_chain()
        try:
            return chain.get(name)
        except SecretError:
            raise
        except Exception as exc:  # a backend's own failure: report it, do not crash the request
            raise SecretError(f"secret {name!r}: {exc}") from exc

    def _from_arn(self, arn: str) -> list[str]:
        """AWSCURRENT, then AWSPREVIOUS when there is one (after a rotation)."""
        from control_plane.secrets import SecretError

        match = _ARN.match(arn)
        assert match is not None
        region = match.group(1)
        client = self._clients.get(region)
        if client is None:
            client = self._clients[region] = self._client_for(region)
        values: list[str] = []
        for stage in ("AWSCURRENT", "AWSPREVIOUS"):
            try:
                answer = client.get_secret_value(SecretId=arn, VersionStage=stage)
            except Exception as exc:  # botocore's ClientError, imported only with boto3
                code = getattr(exc, "response", {}).get("Error", {}).get("Code")
                if stage == "AWSPREVIOUS" and code == "ResourceNotFoundException":
                    break  # never rotated: only a current value
                raise SecretError(f"Secrets Manager secret {arn} ({stage}): {code or exc}") from None
            values.append(str(answer.get("SecretString") or ""))
        return values


def _boto3_client(region: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "secretsmanager",
        region_name=region,
        config=Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=3, read_timeout=5),
    )


class WebhookVerifier:
    """Checks ``X-Squall-Signature`` over a raw body; :meth:`verify` raises Refused when it fails."""

    def __init__(self, secrets: WebhookSecrets, *, clock: Callable[[], float] = time.time) -> None:
        self.secrets = secrets
        self._clock = clock

    def verify(self, header: str | None, body: bytes) -> None:
        if not header:
            raise Refused(401, f"missing {HEADER} header (t=<unix seconds>,v1=<hex HMAC-SHA256>)")
        timestamp, signatures = _parse(header)
        if abs(self._clock() - timestamp) > TOLERANCE:
            raise Refused(401, f"{HEADER} timestamp is more than {TOLERANCE} s from now (a replay?)")
        if self._matches(self.secrets.values(), timestamp, signatures, body):
            return
        if self._matches(self.secrets.values(reload=True), timestamp, signatures, body):
            return  # a secret rotated since the cache was filled
        raise Refused(401, f"{HEADER} does not match the body with any accepted secret")

    @staticmethod
    def _matches(secrets: Sequence[bytes], timestamp: int, signatures: Sequence[str], body: bytes) -> bool:
        matched = False
        for secret in secrets:
            expected = _digest(secret, timestamp, body).encode()
            for given in signatures:
                matched |= hmac.compare_digest(expected, given.lower().encode())  # no early exit
        return matched


def _parse(header: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        entry = _ENTRY.match(part)
        if entry is None:
            continue  # unknown schemes (v0, future versions) are ignored, as Stripe's are
        name, value = entry.groups()
        if name == "t" and value.isdigit() and timestamp is None:
            timestamp = int(value)
        elif name == "v1" and _HEX.match(value):
            signatures.append(value)
    if timestamp is None or not signatures:
        raise Refused(401, f"malformed {HEADER} header: expected t=<unix seconds>,v1=<64 hex digits>")
    return timestamp, signatures
