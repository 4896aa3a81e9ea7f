"""The overview page's panels: KPIs, charts and recent failures for one workspace and range."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.urls import reverse
from django.utils.safestring import SafeString

from core.models import Workspace
from flows.models import Execution
from messaging.models import Message
from monitoring.dashboard import charts
from monitoring.dashboard.selectors.common import format_seconds
from monitoring.dashboard.selectors.overview import (
    EXECUTION_COLORS,
    MESSAGE_COLORS,
    execution_series,
    flow_figures,
    last_history_purge,
    message_series,
    overview_kpis,
    recent_failures,
    status_counts,
)
from monitoring.dashboard.selectors.windows import Window
from monitoring.rollups import BUCKET_PRECISION

FALLBACK_COLOR = "#a1a1aa"


@dataclass(frozen=True)
class LegendItem:
    label: str
    count: int
    share: str
    color: str
    url: str = ""


def _pie(counts: list[tuple[str, int]], colors: dict[str, str], label: str,
         list_url: str) -> tuple[SafeString, list[LegendItem]]:
    """Return the donut and its legend; each slice links to list_url filtered by status."""
    total = sum(n for _, n in counts)
    slices = [charts.Slice(status, n, colors.get(status, FALLBACK_COLOR),
                           f"{list_url}&{urlencode({'status': status})}")
              for status, n in counts]
    legend = [LegendItem(s.label, int(s.value), f"{s.value / total * 100:.0f}%", s.color,
                         s.url) for s in slices] if total else []
    return charts.pie_svg(slices, label=label, center=f"{total:,}"), legend


def _count(value: float) -> str:
    return f"{value:,.0f}"


def overview_context(workspace: Workspace, window: Window) -> dict[str, Any]:
    """Return everything the overview template draws."""
    message_counts = status_counts(Message, workspace, window, "created_at")
    execution_counts = status_counts(Execution, workspace, window, "started_at")
    scope = urlencode({"workspace": str(workspace.pk)})
    message_pie, message_legend = _pie(message_counts, MESSAGE_COLORS, "Messages by status",
                                       f"{reverse('dashboard:messages')}?{scope}")
    execution_pie, execution_legend = _pie(execution_counts, EXECUTION_COLORS,
                                           "Executions by status",
                                           f"{reverse('dashboard:executions')}?{scope}")
    messages = message_series(workspace, window)
    executions = execution_series(workspace, window)
    # No rows at all reads better as "No data" than as a flat line at zero.
    has_messages = bool(message_counts)
    volume = [
        charts.Series("all", "#60a5fa", messages.values["total"], area=True),
        charts.Series("sent", "#16a34a", messages.values["sent"]),
        charts.Series("failed", "#dc2626", messages.values["failed"]),
    ] if has_messages else []
    return {
        "kpis": overview_kpis(workspace, window),
        "last_purge": last_history_purge(),
        "message_pie": message_pie,
        "message_legend": message_legend,
        "execution_pie": execution_pie,
        "execution_legend": execution_legend,
        "volume_chart": charts.line_svg(messages.labels, volume, label="Message volume",
                                        y_format=_count, integer=True),
        "executions_chart": charts.line_svg(
            executions.labels,
            [charts.Series("started", "#0891b2", executions.values["started"], area=True)]
            if execution_counts else [], label="Executions started", y_format=_count,
            integer=True),
        "latency_chart": charts.line_svg(
            messages.labels, [charts.Series("avg latency", "#7c3aed",
                                            messages.values["latency"], connect=True)],
            label="Average time to send", y_format=format_seconds),
        "execution_time_chart": charts.line_svg(
            executions.labels, [charts.Series("avg execution time", "#0e7490",
                                              executions.values["duration"], connect=True)],
            label="Average execution time", y_format=format_seconds),
        "failures": recent_failures(workspace, window),
        "flows": flow_figures(workspace, window),
        # What a percentile marked ≈ is: read from the per-flow hourly totals.
        "approximate_title": f"approximate (within {BUCKET_PRECISION:.1%}): read from the "
                             "hourly totals' duration buckets",
    }
