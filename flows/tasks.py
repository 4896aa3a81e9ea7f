"""Celery tasks of the flow engine (thin: ids in, one service call)."""
from __future__ import annotations

from celery import shared_task

from flows import engine, services
from flows.models import BulkStart


@shared_task(name="flows.tasks.advance_execution", acks_late=True)
def advance_execution(execution_id: str) -> str:
    """Advance one execution; a duplicate finds it leased or moved on and returns."""
    return engine.advance(execution_id=execution_id)


@shared_task(name="flows.tasks.run_bulk_start", acks_late=True)
def run_bulk_start(job_id: str) -> None:
    """Start one batch of a bulk start, then queue the next until done."""
    job = BulkStart.objects.select_related("flow", "workspace").get(pk=job_id)
    if job.status in (BulkStart.Status.COMPLETED, BulkStart.Status.FAILED):
        return
    if services.bulk_start_run_batch(job=job):
        run_bulk_start.apply_async(args=[job_id], queue="flows")


@shared_task(name="flows.tasks.sweep_flows")
def sweep_flows() -> dict[str, int]:
    """Republish stuck executions; finish steps whose message finished unnoticed."""
    return engine.sweep()
