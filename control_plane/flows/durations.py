"""ISO-8601 durations exactly as Kestra reads them: ``java.time.Duration.parse``.

One parser for every duration a flow holds (task ``timeout``, retry intervals, Sleep,
Pause, WaitFor, Schedule delays) and for DURATION inputs, so a flow Kestra accepts runs
unchanged and one Kestra rejects is rejected here too. Java's grammar, not Python's nor
pydantic's: letters in either case (``pt1m``), a fraction of seconds with ``.`` or ``,``
(``PT0.25S``), days (``P2D``, ``P1DT2H``), a sign before the whole text or any number
(``-PT6H``, ``PT-6H``); no years, months or weeks (``P1Y``, ``P1W``) and no ``HH:MM:SS``.
"""

from __future__ import annotations

import re
from datetime import timedelta

NANOS = 1_000_000_000
"""Nanoseconds in a second: java.time.Duration's resolution."""

_TEXT = re.compile(
    r"([-+]?)P(?:([-+]?[0-9]+)D)?"
    r"(T(?:([-+]?[0-9]+)H)?(?:([-+]?[0-9]+)M)?(?:([-+]?[0-9]+)(?:[.,]([0-9]{0,9}))?S)?)?",
    re.IGNORECASE,
)
_JAVA_LIMIT = 2**63 * NANOS  # java.time.Duration holds a signed 64-bit count of seconds

MESSAGE = "Text cannot be parsed to a Duration"
"""The message of Java's DateTimeParseException, which Kestra's users know."""


def fraction_nanos(fraction: str | None) -> int:
    """Up to nine digits after the decimal mark as nanoseconds (``25`` -> 250,000,000), as
    java.time reads a fraction of a second; 0 for none. Instants and times use it too."""
    return int(fraction.ljust(9, "0")) if fraction else 0


def parse_nanos(text: str) -> int:
    """``Duration.parse(text)`` as a signed number of nanoseconds; ValueError when Java rejects it."""
    match = _TEXT.fullmatch(text)
    if match is None:
        raise ValueError(MESSAGE)
    negate, days, t_part, hours, minutes, seconds, fraction = match.groups()
    if days is None and t_part is None:  # "P" alone
        raise ValueError(MESSAGE)
    if t_part is not None and hours is None and minutes is None and seconds is None:  # "PT", "P1DT"
        raise ValueError(MESSAGE)
    total = (int(days or 0) * 86_400 + int(hours or 0) * 3_600 + int(minutes or 0) * 60) * NANOS
    total += int(seconds or 0) * NANOS
    if fraction:
        frac = fraction_nanos(fraction)
        total += -frac if seconds is not None and seconds.startswith("-") else frac
    if negate == "-":
        total = -total
    if abs(total) >= _JAVA_LIMIT:
        raise ValueError(MESSAGE)
    return total


def to_timedelta(nanos: int) -> timedelta:
    """Nanoseconds as a timedelta, truncated toward zero to Python's microseconds.

    OverflowError past timedelta's range (999999999 days), which Java's exceeds.
    """
    micros = -((-nanos) // 1000) if nanos < 0 else nanos // 1000
    return timedelta(microseconds=micros)


def parse_timedelta(text: str) -> timedelta:
    """``Duration.parse(text)`` as a timedelta; ValueError when Java rejects it or it is out of range."""
    try:
        return to_timedelta(parse_nanos(text))
    except OverflowError:
        raise ValueError(MESSAGE) from None


def java_duration_text(value: timedelta) -> str:
    """``Duration.toString()``: ``PT2S``, ``PT0.25S``, ``PT1H30M``, ``PT48H`` (no days), ``PT0S``;
    for Kestra's messages that quote a duration."""
    micros = value // timedelta(microseconds=1)
    if micros == 0:
        return "PT0S"
    sign = "-" if micros < 0 else ""
    hours, rest = divmod(abs(micros), 3_600_000_000)
    minutes, rest = divmod(rest, 60_000_000)
    seconds, fraction = divmod(rest, 1_000_000)
    text = "PT"
    if hours:
        text += f"{sign}{hours}H"
    if minutes:
        text += f"{sign}{minutes}M"
    if seconds or fraction:
        digits = f".{fraction:06d}".rstrip("0") if fraction else ""
        text += f"{sign}{seconds}{digits}S"
    return text
