"""Kestra's random functions (``uuid``, ``id``, ``randomInt``, ``nanoId``, ``ksuid``) made replayable.

Why not ``random``: Squall's engine is replayed on the same events and must give the same
actions (DESIGN.md, section 3), so a template may not read a random source. Each value here is
derived instead from what identifies the call: the execution id, the task run id and attempt,
the template's text and the call's position in that render (a SHA-256 of them). Values are
therefore distinct across executions, task runs, attempts, templates and calls within one
template, and identical when the same render is replayed. Outside an execution (no
``execution.id`` in the context: a trigger's inputs, a validation) there is nothing to derive
them from, and the call fails with a message saying so.
"""

from __future__ import annotations

import hashlib
import uuid as _uuid
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from jinja2 import pass_context
from jinja2.runtime import Context
from jinja2.utils import missing

from control_plane.errors import ExpressionError

__all__ = ["FUNCTIONS", "render_scope"]

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

#: the template being rendered and how many seeded calls it made so far
_scope: ContextVar[tuple[str, list[int]] | None] = ContextVar("squall_seeded_scope", default=None)


class render_scope:
    """Number the seeded calls of one render of ``template`` (nested renders get their own).

    A class, not a ``@contextmanager`` generator: it wraps every render (see limits.budget).
    """

    __slots__ = ("_template", "_token")

    def __init__(self, template: str) -> None:
        self._template = template

    def __enter__(self) -> None:
        self._token = _scope.set((self._template, [0]))

    def __exit__(self, *exc: object) -> None:
        _scope.reset(self._token)


def _field(ctx: Context, key: str, name: str) -> Any:
    value = ctx.resolve_or_missing(key)
    if isinstance(value, Mapping):
        return value.get(name)
    return None


def _digest(ctx: Context, function: str) -> bytes:
    execution_id = _field(ctx, "execution", "id")
    if not isinstance(execution_id, str) or not execution_id:
        raise ExpressionError(
            f"{function}() is only available while an execution runs: Squall derives it from the "
            "execution and task run so that replaying an execution gives the same value"
        )
    scope = _scope.get()
    template, counter = scope if scope is not None else ("", [0])
    counter[0] += 1
    taskrun = ctx.resolve_or_missing("taskrun")
    run_id = taskrun.get("id") if isinstance(taskrun, Mapping) else None
    attempt = taskrun.get("attemptsCount") if isinstance(taskrun, Mapping) else None
    parts = (function, execution_id, str(run_id), str(attempt), template, str(counter[0]))
    return hashlib.sha256("\0".join(parts).encode()).digest()


@pass_context
def _uuid_function(ctx: Context) -> str:
    """Kestra's ``uuid()``: a version 4 UUID in its usual text form (UUIDFunction.java)."""
    return str(_uuid.UUID(bytes=_digest(ctx, "uuid")[:16], version=4))


@pass_context
def _id_function(ctx: Context) -> str:
    """Kestra's ``id()``: a UUID written in base 62 (IdUtils.create, FriendlyId), up to 22 characters."""
    number = _uuid.UUID(bytes=_digest(ctx, "id")[:16], version=4).int
    digits = []
    while number:
        number, rest = divmod(number, 62)
        digits.append(_BASE62[rest])
    return "".join(reversed(digits)) or "0"


@pass_context
def _random_int(ctx: Context, lower: Any = missing, upper: Any = missing) -> int:
    """Kestra's ``randomInt(lower, upper)``: an int in [lower, upper) (RandomIntFunction.java)."""
    for name, value in (("lower", lower), ("upper", upper)):
        if value is missing:
            raise ExpressionError(f"The 'GenerateRandomNumber' function expects an argument {name}")
        if not isinstance(value, int) or isinstance(value, bool):
            raise ExpressionError(f"The 'GenerateRandomNumber' function expects an integer as {name}")
    if upper < lower:
        raise ExpressionError("In 'GenerateRandomNumber' upper is less than lower")
    if upper == lower:
        return int(lower)
    fraction = int.from_bytes(_digest(ctx, "randomInt")[:8], "big")
    return int(lower + fraction % (upper - lower))


_NANOID_ALPHABET = "_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_MAX_NANOID = 1024


def _stream(seed: bytes, size: int) -> bytes:
    """``size`` bytes from ``seed`` (SHA-256 in counter mode)."""
    out = b""
    block = 0
    while len(out) < size:
        out += hashlib.sha256(seed + block.to_bytes(4, "big")).digest()
        block += 1
    return out[:size]


@pass_context
def _nano_id(ctx: Context, length: Any = 21, alphabet: Any = _NANOID_ALPHABET) -> str:
    """Kestra's ``nanoId(length=21, alphabet=...)``: ``length`` characters of ``alphabet``."""
    if not isinstance(length, int) or isinstance(length, bool) or not 0 < length <= _MAX_NANOID:
        raise ExpressionError(f"nanoId: length must be an integer from 1 to {_MAX_NANOID}, got {length!r}")
    if not isinstance(alphabet, str) or not alphabet:
        raise ExpressionError("nanoId: alphabet must be a non-empty string")
    data = _stream(_digest(ctx, "nanoId"), length)
    return "".join(alphabet[byte % len(alphabet)] for byte in data)


_KSUID_EPOCH = 1_400_000_000


@pass_context
def _ksuid(ctx: Context) -> str:
    """Kestra's ``ksuid()``: 27 base-62 characters, a timestamp (the engine's clock) then 16 bytes."""
    now = ctx.resolve_or_missing("@now")
    if now is missing or not hasattr(now, "timestamp"):
        raise ExpressionError("ksuid() needs the engine's clock, which this render does not have")
    seconds = max(int(now.timestamp()) - _KSUID_EPOCH, 0).to_bytes(4, "big")
    number = int.from_bytes(seconds + _digest(ctx, "ksuid")[:16], "big")
    digits = []
    while number:
        number, rest = divmod(number, 62)
        digits.append(_BASE62[rest])
    return "".join(reversed(digits)).rjust(27, "0")


FUNCTIONS: dict[str, Any] = {
    "uuid": _uuid_function,
    "id": _id_function,
    "randomInt": _random_int,
    "nanoId": _nano_id,
    "ksuid": _ksuid,
}
