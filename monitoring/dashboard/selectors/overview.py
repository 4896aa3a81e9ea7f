"""Reads behind the overview page: KPIs with trends, chart series and recent failures."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import (
    Avg,
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    Q,
    QuerySet,
)
from django.db.models.functions import Coalesce, Trunc
from django.urls import reverse
from django.utils import timezone

from core.models import DeadLetter, Workspace
from flows.models import Execution
from messaging.models import FAILURE_STATUSES, SUCCESS_STATUSES, Message, MessageStatus
from monitoring.dashboard.selectors.common import format_seconds, seconds_of
from monitoring.dashboard.selectors.windows import (
    Window,
    bucket_key,
    bucket_label,
    bucket_starts,
)
from monitoring.models import HistoryPurge

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
EXECUTION_COLORS = {
    "running": "#60a5fa", "waiting": "#f59e0b", "completed": "#22c55e", "failed": "#dc2626",
    "cancelled": "#6b7280",
}


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
        "suppressed": (lambda **kw: Count("id", **kw), Q(status=MessageStatus.SUPPRESSED)),
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

    return [
        _kpi("sent", "Sent or delivered", cur["sent"], prev.get("sent"), fmt=num, better=True,
             has_previous=has_previous),
        _kpi("failed", "Failed", cur["failed"], prev.get("failed"), fmt=num, better=False,
             has_previous=has_previous),
        _kpi("success_rate", "Success rate", _rate(cur["sent"], cur["failed"]),
             _rate(prev.get("sent", 0), prev.get("failed", 0)), fmt=percent, better=True,
             points=True, has_previous=has_previous),
        _kpi("suppressed", "Suppressed", cur["suppressed"], prev.get("suppressed"), fmt=num,
             better=None, has_previous=has_previous),
        _kpi("latency", "Avg time to send", seconds_of(cur["latency"]),
             seconds_of(prev.get("latency")), fmt=format_seconds, better=False,
             has_previous=has_previous),
        _kpi("executions", "Executions", executions["current"]["count"],
             executions["previous"].get("count"), fmt=num, better=None,
             has_previous=has_previous),
        _kpi("dead_letters", "Dead letters open", letters["current"]["open"],
             letters["previous"].get("open"), fmt=num, better=False,
             has_previous=has_previous),
    ]


# --- charts ---------------------------------------------------------------------------------

def status_counts(model: type[Message] | type[Execution], workspace: Workspace, window: Window,
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
    by_key = {bucket_key(row["bucket"], window): row for row in rows}
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
    """Return message volume (total, sent, failed) and the mean time to send (created, or
    send_at, to sent) per bucket."""
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


def last_history_purge() -> HistoryPurge | None:
    """The latest retention purge that finished (the service's, not one workspace's)."""
    return HistoryPurge.objects.filter(finished_at__isnull=False).first()
