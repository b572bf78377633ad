"""Java ``DateTimeFormatter`` patterns on Python datetimes, for the ``date`` family of filters.

Flows are written against Kestra, so ``date("yyyy-MM-dd'T'HH:mm:ss.SSSXXX")`` must print what Java
prints. A pattern is compiled once (cached) into a list of small printers; only the letters flows
use are supported, and an unsupported letter is an error rather than a silent wrong date.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.relativedelta import relativedelta

from control_plane.errors import ExpressionError

__all__ = ["add", "format_date", "iso_millis", "parse_date", "zone"]

# Kestra's named formats (AbstractDate.FORMATTERS); None means "Java's ISO printer" below.
_NAMED: dict[str, str | None] = {
    "iso": "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX",
    "iso_sec": "yyyy-MM-dd'T'HH:mm:ssXXX",
    "sql": "yyyy-MM-dd HH:mm:ss.SSSSSS",
    "sql_seq": "yyyy-MM-dd HH:mm:ss",
    "sql_date_time": "yyyy-MM-dd HH:mm:ss",
    "iso_date_time": None,
    "iso_offset_date_time": None,
    "iso_zoned_date_time": None,
    "iso_instant": None,
    "iso_local_date_time": None,
    "iso_date": "yyyy-MM-ddXXX",
    "iso_local_date": "yyyy-MM-dd",
    "iso_time": None,
    "iso_local_time": None,
}

_MONTHS = [
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
]  # fmt: skip
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]

_Printer = Callable[[datetime], str]


def zone(name: str | None) -> tzinfo:
    """A ``ZoneId``: region names, ``UTC``/``Z`` and fixed offsets like ``+02:00``."""
    if not name or name in {"Z", "UTC", "GMT"}:
        return UTC
    offset = re.fullmatch(r"(?:UTC|GMT)?([+-])(\d{1,2})(?::?(\d{2}))?", name)
    if offset:
        sign = -1 if offset.group(1) == "-" else 1
        delta = timedelta(hours=int(offset.group(2)), minutes=int(offset.group(3) or 0))
        return timezone(sign * delta)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ExpressionError(f"unknown time zone '{name}'") from None


def _offset(moment: datetime, colon: bool, zulu: bool, minutes: str = "always") -> str:
    delta = moment.utcoffset() or timedelta(0)
    if zulu and not delta:
        return "Z"
    total = int(delta.total_seconds()) // 60
    sign = "-" if total < 0 else "+"
    hours, mins = divmod(abs(total), 60)
    if minutes == "optional" and not mins:
        return f"{sign}{hours:02d}"
    return f"{sign}{hours:02d}{':' if colon else ''}{mins:02d}"


def _letter(char: str, count: int) -> _Printer:
    """The printer for a run of one pattern letter, e.g. ``yyyy`` or ``SSS``."""
    match char:
        case "y" | "u":
            if count == 2:
                return lambda m: f"{m.year % 100:02d}"
            return lambda m: f"{m.year:0{count}d}"
        case "M" | "L":
            if count >= 4:
                return lambda m: _MONTHS[m.month - 1]
            if count == 3:
                return lambda m: _MONTHS[m.month - 1][:3]
            return lambda m: f"{m.month:0{count}d}"
        case "d":
            return lambda m: f"{m.day:0{count}d}"
        case "D":
            return lambda m: f"{m.timetuple().tm_yday:0{count}d}"
        case "H":
            return lambda m: f"{m.hour:0{count}d}"
        case "k":
            return lambda m: f"{m.hour or 24:0{count}d}"
        case "h":
            return lambda m: f"{(m.hour % 12) or 12:0{count}d}"
        case "K":
            return lambda m: f"{m.hour % 12:0{count}d}"
        case "m":
            return lambda m: f"{m.minute:0{count}d}"
        case "s":
            return lambda m: f"{m.second:0{count}d}"
        case "S":
            return lambda m: f"{m.microsecond:06d}000"[:count].ljust(count, "0")
        case "n":
            return lambda m: str(m.microsecond * 1000)
        case "a":
            return lambda m: "AM" if m.hour < 12 else "PM"
        case "E":
            if count >= 4:
                return lambda m: _DAYS[m.weekday()]
            return lambda m: _DAYS[m.weekday()][:3]
        case "e" | "c":
            return lambda m: str(m.isoweekday())
        case "X" | "x":
            zulu = char == "X"
            if count == 1:
                return lambda m: _offset(m, colon=False, zulu=zulu, minutes="optional")
            return lambda m: _offset(m, colon=count in (3, 5), zulu=zulu)
        case "Z":
            if count <= 3:
                return lambda m: _offset(m, colon=False, zulu=False)
            if count == 5:
                return lambda m: _offset(m, colon=True, zulu=True)
            return lambda m: "GMT" if not m.utcoffset() else "GMT" + _offset(m, colon=True, zulu=False)
        case "z":
            return lambda m: m.tzname() or "UTC"
        case "V":
            return lambda m: getattr(m.tzinfo, "key", None) or m.tzname() or "Z"
    raise ExpressionError(f"unsupported date pattern letter '{char}'")


@lru_cache(maxsize=256)
def _compile(pattern: str) -> tuple[_Printer | str, ...]:
    parts: list[_Printer | str] = []
    i, size = 0, len(pattern)
    while i < size:
        char = pattern[i]
        if char == "'":
            end = pattern.find("'", i + 1)
            if end == i + 1:  # '' is a literal quote
                parts.append("'")
                i += 2
                continue
            end = size if end < 0 else end
            parts.append(pattern[i + 1 : end].replace("''", "'"))
            i = end + 1
        elif char.isascii() and char.isalpha():
            run = i
            while run < size and pattern[run] == char:
                run += 1
            parts.append(_letter(char, run - i))
            i = run
        elif char in "[]":  # optional sections: always printed when the fields exist
            i += 1
        else:
            parts.append(char)
            i += 1
    return tuple(parts)


def _java_iso(moment: datetime, name: str) -> str:
    """Java's ISO_* printers: seconds always, the fraction only as long as needed."""
    fraction = f".{moment.microsecond:06d}".rstrip("0") if moment.microsecond else ""
    clock = f"{moment:%H:%M:%S}{fraction}"
    if name == "iso_instant":
        return f"{moment.astimezone(UTC):%Y-%m-%dT%H:%M:%S}{fraction}Z"
    offset = _offset(moment, colon=True, zulu=True)
    if name in {"iso_local_time"}:
        return clock
    if name == "iso_time":
        return clock + offset
    if name == "iso_local_date_time":
        return f"{moment:%Y-%m-%d}T{clock}"
    text = f"{moment:%Y-%m-%d}T{clock}{offset}"
    key = getattr(moment.tzinfo, "key", None)
    if name in {"iso_date_time", "iso_zoned_date_time"} and key:
        text += f"[{key}]"
    return text


