"""Reads for operators: queue statistics, rate-limit events, dispatcher lag.

Broker depth comes from the broker (Redis LLEN of each queue's priority lists); everything
else comes from PostgreSQL, which is the truth about every message and execution. Numbers
from the database may be scoped to one workspace; broker depth is shared by all workspaces
(the queues are), so it is always global.
"""
from __future__ import annotations

import functools
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from celery import current_app
from django.conf import settings
from django.db.models import Count, Min, Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from core.models import AuditEntry, DeadLetter, Workspace
from flows.models import Execution
from messaging import channels, ratelimit
from messaging.channels import CHANNEL_QUEUES, DEFAULT_QUEUE, FLOWS_QUEUE
from messaging.delivery import pauses
from messaging.models import (
    FAILURE_STATUSES,
    SUCCESS_STATUSES,
    TIMER_STATUSES,
    Message,
    MessageStatus,
    QueuePause,
)
from monitoring import health
from monitoring.models import AlertEvent, AlertRule
from monitoring.services import parse_age

logger = logging.getLogger(__name__)

# The Celery queues, in the order reports list them.
QUEUES = (*CHANNEL_QUEUES, FLOWS_QUEUE, DEFAULT_QUEUE)


# --- broker -------------------------------------------------------------------------------

@functools.lru_cache(maxsize=4)
def _redis_broker(url: str) -> redis.Redis | None:
    if url.startswith("redis+socket://"):
        url = "unix://" + url[len("redis+socket://"):]
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return None
    timeout = settings.HEALTH_CHECK_TIMEOUT_SECONDS
    return redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)


def broker_list_names(queue: str) -> list[str]:
    """Return the Redis lists kombu keeps a queue in: one per priority step (`q`, `q:3`, ...)."""
    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    sep = options.get("sep", "\x06\x16")
    return [f"{queue}{sep}{step}" if step else queue
            for step in options.get("priority_steps", [0])]


def broker_depths() -> dict[str, int | None]:
    """Return the messages waiting in the broker per queue (None when it cannot be read)."""
    client = _redis_broker(settings.CELERY_BROKER_URL)
    if client is None:
        return _depths_via_kombu()
    try:
        pipe = client.pipeline(transaction=False)
        for queue in QUEUES:
            for name in broker_list_names(queue):
                pipe.llen(name)
        sizes = iter(pipe.execute())
    except redis.RedisError:
        logger.warning("could not read broker queue depths", exc_info=True)
        return dict.fromkeys(QUEUES)
    steps = len(broker_list_names("x"))
    return {queue: sum(next(sizes) for _ in range(steps)) for queue in QUEUES}


def _depths_via_kombu() -> dict[str, int | None]:
    """Ask a non-Redis broker (AMQP) for each queue's message count."""
    depths: dict[str, int | None] = dict.fromkeys(QUEUES)
    try:
        with current_app.connection_for_read() as connection:
            for queue in QUEUES:
                # An AMQP channel: kombu's generic channel type has no queue_declare.
                channel: Any = connection.channel()
                try:
                    depths[queue] = channel.queue_declare(queue=queue, passive=True).message_count
                except Exception:  # a queue no worker declared yet: unknown, not an error
                    depths[queue] = None
                finally:
                    channel.close()
    except Exception:
        logger.warning("could not read broker queue depths", exc_info=True)
    return depths


# --- database -----------------------------------------------------------------------------

def _messages(workspace: Workspace | None) -> QuerySet[Message]:
    queryset = Message.objects.all()
    return queryset if workspace is None else queryset.filter(workspace=workspace)


def _executions(workspace: Workspace | None) -> QuerySet[Execution]:
    queryset = Execution.objects.all()
    return queryset if workspace is None else queryset.filter(workspace=workspace)


