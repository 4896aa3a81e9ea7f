"""Queue audience work by task name, so the services never import the tasks module."""
from __future__ import annotations

import logging

from celery import current_app
from django.db import transaction

from messaging.channels import DEFAULT_QUEUE

logger = logging.getLogger(__name__)

RUN_IMPORT = "audiences.tasks.run_import"
RUN_BROADCAST = "audiences.tasks.run_broadcast"


def send(task_name: str, *args: str) -> None:
    """Publish one task on the default queue now; a broker failure is left to the sweep."""
    try:
        current_app.send_task(task_name, args=list(args), queue=DEFAULT_QUEUE)
    except Exception:
        logger.exception("could not publish %s; the sweep will retry", task_name)


def send_on_commit(task_name: str, *args: str) -> None:
    """Publish one task once the current transaction commits."""
    transaction.on_commit(lambda: send(task_name, *args))
