"""Reads behind the dashboard: KPIs, chart series and lists, aggregated in the database.

Every function takes the workspace explicitly, so no page can show another tenant's rows.
Only portable ORM expressions are used (Count/Avg with filter=, Trunc with a time zone,
datetime subtraction), which Django compiles for both PostgreSQL and SQLite.
"""
from __future__ import annotations

import itertools
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.db.models import (
    Avg,
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    Min,
    Model,
    Q,
    QuerySet,
)
from django.db.models.functions import Coalesce, Trunc
from django.urls import reverse
from django.utils import timezone

from flows import schedules
from flows.models import Execution, Flow, FlowSchedule, ScheduleRun, Step
from messaging.models import FAILURE_STATUSES, SUCCESS_STATUSES, Message, Workspace
from monitoring import alerts
from monitoring.dashboard import charts
from monitoring.models import AlertEvent, AlertRule, DeadLetter

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
RECENT_FAILURES = 10

# The dashboard counts by creation time, so only the status decides (the same sets as the API).
SENT_Q = Q(status__in=SUCCESS_STATUSES)
FAILED_Q = Q(status__in=FAILURE_STATUSES)
# Latency counts from when the message was meant to go: its schedule, else its creation.
DELIVERY_LATENCY = ExpressionWrapper(
    F("sent_at") - Coalesce("scheduled_for", "created_at"), output_field=DurationField())
EXECUTION_TIME = ExpressionWrapper(F("completed_at") - F("started_at"),
                                   output_field=DurationField())

MESSAGE_COLORS = {
    "scheduled": "#94a3b8", "queued": "#60a5fa", "sending": "#38bdf8", "retrying": "#f59e0b",
    "sent": "#22c55e", "delivered": "#15803d", "undelivered": "#f97316", "failed": "#dc2626",
    "cancelled": "#6b7280",
}
CHANNEL_COLORS = {"sms": "#2563eb", "email": "#7c3aed", "ai": "#0891b2", "webhook": "#ea580c"}
EXECUTION_COLORS = {
    "running": "#60a5fa", "waiting": "#f59e0b", "completed": "#22c55e", "failed": "#dc2626",
    "cancelled": "#6b7280",
}


# --- time windows ---------------------------------------------------------------------------

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


def workspace_tz(workspace: Workspace) -> ZoneInfo:
    """Return the workspace's time zone (UTC when the stored name is unusable)."""
    try:
        return ZoneInfo(workspace.timezone or "UTC")
    except (ValueError, KeyError):  # ZoneInfoNotFoundError is a KeyError
        return ZoneInfo("UTC")


def window_for(workspace: Workspace, key: str, *, now: datetime | None = None) -> Window:
    """Return the window for a range key (unknown keys fall back to the default)."""
    now = now or timezone.now()
    if key not in RANGES:
        key = DEFAULT_RANGE
    label, length = RANGES[key]
    if length is not None:
        start = now - length
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


def _bucket_key(value: datetime | date, window: Window) -> datetime | date:
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
        keys.append(_bucket_key(moment, window))
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


# --- formatting -----------------------------------------------------------------------------

def seconds_of(value: timedelta | float | None) -> float | None:
    """Return seconds from a duration (databases return timedelta; be lenient)."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)


def format_seconds(value: float | None) -> str:
    """Return a duration for people: 350 ms, 4.2 s, 3.5 min, 2.1 h, 1.5 d."""
    if value is None:
        return "–"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.1f} s"
    if value < 3600:
        return f"{value / 60:.1f} min"
    if value < 86400:
        return f"{value / 3600:.1f} h"
    return f"{value / 86400:.1f} d"


def pretty_json(value: Any) -> str:
    """Return indented JSON for display ("" for empty values)."""
    if value in (None, "", {}, []):
        return ""
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


# --- KPIs -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Kpi:
    key: str
    label: str
    value: str
    trend: str = ""  # "+12%", "-3.0 pp", "new", "no change"; "" when not comparable
    tone: str = "none"  # good | bad | flat | neutral | none (drives the colour)
    arrow: str = ""
    previous: str = ""


def _trend(current: float | None, previous: float | None, *, better: bool | None,
           points: bool = False) -> tuple[str, str, str]:
    """Return (text, tone, arrow) comparing a value with the previous period's."""
    if previous is None or current is None:
        return "", "none", ""
    delta = current - previous
    if abs(delta) < 1e-9:
        return "no change", "flat", "→"
    if points:
        text = f"{delta * 100:+.1f} pp"
    elif previous == 0:
        text = "new"
    else:
        text = f"{delta / previous * 100:+.0f}%"
    arrow = "▲" if delta > 0 else "▼"
    if better is None:
        return text, "neutral", arrow
    return text, "good" if (delta > 0) == better else "bad", arrow


