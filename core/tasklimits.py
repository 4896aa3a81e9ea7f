"""Per-queue task time limits: each task published gets its queue's hard limit.

Celery has one global `task_time_limit`; a task's own limit travels in its message's
`timelimit` header, which the worker's pool enforces (prefork kills the child past it). So
every publish, from any process (web, beat, dispatcher, worker), passes through
`time_limit_header`, which fills the header from settings.TASK_TIME_LIMITS by the queue the
message is routed to, unless the publisher or the task gave a limit of its own (Celery
fills the header with the global limit when neither did, so that value counts as none).
"""
from __future__ import annotations

from typing import Any

from django.conf import settings


def queue_time_limit(queue: str) -> int:
    """Return the hard time limit, in seconds, of a task on this queue."""
    return int(settings.TASK_TIME_LIMITS.get(queue, settings.CELERY_TASK_TIME_LIMIT))


def time_limit_header(sender: Any = None, headers: dict[str, Any] | None = None,
                      routing_key: str | None = None, **kwargs: Any) -> None:
    """Set the message's hard time limit to its queue's (Celery's before_task_publish)."""
    if headers is None or "timelimit" not in headers:
        return  # not a task message of protocol 2: nothing to fill in
    # Celery's order: [hard, soft] (celery.app.amqp.as_task_v2).
    hard, soft = headers.get("timelimit") or (None, None)
    if hard in (None, settings.CELERY_TASK_TIME_LIMIT):
        headers["timelimit"] = (queue_time_limit(routing_key or ""), soft)
