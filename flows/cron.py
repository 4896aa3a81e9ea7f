"""Cron arithmetic of flow schedules: expressions, the DST rule, occurrences, descriptions.

Pure computation (no database): schedules.py fires and sweeps schedules with it, and the
API checks and describes expressions with it.

DST rule: cron fields name wall-clock times. A wall-clock time that does not exist (spring
forward) fires once, at the next minute that exists (02:30 -> 03:00); one that happens twice
(fall back) fires once, at its first occurrence. Every wall-clock time maps to one instant,
so a schedule's occurrences are a plain set of instants.
"""
from __future__ import annotations

import functools
import itertools
import re
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cron_descriptor import (
    ExpressionDescriptor,
    FormatException,
    MissingFieldException,
    Options,
    WrongArgumentException,
)
from croniter import CroniterBadDateError, croniter
from django.utils.timezone import now as timezone_now

# The longest wall-clock gap on record is a whole day (Samoa, 30 December 2011).
MAX_GAP_MINUTES = 48 * 60
# Walking back over more matches than this means the expression never matched.
MAX_BACK_STEPS = 10_000

ALIASES = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
PRESETS = [
    ("every_minute", "Every minute", "* * * * *"),
    ("every_5_minutes", "Every 5 minutes", "*/5 * * * *"),
    ("every_15_minutes", "Every 15 minutes", "*/15 * * * *"),
    ("every_30_minutes", "Every 30 minutes", "*/30 * * * *"),
    ("hourly", "Every hour", "0 * * * *"),
    ("every_6_hours", "Every 6 hours", "0 */6 * * *"),
    ("daily_midnight", "Daily at midnight", "0 0 * * *"),
    ("daily_9am", "Daily at 09:00", "0 9 * * *"),
    ("weekdays_9am", "Weekdays at 09:00", "0 9 * * 1-5"),
    ("weekly_monday_9am", "Weekly on Monday at 09:00", "0 9 * * 1"),
    ("monthly_first_9am", "Monthly on the 1st at 09:00", "0 9 1 * *"),
    ("yearly", "Yearly on 1 January at midnight", "0 0 1 1 *"),
]


class CronError(ValueError):
    """An expression or time zone that cannot be scheduled; the message says why."""

    def __init__(self, message: str, field: str = "expression") -> None:
        super().__init__(message)
        self.field = field



# --- cron expressions -----------------------------------------------------------------------

@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int] = field(default_factory=dict)


_MONTHS = {m: i for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug",
                                       "sep", "oct", "nov", "dec"], start=1)}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
FIELDS = (_Field("minute", 0, 59), _Field("hour", 0, 23), _Field("day of month", 1, 31),
          _Field("month", 1, 12, _MONTHS), _Field("day of week", 0, 7, _DAYS))
_ITEM = re.compile(r"^(?:(\*)|([0-9a-z]+)(?:-([0-9a-z]+))?)(?:/([0-9]+))?$", re.IGNORECASE)


@dataclass(frozen=True)
class Cron:
    """A checked expression: its five fields, and the same fields as Celery's crontab
    parses them (day of week 7 written as 0, `a/n` as `a-max/n`)."""

    expression: str
    minute: str
    hour: str
    day_of_month: str
    month_of_year: str
    day_of_week: str


def _value(token: str, spec: _Field) -> int:
    if token.isdigit():
        number = int(token)
    elif token.lower() in spec.names:
        number = spec.names[token.lower()]
    else:
        raise CronError(f"{spec.name}: '{token}' is not a number"
                        + (" or a name" if spec.names else "") + ".")
    if not spec.low <= number <= spec.high:
        raise CronError(f"{spec.name}: {number} is out of range {spec.low}-{spec.high}.")
    return number


def _item(item: str, spec: _Field) -> str:
    """Check one comma-separated item and return it in the form Celery's crontab reads."""
    match = _ITEM.match(item)
    if match is None:
        raise CronError(f"{spec.name}: '{item}' is not a value, range (a-b) or step (*/n).")
    star, first, last, step = match.groups()
    if step is not None and int(step) < 1:
        raise CronError(f"{spec.name}: the step in '{item}' must be at least 1.")
    if star:
        return item
    low = _value(first, spec)
    high = _value(last, spec) if last else (spec.high if step else low)
    if low > high:
        raise CronError(f"{spec.name}: the range '{item}' runs backwards.")
    if spec.high == 7 and high == 7:  # Sunday is 7 or 0 in cron; Celery knows only 0
        return ",".join(str(d % 7) for d in range(low, high + 1, int(step or 1)))
    return f"{low}-{high}/{step}" if step else (f"{low}-{high}" if last else str(low))


def cron_parse(expression: object) -> Cron:
    """Check a 5-field expression or alias; raise CronError saying what is wrong."""
    if not isinstance(expression, str) or not expression.strip():
        raise CronError("Give a cron expression such as '0 9 * * 1-5' or an alias like "
                        "@daily.")
    return _cron_parse(" ".join(expression.split()))


