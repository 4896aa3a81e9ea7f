"""The overview's time ranges: the selected window, the previous one and the chart buckets."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from django.db.models import Min, Q
from django.utils import timezone

from core.models import Workspace
from flows.models import Execution
from messaging.models import Message
from monitoring.dashboard.selectors.common import workspace_tz

RANGES: dict[str, tuple[str, timedelta | None]] = {
    "1h": ("Last hour", timedelta(hours=1)),
    "24h": ("Last 24 hours", timedelta(hours=24)),
    "7d": ("Last 7 days", timedelta(days=7)),
    "30d": ("Last 30 days", timedelta(days=30)),
    "all": ("All time", None),
}
DEFAULT_RANGE = "24h"
REFRESH_CHOICES: dict[str, tuple[str, int]] = {
    "off": ("Off", 0),
    "30s": ("30 s", 30),
    "1m": ("1 min", 60),
    "5m": ("5 min", 300),
}


@dataclass(frozen=True)
class Window:
    """The selected time range, the previous range of the same length, and the chart bucket."""

    key: str
    label: str
    start: datetime | None  # None: all time
    end: datetime
    previous_start: datetime | None
    chart_start: datetime
    bucket: str  # minute | hour | day | week
    tz: ZoneInfo

    def current(self, name: str) -> Q:
        """Return the filter for rows whose `name` timestamp falls in this window."""
        return Q(**{f"{name}__gte": self.start}) if self.start else Q()

    def previous(self, name: str) -> Q | None:
        """Return the filter for the previous window, or None when there is none (all time)."""
        if self.start is None or self.previous_start is None:
            return None
        return Q(**{f"{name}__gte": self.previous_start, f"{name}__lt": self.start})

    @property
    def length_label(self) -> str:
        return {"1h": "hour", "24h": "24 h", "7d": "7 days", "30d": "30 days"}.get(self.key, "")


def _bucket_for(span: timedelta) -> str:
    if span <= timedelta(hours=2):
        return "minute"
    if span <= timedelta(days=8):
        return "hour"
    if span <= timedelta(days=180):
        return "day"
    return "week"


def window_for(workspace: Workspace, key: str, *, now: datetime | None = None) -> Window:
    """Return the window for a range key (unknown keys fall back to the default)."""
    now = now or timezone.now()
    if key not in RANGES:
        key = DEFAULT_RANGE
    label, length = RANGES[key]
    if length is not None:
        start = now - length
        if _bucket_for(length) != "minute":
            # From the start of that hour: the hourly totals (monitoring.rollups) then answer
            # for the window exactly, and a bucket is never cut in two.
            start = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        return Window(key, label, start, now, start - length, start, _bucket_for(length),
                      workspace_tz(workspace))
    first = _earliest(workspace) or now - timedelta(hours=24)
    return Window(key, label, None, now, None, first, _bucket_for(now - first),
                  workspace_tz(workspace))


def _earliest(workspace: Workspace) -> datetime | None:
    first_message = Message.objects.filter(workspace=workspace).aggregate(
        first=Min("created_at"))["first"]
    first_execution = Execution.objects.filter(workspace=workspace).aggregate(
        first=Min("started_at"))["first"]
    found = [value for value in (first_message, first_execution) if value is not None]
    return min(found) if found else None


def bucket_key(value: datetime | date, window: Window) -> datetime | date:
    """Return a comparable key for a bucket start, whatever zone the database returned."""
    if isinstance(value, datetime):
        local = value.astimezone(window.tz) if value.tzinfo else value
        if window.bucket in ("day", "week"):
            return local.date()
        return local.replace(tzinfo=None)
    return value


def bucket_starts(window: Window) -> list[datetime | date]:
    """Return every bucket key from the chart start to the end, gaps included."""
    if window.bucket in ("day", "week"):
        day = window.chart_start.astimezone(window.tz).date()
        last = window.end.astimezone(window.tz).date()
        step = timedelta(days=1)
        if window.bucket == "week":
            day -= timedelta(days=day.weekday())
            step = timedelta(days=7)
        keys: list[datetime | date] = []
        while day <= last:
            keys.append(day)
            day += step
        return keys
    step = timedelta(minutes=1) if window.bucket == "minute" else timedelta(hours=1)
    local = window.chart_start.astimezone(window.tz)
    local = local.replace(second=0, microsecond=0)
    if window.bucket == "hour":
        local = local.replace(minute=0)
    # Step in absolute time so a DST change neither repeats nor skips a bucket.
    moment, keys = local, []
    while moment <= window.end:
        keys.append(bucket_key(moment, window))
        moment = (moment.astimezone(ZoneInfo("UTC")) + step).astimezone(window.tz)
    return keys


def bucket_label(key: datetime | date, window: Window) -> str:
    """Return a short axis label for a bucket."""
    if window.bucket == "minute":
        return key.strftime("%H:%M")
    if window.bucket == "hour":
        span = window.end - window.chart_start
        return key.strftime("%H:%M") if span <= timedelta(hours=26) else key.strftime("%a %Hh")
    return key.strftime("%b %d")
