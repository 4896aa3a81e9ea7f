"""Celery tasks of flow schedules (thin: ids in, one service call) and the beat start hook.

Imported by flows/tasks.py, because autodiscovery only imports tasks.py; nothing else in
flows imports it (schedules publish run_schedule_batch by name), so the names must not change.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from celery import shared_task
from celery.signals import beat_init
from django.db import DatabaseError

from core.outage import TASK_RETRY
from flows import schedules
from flows.publishing import QUEUE

logger = logging.getLogger(__name__)
# One batch task works this long (500 contacts a batch, ~50 ms each) before handing on.
RUN_TASK_SECONDS = 20


@shared_task(name="flows.schedule_tasks.fire_schedule", acks_late=True, **TASK_RETRY)
def fire_schedule(schedule_id: str) -> int:
    """Start the schedule's due occurrences (beat's wake-up; duplicates start nothing)."""
    return len(schedules.schedule_fire(schedule_id=schedule_id))


@shared_task(name="flows.schedule_tasks.run_schedule_batch", acks_late=True, **TASK_RETRY)
def run_schedule_batch(run_id: int) -> None:
    """Start batches of a run's audience for up to RUN_TASK_SECONDS, then queue the rest.

    Looping here keeps the next batch from waiting behind the advance tasks the previous
    batch just queued on the same queue (as flows.tasks.run_bulk_start does).
    """
    deadline = time.monotonic() + RUN_TASK_SECONDS
    while time.monotonic() < deadline:
        if not schedules.schedule_run_advance(run_id=run_id):
            return
    run_schedule_batch.apply_async(args=(run_id,), queue=QUEUE)


@shared_task(name="flows.schedule_tasks.sweep_schedules")
def sweep_schedules() -> dict[str, int]:
    """Fire overdue schedules and requeue runs whose batch task was lost."""
    return schedules.schedules_sweep()


@beat_init.connect(dispatch_uid="flows.schedule_tasks.sync_at_beat_start")
def sync_at_beat_start(sender: Any = None, **kwargs: Any) -> None:
    """Run sync_schedules when beat starts, so it never ticks on a stale task table."""
    try:
        report = schedules.schedules_sync()
    except DatabaseError:
        logger.exception("sync_schedules at beat start failed; beat goes on unrepaired")
        return
    for line in report.lines():
        logger.info("sync_schedules: %s", line)
    scheduler = getattr(sender, "scheduler", None)
    if report.changed and scheduler is not None and hasattr(scheduler, "_initial_read"):
        # DatabaseScheduler read the table just before this signal, and its first change
        # check only records a timestamp: have it read the repaired table on its first tick.
        scheduler._initial_read = True
