"""What an unavailable database looks like to the code, and how work waits it out.

A PostgreSQL restart, a failover or a lost network raises OperationalError (a refused or
dropped connection, a server shutting down) or InterfaceError (a connection already
closed). Both are transient: the web answers 503 with Retry-After (core.api), the workers
retry the task with a growing, jittered delay (TASK_RETRY below) and drop the broken
connection before the next task (messaging.tasks), the dispatcher waits and reconnects
(run_dispatcher). The rows stay the truth throughout: a task given up on is published again
by the sweepers (REQUEUE_AFTER_SECONDS).
"""
from __future__ import annotations

from typing import Any

from django.db import InterfaceError, OperationalError

DATABASE_ERRORS: tuple[type[Exception], ...] = (OperationalError, InterfaceError)

# Celery options for the tasks that carry the pipeline's work (deliveries, flow advances):
# a task that met an unavailable database is retried after 0-1 s, 0-2 s, 0-4 s, ... up to
# 30 s (full jitter, so a restart does not bring every worker back in the same instant), for
# about ten minutes; after that the sweepers publish its rows again.
TASK_RETRY: dict[str, Any] = {
    "autoretry_for": DATABASE_ERRORS, "retry_backoff": 1, "retry_backoff_max": 30,
    "retry_jitter": True, "max_retries": 25,
}
