"""Flow schedules: their beat periodic tasks, firing occurrences, running and sweeping runs.

Beat (django-celery-beat's DatabaseScheduler) holds one PeriodicTask per schedule and only
wakes `fire_schedule(schedule_id)`; it decides nothing. What fires is decided here: the
occurrences are computed in the schedule's time zone by flows.cron (croniter plus the DST
rule), and each firing inserts a ScheduleRun unique on (schedule, occurrence), so a second
beat, a restart, a retried task, the sweeper or a late delivery cannot start an occurrence
twice.
"""
from __future__ import annotations

import json
import logging
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils.timezone import now as timezone_now
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from core.models import Contact, Workspace
from flows import events as flow_events
from flows import services
from flows.cron import (
    cron_parse,
    occurrence_latest,
    occurrence_next,
    occurrences_between,
    zone_get,
)
from flows.models import BulkStart, Execution, Flow, FlowSchedule, ScheduleRun
from flows.publishing import RUN_SCHEDULE_BATCH, send, send_on_commit

logger = logging.getLogger(__name__)

FIRE_TASK = "flows.schedule_tasks.fire_schedule"
TASK_PREFIX = "flow-schedule:"
# A sweep fires at most this many due schedules in one pass (one transaction: a few bulk
# statements plus ~0.3 ms per schedule), so a thousand due in the same minute fire together.
SWEEP_BATCH = 1000


class RunRefused(Exception):
    """This occurrence cannot start the flow (flow not active, audience gone)."""


# --- schedules and their periodic tasks -----------------------------------------------------

EDITABLE = frozenset({"flow", "cron", "timezone", "enabled", "audience", "data", "catch_up"})


def _next_run(schedule: FlowSchedule, now: datetime) -> datetime | None:
    if not schedule.enabled:
        return None
    return occurrence_next(cron=schedule.cron, zone=zone_get(schedule.timezone),
                           after=max(now, schedule.active_since))


def schedule_create(*, workspace: Workspace, flow: Flow, cron: str, timezone: str,
                    audience: dict, data: dict | None = None, enabled: bool = True,
                    catch_up: str = FlowSchedule.CatchUp.SKIP,
                    now: datetime | None = None) -> FlowSchedule:
    """Create a schedule and its beat task in one transaction."""
    cron_parse(cron)
    zone_get(timezone)
    now = now or timezone_now()
    schedule = FlowSchedule(workspace=workspace, flow=flow, cron=cron, timezone=timezone,
                            enabled=enabled, audience=audience, data=data or {},
                            catch_up=catch_up, active_since=now)
    schedule.next_run_at = _next_run(schedule, now)
    with transaction.atomic():
        schedule.save()
        _periodic_task_sync(schedule)
    return schedule


def schedule_update(*, schedule: FlowSchedule, now: datetime | None = None,
                    **changes: Any) -> FlowSchedule:
    """Change a schedule and its beat task together; beat notices without a restart."""
    unknown = set(changes) - EDITABLE
    if unknown:
        raise TypeError(f"not editable: {', '.join(sorted(unknown))}")
    now = now or timezone_now()
    retimed = any(key in changes and changes[key] != getattr(schedule, key)
                  for key in ("cron", "timezone")) or (
        changes.get("enabled") is True and not schedule.enabled)
    toggled = "enabled" in changes and changes["enabled"] != schedule.enabled
    for key, value in changes.items():
        setattr(schedule, key, value)
    cron_parse(schedule.cron)
    zone_get(schedule.timezone)
    fields = [*changes, "updated_at"]
    if retimed:
        schedule.active_since = now
        fields.append("active_since")
    if retimed or toggled:
        # Left alone otherwise: moving it on could hide a due occurrence from the sweeper.
        schedule.next_run_at = _next_run(schedule, now)
        fields.append("next_run_at")
    with transaction.atomic():
        # Only these columns: counters are written concurrently by firing runs.
        schedule.save(update_fields=fields)
        _periodic_task_sync(schedule)
    return schedule