def _message_numbers(workspace: Workspace | None, since: datetime) -> dict[str, dict]:
    """Return per channel: waiting, oldest waiting time, active, scheduled, completed, failed
    and suppressed (by the recipients' rules; neither a success nor a failure)."""
    live = Q(status__in=[MessageStatus.QUEUED, MessageStatus.SENDING, *TIMER_STATUSES])
    # A suppressed message has no outcome time of its own: it was decided when last updated.
    suppressed = Q(status=MessageStatus.SUPPRESSED, updated_at__gte=since)
    recent = Q(sent_at__gte=since) | Q(failed_at__gte=since) | suppressed
    succeeded, failed = outcome_filters(since)
    rows = _messages(workspace).filter(live | recent).values("channel").annotate(
        waiting=Count("pk", filter=Q(status=MessageStatus.QUEUED)),
        oldest=Min(Coalesce("enqueued_at", "created_at"), filter=Q(status=MessageStatus.QUEUED)),
        active=Count("pk", filter=Q(status=MessageStatus.SENDING)),
        scheduled=Count("pk", filter=Q(status__in=TIMER_STATUSES)),
        completed=Count("pk", filter=succeeded),
        failed=Count("pk", filter=failed),
        suppressed=Count("pk", filter=suppressed),
        # Held by a pause (messaging.delivery.pauses): scheduled without a timer.
        held=Count("pk", filter=Q(status=MessageStatus.SCHEDULED, due_at__isnull=True)),
    )
    return {row["channel"]: {key: value for key, value in row.items() if key != "channel"}
            for row in rows}


def outcome_filters(since: datetime) -> tuple[Q, Q]:
    """Return (succeeded, failed) filters for messages whose outcome came since a time.

    Every success rate in monitoring counts through these, so the API, the dashboard and
    the alerts agree. An undelivered message has no failed_at (the carrier's report comes
    after the provider accepted it), so its outcome time is sent_at.
    """
    succeeded = Q(status__in=SUCCESS_STATUSES, sent_at__gte=since)
    failed = Q(status__in=FAILURE_STATUSES) & (
        Q(failed_at__gte=since) | Q(failed_at__isnull=True, sent_at__gte=since))
    return succeeded, failed


def _execution_numbers(workspace: Workspace | None, since: datetime,
                       now: datetime) -> dict[str, Any]:
    """Return the flows queue's numbers: executions waiting for, or in, an advance task."""
    running = Q(status=Execution.Status.RUNNING)
    leased = Q(lease_until__gt=now)
    numbers = _executions(workspace).aggregate(
        waiting=Count("pk", filter=running & ~leased),
        oldest=Min(Coalesce("enqueued_at", "updated_at"), filter=running & ~leased),
        active=Count("pk", filter=running & leased),
        scheduled=Count("pk", filter=Q(status=Execution.Status.WAITING,
                                       wake_at__isnull=False)),
        completed=Count("pk", filter=Q(status=Execution.Status.COMPLETED,
                                       completed_at__gte=since)),
        failed=Count("pk", filter=Q(status=Execution.Status.FAILED, completed_at__gte=since)),
        held=Count("pk", filter=Q(status__in=[Execution.Status.RUNNING,
                                              Execution.Status.WAITING],
                                  paused_at__isnull=False)),
    )
    return {**numbers, "suppressed": 0}  # executions are never suppressed; their sends are


def _combine(rows: list[dict]) -> dict[str, Any]:
    total: dict[str, Any] = {"waiting": 0, "active": 0, "scheduled": 0, "completed": 0,
                             "failed": 0, "suppressed": 0, "held": 0, "oldest": None}
    for row in rows:
        for key in ("waiting", "active", "scheduled", "completed", "failed", "suppressed",
                    "held"):
            total[key] += row.get(key) or 0
        if row.get("oldest") and (total["oldest"] is None or row["oldest"] < total["oldest"]):
            total["oldest"] = row["oldest"]
    return total


def success_rate(completed: int, failed: int) -> float | None:
    """Return completed / (completed + failed) in percent, or None without outcomes."""
    finished = completed + failed
    return round(100.0 * completed / finished, 2) if finished else None


def _heartbeat_ages() -> dict[str, float | None]:
    try:
        return health.heartbeat_ages()
    except redis.RedisError:
        return {}


