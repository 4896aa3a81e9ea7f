"""Reads behind the overview page: KPIs with trends, chart series and recent failures."""
from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from typing import Any

from django.db import connection
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
from flows.models import Execution, ExecutionQuerySet, Flow
from messaging.models import FAILURE_STATUSES, SUCCESS_STATUSES, Message, MessageStatus
from monitoring.dashboard.selectors.common import format_seconds, seconds_of
from monitoring.dashboard.selectors.windows import (
    Window,
    bucket_key,
    bucket_label,
    bucket_starts,
)
from monitoring.models import HistoryPurge
from monitoring.rollups import (
    Hourly,
    bucket_seconds,
    finished_hours,
    flow_buckets,
    hour_start,
    hourly_rows,
    rollups_cover,
)

# Hourly totals answer for windows that start on an hour (window_for makes every window
# but the last hour's do): the all-time window reads from this.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

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


def _entered(workspace: Workspace) -> ExecutionQuerySet:
    """The workspace's executions as the overview counts them: those contacts entered (a
    parallel branch is a part of its execution, as in the hourly totals)."""
    return Execution.objects.entered().filter(workspace=workspace)


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


def _rolled(window: Window) -> bool:
    """Return whether the hourly totals answer for the window (monitoring.rollups)."""
    if window.bucket == "minute":
        return False  # the last hour, by the minute: its rows are few, count them
    return rollups_cover(window.tz, window.end, window.chart_start,
                         window.previous_start or window.chart_start)


def _hours(workspace: Workspace, window: Window, kind: str) -> list[Hourly]:
    """Return the hourly totals the window and its previous one cover."""
    return hourly_rows(workspace.pk, kind, hour_start(
        min(window.previous_start or EPOCH, window.chart_start, window.start or EPOCH)))


def _in_period(hour: datetime, window: Window, period: str) -> bool:
    if period == "current":
        return window.start is None or hour >= window.start
    return (window.start is not None and window.previous_start is not None
            and window.previous_start <= hour < window.start)


def _rolled_periods(rows: list[Hourly], window: Window,
                    counted: dict[str, frozenset[str] | None],
                    timed: str = "") -> dict[str, dict[str, Any]]:
    """Sum the hourly totals as _period_aggregates counts the rows: per period, the rows of
    each metric's statuses (None: every status), and the mean seconds of the timed rows."""
    result: dict[str, dict[str, Any]] = {"current": {}, "previous": {}}
    for period in ("current", "previous"):
        if period == "previous" and (window.start is None or window.previous_start is None):
            continue
        hours = [row for row in rows if _in_period(row.hour, window, period)]
        for name, statuses in counted.items():
            result[period][name] = sum(row.n for row in hours
                                       if statuses is None or row.status in statuses)
        if timed:
            count = sum(row.timed for row in hours)
            result[period][timed] = (sum(row.seconds for row in hours) / count
                                     if count else None)
    return result


FINISHED_COUNTED: dict[str, frozenset[str] | None] = {
    "completed": frozenset({Execution.Status.COMPLETED}),
    "failed": frozenset({Execution.Status.FAILED})}


def _finished(workspace: Workspace, window: Window) -> dict[str, dict[str, Any]]:
    """Count the executions that finished in the window and the previous one by outcome: the
    success rate of those that ended in the window."""
    if _rolled(window):
        since = hour_start(window.previous_start or window.start or EPOCH)
        return _rolled_periods(finished_hours(workspace.pk, since), window, FINISHED_COUNTED)
    return _period_aggregates(_entered(workspace), window, "completed_at", {
        name: (lambda **kw: Count("id", **kw), Q(status__in=statuses))
        for name, statuses in FINISHED_COUNTED.items()})


def overview_kpis(workspace: Workspace, window: Window) -> list[Kpi]:
    """Return the overview KPIs with their trend against the previous window."""
    if _rolled(window):
        messages = _rolled_periods(_hours(workspace, window, "message"), window, {
            "sent": SUCCESS_STATUSES, "failed": FAILURE_STATUSES,
            "suppressed": frozenset({MessageStatus.SUPPRESSED})}, timed="latency")
        executions = _rolled_periods(_hours(workspace, window, "execution"), window,
                                     {"count": None})
    else:
        messages = _period_aggregates(Message.objects.filter(workspace=workspace), window,
                                      "created_at", {
            "sent": (lambda **kw: Count("id", **kw), SENT_Q),
            "failed": (lambda **kw: Count("id", **kw), FAILED_Q),
            "suppressed": (lambda **kw: Count("id", **kw),
                           Q(status=MessageStatus.SUPPRESSED)),
            "latency": (lambda **kw: Avg(DELIVERY_LATENCY, **kw), Q(sent_at__isnull=False)),
        })
        executions = _period_aggregates(_entered(workspace), window, "started_at", {
            "count": (lambda **kw: Count("id", **kw), Q()),
        })
    finished = _finished(workspace, window)
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
        _kpi("execution_success_rate", "Execution success rate",
             _rate(finished["current"]["completed"], finished["current"]["failed"]),
             _rate(finished["previous"].get("completed", 0),
                   finished["previous"].get("failed", 0)), fmt=percent, better=True,
             points=True, has_previous=has_previous),
        _kpi("dead_letters", "Dead letters open", letters["current"]["open"],
             letters["previous"].get("open"), fmt=num, better=False,
             has_previous=has_previous),
    ]