def schedule_delete(*, schedule: FlowSchedule) -> None:
    """Delete a schedule, its runs and (through the model's post_delete) its beat task."""
    with transaction.atomic():
        schedule.delete()


def _task_fields(schedule: FlowSchedule) -> dict[str, Any]:
    cron = cron_parse(schedule.cron)
    return {
        "task": FIRE_TASK, "args": [], "kwargs": {"schedule_id": str(schedule.pk)},
        "queue": "flows", "enabled": schedule.enabled, "one_off": False, "expires": None,
        "start_time": None, "interval_id": None, "solar_id": None, "clocked_id": None,
        "description": f"Starts flow {schedule.flow_id} ({schedule.cron}, {schedule.timezone})",
        "crontab": {"minute": cron.minute, "hour": cron.hour,
                    "day_of_month": cron.day_of_month, "month_of_year": cron.month_of_year,
                    "day_of_week": cron.day_of_week, "timezone": schedule.timezone},
    }


def _task_value(task: PeriodicTask, key: str) -> Any:
    if key in ("args", "kwargs"):
        try:
            return json.loads(getattr(task, key) or "null")
        except ValueError:
            return None
    if key == "crontab":
        crontab = task.crontab
        return None if crontab is None else {
            "minute": crontab.minute, "hour": crontab.hour,
            "day_of_month": crontab.day_of_month, "month_of_year": crontab.month_of_year,
            "day_of_week": crontab.day_of_week, "timezone": str(crontab.timezone)}
    return getattr(task, key)


def _crontab(fields: dict[str, str]) -> CrontabSchedule:
    # Crontab rows are shared: every schedule at "0 9 * * 1-5" in Berlin uses one row.
    return (CrontabSchedule.objects.filter(**fields).first()
            or CrontabSchedule.objects.create(**fields))


def _periodic_task_sync(schedule: FlowSchedule, *, apply: bool = True) -> list[str]:
    """Make the schedule's beat task match the schedule; return what differed."""
    name = f"{TASK_PREFIX}{schedule.pk}"
    task = (PeriodicTask.objects.select_related("crontab")
            .filter(Q(pk=schedule.periodic_task_id) | Q(name=name)).order_by("-pk").first())
    wanted = _task_fields(schedule)
    if task is None:
        differs = ["missing"]
        task = PeriodicTask(name=name)
    else:
        differs = [key for key, value in wanted.items() if _task_value(task, key) != value]
        differs += ["name"] if task.name != name else []
        differs += ["link"] if schedule.periodic_task_id != task.pk else []
    if not apply or not differs:
        return differs
    for key, value in wanted.items():
        stored = json.dumps(value) if key in ("args", "kwargs") else value
        setattr(task, key, _crontab(value) if key == "crontab" else stored)
    task.name = name
    task.save()  # PeriodicTask.save() bumps PeriodicTasks, which running beats poll
    if schedule.periodic_task_id != task.pk:
        FlowSchedule.objects.filter(pk=schedule.pk).update(periodic_task=task)
        schedule.periodic_task = task
    return differs


@dataclass
class SyncReport:
    """What sync_schedules found and (unless a dry run) repaired."""

    dry_run: bool = False
    checked: int = 0
    repaired: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.repaired or self.removed) and not self.dry_run

    def lines(self) -> list[str]:
        verb = "would repair" if self.dry_run else "repaired"
        gone = "would remove" if self.dry_run else "removed"
        return [*(f"{verb} {item}" for item in self.repaired),
                *(f"{gone} orphaned periodic task {item}" for item in self.removed),
                f"{self.checked} schedule(s) checked, {len(self.repaired)} {verb}, "
                f"{len(self.removed)} orphaned periodic task(s) {gone}."]