def queue_stats(*, workspace: Workspace | None = None, window: timedelta = timedelta(hours=1),
                now: datetime | None = None) -> dict[str, dict[str, Any]]:
    """Return per queue: broker depth, waiting/active/scheduled rows, the oldest waiting
    age, completed/failed counts and success rate over the window, paused (with the pause:
    scope, since when, by whom, why), held (messages a pause holds; on flows, paused
    executions), heartbeat age.

    Database numbers are scoped to the workspace when one is given; `depth` is global.
    """
    now = now or timezone.now()
    since = now - window
    depths = broker_depths()
    messages = _message_numbers(workspace, since)
    paused = pauses.pauses_of(workspace)
    paused_workspaces = _paused_workspace_counts() if workspace is None else {}
    ages = _heartbeat_ages()
    stats: dict[str, dict[str, Any]] = {}
    for queue in QUEUES:
        if queue == "flows":
            numbers = _execution_numbers(workspace, since, now)
        else:
            numbers = _combine([messages.get(channel, {})
                                for channel in channels.QUEUE_CHANNELS.get(queue, ())])
        oldest = numbers.pop("oldest")
        stats[queue] = {
            "queue": queue, "depth": depths.get(queue), **numbers,
            "oldest_waiting_seconds": round((now - oldest).total_seconds(), 1) if oldest
            else None,
            "success_rate": success_rate(numbers["completed"], numbers["failed"]),
            "paused": queue in paused,
            "pause": pause_info(paused.get(queue)),
            "heartbeat_age_seconds": ages.get(queue),
        }
        if workspace is None:  # the all-workspaces view: how many paused it for themselves
            stats[queue]["paused_workspaces"] = paused_workspaces.get(queue, 0)
    return stats


def pause_info(pause: QueuePause | None) -> dict[str, Any] | None:
    """Return what the queue metrics say about a pause: scope, since, by whom, why."""
    if pause is None:
        return None
    return {"scope": pause.scope, "paused_at": pause.paused_at.isoformat(),
            "paused_by": pause.paused_by, "reason": pause.reason}


def _paused_workspace_counts() -> dict[str, int]:
    """Return per queue how many workspaces paused it for themselves."""
    rows = QueuePause.objects.filter(workspace__isnull=False).values("queue").annotate(
        count=Count("pk"))
    return {row["queue"]: row["count"] for row in rows}


def queue_health(*, workspace: Workspace | None = None,
                 now: datetime | None = None) -> dict[str, Any]:
    """Return overall queue health: unhealthy when the broker is unreadable, degraded when a
    queue's oldest waiting row or heartbeat is older than HEALTH_QUEUE_STALE_SECONDS."""
    stats = queue_stats(workspace=workspace, now=now)
    stale_after = settings.HEALTH_QUEUE_STALE_SECONDS
    queues: dict[str, dict[str, Any]] = {}
    for name, item in stats.items():
        problems = []
        if item["depth"] is None:
            problems.append("broker depth unreadable")
        if (item["oldest_waiting_seconds"] or 0) > stale_after:
            problems.append(f"oldest waiting {item['oldest_waiting_seconds']:.0f} s")
        if (item["heartbeat_age_seconds"] or 0) > stale_after:
            problems.append(f"heartbeat {item['heartbeat_age_seconds']:.0f} s old")
        queues[name] = {"status": "degraded" if problems else "healthy", "problems": problems,
                        "waiting": item["depth"], "active": item["active"],
                        "paused": item["paused"], "pause": item["pause"],
                        "held": item["held"]}
    broker_down = all(item["depth"] is None for item in stats.values())
    status = "unhealthy" if broker_down else (
        "degraded" if any(q["status"] != "healthy" for q in queues.values()) else "healthy")
    totals = {key: sum(item[key] or 0 for item in stats.values())
              for key in ("depth", "waiting", "active", "scheduled")}
    return {"status": status, "broker": {"connected": not broker_down}, "queues": queues,
            "totals": totals, "timestamp": (now or timezone.now()).isoformat()}


def queue_statistics(*, workspace: Workspace | None = None,
                     window: timedelta = timedelta(hours=1),
                     now: datetime | None = None) -> dict[str, Any]:
    """Return a summary across queues: totals, success rate and throughput per minute."""
    stats = queue_stats(workspace=workspace, window=window, now=now)
    completed = sum(item["completed"] for item in stats.values())
    failed = sum(item["failed"] for item in stats.values())
    minutes = max(window.total_seconds() / 60, 1 / 60)
    return {
        "window_seconds": int(window.total_seconds()),
        "totals": {"completed": completed, "failed": failed,
                   "suppressed": sum(item["suppressed"] for item in stats.values()),
                   "waiting": sum(item["waiting"] for item in stats.values()),
                   "active": sum(item["active"] for item in stats.values()),
                   "scheduled": sum(item["scheduled"] for item in stats.values()),
                   "depth": sum(item["depth"] or 0 for item in stats.values())},
        "success_rate": success_rate(completed, failed),
        "throughput_per_minute": round((completed + failed) / minutes, 2),
        "queues": {name: {"completed": item["completed"], "failed": item["failed"],
                          "suppressed": item["suppressed"],
                          "success_rate": item["success_rate"]}
                   for name, item in stats.items()},
        "dispatcher_lag_seconds": dispatcher_lag_seconds(now=now),
    }