@functools.lru_cache(maxsize=1024)  # every wake-up parses its schedule's expression
def _cron_parse(text: str) -> Cron:
    text = ALIASES.get(text.lower(), text)
    if text.startswith("@"):
        raise CronError(f"Unknown alias '{text}'; use one of {', '.join(ALIASES)}.")
    parts = text.split(" ")
    if len(parts) != 5:
        raise CronError("Give 5 fields (minute hour day-of-month month day-of-week) or an "
                        f"alias such as @daily; got {len(parts)}.")
    beat = [",".join(_item(item, spec) for item in part.split(","))
            for part, spec in zip(parts, FIELDS, strict=True)]
    if not croniter.is_valid(text):  # our grammar is a subset of croniter's; belt and braces
        raise CronError(f"'{text}' is not a valid cron expression.")
    try:
        croniter(text, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterBadDateError:
        raise CronError(f"'{text}' never matches a date (such as 30 February).") from None
    return Cron(text, *beat)


def cron_describe(expression: str) -> str:
    """Return a sentence such as 'At 09:00, Monday through Friday'."""
    text = cron_parse(expression).expression
    options = Options()
    options.use_24hour_time_format = True
    try:
        return ExpressionDescriptor(text, options).get_description()
    except (FormatException, MissingFieldException, WrongArgumentException):
        return text


@functools.lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def zone_get(name: object) -> zoneinfo.ZoneInfo:
    """Return the IANA time zone of that name; raise CronError if there is none."""
    if not isinstance(name, str) or name not in _zone_names():
        raise CronError(f"'{name}' is not an IANA time zone such as Europe/Berlin.",
                        field="timezone")
    return zoneinfo.ZoneInfo(name)


# --- occurrences: the DST rule --------------------------------------------------------------

def local_to_instant(local: datetime, zone: zoneinfo.ZoneInfo) -> datetime:
    """Return the UTC instant a wall-clock time names: the first of two (fall back), or the
    next minute that exists (spring forward)."""
    probe = local
    for _ in range(MAX_GAP_MINUTES):
        instant = probe.replace(tzinfo=zone, fold=0).astimezone(UTC)
        if instant.astimezone(zone).replace(tzinfo=None) == probe:
            return instant
        probe = probe.replace(second=0, microsecond=0) + timedelta(minutes=1)
    raise CronError(f"{local} has no valid minute in {zone.key} within two days.")


def occurrences_after(*, cron: str, zone: zoneinfo.ZoneInfo,
                      after: datetime) -> Iterator[datetime]:
    """Yield the schedule's instants later than `after`, ascending, each once."""
    # Mapping wall-clock times to instants never goes backwards, so walking the wall clock
    # forward from `after` (rounded down) meets the instants in order.
    start = after.astimezone(zone).replace(tzinfo=None, second=0, microsecond=0)
    walk = croniter(cron_parse(cron).expression, start)
    last = after
    while True:
        try:
            instant = local_to_instant(walk.get_next(datetime), zone)
        except CroniterBadDateError:
            return
        if instant > last:  # several missing times collapse onto one instant
            last = instant
            yield instant


def occurrence_next(*, cron: str, zone: zoneinfo.ZoneInfo, after: datetime) -> datetime | None:
    """Return the first instant of the schedule later than `after`."""
    return next(occurrences_after(cron=cron, zone=zone, after=after), None)


def occurrences_between(*, cron: str, zone: zoneinfo.ZoneInfo, start: datetime,
                        end: datetime) -> list[datetime]:
    """Return the schedule's instants in [start, end], ascending."""
    instants = occurrences_after(cron=cron, zone=zone, after=start - timedelta(microseconds=1))
    return list(itertools.takewhile(lambda instant: instant <= end, instants))


def _offset(aware: datetime) -> timedelta:
    offset = aware.utcoffset()
    if offset is None:  # callers pass astimezone() results, which always have an offset
        raise ValueError(f"{aware!r} is naive")
    return offset


def occurrence_latest(*, cron: str, zone: zoneinfo.ZoneInfo, now: datetime) -> datetime | None:
    """Return the latest instant of the schedule at or before `now`."""
    local = now.astimezone(zone)
    # In the second pass of a repeated hour, first-pass times up to one shift later on the
    # wall clock already happened: start the backward walk that much later.
    shift = _offset(local.replace(fold=0)) - _offset(local) if local.fold else timedelta()
    start = local.replace(tzinfo=None, second=0, microsecond=0) + timedelta(minutes=1) + shift
    walk = croniter(cron_parse(cron).expression, start)
    try:
        for _ in range(MAX_BACK_STEPS):
            instant = local_to_instant(walk.get_prev(datetime), zone)
            if instant <= now:
                return instant
    except CroniterBadDateError:
        pass
    return None


def next_runs(*, cron: str, zone: zoneinfo.ZoneInfo, count: int = 5,
              now: datetime | None = None) -> list[dict[str, str]]:
    """Return the next runs, each in the schedule's time zone and in UTC."""
    instants = itertools.islice(
        occurrences_after(cron=cron, zone=zone, after=now or timezone_now()), count)
    return [{"local": instant.astimezone(zone).isoformat(),
             "utc": instant.isoformat().replace("+00:00", "Z")} for instant in instants]


def cron_check(*, expression: object, timezone: object,
               now: datetime | None = None) -> dict[str, Any]:
    """Return an expression's description and next runs in a time zone; raise CronError
    with the reason if either is invalid."""
    zone = zone_get(timezone)
    cron = cron_parse(expression)
    return {"valid": True, "error": None, "expression": cron.expression, "timezone": zone.key,
            "description": cron_describe(cron.expression),
            "next_runs": next_runs(cron=cron.expression, zone=zone, now=now)}


def presets() -> list[dict[str, str]]:
    """Return the common schedules with their expression and description."""
    return [{"id": key, "name": name, "cron": cron, "description": cron_describe(cron)}
            for key, name, cron in PRESETS]