def schedules_sync(*, dry_run: bool = False, now: datetime | None = None) -> SyncReport:
    """Repair every mismatch between schedules and beat's periodic tasks: missing, wrong
    crontab, time zone, enabled flag or arguments, and tasks whose schedule is gone."""
    now = now or timezone_now()
    report = SyncReport(dry_run=dry_run)
    with transaction.atomic():
        for schedule in FlowSchedule.objects.order_by("created_at"):
            report.checked += 1
            differs = _periodic_task_sync(schedule, apply=not dry_run)
            if schedule.enabled and schedule.next_run_at is None:
                differs.append("next_run_at")
                if not dry_run:
                    FlowSchedule.objects.filter(pk=schedule.pk).update(
                        next_run_at=_next_run(schedule, now))
            if differs:
                report.repaired.append(f"schedule {schedule.pk}: {', '.join(differs)}")
        # One statement, so a schedule committed meanwhile cannot make its task look orphaned.
        orphans = PeriodicTask.objects.filter(
            Q(task=FIRE_TASK) | Q(name__startswith=TASK_PREFIX), flow_schedule__isnull=True)
        for task in orphans:
            report.removed.append(task.name)
            if not dry_run:
                task.delete()
    return report


# --- firing ---------------------------------------------------------------------------------

def _grace() -> timedelta:
    return timedelta(seconds=settings.SCHEDULE_CATCH_UP_GRACE_SECONDS)


def schedule_fire(*, schedule_id: Any, now: datetime | None = None) -> list[ScheduleRun]:
    """Start every due occurrence not started yet; return the runs this call inserted.

    Due: occurrences since the schedule became active and within the grace. If none is due
    but an older one was missed (everything was down), catch_up decides: "skip" records it
    as skipped, "run_once" starts it. A disabled or deleted schedule starts nothing, so a
    stale beat's wake-up is harmless.
    """
    return schedules_fire(schedule_ids=[schedule_id], now=now)


@dataclass
class _Due:
    """One occurrence of one schedule to record (skipped) or start."""

    schedule: FlowSchedule
    occurrence: datetime
    skip: bool


def schedules_fire(*, schedule_ids: list[Any], now: datetime | None = None,
                   skip_locked: bool = False) -> list[ScheduleRun]:
    """Fire many schedules in one pass (schedule_fire's rules for each); return the runs
    inserted.

    A thousand schedules due in the same minute cost a handful of statements, not a
    transaction each: their occurrences are computed once per (cron, time zone), their runs
    and bulk starts inserted in bulk. skip_locked leaves schedules another firer holds to it.
    """
    now = now or timezone_now()
    with transaction.atomic():
        # Locked so a concurrent disable either waits for this firing or is seen by it, and
        # so nobody else inserts these schedules' runs meanwhile.
        schedules = list(FlowSchedule.objects.select_for_update(
            of=("self",), skip_locked=skip_locked).select_related("flow", "workspace")
            .filter(pk__in=schedule_ids, enabled=True).order_by("pk"))
        if not schedules:
            return []
        due, next_runs = _due_occurrences(schedules, now)
        # Read first: most wake-ups are duplicates, and a refused INSERT is an error line
        # in PostgreSQL's log. The locks above keep the read true until the commit.
        fired = set(ScheduleRun.objects.filter(
            schedule__in=schedules, occurrence_at__in={d.occurrence for d in due})
            .values_list("schedule_id", "occurrence_at"))
        due = [d for d in due if (d.schedule.pk, d.occurrence) not in fired]
        runs = _runs_open(due, now)
        for next_run, ids in next_runs.items():
            FlowSchedule.objects.filter(pk__in=ids).update(next_run_at=next_run)
    return runs


