"""The overview's hourly totals: messages by workspace, creation hour (UTC) and status, and
executions by start hour and status, each with the rows that have a time (sent, finished)
and their seconds; and the executions that finished by flow, hour (of completed_at), status
and duration bucket. PostgreSQL triggers keep them (monitoring/migrations/0011, 0014), so
the overview reads a few hundred rows for a window however many messages it holds;
elsewhere (SQLite, for development) it counts the tables themselves.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.db import connection

from monitoring.counters import counters_enabled

READ = """
SELECT hour, status, sum(n), sum(timed), sum(seconds) FROM (
  SELECT hour, status, n, timed, seconds FROM monitoring_hourlycount
  WHERE workspace_id = %(workspace)s AND kind = %(kind)s AND hour >= %(since)s
  UNION ALL
  SELECT hour, status, n, timed, seconds FROM monitoring_hourlydelta
  WHERE workspace_id = %(workspace)s AND kind = %(kind)s AND hour >= %(since)s) AS counted
GROUP BY hour, status HAVING sum(n) <> 0 OR sum(timed) <> 0
"""


@dataclass(frozen=True)
class Hourly:
    """One hour's rows of one status: how many, how many have a time, their seconds."""

    hour: datetime
    status: str
    n: int
    timed: int
    seconds: float


def hourly_rows(workspace_id: Any, kind: str, since: datetime) -> list[Hourly]:
    """Return the hours from `since` (an hour start, UTC) on for messages or executions."""
    with connection.cursor() as cursor:
        cursor.execute(READ, {"workspace": workspace_id, "kind": kind, "since": since})
        return [Hourly(hour, status, int(n), int(timed), float(seconds))
                for hour, status, n, timed, seconds in cursor.fetchall()]


# A finished execution's duration bucket (monitoring/migrations/0014 computes it): 0 under
# SMALLEST_SECONDS (about a millisecond), else bucket k holds SMALLEST_SECONDS * 2 ** ((k - 1)
# / 8) up to SMALLEST_SECONDS * 2 ** (k / 8). Eight per doubling: a bucket is 9% wide, so its
# geometric middle is within BUCKET_PRECISION (4.4%) of any duration in it, and a percentile
# interpolated from the middles is too (give or take a millisecond: bucket 0 reads as 0 s).
# Twice as fine would double the rows read.
BUCKETS_PER_DOUBLING = 8
SMALLEST_SECONDS = 2.0 ** -10
BUCKET_PRECISION = 2 ** (0.5 / BUCKETS_PER_DOUBLING) - 1


def _flow_totals_read(columns: str) -> str:
    """Return the read of the per-flow totals since an hour, pending deltas included,
    summed by `columns` (as READ does for the hourly totals)."""
    return f"""
SELECT {columns}, sum(n) FROM (
  SELECT {columns}, n FROM monitoring_flowhourlycount
  WHERE workspace_id = %(workspace)s AND hour >= %(since)s
  UNION ALL
  SELECT {columns}, n FROM monitoring_flowhourlydelta
  WHERE workspace_id = %(workspace)s AND hour >= %(since)s) AS counted
GROUP BY {columns} HAVING sum(n) <> 0
"""


FINISHED_READ = _flow_totals_read("hour, status")
FLOWS_READ = _flow_totals_read("flow_id, status, bucket")


@dataclass(frozen=True)
class FlowBucket:
    """How many executions of one flow finished since some hour with one status and a
    duration in one bucket."""

    flow_id: Any
    status: str
    bucket: int
    n: int


def finished_hours(workspace_id: Any, since: datetime) -> list[Hourly]:
    """Return the executions that finished per hour (UTC, from `since` on) and status, as
    Hourly rows without times."""
    with connection.cursor() as cursor:
        cursor.execute(FINISHED_READ, {"workspace": workspace_id, "since": since})
        return [Hourly(hour, status, int(n), 0, 0.0) for hour, status, n in cursor.fetchall()]


def flow_buckets(workspace_id: Any, since: datetime) -> list[FlowBucket]:
    """Return the executions that finished from `since` (an hour start, UTC) on, per flow,
    status and duration bucket."""
    with connection.cursor() as cursor:
        cursor.execute(FLOWS_READ, {"workspace": workspace_id, "since": since})
        return [FlowBucket(flow_id, status, int(bucket), int(n))
                for flow_id, status, bucket, n in cursor.fetchall()]


def bucket_seconds(bucket: int) -> float:
    """Return the duration a bucket stands for: its geometric middle (0 for the first)."""
    if bucket <= 0:
        return 0.0
    return SMALLEST_SECONDS * 2 ** ((bucket - 0.5) / BUCKETS_PER_DOUBLING)


def hour_start(moment: datetime) -> datetime:
    """Return the start of the hour holding `moment`."""
    return moment.replace(minute=0, second=0, microsecond=0)


def rollups_cover(tz: ZoneInfo, *moments: datetime) -> bool:
    """Return whether hourly totals can answer for a zone: PostgreSQL keeps them, and the
    zone is a whole number of hours from UTC at each moment (else local hours and days
    would cut UTC hours in two)."""
    if not counters_enabled():
        return False
    offsets = (moment.astimezone(tz).utcoffset() or timedelta(0) for moment in moments)
    return all(offset % timedelta(hours=1) == timedelta(0) for offset in offsets)
