"""Kestra's date and calendar functions: ``isWeekend``, ``isDayWeekInMonth``, ``dayOfWeek``,
``dayOfMonth``, ``monthOfYear``, ``hourOfDay`` (kestra.io/docs/expressions/functions/dates).

They read a date as every other date function does (:func:`~control_plane.expressions.dates.
parse_date`: ISO strings, datetimes, epoch seconds) and answer in the date's own time zone,
so ``hourOfDay('2024-01-01T23:30:00+01:00')`` is 23, as Java's ``ZonedDateTime.getHour``.
``isPublicHoliday`` is not here: it needs a holiday calendar Squall does not ship.
"""

from __future__ import annotations

import calendar
from datetime import datetime
from typing import Any

from control_plane.errors import ExpressionError
from control_plane.expressions import dates

__all__ = ["FUNCTIONS"]

_DAYS = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
_POSITIONS = ("FIRST", "SECOND", "THIRD", "FOURTH")


def _moment(value: Any, function: str) -> datetime:
    if value is None:
        raise ExpressionError(f"{function}() needs a date, got null")
    try:
        return dates.parse_date(value)
    except ExpressionError:
        raise
    except (ValueError, TypeError, OverflowError) as exc:
        raise ExpressionError(f"{function}(): cannot read '{value}' as a date: {exc}") from None


def _is_weekend(date: Any) -> bool:
    return _moment(date, "isWeekend").weekday() >= 5


def _day_of_week(date: Any) -> str:
    return _DAYS[_moment(date, "dayOfWeek").weekday()]


def _day_of_month(date: Any) -> int:
    return _moment(date, "dayOfMonth").day


def _month_of_year(date: Any) -> int:
    return _moment(date, "monthOfYear").month


def _hour_of_day(date: Any) -> int:
    return _moment(date, "hourOfDay").hour


def _is_day_week_in_month(date: Any, dayOfWeek: Any, position: Any) -> bool:
    """Whether ``date`` is the FIRST..FOURTH or LAST ``dayOfWeek`` of its month."""
    moment = _moment(date, "isDayWeekInMonth")
    day, where = str(dayOfWeek).upper(), str(position).upper()
    if day not in _DAYS:
        raise ExpressionError(f"isDayWeekInMonth(): unknown day of week '{dayOfWeek}'")
    if where not in (*_POSITIONS, "LAST"):
        raise ExpressionError(
            f"isDayWeekInMonth(): unknown position '{position}' (FIRST, SECOND, THIRD, FOURTH or LAST)"
        )
    if _DAYS[moment.weekday()] != day:
        return False
    if where == "LAST":
        return moment.day + 7 > calendar.monthrange(moment.year, moment.month)[1]
    return (moment.day - 1) // 7 == _POSITIONS.index(where)


FUNCTIONS: dict[str, Any] = {
    "isWeekend": _is_weekend,
    "isDayWeekInMonth": _is_day_week_in_month,
    "dayOfWeek": _day_of_week,
    "dayOfMonth": _day_of_month,
    "monthOfYear": _month_of_year,
    "hourOfDay": _hour_of_day,
}