def _due_occurrences(schedules: list[FlowSchedule], now: datetime
                     ) -> tuple[list[_Due], dict[datetime | None, list[Any]]]:
    """Return the occurrences to fire and the schedules' next runs, computing each
    (cron, time zone)'s occurrences once."""
    due: list[_Due] = []
    next_runs: dict[datetime | None, list[Any]] = {}
    computed: dict[tuple[str, str], tuple[list[datetime], datetime | None, datetime | None]] = {}
    for schedule in schedules:
        key = (schedule.cron, schedule.timezone)
        if key not in computed:
            zone = zone_get(schedule.timezone)
            computed[key] = (
                occurrences_between(cron=schedule.cron, zone=zone, end=now,
                                    start=now - _grace()),
                occurrence_latest(cron=schedule.cron, zone=zone, now=now),
                occurrence_next(cron=schedule.cron, zone=zone, after=now))
        window, latest, next_run = computed[key]
        next_runs.setdefault(next_run, []).append(schedule.pk)
        occurrences = [o for o in window if o >= schedule.active_since]
        if occurrences:
            due += [_Due(schedule, o, False) for o in occurrences]
        elif latest is not None and latest >= schedule.active_since:
            due.append(_Due(schedule, latest, schedule.catch_up == FlowSchedule.CatchUp.SKIP))
    return due, next_runs


def _runs_open(due: list[_Due], now: datetime) -> list[ScheduleRun]:
    """Insert the occurrences' runs with their bulk starts and queue them, in bulk; one by
    one if a run exists after all (a firer that did not take the schedule's lock)."""
    if not due:
        return []
    plans = _plans([d for d in due if not d.skip])
    runs, jobs, refused = [], [], []
    for d in due:
        run = ScheduleRun(
            schedule=d.schedule, occurrence_at=d.occurrence, fired_at=now,
            status=ScheduleRun.Status.SKIPPED if d.skip else ScheduleRun.Status.RUNNING,
            finished_at=now if d.skip else None,
            error=f"Missed by {now - d.occurrence}; catch_up is skip." if d.skip else "")
        plan = None if d.skip else plans[d.schedule.pk]
        if isinstance(plan, Exception):
            refused.append((run, str(plan)))
        elif plan is not None:
            run.bulk_start, run.missing = _bulk_start(d.schedule, plan), plan[2]
            jobs.append(run.bulk_start)
        runs.append(run)
    try:
        with transaction.atomic():
            BulkStart.objects.bulk_create(jobs)
            ScheduleRun.objects.bulk_create(runs)
    except IntegrityError:
        opened = [_run_open(d.schedule, d.occurrence, now, skip=d.skip) for d in due]
        return [run for run in opened if run is not None]
    _runs_count([d.schedule.pk for d in due if not d.skip], now)
    for run, error in refused:
        _run_close(run, ScheduleRun.Status.FAILED, error, now=now)
    queued = [run.pk for run in runs if run.bulk_start_id is not None]
    transaction.on_commit(lambda: _send_all(queued))
    return runs


def _send_all(run_ids: list[int]) -> None:
    for pk in run_ids:
        send(RUN_SCHEDULE_BATCH, pk)


Plan = tuple[list[str] | None, dict | None, int]


def _plans(due: list[_Due]) -> dict[Any, Plan | Exception]:
    """Return each schedule's audience plan (contact ids, rules, missing count), or why its
    run cannot start; the named contacts of all of them are looked up in one query."""
    named: dict[Any, list[str]] = {}
    for d in due:
        audience = d.schedule.audience or {}
        if "filter" not in audience:
            ids = [audience["contact_id"]] if "contact_id" in audience else audience.get(
                "contact_ids") or []
            named[d.schedule.pk] = list(dict.fromkeys(str(pk) for pk in ids))
    wanted = {pk for ids in named.values() for pk in ids if _is_uuid(pk)}
    found = {(str(workspace), str(pk)) for pk, workspace in Contact.objects.filter(
        pk__in=wanted).values_list("pk", "workspace_id")} if wanted else set()
    plans: dict[Any, Plan | Exception] = {}
    startable: dict[Any, Exception | None] = {}  # one version lookup per flow
    for d in due:
        schedule = d.schedule
        if schedule.flow_id not in startable:
            try:
                services.flow_startable_version(flow=schedule.flow)
                startable[schedule.flow_id] = None
            except services.StartRefused as exc:
                startable[schedule.flow_id] = exc
        refusal = startable[schedule.flow_id]
        if refusal is not None:
            plans[schedule.pk] = refusal
            continue
        if schedule.pk not in named:
            plans[schedule.pk] = (None, (schedule.audience or {})["filter"], 0)
            continue
        ids = named[schedule.pk]
        present = [pk for pk in ids if (str(schedule.workspace_id), pk) in found]
        plans[schedule.pk] = (present, None, len(ids) - len(present)) if present else RunRefused(
            "The audience's contact no longer exists." if len(ids) == 1
            else "None of the audience's contacts exist any more.")
    return plans


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _bulk_start(schedule: FlowSchedule, plan: Plan) -> BulkStart:
    return BulkStart(workspace_id=schedule.workspace_id, flow=schedule.flow,
                     source=Execution.Source.SCHEDULE, contact_ids=plan[0], filter=plan[1],
                     data=schedule.data or {})