def _kpi(key: str, label: str, current: float | None, previous: float | None, *,
         fmt: Any, better: bool | None, points: bool = False, has_previous: bool) -> Kpi:
    text, tone, arrow = _trend(current, previous if has_previous else None, better=better,
                               points=points)
    return Kpi(key, label, fmt(current), text, tone, arrow,
               fmt(previous) if has_previous else "")


def _rate(sent: int, failed: int) -> float | None:
    return sent / (sent + failed) if sent + failed else None


def _period_aggregates(queryset: QuerySet, window: Window, stamp: str,
                       metrics: dict[str, tuple[Any, Q]]) -> dict[str, dict[str, Any]]:
    """Aggregate each metric over the current and previous windows in one query."""
    periods = {"current": window.current(stamp), "previous": window.previous(stamp)}
    aggregates = {}
    for period, where in periods.items():
        if where is None:
            continue
        for name, (make, extra) in metrics.items():
            # An empty Q (all time, no extra condition) means no filter at all.
            aggregates[f"{period}__{name}"] = make(filter=(where & extra) or None)
    if window.previous_start is not None:
        queryset = queryset.filter(**{f"{stamp}__gte": window.previous_start})
    row = queryset.aggregate(**aggregates)
    result: dict[str, dict[str, Any]] = {"current": {}, "previous": {}}
    for name, value in row.items():
        period, metric = name.split("__", 1)
        result[period][metric] = value
    return result


def overview_kpis(workspace: Workspace, window: Window) -> list[Kpi]:
    """Return the overview KPIs with their trend against the previous window."""
    messages = _period_aggregates(Message.objects.filter(workspace=workspace), window,
                                  "created_at", {
        "sent": (lambda **kw: Count("id", **kw), SENT_Q),
        "failed": (lambda **kw: Count("id", **kw), FAILED_Q),
        "latency": (lambda **kw: Avg(DELIVERY_LATENCY, **kw), Q(sent_at__isnull=False)),
    })
    executions = _period_aggregates(Execution.objects.filter(workspace=workspace), window,
                                    "started_at", {
        "count": (lambda **kw: Count("id", **kw), Q()),
    })
    letters = _period_aggregates(DeadLetter.objects.filter(workspace=workspace), window,
                                 "created_at", {
        "open": (lambda **kw: Count("id", **kw), Q(status=DeadLetter.Status.OPEN)),
    })
    has_previous = window.start is not None
    cur, prev = messages["current"], messages["previous"]
    count = "{:,}".format

    def num(value: float | None) -> str:
        return count(int(value or 0))

    def percent(value: float | None) -> str:
        return "–" if value is None else f"{value * 100:.1f}%"

    def latency(value: float | None) -> str:
        return format_seconds(value)

    return [
        _kpi("sent", "Sent", cur["sent"], prev.get("sent"), fmt=num, better=True,
             has_previous=has_previous),
        _kpi("failed", "Failed", cur["failed"], prev.get("failed"), fmt=num, better=False,
             has_previous=has_previous),
        _kpi("success_rate", "Success rate", _rate(cur["sent"], cur["failed"]),
             _rate(prev.get("sent", 0), prev.get("failed", 0)), fmt=percent, better=True,
             points=True, has_previous=has_previous),
        _kpi("latency", "Avg delivery latency", seconds_of(cur["latency"]),
             seconds_of(prev.get("latency")), fmt=latency, better=False,
             has_previous=has_previous),
        _kpi("executions", "Executions", executions["current"]["count"],
             executions["previous"].get("count"), fmt=num, better=None,
             has_previous=has_previous),
        _kpi("dead_letters", "Dead letters open", letters["current"]["open"],
             letters["previous"].get("open"), fmt=num, better=False,
             has_previous=has_previous),
    ]


# --- charts ---------------------------------------------------------------------------------

def status_counts(model: type[Model], workspace: Workspace, window: Window,
                  stamp: str) -> list[tuple[str, int]]:
    """Return (status, count) for the window, largest first."""
    rows = (model.objects.filter(window.current(stamp), workspace=workspace)
            .values("status").annotate(n=Count("id")).order_by("-n", "status"))
    return [(row["status"], row["n"]) for row in rows]


@dataclass
class TimeSeries:
    labels: list[str]
    values: dict[str, list[float | None]] = field(default_factory=dict)


def _series(queryset: QuerySet, window: Window, stamp: str,
            metrics: dict[str, Any]) -> TimeSeries:
    """Aggregate metrics per bucket of `stamp`, filling empty buckets (counts 0, means None)."""
    rows = (queryset.filter(**{f"{stamp}__gte": window.chart_start})
            .annotate(bucket=Trunc(stamp, window.bucket, tzinfo=window.tz))
            .values("bucket").annotate(**metrics).order_by("bucket"))
    by_key = {_bucket_key(row["bucket"], window): row for row in rows}
    keys = bucket_starts(window)
    series = TimeSeries([bucket_label(key, window) for key in keys])
    for name in metrics:
        series.values[name] = []
        for key in keys:
            row = by_key.get(key)
            value = row[name] if row else None
            if isinstance(value, timedelta):
                value = value.total_seconds()
            if value is None and isinstance(metrics[name], Count):
                value = 0
            series.values[name].append(value)
    return series


