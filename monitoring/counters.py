"""The running totals behind /metrics, kept by PostgreSQL triggers (see the migration
monitoring/0007_metric_counter_triggers): messages by workspace, channel and status, the
delivery and step histograms, attempts by channel and outcome, executions by status.

Writers append deltas in their own transaction; a scrape reads totals plus pending deltas in
one statement (one snapshot, so a concurrent compaction never counts a delta twice or not at
all), and counters_compact folds the deltas into the totals every few seconds. So a scrape
costs the same with ten rows of history or ten million.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from django.db import connection

READ = """
SELECT metric, a, b, c, sum(n), sum(seconds) FROM (
  SELECT metric, a, b, c, n, seconds FROM monitoring_metriccount
  UNION ALL
  SELECT metric, a, b, c, n, seconds FROM monitoring_metricdelta) AS counted
GROUP BY metric, a, b, c HAVING sum(n) <> 0
"""


@dataclass
class Histogram:
    """One label's histogram: count per bucket bound (float, inf for +Inf) and the sum."""

    counts: dict[float, int] = field(default_factory=dict)
    seconds: float = 0.0

    def cumulative(self, bounds: tuple[float, ...]) -> list[tuple[float, int]]:
        """Return (bound, rows at or under it) for each bound and +Inf."""
        return [(bound, sum(n for b, n in self.counts.items() if b <= bound))
                for bound in (*bounds, float("inf"))]


@dataclass
class Counts:
    """What one scrape read: plain counts by metric and label tuple, and histograms."""

    plain: dict[str, dict[tuple[str, ...], int]] = field(
        default_factory=lambda: defaultdict(dict))
    histograms: dict[str, dict[str, Histogram]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(Histogram)))


HISTOGRAMS = frozenset({"delivery", "steps"})


def counters_enabled() -> bool:
    """Return True where the triggers keep the totals (PostgreSQL)."""
    return connection.vendor == "postgresql"


def counters_read() -> Counts | None:
    """Return the totals, or None where no trigger keeps them (scan the tables instead)."""
    if not counters_enabled():
        return None
    counts = Counts()
    with connection.cursor() as cursor:
        cursor.execute(READ)
        for metric, a, b, c, n, seconds in cursor.fetchall():
            if metric in HISTOGRAMS:
                histogram = counts.histograms[metric][a]
                histogram.counts[float("inf") if c == "+Inf" else float(c)] = int(n)
                histogram.seconds += float(seconds or 0.0)
            else:
                counts.plain[metric][(a, b, c)[:_LABELS[metric]]] = int(n)
    return counts


_LABELS = {"messages": 3, "attempts": 2, "executions": 2}


def counters_compact() -> int:
    """Fold the pending deltas into the totals; return how many totals changed (0 where
    another compaction runs or there are no triggers)."""
    if not counters_enabled():
        return 0
    with connection.cursor() as cursor:
        # The overview's hourly and per-flow totals (monitoring.rollups) are folded on the
        # same beat.
        cursor.execute("SELECT relay_metric_compact() + relay_hourly_compact() "
                       "+ relay_flow_hourly_compact()")
        return int(cursor.fetchone()[0])