def _runs_count(schedule_ids: list[Any], now: datetime) -> None:
    """Count started runs on their schedules: one UPDATE per distinct number of runs."""
    by_count: dict[int, list[Any]] = {}
    for pk, count in Counter(schedule_ids).items():
        by_count.setdefault(count, []).append(pk)
    for count, ids in by_count.items():
        FlowSchedule.objects.filter(pk__in=ids).update(
            runs=F("runs") + count, last_run_at=now,
            last_run_status=ScheduleRun.Status.RUNNING)


def _run_open(schedule: FlowSchedule, occurrence: datetime, now: datetime,
              skip: bool = False) -> ScheduleRun | None:
    """Insert the occurrence's run and start it; None if it already has one."""
    try:
        with transaction.atomic():
            run = ScheduleRun.objects.create(
                schedule=schedule, occurrence_at=occurrence, fired_at=now,
                status=ScheduleRun.Status.SKIPPED if skip else ScheduleRun.Status.RUNNING,
                finished_at=now if skip else None,
                error=f"Missed by {now - occurrence}; catch_up is skip." if skip else "")
    except IntegrityError:
        return None  # fired already: another beat, a retry or the sweeper got there first
    if not skip:
        _run_begin(schedule, run, now)
    return run


def _run_begin(schedule: FlowSchedule, run: ScheduleRun, now: datetime) -> None:
    """Count the run and queue its first batch, or fail it at once if it cannot start."""
    _runs_count([schedule.pk], now)
    plan = _plans([_Due(schedule, run.occurrence_at, False)])[schedule.pk]
    if isinstance(plan, Exception):
        _run_close(run, ScheduleRun.Status.FAILED, str(plan), now=now)
        return
    job = _bulk_start(schedule, plan)
    job.save()
    ScheduleRun.objects.filter(pk=run.pk).update(bulk_start=job, missing=plan[2])
    send_on_commit(RUN_SCHEDULE_BATCH, run.pk)


def _run_close(run: ScheduleRun, status: str, error: str, now: datetime,
               job: BulkStart | None = None) -> bool:
    """Finish a running run once: its counts, then the schedule's counters and status."""
    counts = {"total": job.total, "started": job.started, "skipped": job.skipped,
              "refused": job.refused} if job else {}
    with transaction.atomic():
        closed = ScheduleRun.objects.filter(pk=run.pk, status=ScheduleRun.Status.RUNNING).update(
            status=status, error=error, finished_at=now, updated_at=now, **counts)
        if closed and status == ScheduleRun.Status.FAILED:
            flow_events.schedule_run_failed_emit(run=run)
    if not closed:
        return False
    counter = "successes" if status == ScheduleRun.Status.SUCCEEDED else "failures"
    FlowSchedule.objects.filter(pk=run.schedule_id).update(**{counter: F(counter) + 1})
    # A newer run may have started meanwhile; its status is the schedule's last status.
    FlowSchedule.objects.filter(pk=run.schedule_id, last_run_at__lte=run.fired_at).update(
        last_run_status=status)
    return True


