"""Celery tasks of audiences (thin: ids in, one service call). Published by name through
audiences.publishing, so the names below must not change."""
from __future__ import annotations

from celery import shared_task
from django.conf import settings

from audiences import imports
from audiences.publishing import RUN_IMPORT, send


@shared_task(name=RUN_IMPORT, acks_late=True)
def run_import(import_id: str) -> None:
    """Import rows for up to IMPORT_TASK_SECONDS, then queue a fresh task for the rest
    (other work on the queue gets its turn in between)."""
    if imports.import_with_retry(job_id=import_id, seconds=settings.IMPORT_TASK_SECONDS):
        send(RUN_IMPORT, import_id)


@shared_task(name="audiences.tasks.sweep_imports")
def sweep_imports() -> int:
    """Queue again the imports whose task the broker lost."""
    return imports.imports_sweep()
