"""How values print in a template, and Kestra's truthiness: shared by the engine and the filters.

Kestra renders with Java's ``toString`` and Jackson, so ``true``/``false`` are lowercase, ``null``
prints as nothing, doubles keep their ``.0`` and maps/lists print as compact JSON. Flows compare
these strings (``runIf: "{{ outputs.check.value }}"``), so the exact spelling matters.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence, Set
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

__all__ = ["MapEntry", "check_data", "is_truthy", "java_number", "plain", "to_display", "to_json"]

_FALSY = frozenset({"", "false", "0", "-0"})


class MapEntry(tuple[Any, Any]):
    """One ``(key, value)`` of a map being iterated: Pebble's ``Map.Entry``, printed ``key=value``."""

    __slots__ = ()


def plain(value: Any) -> Any:
    """JSON-compatible data: every Mapping a dict, every non-string Sequence or set a list.

    Contexts hold ``immutables.Map`` and tuples; ``json`` and ``jq`` only take dicts and lists.
    """
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, Mapping):
        return {k if isinstance(k, str) else to_display(k): plain(v) for k, v in value.items()}
    if isinstance(value, Sequence | Set) and not isinstance(value, bytes | bytearray):
        return [plain(v) for v in value]
    if isinstance(value, datetime | date):
        return iso(value)
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


_DATA = (str, int, float, Decimal, Mapping, Sequence, Set, datetime, date, type(None))


def check_data(value: Any) -> Any:
    """``value`` if it is data; functions and Jinja internals (``self``, ``loop``) are not printable."""
    if isinstance(value, _DATA) and not callable(value):
        return value
    from jinja2.exceptions import SecurityError  # the sandbox's own error: render() maps it

    raise SecurityError(f"a {type(value).__name__} value cannot be used as text")


def to_json(value: Any) -> str:
    """Jackson's compact output: no spaces, insertion order, non-ASCII kept as is."""
    return json.dumps(plain(value), separators=(",", ":"), ensure_ascii=False, default=str)


def iso(value: datetime | date) -> str:
    """ISO-8601 the way Java prints an instant: UTC as ``Z``."""
    if isinstance(value, datetime):
        text = value.isoformat()
        return text[:-6] + "Z" if value.utcoffset() == timedelta(0) else text
    return value.isoformat()


def java_number(value: float) -> str:
    """``Double.toString``: ``1.0`` not ``1``, scientific notation outside [1e-3, 1e7)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0 or 1e-3 <= abs(value) < 1e7:
        return repr(value)
    sign, digits, exponent = Decimal(repr(value)).as_tuple()
    assert isinstance(exponent, int)  # finite, checked above
    text = "".join(map(str, digits)).rstrip("0") or "0"
    power = exponent + len(digits) - 1
    mantissa = text[0] + "." + (text[1:] or "0")
    return f"{'-' if sign else ''}{mantissa}E{power}"


def to_display(value: Any) -> str:
    """Pebble's printing of a value: true/false, null as empty, maps and lists as compact JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return java_number(value)
    if isinstance(value, MapEntry):
        return f"{to_display(value[0])}={to_display(value[1])}"
    if isinstance(value, Mapping) or (
        isinstance(value, Sequence | Set) and not isinstance(value, bytes | bytearray)
    ):
        return to_json(value)
    if isinstance(value, datetime | date):
        return iso(value)
    return str(value)


def is_truthy(value: Any) -> bool:
    """Kestra's TruthyUtils: null, "", "false", "0" and "-0" (any case, trimmed) are false."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float | Decimal):
        return value != 0
    return to_display(value).strip().lower() not in _FALSY
