"""Reads behind the schedules page: each schedule with its next runs, and recent runs."""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime

from django.db.models import F
from django.utils import timezone

from core.models import Workspace
from flows.cron import occurrences_after, zone_get
from flows.models import Flow, FlowSchedule, ScheduleRun


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
        zone = zone_get(schedule.timezone or "UTC")
        return list(itertools.islice(occurrences_after(
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
