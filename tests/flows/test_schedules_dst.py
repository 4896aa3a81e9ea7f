"""The DST rule, on both 2025 transition days of America/New_York and Europe/Berlin.

A local time that does not exist (spring forward) fires once at the next valid minute; a
local time that happens twice (fall back) fires once, at its first occurrence. Time is
controlled: every minute of the night is a wake-up, so the runs show what fires, not what a
particular beat happened to wake.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from flows.cron import local_to_instant, occurrence_latest, occurrence_next
from flows.models import ScheduleRun
from flows.schedules import schedule_fire, schedules_sweep
from tests.factories import FlowScheduleFactory

pytestmark = pytest.mark.django_db

NEW_YORK, BERLIN = ZoneInfo("America/New_York"), ZoneInfo("Europe/Berlin")
QUARTER = timedelta(minutes=15)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def quarter_hours(first: str, last: str) -> list[datetime]:
    """Return every 15 minutes of real time from first to last, inclusive."""
    start, end = at(first), at(last)
    return [start + QUARTER * i for i in range(int((end - start) / QUARTER) + 1)]


# (zone, night from, night to, cron, the instants that must fire, each once)
CASES = {
    "new_york_spring_0230": (
        "America/New_York", "2025-03-09T01:00-05:00", "2025-03-09T04:00-04:00",
        "30 2 * * *", [at("2025-03-09T03:00-04:00")]),  # 02:30 does not exist
    "new_york_fall_0230": (
        "America/New_York", "2025-11-02T00:30-04:00", "2025-11-02T03:30-05:00",
        "30 2 * * *", [at("2025-11-02T02:30-05:00")]),  # after the repeat: once, as usual
    "berlin_spring_0230": (
        "Europe/Berlin", "2025-03-30T01:00+01:00", "2025-03-30T04:00+02:00",
        "30 2 * * *", [at("2025-03-30T03:00+02:00")]),  # 02:30 does not exist
    "berlin_fall_0230": (
        "Europe/Berlin", "2025-10-26T01:30+02:00", "2025-10-26T03:30+01:00",
        "30 2 * * *", [at("2025-10-26T02:30+02:00")]),  # 02:30 twice: the first only
    # 02:00-02:45 do not exist: all fire once as 03:00, so real time sees every quarter.
    "new_york_spring_every_15": (
        "America/New_York", "2025-03-09T01:00-05:00", "2025-03-09T04:00-04:00",
        "*/15 * * * *", quarter_hours("2025-03-09T01:00-05:00", "2025-03-09T04:00-04:00")),
    # 01:00-01:45 happen twice: nothing fires during the second pass.
    "new_york_fall_every_15": (
        "America/New_York", "2025-11-02T00:30-04:00", "2025-11-02T03:30-05:00",
        "*/15 * * * *", quarter_hours("2025-11-02T00:30-04:00", "2025-11-02T01:45-04:00")
        + quarter_hours("2025-11-02T02:00-05:00", "2025-11-02T03:30-05:00")),
    "berlin_spring_every_15": (
        "Europe/Berlin", "2025-03-30T01:00+01:00", "2025-03-30T04:00+02:00",
        "*/15 * * * *", quarter_hours("2025-03-30T01:00+01:00", "2025-03-30T04:00+02:00")),
    # 02:00-02:45 happen twice: nothing fires during the second pass.
    "berlin_fall_every_15": (
        "Europe/Berlin", "2025-10-26T01:30+02:00", "2025-10-26T03:30+01:00",
        "*/15 * * * *", quarter_hours("2025-10-26T01:30+02:00", "2025-10-26T02:45+02:00")
        + quarter_hours("2025-10-26T03:00+01:00", "2025-10-26T03:30+01:00")),
}


def minutes(first: datetime, last: datetime) -> list[datetime]:
    count = int((last - first) / timedelta(minutes=1)) + 1
    return [first + timedelta(minutes=i) for i in range(count)]


@pytest.mark.parametrize("case", CASES)
def test_every_occurrence_of_a_transition_night_fires_exactly_once(workspace, case):
    zone, night_from, night_to, cron, expected = CASES[case]
    start, end = at(night_from), at(night_to)
    schedule = FlowScheduleFactory(workspace=workspace, cron=cron, timezone=zone,
                                   now=start - timedelta(hours=1))
    for minute in minutes(start, end):  # beat's wake-up every minute, wanted or not
        schedule_fire(schedule_id=schedule.pk, now=minute)
    for occurrence in expected:  # and the duplicates a second beat sends
        schedule_fire(schedule_id=schedule.pk, now=occurrence + timedelta(seconds=2))
    runs = ScheduleRun.objects.filter(schedule=schedule).order_by("occurrence_at")
    assert [r.occurrence_at for r in runs] == expected
    # Each fired at its own minute (no later), and none was skipped or failed.
    assert all(r.fired_at == r.occurrence_at and r.status == "running" for r in runs)
    local = {r.occurrence_at.astimezone(ZoneInfo(zone)).strftime("%H:%M") for r in runs}
    if "spring" in case:
        assert not any(t.startswith("02:") for t in local), "a time that does not exist"


@pytest.mark.parametrize("case", CASES)
def test_the_sweep_alone_fires_the_same_occurrences(workspace, case):
    """Without beat's per-schedule wake-up (its own DST handling is not relied on)."""
    zone, night_from, night_to, cron, expected = CASES[case]
    start, end = at(night_from), at(night_to)
    schedule = FlowScheduleFactory(workspace=workspace, cron=cron, timezone=zone,
                                   now=start - timedelta(hours=1))
    for minute in minutes(start, end):
        for second in (0, 15, 30, 45):  # the sweep runs every 15 s
            schedules_sweep(now=minute + timedelta(seconds=second))
    runs = ScheduleRun.objects.filter(schedule=schedule).order_by("occurrence_at")
    assert [r.occurrence_at for r in runs] == expected
    assert all(r.fired_at == r.occurrence_at for r in runs)


