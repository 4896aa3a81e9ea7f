"""The baseline: plain Celery tasks on the same broker, no database, nothing durable."""
from __future__ import annotations

import os
import time

import redis
from celery import Celery

BROKER = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
app = Celery("plain", broker=BROKER)
app.conf.update(task_serializer="json", accept_content=["json"], task_ignore_result=True,
                worker_prefetch_multiplier=1, task_acks_late=True,
                task_default_queue="plain", broker_connection_retry_on_startup=True)
_redis = redis.Redis.from_url(BROKER)


@app.task(name="plain.noop")
def noop() -> None:
    """Count one completion (the drain is over when the counter reaches N)."""
    _redis.incr("plain:done")


@app.task(name="plain.timed")
def timed(eta: float) -> None:
    """Record how late a countdown task ran after its ETA."""
    _redis.rpush("plain:lateness", time.time() - eta)