def message_series(workspace: Workspace, window: Window) -> TimeSeries:
    """Return message volume (total, sent, failed) and mean delivery latency per bucket."""
    return _series(Message.objects.filter(workspace=workspace), window, "created_at", {
        "total": Count("id"),
        "sent": Count("id", filter=SENT_Q),
        "failed": Count("id", filter=FAILED_Q),
        "latency": Avg(DELIVERY_LATENCY, filter=Q(sent_at__isnull=False)),
    })


def execution_series(workspace: Workspace, window: Window) -> TimeSeries:
    """Return executions started and the mean time of the finished ones per bucket."""
    return _series(Execution.objects.filter(workspace=workspace), window, "started_at", {
        "started": Count("id"),
        "duration": Avg(EXECUTION_TIME, filter=Q(completed_at__isnull=False)),
    })


# --- recent failures ------------------------------------------------------------------------

@dataclass(frozen=True)
class Failure:
    when: datetime | None
    kind: str
    title: str
    error: str
    url: str


def recent_failures(workspace: Workspace, window: Window,
                    limit: int = RECENT_FAILURES) -> list[Failure]:
    """Return the newest failed messages and executions of the window, merged by time."""
    messages = (Message.objects.filter(window.current("created_at"), FAILED_Q,
                                       workspace=workspace)
                .select_related("contact").order_by("-updated_at")[:limit])
    executions = (Execution.objects.filter(window.current("started_at"),
                                           workspace=workspace, status=Execution.Status.FAILED)
                  .select_related("flow", "contact").order_by("-updated_at")[:limit])
    rows = [Failure(m.failed_at or m.updated_at, f"{m.channel} message",
                    f"to {m.to or m.contact or '—'}", m.last_error or m.error_code or m.status,
                    reverse("dashboard:message-detail", args=[m.pk])) for m in messages]
    rows += [Failure(e.completed_at or e.updated_at, "execution",
                     f"{e.flow.name} for {e.contact}", e.error,
                     reverse("dashboard:execution-detail", args=[e.pk])) for e in executions]
    rows.sort(key=lambda row: row.when or timezone.now(), reverse=True)
    return rows[:limit]


# --- lists and details ----------------------------------------------------------------------

def as_uuid(text: str) -> uuid.UUID | None:
    """Return the UUID written in text, or None when it is not one."""
    try:
        return uuid.UUID(str(text).strip())
    except ValueError:
        return None


def contact_filter(text: str, prefix: str = "contact__") -> Q:
    """Return a filter matching a contact by id, external id, phone or email."""
    text = text.strip()
    query = (Q(**{f"{prefix}external_id": text}) | Q(**{f"{prefix}phone__startswith": text})
             | Q(**{f"{prefix}email__iexact": text}))
    contact_id = as_uuid(text)
    if contact_id is not None:
        query |= Q(**{f"{prefix}id": contact_id})
    return query


def executions_list(workspace: Workspace, *, flow: Any = None, status: str = "",
                    contact: str = "") -> QuerySet[Execution]:
    """Return the workspace's executions, newest first, with what the list shows joined in."""
    queryset = (Execution.objects.filter(workspace=workspace)
                .select_related("flow", "contact", "version")
                .annotate(step_count=Count("steps")).order_by("-started_at", "-id"))
    if flow is not None:
        queryset = queryset.filter(flow=flow)
    if status:
        queryset = queryset.filter(status=status)
    if contact:
        queryset = queryset.filter(contact_filter(contact))
    return queryset


def messages_list(workspace: Workspace, *, status: str = "", channel: str = "",
                  search: str = "") -> QuerySet[Message]:
    """Return the workspace's messages, newest first, filtered as asked."""
    queryset = (Message.objects.filter(workspace=workspace).select_related("contact")
                .order_by("-created_at", "-id"))
    if status:
        queryset = queryset.filter(status=status)
    if channel:
        queryset = queryset.filter(channel=channel)
    if search:
        query = Q(to__icontains=search) | Q(last_error__icontains=search) | contact_filter(
            search)
        message_id = as_uuid(search)
        if message_id is not None:
            query |= Q(id=message_id)
        queryset = queryset.filter(query)
    return queryset


@dataclass
class TimelineStep:
    step: Step
    input: str
    output: str
    duration: str
    can_retry: bool
    dead_letter: DeadLetter | None


