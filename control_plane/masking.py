"""What a secret becomes wherever it would be shown: ``********``, in text and in data.

Pure functions with no dependency beyond ``re``, so the engine, the service, the API views and
the CLI all mask the same way (the API's reads do not load the flow language to do it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["MASK", "mask_paths", "mask_secrets", "mask_value"]

MASK = "********"
"""Kestra's mask (its tests expect exactly eight stars)."""


def mask_secrets(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every occurrence of every non-empty secret replaced by ``********``.

    One regex pass with the longest secrets first, so that a secret containing another is masked
    whole and a mask is never masked again (a secret ``*`` would otherwise eat the stars).
    """
    unique = sorted({s for s in secrets if s}, key=len, reverse=True)
    if not unique or not text:
        return text
    pattern = re.compile("|".join(re.escape(s) for s in unique))
    return pattern.sub(MASK, text)


def mask_value(value: Any, secrets: Sequence[str]) -> Any:
    """``value`` (JSON-like data) with :func:`mask_secrets` applied to every string in it, keys too."""
    if isinstance(value, str):
        return mask_secrets(value, secrets)
    if isinstance(value, Mapping):
        return {mask_value(k, secrets): mask_value(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_value(item, secrets) for item in value]
    return value


def mask_paths(inputs: Mapping[str, Any], paths: Sequence[str]) -> dict[str, Any]:
    """A copy of ``inputs`` whose values at ``paths`` (input ids, dotted for nested ones) are masked.

    A missing or ``null`` value stays as it is, so a display does not pretend a value was given;
    a list of secrets is masked as a whole (its length is not worth revealing either). Maps on
    the way to a dotted id are copied, never mutated.
    """
    result: dict[str, Any] = dict(inputs)
    for path in paths:
        if path in result:
            if result[path] is not None:
                result[path] = MASK
            continue
        parts = path.split(".")
        node = result
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, Mapping):
                break
            node[part] = dict(child)
            node = node[part]
        else:
            if len(parts) > 1 and node.get(parts[-1]) is not None:
                node[parts[-1]] = MASK
    return result
