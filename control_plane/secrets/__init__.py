"""Where ``{{ secret('NAME') }}`` finds its value: a chain of backends, first answer wins.

Backends, in the order ``SQUALL_SECRETS`` lists them (default ``env``, plus ``file`` when
``SQUALL_SECRETS_FILE`` is set)::

    env             Kestra's open-source convention: ``SECRET_<NAME>`` environment variables,
                    base64-encoded (``SECRET_DB_PASSWORD=$(printf s3cr3t | base64)``)
    file            a YAML (or JSON) map of name to value, readable by its owner only
                    (``squall run --secrets FILE``, ``squall server --secrets FILE``)
    secretsmanager  AWS Secrets Manager, secret ``<SQUALL_SECRETS_PREFIX><NAME>`` (default
                    prefix ``squall/``); its SecretString, as is
    ssm             AWS Systems Manager Parameter Store, parameter ``/<prefix><NAME>``
                    (``/squall/NAME``), SecureString decrypted

A backend answers ``None`` for a name it does not hold, and the next one is asked; a backend
that fails (denied, unreachable) stops the lookup with an error naming it, so a secret is
never taken from a later backend because an earlier one was down. Values are kept for
``ttl`` seconds per process (a warm Lambda does not call Secrets Manager for every task), and so
is a name no backend has (masking looks up every name a flow mentions, at every event).

Every value handed out is also remembered as *revealed*, so that the masking of logs, errors,
labels and outputs (:mod:`control_plane.secrets.masking`) can find it in text produced later
in the same process.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from control_plane.errors import SquallError

__all__ = ["BACKENDS", "SecretBackend", "SecretChain", "SecretError", "check_name", "open_chain"]

BACKENDS = ("env", "file", "secretsmanager", "ssm")

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./-]{0,255}")


class SecretError(SquallError):
    """A secret could not be read: unknown name, a backend that failed, a bad secrets file."""


class SecretBackend(Protocol):
    """One place secrets live.

    ::

        class Vault:
            name = "vault"
            def get(self, name: str) -> str | None: ...   # None: not here, ask the next one
            def where(self, name: str) -> str: ...        # "vault kv/squall/NAME", for messages
    """

    name: str

    def get(self, name: str) -> str | None: ...

    def where(self, name: str) -> str: ...


def check_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise SecretError(
            f"invalid secret name {name!r}: letters, digits and _ . / - only, at most 256 characters"
        )
    return name


class SecretChain:
    """The backends in order, with a per-process cache of what they answered."""

    def __init__(
        self,
        backends: Sequence[SecretBackend],
        *,
        ttl: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backends = tuple(backends)
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[str, tuple[float, str]] = {}
        self._missing: dict[str, float] = {}
        self._revealed: set[str] = set()
        self._lock = threading.Lock()

    def get(self, name: str) -> str:
        """The value of secret ``name``; :class:`SecretError` when no backend has it."""
        check_name(name)
        now = self._clock()
        with self._lock:
            cached = self._cache.get(name)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        places = "; ".join(backend.where(name) for backend in self.backends) or "no secret backend configured"
        with self._lock:
            missed = self._missing.get(name)
        if missed is not None and now - missed < self._ttl:
            raise SecretError(f"secret '{name}' not found (looked in: {places})")
        for backend in self.backends:
            value = backend.get(name)
            if value is not None:
                with self._lock:
                    self._cache[name] = (now, value)
                    self._missing.pop(name, None)
                    if value:
                        self._revealed.add(value)
                return value
        with self._lock:  # a name the flow mentions but no backend has: not asked again until the ttl
            self._missing[name] = now
        raise SecretError(f"secret '{name}' not found (looked in: {places})")

    def revealed(self) -> frozenset[str]:
        """Every value this process has handed out (for masking)."""
        with self._lock:
            return frozenset(self._revealed)


def open_chain(
    kinds: Sequence[str] = (),
    *,
    file: str | None = None,
    prefix: str = "squall/",
    region: str | None = None,
) -> SecretChain:
    """The chain a deployment's settings describe (``SQUALL_SECRETS``, ``SQUALL_SECRETS_FILE``...).

    No kinds: ``env``, then ``file`` when a file is given. A file given without ``file`` in an
    explicit list is an error rather than a file silently not read.
    """
    chosen = list(kinds) or (["env", "file"] if file else ["env"])
    unknown = [kind for kind in chosen if kind not in BACKENDS]
    if unknown:
        raise SecretError(f"unknown secret backend {', '.join(unknown)} (known: {', '.join(BACKENDS)})")
    if file and "file" not in chosen:
        raise SecretError(f"a secrets file is set ({file}) but 'file' is not among the backends {chosen}")
    if "file" in chosen and not file:
        raise SecretError("the 'file' secret backend needs a file (SQUALL_SECRETS_FILE or --secrets)")
    backends: list[SecretBackend] = []
    for kind in chosen:
        if kind == "env":
            from control_plane.secrets.env import EnvSecrets

            backends.append(EnvSecrets())
        elif kind == "file":
            from control_plane.secrets.file import FileSecrets

            assert file is not None
            backends.append(FileSecrets(file))
        elif kind == "secretsmanager":
            from control_plane.secrets.aws import SecretsManagerSecrets

            backends.append(SecretsManagerSecrets(prefix=prefix, region=region))
        else:
            from control_plane.secrets.aws import ParameterStoreSecrets

            backends.append(ParameterStoreSecrets(prefix=prefix, region=region))
    return SecretChain(backends)
