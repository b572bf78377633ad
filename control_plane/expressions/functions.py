"""Kestra's filters and functions (the subset flows use), as Jinja filters and globals."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import jq as _jq
from dateutil.relativedelta import relativedelta
from jinja2 import pass_context
from jinja2.runtime import Context, Undefined

from control_plane.errors import ExpressionError
from control_plane.expressions.display import plain, to_display

__all__ = ["FILTERS", "GLOBALS", "TESTS"]


def _json(value: Any) -> str:
    return json.dumps(plain(value), separators=(",", ":"), ensure_ascii=False, default=str)


def _jq_filter(value: Any, expression: str) -> list[Any]:
    try:
        return list(_jq.compile(expression).input_value(plain(value)).all())
    except ValueError as exc:
        raise ExpressionError(f"jq expression {expression!r} failed: {exc}") from None


def _default(value: Any, fallback: Any = "") -> Any:
    if isinstance(value, Undefined) or value is None or value == "":
        return fallback
    return value


def _replace(value: Any, old: Any, new: Any = None) -> str:
    text = to_display(value)
    pairs = old.items() if isinstance(old, Mapping) else [(old, new)]
    for a, b in pairs:
        text = text.replace(str(a), to_display(b))
    return text


def _slugify(value: Any) -> str:
    text = unicodedata.normalize("NFKD", to_display(value)).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _number(value: Any) -> int | float:
    if isinstance(value, int | float):
        return value
    text = to_display(value).strip()
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise ExpressionError(f"'{text}' is not a number") from None


# Java DateTimeFormatter letters -> strftime; longest first.
_JAVA = [
    ("yyyy", "%Y"),
    ("yy", "%y"),
    ("MMMM", "%B"),
    ("MMM", "%b"),
    ("MM", "%m"),
    ("dd", "%d"),
    ("HH", "%H"),
    ("hh", "%I"),
    ("mm", "%M"),
    ("ss", "%S"),
    ("EEEE", "%A"),
    ("EEE", "%a"),
    ("a", "%p"),
    ("XXX", "@XXX"),
    ("Z", "%z"),
    ("z", "%Z"),
    ("d", "%-d"),
    ("M", "%-m"),
    ("H", "%-H"),
]
_NAMED = {
    "iso": "yyyy-MM-dd'T'HH:mm:ss.SSSXXX",
    "iso_date_time": "yyyy-MM-dd'T'HH:mm:ss.SSSXXX",
    "iso_date": "yyyy-MM-dd",
    "iso_time": "HH:mm:ss",
    "sql_date_time": "yyyy-MM-dd HH:mm:ss",
}


def _parse_date(value: Any) -> datetime:
    if isinstance(value, datetime):
        moment = value
    else:
        text = to_display(value).strip()
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ExpressionError(f"'{text}' is not an ISO-8601 date") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _format_date(moment: datetime, pattern: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "'":
            end = pattern.find("'", i + 1)
            end = len(pattern) if end < 0 else end
            out.append(pattern[i + 1 : end].replace("%", "%%") or "'")
            i = end + 1
            continue
        if pattern.startswith("S", i):
            n = len(pattern[i:]) - len(pattern[i:].lstrip("S"))
            out.append(
                f"{moment.microsecond:06d}"[:n] if n <= 6 else f"{moment.microsecond:06d}".ljust(n, "0")
            )
            i += n
            continue
        for java, py in _JAVA:
            if pattern.startswith(java, i):
                if py == "@XXX":
                    offset = moment.utcoffset() or timedelta(0)
                    py = "Z" if not offset else moment.strftime("%z")[:3] + ":" + moment.strftime("%z")[3:]
                out.append(moment.strftime(py) if py.startswith("%") else py)
                i += len(java)
                break
        else:
            out.append(pattern[i].replace("%", "%%"))
            i += 1
    return "".join(out)


def _date(
    value: Any, format: str = "iso", timeZone: str | None = None, existingFormat: str | None = None
) -> str:
    moment = _parse_date(value)
    if timeZone:
        from zoneinfo import ZoneInfo

        moment = moment.astimezone(ZoneInfo(timeZone))
    return _format_date(moment, _NAMED.get(format, format))


_UNITS = {
    "SECONDS": "seconds",
    "MINUTES": "minutes",
    "HOURS": "hours",
    "DAYS": "days",
    "WEEKS": "weeks",
    "MONTHS": "months",
    "YEARS": "years",
    "MILLIS": "microseconds",
}


def _date_add(value: Any, amount: int, unit: str) -> str:
    key = _UNITS.get(str(unit).upper())
    if key is None:
        raise ExpressionError(f"unknown date unit '{unit}'")
    moment = _parse_date(value) + relativedelta(
        **{key: int(amount) * (1000 if unit.upper() == "MILLIS" else 1)}
    )
    return _format_date(moment, _NAMED["iso"])


def _iso(moment: datetime) -> str:
    return _format_date(moment.astimezone(UTC), _NAMED["iso"])


@pass_context
def _now(ctx: Context, timeZone: str | None = None) -> str:
    moment = ctx.get("@now") or datetime.now(UTC)
    return _iso(moment) if not timeZone else _date(moment, "iso", timeZone)


@pass_context
def _render(ctx: Context, template: Any, recursive: bool = True) -> Any:
    from control_plane.expressions.environment import render

    if not isinstance(template, str):
        return template
    text, depth = template, 0
    while "{{" in text or "{%" in text:
        text = render(text, ctx.get_all())
        depth += 1
        if not recursive or depth >= 10:
            break
    return text


def _from_json(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ExpressionError(f"fromJson: invalid JSON: {exc}") from None


@pass_context
def _current_each_output(ctx: Context, outputs: Any) -> Any:
    for value in ctx.get("@loop_values") or ():
        if isinstance(outputs, Mapping) and value in outputs:
            outputs = outputs[value]
    return outputs


@pass_context
def _error_logs(ctx: Context) -> list[Any]:
    return list(ctx.get("@error_logs") or [])


@pass_context
def _secret(ctx: Context, name: str) -> str:
    secrets = ctx.get("@secrets") or {}
    if name not in secrets:
        raise ExpressionError(f"secret '{name}' not found")
    return str(secrets[name])


def _keys(value: Any) -> list[Any]:
    return list(value.keys()) if isinstance(value, Mapping) else list(range(len(value)))


def _values(value: Any) -> list[Any]:
    return list(value.values()) if isinstance(value, Mapping) else list(value)


def _first(value: Any) -> Any:
    if isinstance(value, str):
        return value[:1]
    items = list(value.values()) if isinstance(value, Mapping) else list(value)
    return items[0] if items else None


def _last(value: Any) -> Any:
    if isinstance(value, str):
        return value[-1:]
    items = list(value.values()) if isinstance(value, Mapping) else list(value)
    return items[-1] if items else None


def _length(value: Any) -> int:
    if isinstance(value, Mapping | Sequence | str):
        return len(value)
    return len(to_display(value))


FILTERS: dict[str, Any] = {
    "json": _json,
    "toJson": _json,
    "jq": _jq_filter,
    "fromJson": _from_json,
    "date": _date,
    "dateAdd": _date_add,
    "default": _default,
    "upper": lambda v: to_display(v).upper(),
    "lower": lambda v: to_display(v).lower(),
    "capitalize": lambda v: to_display(v).capitalize(),
    "title": lambda v: to_display(v).title(),
    "trim": lambda v: to_display(v).strip(),
    "abbreviate": lambda v, n: (lambda s: s if len(s) <= n else s[: max(n - 3, 0)] + "...")(to_display(v)),
    "length": _length,
    "join": lambda v, sep="": sep.join(to_display(x) for x in v),
    "split": lambda v, sep: to_display(v).split(sep),
    "replace": _replace,
    "keys": _keys,
    "values": _values,
    "first": _first,
    "last": _last,
    "slugify": _slugify,
    "startsWith": lambda v, p: to_display(v).startswith(p),
    "endsWith": lambda v, p: to_display(v).endswith(p),
    "sort": lambda v: sorted(v),
    "rsort": lambda v: sorted(v, reverse=True),
    "reverse": lambda v: to_display(v)[::-1] if isinstance(v, str) else list(reversed(list(v))),
    "slice": lambda v, a, b=None: v[a:b],
    "number": _number,
    "abs": abs,
    "round": lambda v, p=0: round(_number(v), p),
    "urlencode": lambda v: quote(to_display(v), safe=""),
    "base64encode": lambda v: base64.b64encode(to_display(v).encode()).decode(),
    "base64decode": lambda v: base64.b64decode(to_display(v)).decode(),
    "sha256": lambda v: hashlib.sha256(to_display(v).encode()).hexdigest(),
    "md5": lambda v: hashlib.md5(to_display(v).encode()).hexdigest(),
    "timestamp": lambda v: int(_parse_date(v).timestamp()),
    "timestampMilli": lambda v: int(_parse_date(v).timestamp() * 1000),
}

GLOBALS: dict[str, Any] = {
    "now": _now,
    "render": _render,
    "fromJson": _from_json,
    "json": _from_json,
    "currentEachOutput": _current_each_output,
    "errorLogs": _error_logs,
    "secret": _secret,
    "range": range,
}

TESTS: dict[str, Any] = {
    "null": lambda v: v is None,
    "empty": lambda v: v is None or (hasattr(v, "__len__") and len(v) == 0),
    "even": lambda v: int(v) % 2 == 0,
    "odd": lambda v: int(v) % 2 == 1,
    "present": lambda v: not isinstance(v, Undefined) and v is not None,
}
