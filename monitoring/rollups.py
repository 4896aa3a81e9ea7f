"""The overview's hourly totals: messages by workspace, creation hour (UTC) and status, and
executions by start hour and status, each with the rows that have a time (sent, finished)
and their seconds. PostgreSQL triggers keep them (monitoring/migrations/0011), so the
overview reads a few hundred rows for a window however many messages it holds; elsewhere
(SQLite, for development) it counts the tables themselves.
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