def dispatcher_lag_seconds(*, now: datetime | None = None) -> float:
    """Return how late the oldest due-but-not-dispatched timer is (0 when none is late).

    Timers are messages waiting on due_at (scheduled, retrying) and executions waiting on
    wake_at; the dispatcher should move each within a second of its time.
    """
    now = now or timezone.now()
    oldest_message = Message.objects.filter(status__in=TIMER_STATUSES, due_at__lte=now) \
        .aggregate(oldest=Min("due_at"))["oldest"]
    oldest_execution = Execution.objects.filter(status=Execution.Status.WAITING,
                                                wake_at__lte=now) \
        .aggregate(oldest=Min("wake_at"))["oldest"]
    candidates = [when for when in (oldest_message, oldest_execution) if when is not None]
    return round((now - min(candidates)).total_seconds(), 3) if candidates else 0.0


def executions_overdue(*, workspace_id: Any, before: datetime, now: datetime,
                       flow_id: Any = None) -> QuerySet[Execution]:
    """Return the workspace's executions stuck past their due time since before `before`:
    waiting with a timer that was due then and has not fired, or running, not advanced
    since then and not leased by a worker now. Paused ones are held on purpose: left out."""
    executions = Execution.objects.filter(workspace_id=workspace_id, paused_at__isnull=True)
    if flow_id:
        executions = executions.filter(flow_id=flow_id)
    return executions.filter(
        Q(status=Execution.Status.WAITING, wake_at__lte=before)
        | (Q(status=Execution.Status.RUNNING, updated_at__lte=before)
           & (Q(lease_until__isnull=True) | Q(lease_until__lte=now))))


def parse_window(text: str | None, default: timedelta = timedelta(hours=1)) -> timedelta:
    """Parse a window such as "15m", "1h", "7d" or plain seconds (ValueError otherwise)."""
    if not text:
        return default
    window = timedelta(seconds=int(text)) if text.isdigit() else parse_age(text)
    if window <= timedelta(0) or window > timedelta(days=366):
        raise ValueError("window must be between 1 second and 366 days")
    return window


# --- workspaces ---------------------------------------------------------------------------

def workspace_find(value: str) -> Workspace | None:
    """Return the workspace with this id, or else this slug (operators type either)."""
    try:
        return Workspace.objects.filter(pk=uuid.UUID(value)).first()
    except ValueError:
        return Workspace.objects.filter(slug=value).first()


# --- rate limits --------------------------------------------------------------------------

def configured_rates(workspace: Workspace) -> dict[str, str]:
    """Return the rate limit in force per channel queue (workspace override or default)."""
    overrides = (workspace.settings or {}).get("rate_limits") or {}
    rates = {}
    for queue in channels.QUEUE_CHANNELS:
        value = overrides.get(queue, settings.RATE_LIMITS.get(queue))
        if value:
            rates[queue] = str(value)
    return rates


def rate_limit_report(*, workspace: Workspace, limit: int = 100,
                      since: datetime | None = None) -> dict[str, Any]:
    """Return a workspace's rate limits, deferral totals per channel and recent events."""
    workspace_id = str(workspace.pk)
    counts = ratelimit.deferral_counts(workspace_id)
    events = []
    for event in ratelimit.deferral_events(workspace_id, limit):
        at = datetime.fromtimestamp(float(event.get("ts", 0)), tz=UTC)
        if since is not None and at < since:
            break  # events are newest first
        events.append({"at": at.isoformat(), "channel": event.get("channel", ""),
                       "delay_seconds": round(float(event.get("delay", 0)), 3)})
    return {"workspace_id": workspace_id, "workspace": workspace.slug,
            "limits": configured_rates(workspace), "deferrals": counts,
            "total": sum(counts.values()), "events": events,
            "last_event_at": events[0]["at"] if events else None}


def rate_limit_events_since(*, workspace: Workspace, since: datetime,
                            channel: str = "") -> int:
    """Return how many deferrals of the workspace (optionally one channel) since a time."""
    cutoff = since.timestamp()
    count = 0
    for event in ratelimit.deferral_events(str(workspace.pk), ratelimit.EVENTS_KEEP):
        if float(event.get("ts", 0)) < cutoff:
            break
        if not channel or event.get("channel") == channel:
            count += 1
    return count


