"""Celery tasks: thin wrappers that take ids and call one service."""
from __future__ import annotations

from typing import Any

from celery import shared_task
from celery.signals import task_prerun
from django.db import connections

from core.outage import TASK_RETRY
from core.publishing import grouped
from messaging import publishing
from messaging.delivery import sending, sweeper
from messaging.events.endpoints import endpoints_disable_failing


@task_prerun.connect
def _drop_broken_connections(**kwargs: Any) -> None:
    """Reopen a database connection a previous task broke (e.g. PostgreSQL restarted).

    Connections are reused across tasks (CELERY_DB_REUSE_MAX); one that raised is checked
    and replaced here, so a database restart costs one failed task, not a stuck worker.
    """
    for conn in connections.all(initialized_only=True):
        if conn.errors_occurred:
            conn.close_if_unusable_or_obsolete()


@shared_task(name=publishing.DELIVER_TASK, acks_late=True, **TASK_RETRY)
def deliver_messages(message_ids: list[str], lane: str = "") -> dict[str, str]:
    """Deliver a batch of messages: with a lane, the lane's next rows (its workspaces
    taking turns), as many as the task was published with or more; without one (a task
    published before lanes), these ids, those another task already claimed skipped. What
    the batch's outcomes publish (the flow steps they resume, events) goes out together."""
    with grouped():
        return sending.messages_deliver(message_ids=message_ids, lane=lane,
                                         task_id=deliver_messages.request.id or "")


@shared_task(name="messaging.tasks.sweep_messages")
def sweep_messages() -> dict[str, int]:
    """Republish lost tasks and recover messages from dead workers."""
    return sweeper.sweep()


@shared_task(name="messaging.tasks.disable_failing_endpoints")
def disable_failing_endpoints() -> list[str]:
    """Disable webhook endpoints that failed every delivery for days (beat: hourly)."""
    return endpoints_disable_failing()