# --- per flow -------------------------------------------------------------------------------

@dataclass
class FlowFigures:
    """One flow's executions that finished in the window: outcomes and how long they took
    (completed ones; seconds from start to end, waits included)."""

    flow_id: Any
    name: str
    finished: int
    completed: int
    failed: int
    p50: float | None
    p90: float | None
    p99: float | None
    # Read from the per-flow hourly totals' duration buckets: within BUCKET_PRECISION.
    approximate: bool = False

    @property
    def failure_rate(self) -> float | None:
        total = self.completed + self.failed
        return self.failed / total if total else None


# The flows the overview's table lists, most executions first.
FLOWS_SHOWN = 20


def flow_figures(workspace: Workspace, window: Window) -> list[FlowFigures]:
    """Return, per flow, its executions finished in the window (completed, failed,
    cancelled) and the 50th, 90th and 99th percentiles of the completed ones' durations.
    Where the per-flow hourly totals answer they give the counts and, from their duration
    buckets, the percentiles (approximate); else PostgreSQL computes the percentiles
    (percentile_cont), and elsewhere they are computed here from the durations."""
    if _rolled(window):
        return _rolled_flow_figures(workspace, window)
    finished = _entered(workspace).filter(window.current("completed_at"),
                                          completed_at__isnull=False)
    rows = (finished.values("flow_id", "flow__name").annotate(
        finished=Count("id"), completed=Count("id", filter=Q(status=Execution.Status.COMPLETED)),
        failed=Count("id", filter=Q(status=Execution.Status.FAILED)))
        .order_by("-finished", "flow__name")[:FLOWS_SHOWN])
    figures = {row["flow_id"]: FlowFigures(row["flow_id"], row["flow__name"], row["finished"],
                                           row["completed"], row["failed"], None, None, None)
               for row in rows}
    if not figures:
        return []
    for flow_id, (p50, p90, p99) in _duration_percentiles(
            finished.filter(status=Execution.Status.COMPLETED, flow_id__in=list(figures))):
        figures[flow_id].p50, figures[flow_id].p90, figures[flow_id].p99 = p50, p90, p99
    return list(figures.values())


def _rolled_flow_figures(workspace: Workspace, window: Window) -> list[FlowFigures]:
    """Return flow_figures from the per-flow hourly totals; the names are read for the flows
    shown only (those tied with the last one shown too, which the name orders)."""
    counts: dict[Any, dict[str, int]] = {}
    buckets: dict[Any, dict[int, int]] = {}
    for row in flow_buckets(workspace.pk, hour_start(window.start or EPOCH)):
        flow = counts.setdefault(row.flow_id, {"finished": 0})
        flow["finished"] += row.n
        flow[row.status] = flow.get(row.status, 0) + row.n
        if row.status == Execution.Status.COMPLETED:
            buckets.setdefault(row.flow_id, {})[row.bucket] = row.n
    ranked = sorted(counts, key=lambda flow_id: -counts[flow_id]["finished"])
    if len(ranked) > FLOWS_SHOWN:
        last = counts[ranked[FLOWS_SHOWN - 1]]["finished"]
        ranked = [flow_id for flow_id in ranked if counts[flow_id]["finished"] >= last]
    names = dict(Flow.objects.filter(pk__in=ranked).values_list("pk", "name"))
    shown = sorted((flow_id for flow_id in ranked if flow_id in names),
                   key=lambda flow_id: (-counts[flow_id]["finished"], names[flow_id]))
    figures = []
    for flow_id in shown[:FLOWS_SHOWN]:
        p50, p90, p99 = _bucket_percentiles(buckets.get(flow_id, {}))
        figures.append(FlowFigures(flow_id, names[flow_id], counts[flow_id]["finished"],
                                   counts[flow_id].get(Execution.Status.COMPLETED, 0),
                                   counts[flow_id].get(Execution.Status.FAILED, 0),
                                   p50, p90, p99, approximate=True))
    return figures


PERCENTILES = (0.5, 0.9, 0.99)


def _bucket_percentiles(buckets: dict[int, int]) -> tuple[float | None, ...]:
    """Return the percentiles of the durations counted by bucket, each read as its bucket's
    middle (monitoring.rollups.bucket_seconds); None without any."""
    ordered = sorted(buckets)
    if not ordered:
        return (None,) * len(PERCENTILES)
    below = list(accumulate(buckets[bucket] for bucket in ordered))  # ranks under each end

    def ranked(rank: int) -> float:
        return bucket_seconds(ordered[bisect_right(below, rank)])

    return tuple(_percentile(below[-1], ranked, p) for p in PERCENTILES)