def execution_timeline(execution: Execution) -> list[TimelineStep]:
    """Return the execution's steps in order, with their JSON ready to show."""
    steps = list(execution.steps.select_related("message").order_by("started_at", "id"))
    letters = {letter.source_id: letter for letter in DeadLetter.objects.filter(
        kind=DeadLetter.Kind.STEP, source_id__in=[str(step.pk) for step in steps])}
    retryable = execution.status == Execution.Status.FAILED
    return [TimelineStep(
        step=step, input=pretty_json(step.input), output=pretty_json(step.output),
        duration=format_seconds(None if step.duration_ms is None else step.duration_ms / 1000),
        can_retry=retryable and step.status == Step.Status.FAILED,
        dead_letter=letters.get(str(step.pk))) for step in steps]


def dead_letter_link(letter: DeadLetter) -> str:
    """Return the dashboard page of what a dead letter points at ("" when unknown)."""
    payload = letter.payload if isinstance(letter.payload, dict) else {}
    if letter.kind == DeadLetter.Kind.MESSAGE and as_uuid(letter.source_id):
        return reverse("dashboard:message-detail", args=[letter.source_id])
    execution_id = payload.get("execution_id")
    if letter.kind == DeadLetter.Kind.STEP and execution_id and as_uuid(execution_id):
        return reverse("dashboard:execution-detail", args=[execution_id])
    return ""


# --- schedules ------------------------------------------------------------------------------

@dataclass(frozen=True)
class ScheduleRow:
    schedule: FlowSchedule
    flow: Flow
    cron: str
    timezone: str
    enabled: bool
    next_run_at: datetime | None
    last_run_at: datetime | None
    last_run_status: str
    runs: int
    successes: int
    failures: int
    upcoming: list[datetime]


NEXT_RUNS = 3


def _upcoming(schedule: FlowSchedule) -> list[datetime]:
    """Return the next few occurrences, or none when disabled or not computable."""
    if not schedule.enabled or not schedule.cron:
        return []
    try:
        zone = schedules.zone_get(schedule.timezone or "UTC")
        return list(itertools.islice(schedules.occurrences_after(
            cron=schedule.cron, zone=zone, after=timezone.now()), NEXT_RUNS))
    except ValueError:  # CronError: a bad stored expression must not break the page
        return []


def schedule_rows(workspace: Workspace) -> list[ScheduleRow]:
    """Return the workspace's schedules, soonest next run first, with their next runs."""
    queryset = (FlowSchedule.objects.filter(workspace=workspace).select_related("flow")
                .order_by(F("next_run_at").asc(nulls_last=True), "pk"))
    return [ScheduleRow(
        schedule, schedule.flow, schedule.cron, schedule.timezone, schedule.enabled,
        schedule.next_run_at, schedule.last_run_at, schedule.last_run_status, schedule.runs,
        schedule.successes, schedule.failures, _upcoming(schedule)) for schedule in queryset]


def schedule_runs(workspace: Workspace, limit: int = 20) -> list[ScheduleRun]:
    """Return the workspace's most recent schedule runs."""
    return list(ScheduleRun.objects.filter(schedule__workspace=workspace)
                .select_related("schedule__flow").order_by("-occurrence_at", "-pk")[:limit])


def alerts_context(workspace: Workspace, *, events: int = 50) -> dict[str, Any]:
    """Return the workspace's alert rules (with open incidents) and its recent events."""
    rules = (AlertRule.objects.filter(workspace=workspace).select_related("flow")
             .annotate(open_events=Count("events", filter=Q(events__resolved_at__isnull=True)))
             .order_by("name", "pk"))
    recent = list(AlertEvent.objects.filter(workspace=workspace).select_related("rule")
                  .order_by("-triggered_at", "-pk")[:events])
    delivery = alerts.alert_event_delivery(events=recent)
    return {"rules": rules, "events": [(event, delivery.get(event.pk, {})) for event in recent]}


def epoch_to_datetime(value: Any) -> datetime | None:
    """Return an aware datetime from epoch seconds (None when not a number)."""
    try:
        return datetime.fromtimestamp(float(value), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


@dataclass(frozen=True)
class DeferralEvent:
    when: datetime | None
    channel: str
    delay: str


def rate_limit_panels(counts: dict[str, int], events: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the rate-limit page's bar chart, totals and readable event rows."""
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    bars = charts.bars_svg([charts.Slice(channel, count, CHANNEL_COLORS.get(channel, "#64748b"))
                            for channel, count in ordered], label="Deferrals per channel")
    rows = [DeferralEvent(epoch_to_datetime(event.get("ts")), str(event.get("channel", "")),
                          format_seconds(_float_or_none(event.get("delay"))))
            for event in events if isinstance(event, dict)]
    return {"counts": ordered, "total": sum(counts.values()), "bars": bars, "events": rows}


def _float_or_none(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