@pytest.mark.parametrize("zone,local,instant", [
    (NEW_YORK, "2025-03-09T02:00", "2025-03-09T03:00-04:00"),
    (NEW_YORK, "2025-03-09T02:30", "2025-03-09T03:00-04:00"),
    (NEW_YORK, "2025-03-09T02:59", "2025-03-09T03:00-04:00"),
    (NEW_YORK, "2025-03-09T03:00", "2025-03-09T03:00-04:00"),
    (NEW_YORK, "2025-11-02T01:30", "2025-11-02T01:30-04:00"),  # the first of two
    (NEW_YORK, "2025-11-02T02:30", "2025-11-02T02:30-05:00"),
    (BERLIN, "2025-03-30T02:30", "2025-03-30T03:00+02:00"),
    (BERLIN, "2025-10-26T02:30", "2025-10-26T02:30+02:00"),  # the first of two
    (BERLIN, "2025-10-26T03:00", "2025-10-26T03:00+01:00"),
])
def test_a_wall_clock_time_names_one_instant(zone, local, instant):
    assert local_to_instant(at(local), zone) == at(instant)


def test_next_and_latest_agree_inside_the_repeated_hour():
    cron = "*/15 * * * *"
    # 01:20 EST, the second pass: the first-pass 01:30 and 01:45 (EDT) are already past.
    second_pass = at("2025-11-02T01:20-05:00")
    assert occurrence_latest(cron=cron, zone=NEW_YORK, now=second_pass) == at(
        "2025-11-02T01:45-04:00")
    assert occurrence_next(cron=cron, zone=NEW_YORK, after=second_pass) == at(
        "2025-11-02T02:00-05:00")
    first_pass = at("2025-11-02T01:20-04:00")
    assert occurrence_latest(cron=cron, zone=NEW_YORK, now=first_pass) == at(
        "2025-11-02T01:15-04:00")
    assert occurrence_next(cron=cron, zone=NEW_YORK, after=first_pass) == at(
        "2025-11-02T01:30-04:00")
