"""Reads behind the schedules page: each schedule with its next runs, and recent runs."""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime

from django.db.models import F
from django.utils import timezone

from core.models import Workspace
from flows.cron import cron_describe, occurrences_after, zone_get
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
    recent: list[ScheduleRun]  # its last runs, newest first

    @property
    def success_rate(self) -> float | None:
        """Return the share of finished runs that succeeded, in percent (None: no run)."""
        done = self.successes + self.failures
        return round(100 * self.successes / done, 1) if done else None


NEXT_RUNS = 3
LAST_RUNS = 5  # runs shown per schedule
PREVIEW_RUNS = 5  # occurrences the form's cron preview shows


@dataclass(frozen=True)
class CronPreview:
    description: str
    upcoming: list[datetime]
    error: str = ""


def cron_preview(cron: str, zone_name: str) -> CronPreview:
    """Return what a cron expression means and its next occurrences in the zone, or why it
    cannot be read (the form's preview)."""
    try:
        zone = zone_get(zone_name or "UTC")
        upcoming = list(itertools.islice(occurrences_after(
            cron=" ".join(cron.split()), zone=zone, after=timezone.now()), PREVIEW_RUNS))
        return CronPreview(cron_describe(cron), upcoming)
    except ValueError as exc:  # CronError
        return CronPreview("", [], str(exc))


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
        schedule.successes, schedule.failures, _upcoming(schedule), _recent(schedule))
        for schedule in queryset]


def _recent(schedule: FlowSchedule) -> list[ScheduleRun]:
    """Return the schedule's last LAST_RUNS runs, newest first (a workspace has few
    schedules; each read is one indexed query)."""
    return list(ScheduleRun.objects.filter(schedule=schedule)
                .order_by("-occurrence_at", "-pk")[:LAST_RUNS])


def schedule_runs(workspace: Workspace, limit: int = 20) -> list[ScheduleRun]:
    """Return the workspace's most recent schedule runs."""
    return list(ScheduleRun.objects.filter(schedule__workspace=workspace)
                .select_related("schedule__flow").order_by("-occurrence_at", "-pk")[:limit])