def _duration_percentiles(executions: QuerySet[Execution]) -> list[tuple[Any, tuple]]:
    """Return (flow id, (p50, p90, p99) in seconds) for the executions' flows."""
    if connection.vendor == "postgresql":
        sql, params = executions.values("flow_id", "started_at",
                                        "completed_at").query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT flow_id, percentile_cont(%s::float8[]) WITHIN GROUP (ORDER BY "
                "EXTRACT(EPOCH FROM completed_at - started_at)) "
                f"FROM ({sql}) AS done GROUP BY flow_id", [list(PERCENTILES), *params])
            return [(flow_id, tuple(values)) for flow_id, values in cursor.fetchall()]
    durations: dict[Any, list[float]] = {}
    for flow_id, started, completed in executions.values_list("flow_id", "started_at",
                                                              "completed_at"):
        if completed is not None:  # the caller's filter: only finished ones come here
            durations.setdefault(flow_id, []).append((completed - started).total_seconds())
    percentiles = []
    for flow_id, values in durations.items():
        ordered = sorted(values)
        percentiles.append((flow_id, tuple(_percentile(len(ordered), ordered.__getitem__, p)
                                           for p in PERCENTILES)))
    return percentiles


def _percentile(count: int, ranked: Callable[[int], float], fraction: float) -> float:
    """Return the interpolated percentile of `count` values, `ranked(i)` the i-th smallest
    (as percentile_cont does)."""
    position = (count - 1) * fraction
    low = int(position)
    high = min(low + 1, count - 1)
    return ranked(low) + (ranked(high) - ranked(low)) * (position - low)


# --- charts ---------------------------------------------------------------------------------

def status_counts(model: type[Message] | type[Execution], workspace: Workspace, window: Window,
                  stamp: str) -> list[tuple[str, int]]:
    """Return (status, count) for the window, largest first (executions: those contacts
    entered)."""
    if _rolled(window):
        counts: dict[str, int] = {}
        for hourly in _hours(workspace, window, "message" if model is Message else "execution"):
            if _in_period(hourly.hour, window, "current"):
                counts[hourly.status] = counts.get(hourly.status, 0) + hourly.n
        return sorted(((status, n) for status, n in counts.items() if n),
                      key=lambda pair: (-pair[1], pair[0]))
    counted: QuerySet[Any] = (Message.objects.filter(workspace=workspace)
                              if model is Message else _entered(workspace))
    rows = (counted.filter(window.current(stamp)).values("status").annotate(n=Count("id"))
            .order_by("-n", "status"))
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


def _rolled_series(rows: list[Hourly], window: Window,
                   counted: dict[str, frozenset[str] | None], timed: str) -> TimeSeries:
    """Sum the hourly totals into the chart's buckets as _series aggregates the rows."""
    sums: dict[Any, dict[str, float]] = {}
    first = hour_start(window.chart_start)
    for row in rows:
        if row.hour < first:
            continue
        local = row.hour.astimezone(window.tz)
        if window.bucket == "week":
            local -= timedelta(days=local.weekday())
        bucket = sums.setdefault(bucket_key(local, window), {"timed": 0, "seconds": 0.0})
        for name, statuses in counted.items():
            if statuses is None or row.status in statuses:
                bucket[name] = bucket.get(name, 0) + row.n
        bucket["timed"] += row.timed
        bucket["seconds"] += row.seconds
    keys = bucket_starts(window)
    series = TimeSeries([bucket_label(key, window) for key in keys])
    for name in counted:
        series.values[name] = [int(sums.get(key, {}).get(name, 0)) for key in keys]
    series.values[timed] = [
        sums[key]["seconds"] / sums[key]["timed"] if key in sums and sums[key]["timed"]
        else None for key in keys]
    return series


def message_series(workspace: Workspace, window: Window) -> TimeSeries:
    """Return message volume (total, sent, failed) and the mean time to send (created, or
    send_at, to sent) per bucket."""
    if _rolled(window):
        return _rolled_series(_hours(workspace, window, "message"), window, {
            "total": None, "sent": SUCCESS_STATUSES, "failed": FAILURE_STATUSES}, "latency")
    return _series(Message.objects.filter(workspace=workspace), window, "created_at", {
        "total": Count("id"),
        "sent": Count("id", filter=SENT_Q),
        "failed": Count("id", filter=FAILED_Q),
        "latency": Avg(DELIVERY_LATENCY, filter=Q(sent_at__isnull=False)),
    })


def execution_series(workspace: Workspace, window: Window) -> TimeSeries:
    """Return executions started and the mean time of the finished ones per bucket."""
    if _rolled(window):
        return _rolled_series(_hours(workspace, window, "execution"), window,
                              {"started": None}, "duration")
    return _series(_entered(workspace), window, "started_at", {
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
    executions = (_entered(workspace).filter(window.current("started_at"),
                                             status=Execution.Status.FAILED)
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
