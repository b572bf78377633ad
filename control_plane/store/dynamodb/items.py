"""DynamoDB's wire format as the store writes it: attribute values, keys, sizes, compressed bodies.

Pure functions and constants, no client. Every other module of the store builds its items
with these, so an attribute is encoded one way only. The table's key names, indexes and
limits are :mod:`control_plane.store.dynamodb_schema` (shared with Terraform and the sweeper);
the sort keys of an execution's partition are here, because only this package reads them.
"""

from __future__ import annotations

import re
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "CHANGES",
    "CH_SLOTS",
    "DELETED_AT",
    "DOCUMENT",
    "INLINE_LOGS",
    "MAX_CHAR",
    "META",
    "TR",
    "VALUES",
    "WRITTEN_AT",
    "Item",
    "compress",
    "decompress",
    "exec_key",
    "from_us",
    "is_document",
    "item_size",
    "job_key",
    "n",
    "names",
    "s",
    "us",
]

Item = dict[str, Any]  # one item in DynamoDB's wire format: {"attr": {"S": "..."}}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_CHAR = "\U0010ffff"  # the greatest code point: the top of a prefix range
META = "META"
TR = "TR#"
# A loop's values, written once per execution and value set: ``TRV#`` sorts after every ``TR#``
# key ('V' > '#'), so an execution read (``META``..``TR#<max>``) does not return them.
VALUES = "TRV#"
INLINE_LOGS = "LOG#"  # the pseudo sort key of a document's inline log lines: before every log item
CH_SLOTS = 8  # META remembers the task runs changed by its last 8 writes (a ring, slot = version % 8)
# The task runs one wide write changed, when they do not fit its ring entry (``CH#<version>``):
# before ``META`` in sort-key order, so an execution read does not return them.
CHANGES = "CH#"
# A task run item's ``wv``: the version of the write that put it. A reader further behind than
# META's ring fetches only the items with ``wv`` above its version (a filtered ``Query``), unless
# META's ``dv`` (the last write that deleted task runs) is above it too.
WRITTEN_AT = "wv"
DELETED_AT = "dv"
DOCUMENT = "d"  # the value of ``md`` on a document-mode item (split-mode META has no ``md``)


def s(value: str) -> dict[str, str]:
    return {"S": value}


def n(value: int | float) -> dict[str, str]:
    return {"N": str(value)}


def us(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1)


def from_us(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def names(*expressions: str | None) -> dict[str, str]:
    """``#name`` placeholders for every attribute an expression mentions (all of them aliased:
    ``ttl`` and others are reserved words, and DynamoDB refuses unused placeholders)."""
    found: dict[str, str] = {}
    for expr in expressions:
        for name in re.findall(r"#(\w+)", expr or ""):
            found[f"#{name}"] = name
    return found


def _size(value: Any) -> int:
    """An upper bound of DynamoDB's size of an attribute value (UTF-8 bytes, as it counts them)."""
    if "S" in value:
        return len(value["S"].encode())
    if "N" in value:
        return len(value["N"])
    if "M" in value:
        return 3 + sum(len(k.encode()) + 1 + _size(v) for k, v in value["M"].items())
    if "L" in value:
        return 3 + sum(1 + _size(v) for v in value["L"])
    if "B" in value:
        return len(value["B"])
    return 1


def item_size(item: Item) -> int:
    return sum(len(name.encode()) + _size(value) for name, value in item.items())


def compress(text: str) -> bytes:
    return zlib.compress(text.encode(), 6)


def decompress(blob: bytes) -> str:
    return zlib.decompress(blob).decode()


def exec_key(execution_id: str, sk: str = META) -> Item:
    return {"PK": s(f"EXEC#{execution_id}"), "SK": s(sk)}


def job_key(name: str) -> Item:
    return {"PK": s(f"JOB#{name}"), "SK": s("JOB")}


def is_document(item: Item) -> bool:
    """Whether a META item holds a whole execution (document mode): the one reading of ``md``."""
    return bool(item.get("md", {}).get("S") == DOCUMENT)
