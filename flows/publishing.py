"""Queue flow work by task name, so nothing that publishes imports a task module.

The names are the tasks' registered Celery names (kept stable: beat schedules, periodic
task rows and messages already in the broker carry them); the tasks modules sit on top and
import the services, never the other way round.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from celery import current_app
from django.db import transaction

from core.publishing import hold

logger = logging.getLogger(__name__)

ADVANCE_EXECUTIONS = "flows.tasks.advance_executions"
RUN_BULK_START = "flows.tasks.run_bulk_start"
RUN_SCHEDULE_BATCH = "flows.schedule_tasks.run_schedule_batch"
QUEUE = "flows"
# Executions advanced by one task: a bulk start of 10,000 is 500 tasks, not 10,000, and a
# batch of light walks still finishes in well under a second.
ADVANCE_BATCH = 50


def send(task_name: str, *args: Any) -> None:
    """Publish one task on the flows queue now."""
    current_app.send_task(task_name, args=list(args), queue=QUEUE)


def send_on_commit(task_name: str, *args: Any) -> None:
    """Publish one task on the flows queue once the current transaction commits."""
    transaction.on_commit(lambda: send(task_name, *args))


def publish(execution_ids: Iterable[Any]) -> None:
    """Queue advance tasks, ADVANCE_BATCH executions per task (inside
    core.publishing.grouped(), with the block's others at its end); a broker failure is
    left to the flows sweeper."""
    ids = [str(execution_id) for execution_id in execution_ids]
    if not hold(_publish_now, ids):
        _publish_now(ids)


def _publish_now(ids: list[str]) -> None:
    try:
        for offset in range(0, len(ids), ADVANCE_BATCH):
            send(ADVANCE_EXECUTIONS, ids[offset:offset + ADVANCE_BATCH])
    except Exception:
        logger.exception("could not publish flow advances; the sweeper will retry")


def schedule_advance(execution_id: Any) -> None:
    """Publish an advance after the current transaction commits."""
    transaction.on_commit(lambda: publish([execution_id]))