def schedule_run_advance(*, run_id: int) -> bool:
    """Start the next batch of a run's audience; return True while batches remain."""
    now = timezone_now()
    with transaction.atomic():
        # The lock makes a duplicated batch task wait, then start the following batch.
        run = (ScheduleRun.objects.select_for_update(of=("self",))
               .filter(pk=run_id, status=ScheduleRun.Status.RUNNING).first())
        if run is None or run.bulk_start_id is None:
            return False
        job = BulkStart.objects.select_related("flow", "workspace").get(pk=run.bulk_start_id)
        try:
            more = services.bulk_start_run_batch(job=job)
        except services.StartRefused as exc:  # paused or archived mid-run
            BulkStart.objects.filter(pk=job.pk).update(
                status=BulkStart.Status.FAILED, error=str(exc), finished_at=now)
            job.refresh_from_db()
            _run_close(run, ScheduleRun.Status.FAILED, str(exc), now=now, job=job)
            return False
        job.refresh_from_db()
        if more:
            ScheduleRun.objects.filter(pk=run.pk).update(updated_at=now)
            return True
        _run_close(run, ScheduleRun.Status.SUCCEEDED, "", now=now, job=job)
    return False


def schedules_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Fire schedules whose next run is due (beat's wake-up is only the fast path) and
    repair runs whose batch task was lost."""
    now = now or timezone_now()
    due, fired = schedules_fire_due(now=now)
    requeued, timed_out = _runs_repair(now)
    return {"due": due, "fired": fired, "requeued": requeued, "timed_out": timed_out}


def schedules_fire_due(*, now: datetime | None = None) -> tuple[int, int]:
    """Fire every enabled schedule whose next run has come; return (due, fired).

    The dispatcher calls this on every pass, so an occurrence fires within a poll interval
    of its time even when a thousand schedules share the minute; the run's uniqueness per
    occurrence keeps concurrent callers (beat, the sweep, other dispatchers) from firing
    it twice.
    """
    now = now or timezone_now()
    due = list(FlowSchedule.objects.filter(enabled=True, next_run_at__lte=now)
               .order_by("next_run_at").values_list("pk", flat=True)[:SWEEP_BATCH])
    if not due:
        return 0, 0
    try:
        # Schedules another firer holds (beat's wake-up task) are left to it.
        return len(due), len(schedules_fire(schedule_ids=due, now=now, skip_locked=True))
    except Exception:  # one broken schedule must not stop the others from firing
        logger.exception("firing %d schedules together failed; firing them one by one",
                         len(due))
    fired = 0
    for pk in due:
        try:
            fired += len(schedule_fire(schedule_id=pk, now=now))
        except Exception:
            logger.exception("firing schedule %s failed", pk)
    return len(due), fired


def _runs_repair(now: datetime) -> tuple[int, int]:
    """Requeue runs idle too long; fail those running past the timeout."""
    idle = now - timedelta(seconds=settings.SCHEDULE_RUN_REQUEUE_SECONDS)
    too_old = now - timedelta(seconds=settings.SCHEDULE_RUN_TIMEOUT_SECONDS)
    requeued = timed_out = 0
    stale = ScheduleRun.objects.filter(status=ScheduleRun.Status.RUNNING, updated_at__lt=idle)
    for run in stale.select_related("bulk_start")[:SWEEP_BATCH]:
        with transaction.atomic():
            if run.fired_at < too_old:
                error = "The run did not finish in time."
                if run.bulk_start_id:
                    BulkStart.objects.filter(pk=run.bulk_start_id).update(
                        status=BulkStart.Status.FAILED, error=error, finished_at=now)
                timed_out += _run_close(run, ScheduleRun.Status.FAILED, error, now=now,
                                        job=run.bulk_start)
                continue
            ScheduleRun.objects.filter(pk=run.pk).update(updated_at=now)
            send_on_commit(RUN_SCHEDULE_BATCH, run.pk)
            requeued += 1
    return requeued, timed_out
