"""What one render may cost: a deadline, output and value sizes, and how they are enforced.

Theory of operation
-------------------
A template is untrusted code: it comes from a flow, and its inputs come from whoever may start
an execution. Jinja's sandbox keeps it away from Python's internals, but not from spending time
and memory, and one render runs inside a request or a tick that others wait for. So every
render carries a :class:`Budget`, held in a context variable for the duration of the top-level
:func:`~control_plane.expressions.render` (a nested ``render()`` shares its caller's budget):

deadline
    ``Limits.timeout`` seconds from the start. Checked cooperatively wherever the template
    can repeat work: each loop iteration, each function, macro and filter call, each printed
    value. No single step can run long on its own, because every primitive that could is
    bounded before it starts: string and list sizes are checked ahead of the operations that
    multiply them (``*``, ``replace``, ``indent``, ``join``, big integers), regular
    expressions run in the ``regex`` engine with a timeout, and ``jq`` runs in a separate
    process that is killed at the deadline (:mod:`control_plane.expressions.jq_sandbox`).
output
    The rendered text is at most ``max_output`` characters, and everything printed along
    the way, including text captured by ``{% set %}`` blocks and macros and then thrown
    away, at most ``4 * max_output``: memory stays proportional to the limit.
values
    A string an operation returns holds at most ``max_string`` characters, a list or map
    at most ``max_items`` entries (counted with repetitions, so a YAML alias bomb or a list
    repeated inside itself is measured as it would print), an integer at most
    ``max_int_bits`` bits.

Crossing a limit raises :class:`~control_plane.errors.ExpressionLimitError`, whose message names
the limit and the setting that raises it; the task using the expression fails with it.

The limits are process-wide (:func:`configure`, called once from the deployment's settings):
they are resource bounds, not semantics, so they are not part of the engine's inputs. Time is
read from ``time.monotonic`` only to enforce the deadline; rendering results never depend on it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence, Set
from contextvars import ContextVar, Token
from typing import Any

from msgspec import Struct

from control_plane.errors import ExpressionLimitError

__all__ = [
    "Budget",
    "Limits",
    "budget",
    "charge_print",
    "check_bits",
    "check_int",
    "check_items",
    "check_string",
    "check_value",
    "configure",
    "current_limits",
    "measure",
    "remaining",
    "tick",
]


class Limits(Struct, frozen=True):
    """Bounds for one top-level render; the defaults suit a control plane that answers requests."""

    timeout: float = 2.0
    """Seconds one render may take (``SQUALL_EXPRESSION_TIMEOUT``)."""
    max_output: int = 4 * 1024 * 1024
    """Characters one render may produce (``SQUALL_EXPRESSION_MAX_OUTPUT``)."""
    max_string: int = 4 * 1024 * 1024
    """Characters in any string an operation returns (``SQUALL_EXPRESSION_MAX_OUTPUT`` too)."""
    max_items: int = 1_000_000
    """Entries in any list or map an operation returns, repetitions counted."""
    max_int_bits: int = 100_000
    """Bits in any integer an operation returns (about 30,000 decimal digits)."""
    jq_memory: int = 512 * 1024 * 1024
    """Address space of the jq worker process, in bytes."""


_DEFAULT = Limits()
_limits: Limits = _DEFAULT


def configure(limits: Limits | None) -> None:
    """Set the process-wide limits (``None`` restores the defaults)."""
    global _limits
    _limits = limits or _DEFAULT


def current_limits() -> Limits:
    return _limits


class Budget:
    """What the render in progress has left: its deadline and its printing allowance."""

    __slots__ = ("deadline", "limits", "printed", "started")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.started = time.monotonic()
        self.deadline = self.started + limits.timeout
        self.printed = 0


_budget: ContextVar[Budget | None] = ContextVar("squall_render_budget", default=None)


class budget:
    """The current render's budget, or a new one for a top-level render.

    A class rather than a ``@contextmanager`` generator: it wraps every render (one per task
    run of a large ForEach), and with ``render_scope`` the generator machinery was a fifth of
    a ``{{ taskrun.value }}`` render (5.6 us, 4.6 as classes; benchmarks/engine.py).
    """

    __slots__ = ("_token",)

    def __init__(self) -> None:
        self._token: Token[Budget | None] | None = None

    def __enter__(self) -> Budget:
        current = _budget.get()
        if current is not None:
            return current
        fresh = Budget(_limits)
        self._token = _budget.set(fresh)
        return fresh

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _budget.reset(self._token)


def _timeout_error(limits: Limits) -> ExpressionLimitError:
    return ExpressionLimitError(
        f"the expression took longer than its {limits.timeout:g} s limit (SQUALL_EXPRESSION_TIMEOUT)"
    )


def tick() -> None:
    """Fail when the render in progress is past its deadline (a no-op outside a render)."""
    current = _budget.get()
    if current is not None and time.monotonic() > current.deadline:
        raise _timeout_error(current.limits)


def remaining() -> float:
    """Seconds left to the render in progress (the whole timeout outside a render); never negative."""
    current = _budget.get()
    if current is None:
        return _limits.timeout
    left = current.deadline - time.monotonic()
    if left <= 0:
        raise _timeout_error(current.limits)
    return left


def charge_print(size: int) -> None:
    """Count ``size`` printed characters against the render's allowance (4x ``max_output``)."""
    current = _budget.get()
    if current is None:
        return
    current.printed += size
    if current.printed > 4 * current.limits.max_output:
        raise ExpressionLimitError(
            f"the expression printed more than {4 * current.limits.max_output} characters"
            f" in all (4x SQUALL_EXPRESSION_MAX_OUTPUT)"
        )
    if time.monotonic() > current.deadline:
        raise _timeout_error(current.limits)


