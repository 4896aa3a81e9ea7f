"""Celery tasks of monitoring (thin: call one service)."""
from __future__ import annotations

from celery import shared_task

from monitoring import alerts, counters, health, services


@shared_task(name="monitoring.tasks.evaluate_alerts")
def evaluate_alerts() -> dict[str, int]:
    """Evaluate every enabled alert rule once (beat runs this every minute)."""
    return alerts.alerts_evaluate()


@shared_task(name="monitoring.tasks.heartbeat", acks_late=False)
def heartbeat(queue: str = "default") -> None:
    """Record that a worker consumed this queue's heartbeat (see monitoring.health)."""
    health.heartbeat_record(queue=queue)


@shared_task(name="monitoring.tasks.compact_metric_counts", acks_late=False)
def compact_metric_counts() -> int:
    """Fold the counters' pending deltas into their totals (beat: every 30 s)."""
    return counters.counters_compact()


@shared_task(name="monitoring.tasks.purge_history", acks_late=False)
def purge_history() -> dict[str, int] | None:
    """Purge history past its retention (beat: every RETENTION_INTERVAL_SECONDS)."""
    record = services.retention_purge()
    return None if record is None else {**record.deleted, "rows": record.rows}
