"""Celery tasks of the flow engine (thin: ids in, one service call).

Nothing in flows imports this module: services publish these tasks by name through
flows.publishing, so the names below must not change.
"""
from __future__ import annotations

import time

from celery import shared_task

from core.outage import TASK_RETRY
from flows import (
    engine,
    schedule_tasks,  # noqa: F401  (autodiscovery imports only tasks.py)
    services,
)
from flows.models import BulkStart
from flows.publishing import QUEUE

# One bulk-start task works this long before handing the rest to a fresh task.
BULK_TASK_SECONDS = 20


@shared_task(name="flows.tasks.advance_executions", acks_late=True, **TASK_RETRY)
def advance_executions(execution_ids: list[str]) -> dict[str, str]:
    """Advance a batch of executions, one after the other, in one transaction."""
    return engine.advance_many(execution_ids=execution_ids)


@shared_task(name="flows.tasks.run_bulk_start", acks_late=True, **TASK_RETRY)
def run_bulk_start(job_id: str) -> None:
    """Start batches of a bulk start for up to BULK_TASK_SECONDS, then queue the rest.

    Looping here (instead of one task per batch) keeps the next batch from waiting behind
    the advance tasks the previous batch just queued on the same queue.
    """
    deadline = time.monotonic() + BULK_TASK_SECONDS
    while time.monotonic() < deadline:
        job = BulkStart.objects.select_related("flow", "workspace").get(pk=job_id)
        if job.status in (BulkStart.Status.COMPLETED, BulkStart.Status.FAILED):
            return
        if not services.bulk_start_run_batch(job=job):
            return
    run_bulk_start.apply_async(args=(job_id,), queue=QUEUE)


@shared_task(name="flows.tasks.sweep_flows")
def sweep_flows() -> dict[str, int]:
    """Republish stuck executions; finish steps whose message finished unnoticed."""
    return engine.sweep()
