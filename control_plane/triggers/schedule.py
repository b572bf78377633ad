"""Schedule triggers as pure functions: which dates are due, and the key that fires each once.

Nothing here reads a clock or a store: the caller (the tick or the EventBridge Scheduler
handler, issue 6) passes ``now`` and the trigger's last fired date, and records the new one
with the trigger state's version check. Each date has an idempotency key; the execution id
is derived from it, so a date fired twice (a retried Lambda, two ticks racing) still starts
one execution: the second ``create_execution`` is a ConflictError.

Semantics, where Kestra's documentation leaves room:

* Cron is evaluated in the trigger's ``timezone``. A wall-clock time that happens twice when
  clocks go back fires once (as Vixie cron does); one that does not exist when clocks go
  forward fires at the first instant after the gap.
* Dates are due when ``last < date <= now``. With several due (the scheduler was down),
  ``recoverMissedSchedules`` decides: ``ALL`` (the default) fires every one, ``LAST`` only the
  latest, ``NONE`` only the latest and only if it is on time (within ``lateMaximumDelay``,
  or one minute). ``lateMaximumDelay`` drops any date later than that, whatever the policy.
* A new trigger (no last date) fires nothing in the past, unless ``backfill.start`` asks for
  it: then every date from ``backfill.start`` to ``backfill.end`` (or now) is due, with the
  backfill's labels.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from msgspec import Struct, field

from control_plane.flows.models import Schedule

if TYPE_CHECKING:
    from croniter import croniter

__all__ = ["Fire", "due", "fire_key", "next_date", "previous_date", "schedule_dates", "upcoming"]

ON_TIME = timedelta(minutes=1)
MAX_DATES = 10_000  # a backfill of a per-minute cron over years must not exhaust memory


class Fire(Struct, frozen=True):
    """One schedule date to start an execution for."""

    date: datetime
    key: str
    variables: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)


def _zone(trigger: Schedule) -> ZoneInfo:
    return ZoneInfo(trigger.timezone)


def _iter(trigger: Schedule, start: datetime) -> croniter:
    from croniter import croniter  # imported on first use: a deployment without schedules never pays

    return croniter(trigger.cron, start.astimezone(_zone(trigger)), second_at_beginning=trigger.withSeconds)


def schedule_dates(
    trigger: Schedule, after: datetime, until: datetime, *, limit: int = MAX_DATES
) -> list[datetime]:
    """Dates with ``after < date <= until``, in the trigger's zone, each wall-clock time once."""
    dates: list[datetime] = []
    it = _iter(trigger, after)
    seen_wall: datetime | None = None
    while len(dates) < limit:
        date = it.get_next(datetime)
        if date > until:
            break
        wall = date.replace(tzinfo=None)
        if wall == seen_wall:
            continue  # the same wall-clock time again, after clocks went back
        seen_wall = wall
        dates.append(date)
    return dates


def next_date(trigger: Schedule, after: datetime) -> datetime:
    date = _iter(trigger, after).get_next(datetime)
    if date.replace(tzinfo=None) == after.astimezone(_zone(trigger)).replace(tzinfo=None):
        date = _iter(trigger, date).get_next(datetime)
    return date


def upcoming(trigger: Schedule, now: datetime, count: int = 3) -> list[datetime]:
    """The next ``count`` dates after ``now``, what the UI shows beside a schedule; none when
    the trigger is disabled or its cron never matches (``0 0 30 2 *``: croniter gives up)."""
    from croniter import CroniterBadDateError

    if trigger.disabled:
        return []
    try:
        return schedule_dates(trigger, now, datetime.max.replace(tzinfo=UTC), limit=count)
    except CroniterBadDateError:
        return []


def previous_date(trigger: Schedule, before: datetime) -> datetime:
    return _iter(trigger, before).get_prev(datetime)


def fire_key(namespace: str, flow_id: str, trigger_id: str, date: datetime) -> str:
    """Stable across retries and processes: the same trigger and date, the same key."""
    instant = date.astimezone(UTC).isoformat()
    return hashlib.blake2b(
        f"{namespace}\x1f{flow_id}\x1f{trigger_id}\x1f{instant}".encode(), digest_size=11
    ).hexdigest()


def _variables(trigger: Schedule, date: datetime) -> dict[str, Any]:
    """Kestra's ``trigger.date``, ``trigger.next`` and ``trigger.previous``."""
    return {
        "date": date.isoformat(),
        "next": next_date(trigger, date).isoformat(),
        "previous": previous_date(trigger, date).isoformat(),
    }


def due(
    trigger: Schedule,
    *,
    namespace: str,
    flow_id: str,
    last: datetime | None,
    now: datetime,
) -> list[Fire]:
    """What to fire at ``now``; the caller then stores ``max(f.date)`` as the new ``last``."""
    if trigger.disabled:
        return []
    labels = dict(trigger.labels or {})
    if last is None:
        backfill = trigger.backfill
        if backfill is None or backfill.start is None:
            return []
        start = _parse(backfill.start, trigger)
        end = _parse(backfill.end, trigger) if backfill.end else now
        dates = schedule_dates(trigger, start - timedelta(microseconds=1), min(end, now))
        labels |= dict(backfill.labels or {})
        return [_fire(trigger, namespace, flow_id, d, labels) for d in dates]
    dates = schedule_dates(trigger, last, now)
    if trigger.lateMaximumDelay is not None:
        dates = [d for d in dates if now - d <= trigger.lateMaximumDelay]
    policy = trigger.recoverMissedSchedules or "ALL"
    if len(dates) > 1 and policy == "LAST":
        dates = dates[-1:]
    elif policy == "NONE":
        on_time = trigger.lateMaximumDelay or ON_TIME
        dates = [d for d in dates[-1:] if now - d <= on_time]
    return [_fire(trigger, namespace, flow_id, d, labels) for d in dates]


def _fire(trigger: Schedule, namespace: str, flow_id: str, date: datetime, labels: dict[str, str]) -> Fire:
    return Fire(date, fire_key(namespace, flow_id, trigger.id, date), _variables(trigger, date), labels)


def _parse(text: str, trigger: Schedule) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=_zone(trigger))
