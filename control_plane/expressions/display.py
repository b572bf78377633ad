"""How values print in a template, and Kestra's truthiness: shared by the engine and filters."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

__all__ = ["is_truthy", "plain", "to_display"]

_FALSY = frozenset({"", "false", "0", "-0"})


def plain(value: Any) -> Any:
    """Plain JSON-compatible data: any Mapping becomes a dict, any tuple a list."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def to_display(value: Any) -> str:
    """Pebble's rendering: true/false, null as empty, maps and lists as compact JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(plain(value), separators=(",", ":"), ensure_ascii=False, default=str)
    return str(value)


def is_truthy(value: Any) -> bool:
    """Kestra's TruthyUtils: null, "", "false", "0" and "-0" are false, the rest true."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    return to_display(value).strip().lower() not in _FALSY