def format_date(moment: datetime, pattern: str) -> str:
    """Print ``moment`` with a Java pattern or one of Kestra's named formats."""
    if pattern in _NAMED:
        named = _NAMED[pattern]
        if named is None:
            return _java_iso(moment, pattern)
        pattern = named
    return "".join(p if isinstance(p, str) else p(moment) for p in _compile(pattern))


_STRPTIME = {
    "yyyy": "%Y", "uuuu": "%Y", "yy": "%y", "MMMM": "%B", "MMM": "%b", "MM": "%m", "M": "%m",
    "dd": "%d", "d": "%d", "HH": "%H", "H": "%H", "hh": "%I", "h": "%I", "mm": "%M", "m": "%M",
    "ss": "%S", "s": "%S", "a": "%p", "EEEE": "%A", "EEE": "%a", "E": "%a", "D": "%j",
}  # fmt: skip


@lru_cache(maxsize=256)
def _strptime_format(pattern: str) -> str:
    """Translate a Java pattern for parsing (``existingFormat``)."""
    out: list[str] = []
    for match in re.finditer(r"'(?P<q>[^']*)'|(?P<l>([a-zA-Z])\3*)|(?P<o>.)", pattern):
        if match.group("q") is not None:
            out.append(match.group("q").replace("%", "%%") or "'")
        elif match.group("l"):
            run = match.group("l")
            if run[0] == "S":
                out.append("%f")
            elif run[0] in "XxZ":
                out.append("%z")
            elif run in _STRPTIME:
                out.append(_STRPTIME[run])
            else:
                raise ExpressionError(f"unsupported date pattern '{run}' in '{pattern}'")
        else:
            out.append(match.group("o").replace("%", "%%"))
    return "".join(out)


def parse_date(value: Any, existing_format: str | None = None, tz: tzinfo = UTC) -> datetime:
    """A timezone-aware datetime from what Kestra accepts: ISO strings, datetimes, dates, epoch seconds.

    Like Kestra, a bare date is taken at noon and a value without a zone is in ``tz``.
    """
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime.combine(value, time(12))
    elif isinstance(value, int) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, tz)
    elif isinstance(value, str):
        text = value.strip()
        try:
            if existing_format:
                fmt = _NAMED.get(existing_format, existing_format) or "iso"
                moment = (
                    datetime.fromisoformat(text)
                    if fmt == "iso"
                    else datetime.strptime(text, _strptime_format(fmt))
                )
            else:
                region = re.search(r"\[([^\]]+)\]$", text)
                moment = datetime.fromisoformat(text[: region.start()] if region else text)
                if region:
                    moment = moment.astimezone(zone(region.group(1)))
        except ValueError:
            raise ExpressionError(f"Unable to parse date '{text}'") from None
    else:
        raise ExpressionError(f"Unable to parse date from a {type(value).__name__} value")
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)


# Java ChronoUnit -> (relativedelta keyword, multiplier, exact duration?)
_UNITS: dict[str, tuple[str, int, bool]] = {
    "NANOS": ("microseconds", 0, True),
    "MICROS": ("microseconds", 1, True),
    "MILLIS": ("microseconds", 1000, True),
    "SECONDS": ("seconds", 1, True),
    "MINUTES": ("minutes", 1, True),
    "HOURS": ("hours", 1, True),
    "HALF_DAYS": ("hours", 12, True),
    "DAYS": ("days", 1, False),
    "WEEKS": ("weeks", 1, False),
    "MONTHS": ("months", 1, False),
    "YEARS": ("years", 1, False),
    "DECADES": ("years", 10, False),
    "CENTURIES": ("years", 100, False),
    "MILLENNIA": ("years", 1000, False),
}


def add(moment: datetime, amount: int, unit: str) -> datetime:
    """``ZonedDateTime.plus``: time units are exact durations, date units keep the wall clock."""
    try:
        keyword, factor, exact = _UNITS[str(unit).upper()]
    except KeyError:
        raise ExpressionError(f"unknown date unit '{unit}', expected one of {', '.join(_UNITS)}") from None
    delta = relativedelta(**{keyword: int(amount) * factor})
    if exact:
        return (moment.astimezone(UTC) + delta).astimezone(moment.tzinfo)
    return moment + delta


def iso_millis(moment: datetime) -> str:
    """``2026-11-25T10:00:00.123Z``: the shape ``now()`` prints."""
    utc = moment.astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"