# --- audit log ------------------------------------------------------------------------------

def audit_entries(*, workspace: Workspace, action: str = "", after: datetime | None = None,
                  before: datetime | None = None) -> QuerySet[AuditEntry]:
    """Return a workspace's audit entries, newest first (the API and the dashboard list)."""
    entries = AuditEntry.objects.filter(workspace=workspace)
    if action:
        entries = entries.filter(action=action)
    if after is not None:
        entries = entries.filter(created_at__gt=after)
    if before is not None:
        entries = entries.filter(created_at__lt=before)
    return entries.order_by("-created_at", "-id")


def audit_actions(workspace: Workspace) -> list[str]:
    """Return the actions the workspace's audit log holds (the dashboard's filter)."""
    return sorted(AuditEntry.objects.filter(workspace=workspace).order_by()
                  .values_list("action", flat=True).distinct())


# --- API lists ---------------------------------------------------------------------------
# The monitoring viewsets get their rows here through core.api.WorkspaceScoped, which passes
# the key's workspace.

def dead_letters_list(*, workspace: Workspace) -> QuerySet[DeadLetter]:
    """Return the workspace's dead letters (one by id; the filtered list is
    services.dead_letters_filter)."""
    return DeadLetter.objects.filter(workspace=workspace)


def alert_rules_list(*, workspace: Workspace) -> QuerySet[AlertRule]:
    """Return the workspace's alert rules."""
    return AlertRule.objects.filter(workspace=workspace)


def alert_events_list(*, workspace: Workspace, rule_id: int | None = None,
                      firing: bool | None = None) -> QuerySet[AlertEvent]:
    """Return the workspace's alert events with their rules, of one rule if given, only the
    open (firing=True) or only the resolved ones (firing=False) if asked."""
    events = AlertEvent.objects.filter(workspace=workspace).select_related("rule")
    if rule_id is not None:
        events = events.filter(rule_id=rule_id)
    if firing is not None:
        events = events.filter(resolved_at__isnull=firing)
    return events


# One queue's jobs in the older service's states: what each message status is to the queue.
QUEUE_JOB_STATES: dict[str, tuple[str, ...]] = {
    "waiting": (MessageStatus.QUEUED,),
    "active": (MessageStatus.SENDING,),
    "scheduled": (MessageStatus.SCHEDULED, MessageStatus.RETRYING),
    "failed": (MessageStatus.FAILED, MessageStatus.UNDELIVERED),
    "completed": (MessageStatus.SENT, MessageStatus.DELIVERED),
}
# The states whose messages a queue's detail lists (completed ones are only counted).
QUEUE_LISTED_STATES = ("waiting", "active", "scheduled", "failed")
QUEUE_DETAIL_LIMIT = 20  # messages listed per state unless asked for more
QUEUE_DETAIL_MAX = 100


def queue_detail(*, queue: str, workspace: Workspace | None,
                 limit: int = QUEUE_DETAIL_LIMIT) -> dict[str, Any]:
    """Return one channel queue: its channels, whether it is paused, the count of messages
    in each state and the newest `limit` messages of each listed state (scoped to the
    workspace when one is given; limit=0 lists none)."""
    messages = Message.objects.filter(channel__in=channels.QUEUE_CHANNELS[queue])
    if workspace is not None:
        messages = messages.filter(workspace=workspace)
    counts = messages.aggregate(**{state: Count("pk", filter=Q(status__in=statuses))
                                   for state, statuses in QUEUE_JOB_STATES.items()})
    listed = {state: [_queue_job(message) for message in messages.filter(
        status__in=QUEUE_JOB_STATES[state]).order_by("-created_at")[:limit]] if limit else []
        for state in QUEUE_LISTED_STATES}
    pause = pauses.pauses_of(workspace).get(queue)
    return {"queue": queue, "channels": list(channels.QUEUE_CHANNELS[queue]),
            "paused": pause is not None, "pause": pause_info(pause), "counts": counts,
            "messages": listed}


def _queue_job(message: Message) -> dict[str, Any]:
    """Return what a queue's detail shows of one message."""
    return {"id": str(message.pk), "workspace": str(message.workspace_id),
            "channel": message.channel, "to": message.to, "status": message.status,
            "attempts": message.attempts, "last_error": message.last_error or None,
            "created_at": message.created_at,
            "scheduled_for": message.scheduled_for, "due_at": message.due_at}
