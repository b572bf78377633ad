"""Schedule triggers: due dates, missed schedules, time zones across DST, backfill, idempotency."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from control_plane.flows.models import Schedule
from control_plane.triggers.schedule import due, fire_key, next_date, schedule_dates, upcoming

PARIS = ZoneInfo("Europe/Paris")


def schedule(**fields: object) -> Schedule:
    base: dict[str, object] = {
        "id": "every",
        "type": "io.kestra.plugin.core.trigger.Schedule",
        "cron": "0 * * * *",
    }
    return Schedule.model_validate(base | fields)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def fired(trigger: Schedule, last: datetime | None, now: datetime) -> list[datetime]:
    return [f.date for f in due(trigger, namespace="ns", flow_id="f", last=last, now=now)]


def test_on_time_date_fires_once_and_not_again() -> None:
    hourly = schedule()
    first = fired(hourly, utc(2026, 1, 1, 9, 0), utc(2026, 1, 1, 10, 0, 5))
    assert first == [utc(2026, 1, 1, 10, 0)]
    assert fired(hourly, first[-1], utc(2026, 1, 1, 10, 0, 30)) == []  # already fired


def test_missed_schedules_all_last_none() -> None:
    last, now = utc(2026, 1, 1, 6, 0), utc(2026, 1, 1, 10, 0, 10)
    assert len(fired(schedule(), last, now)) == 4  # ALL is the default
    assert fired(schedule(recoverMissedSchedules="LAST"), last, now) == [utc(2026, 1, 1, 10, 0)]
    assert fired(schedule(recoverMissedSchedules="NONE"), last, now) == [utc(2026, 1, 1, 10, 0)]
    late = utc(2026, 1, 1, 10, 5)
    assert fired(schedule(recoverMissedSchedules="NONE"), last, late) == []  # not on time any more
    assert fired(schedule(lateMaximumDelay="PT90M"), last, now) == [
        utc(2026, 1, 1, 9, 0),
        utc(2026, 1, 1, 10, 0),
    ]


def test_a_new_trigger_does_not_fire_the_past_unless_backfilled() -> None:
    assert fired(schedule(), None, utc(2026, 1, 1, 10, 0, 5)) == []
    backfilled = schedule(
        backfill={"start": "2026-01-01T07:00:00Z", "end": "2026-01-01T09:00:00Z", "labels": {"b": "1"}}
    )
    fires = due(backfilled, namespace="ns", flow_id="f", last=None, now=utc(2026, 1, 1, 10, 0, 5))
    assert [f.date for f in fires] == [utc(2026, 1, 1, 7), utc(2026, 1, 1, 8), utc(2026, 1, 1, 9)]
    assert all(f.labels == {"b": "1"} for f in fires)


def test_cron_in_the_trigger_time_zone_across_dst() -> None:
    daily = schedule(cron="30 2 * * *", timezone="Europe/Paris")
    # clocks go back on 2026-10-25: 02:30 happens twice, the job runs once
    autumn = schedule_dates(
        daily, datetime(2026, 10, 24, 3, tzinfo=PARIS), datetime(2026, 10, 26, 3, tzinfo=PARIS)
    )
    assert [d.strftime("%m-%d %H:%M") for d in autumn] == ["10-25 02:30", "10-26 02:30"]
    # clocks go forward on 2026-03-29: 02:30 does not exist, the job runs right after the gap
    spring = schedule_dates(
        daily, datetime(2026, 3, 28, 3, tzinfo=PARIS), datetime(2026, 3, 30, 3, tzinfo=PARIS)
    )
    assert [d.strftime("%m-%d %H:%M%z") for d in spring] == ["03-29 03:00+0200", "03-30 02:30+0200"]
    assert next_date(daily, datetime(2026, 10, 25, 2, 30, tzinfo=PARIS)).day == 26


def test_fire_key_is_stable_and_distinguishes_dates_and_triggers() -> None:
    date = utc(2026, 1, 1, 10)
    same_instant = date.astimezone(PARIS)
    assert fire_key("ns", "f", "t", date) == fire_key("ns", "f", "t", same_instant)
    assert fire_key("ns", "f", "t", date) != fire_key("ns", "f", "t", date + timedelta(hours=1))
    assert fire_key("ns", "f", "t", date) != fire_key("ns", "f", "u", date)


def test_trigger_variables_and_disabled_triggers() -> None:
    (fire,) = due(
        schedule(), namespace="ns", flow_id="f", last=utc(2026, 1, 1, 9), now=utc(2026, 1, 1, 10, 0, 1)
    )
    assert fire.variables == {
        "date": "2026-01-01T10:00:00+00:00",
        "next": "2026-01-01T11:00:00+00:00",
        "previous": "2026-01-01T09:00:00+00:00",
    }
    assert fired(schedule(disabled=True), utc(2026, 1, 1, 9), utc(2026, 1, 1, 10, 0, 1)) == []


def test_a_long_outage_is_bounded_per_call() -> None:
    every_minute = schedule(cron="* * * * *")
    dates = schedule_dates(every_minute, utc(2020, 1, 1), utc(2026, 1, 1), limit=500)
    assert len(dates) == 500 and dates[0] == utc(2020, 1, 1, 0, 1)


def test_upcoming_lists_the_next_dates_in_the_zone_and_none_for_a_disabled_or_impossible_cron() -> None:
    now = datetime(2026, 3, 28, 23, 30, tzinfo=UTC)
    paris = schedule(cron="0 2 * * *", timezone="Europe/Paris")
    # 29 March 2026: clocks go forward at 02:00 in Paris, so that day's 02:00 is 03:00 CEST
    assert [d.astimezone(UTC) for d in upcoming(paris, now, 2)] == [
        datetime(2026, 3, 29, 1, 0, tzinfo=UTC),
        datetime(2026, 3, 30, 0, 0, tzinfo=UTC),
    ]
    assert upcoming(schedule(cron="0 * * * *", disabled=True), now) == []
    assert upcoming(schedule(cron="0 0 30 2 *"), now) == []