def check_string(size: int, what: str = "a string") -> None:
    """Refuse a string of ``size`` characters before it is built."""
    limit = _limits.max_string
    if size > limit:
        raise ExpressionLimitError(
            f"{what} would hold {size} characters, more than the {limit} allowed"
            " (SQUALL_EXPRESSION_MAX_OUTPUT)"
        )


def check_items(count: int, what: str = "a list") -> None:
    limit = _limits.max_items
    if count > limit:
        raise ExpressionLimitError(f"{what} would hold {count} items, more than the {limit} allowed")


def check_bits(bits: int, what: str = "a number") -> None:
    """Refuse an integer of ``bits`` bits before it is computed."""
    limit = _limits.max_int_bits
    if bits > limit:
        raise ExpressionLimitError(f"{what} would have more than {limit} bits")


def check_int(value: int) -> int:
    check_bits(value.bit_length())
    return value


def measure(value: Any, limit: int) -> int:
    """Entries and characters ``value`` holds as it would print, counting shared parts each time.

    Stops as soon as the count passes ``limit``, and measures a container shared in several
    places once (a memo by identity), so a YAML alias bomb or ``[[x] * 1000] * 1000`` is
    measured in a few steps instead of being walked to its printed size.
    """
    memo: dict[int, int] = {}

    def size(item: Any) -> int:
        kind = type(item)
        if kind is str:
            return len(item) + 2
        if kind is int:
            return item.bit_length() // 3 + 2
        if kind is bool or kind is float or item is None:
            return 8
        if kind is dict or kind is list or kind is tuple:
            return container(item, kind is dict)
        if isinstance(item, str):
            return len(item) + 2
        if isinstance(item, Mapping):
            return container(item, True)
        if isinstance(item, Sequence | Set) and not isinstance(item, bytes | bytearray):
            return container(item, False)
        if isinstance(item, int):
            return item.bit_length() // 3 + 2
        return 8

    def container(item: Any, mapping: bool) -> int:
        key = id(item)
        known = memo.get(key)
        if known is not None:
            return known
        memo[key] = 1  # a cycle is measured as one entry; data from JSON and YAML has none
        total = 2
        for entry in item.items() if mapping else item:
            total += (size(entry[0]) + size(entry[1]) + 2) if mapping else size(entry) + 1
            if total > limit:
                break
        memo[key] = total
        return total

    return size(value)


def check_value(value: Any, what: str = "the value") -> Any:
    """``value`` unchanged, if strings, lists, maps and integers in it are within the limits."""
    if isinstance(value, str):
        check_string(len(value), what)
    elif isinstance(value, bool) or value is None or isinstance(value, float):
        pass
    elif isinstance(value, int):
        check_int(value)
    elif isinstance(value, Mapping | Sequence | Set) and not isinstance(value, bytes | bytearray):
        limit = _limits.max_string
        if len(value) > _limits.max_items:
            check_items(len(value), what)
        if measure(value, limit) > limit:
            raise ExpressionLimitError(
                f"{what} would print as more than {limit} characters (SQUALL_EXPRESSION_MAX_OUTPUT)"
            )
    return value
