"""Kestra's search parameters: ``page``, ``size``, ``sort`` and ``filters[field][OPERATION]=value``.

Kestra's clients encode a search as flat query parameters (``kestrapy.query_filter``):
``filters[namespace][EQUALS]=company.team``, ``filters[state][IN]=FAILED,KILLED``,
``filters[labels][EQUALS][team]=data``. A route says which (field, operation) pairs it can
honour; anything else is refused with a 400 that names the parameter, never ignored, since
an ignored filter would return results the caller did not ask for. Grouped filters
(``filters[or][0]...``) are refused the same way.

Paging is Kestra's: ``page`` from 1, ``size`` items a page, and ``total`` in the response.
Squall's stores page with cursors, so a search reads the matching records from the start
and counts them; :data:`SCAN_LIMIT` bounds that read, and a search matching more is a 400
asking for narrower filters rather than a wrong ``total``.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any
from urllib.parse import parse_qsl

from msgspec import Struct

from control_plane.api import common

__all__ = ["SCAN_LIMIT", "Filter", "Search", "parse_search", "refuse"]

SCAN_LIMIT = 10_000
_FILTER = re.compile(r"^filters\[(?P<field>[^\]]+)\]\[(?P<op>[^\]]+)\](?:\[(?P<key>[^\]]*)\])?$")


class Filter(Struct, frozen=True):
    field: str
    op: str
    value: str
    key: str | None = None  # a map filter's key (labels)

    def values(self) -> list[str]:
        """The comma-separated values of an IN / NOT_IN filter (one value for the others)."""
        return [v for v in self.value.split(",") if v] if self.op in ("IN", "NOT_IN") else [self.value]


class Search(Struct, frozen=True):
    page: int
    size: int
    sort: tuple[str, ...]
    filters: tuple[Filter, ...]
    params: Mapping[str, str]  # the plain parameters the route allowed (namespace, flowId...)

    def window(self, total: int) -> slice:
        start = (self.page - 1) * self.size
        return slice(min(start, total), min(start + self.size, total))


def refuse(name: str, message: str) -> common.ApiError:
    """The 400 for a query parameter this route cannot honour."""
    return common.ApiError(
        400,
        f"unsupported query parameter {name!r}: {message}",
        extra={"errors": [{"name": name, "in": "query", "message": message}]},
    )


def _int(name: str, raw: str, minimum: int, maximum: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise common.ApiError(
            422,
            f"invalid query parameter {name!r}: not an integer: {raw!r}",
            extra={"errors": [{"name": name, "in": "query", "message": "not an integer"}]},
        ) from None
    if not minimum <= value <= maximum:
        raise common.ApiError(
            422,
            f"invalid query parameter {name!r}: {value} is not between {minimum} and {maximum}",
            extra={"errors": [{"name": name, "in": "query", "message": f"between {minimum} and {maximum}"}]},
        )
    return value


def parse_search(
    event: Mapping[str, Any],
    *,
    filters: Mapping[str, Collection[str]],
    sorts: Collection[str] = (),
    params: Collection[str] = (),
    default_size: int = 10,
    max_size: int = 1000,
) -> Search:
    """The request's search, or 400 naming the first parameter the route cannot honour.

    ``filters`` maps a field to the operations allowed on it; ``sorts`` lists the accepted
    ``sort`` values (Kestra's ``field:asc|desc``); ``params`` the plain parameters allowed.
    """
    page, size = 1, default_size
    sort: list[str] = []
    found: list[Filter] = []
    plain: dict[str, str] = {}
    for name, value in parse_qsl(str(event.get("rawQueryString") or ""), keep_blank_values=True):
        if name == "page":
            page = _int(name, value, 1, 1_000_000)
        elif name == "size":
            size = _int(name, value, 1, max_size)
        elif name == "sort":
            if value not in sorts:
                accepted = ", ".join(sorts) or "none"
                raise refuse(name, f"cannot sort by {value!r}; accepted: {accepted}")
            sort.append(value)
        elif name in params:
            plain[name] = value
        elif (match := _FILTER.match(name)) is not None:
            field, op = match["field"], match["op"]
            if field not in filters:
                raise refuse(name, f"no filter on {field!r} here; filterable: {', '.join(filters)}")
            if op not in filters[field]:
                raise refuse(
                    name, f"operation {op} is not supported on {field!r}: use {', '.join(filters[field])}"
                )
            found.append(Filter(field, op, value, match["key"]))
        else:
            raise refuse(name, "this endpoint does not take it")
    return Search(page=page, size=size, sort=tuple(sort), filters=tuple(found), params=plain)
