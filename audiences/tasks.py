"""Celery tasks of audiences (thin: ids in, one service call). Published by name through
audiences.publishing, so the names below must not change."""
from __future__ import annotations

import time

from celery import shared_task
from django.conf import settings

from audiences import broadcasts, imports
from audiences.models import Broadcast
from audiences.publishing import RUN_BROADCAST, RUN_IMPORT, send

# One broadcast task makes batches this long, then hands the rest to a fresh task.
BROADCAST_TASK_SECONDS = 20


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


@shared_task(name=RUN_BROADCAST, acks_late=True)
def run_broadcast(broadcast_id: str) -> None:
    """Make a broadcast's messages batch after batch for up to BROADCAST_TASK_SECONDS, then
    queue a fresh task for the rest."""
    deadline = time.monotonic() + BROADCAST_TASK_SECONDS
    while time.monotonic() < deadline:
        broadcast = Broadcast.objects.select_related(
            "workspace", "template_version__template", "template_version__topic").get(
            pk=broadcast_id)
        if not broadcasts.broadcast_run_batch(broadcast=broadcast):
            return
    send(RUN_BROADCAST, broadcast_id)


@shared_task(name="audiences.tasks.broadcasts_tick")
def broadcasts_tick() -> dict[str, int]:
    """Start due broadcasts, complete finished ones, requeue lost batches."""
    return broadcasts.broadcasts_tick()
