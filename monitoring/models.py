"""Alert rules and the incidents they raise."""
from __future__ import annotations

from django.db import models


class AlertRule(models.Model):
    """A condition on a workspace's numbers that notifies someone when it holds."""

    class Type(models.TextChoices):
        FAILURE_RATE = "failure_rate"  # % of outcomes in the window that failed
        DEAD_LETTERS = "dead_letters"  # dead letters filed in the window
        QUEUE_BACKLOG = "queue_backlog"  # messages waiting to be sent right now
        AVG_EXECUTION_TIME = "avg_execution_time"  # seconds, executions finished in window
        RATE_LIMIT_EVENTS = "rate_limit_events"  # rate-limit deferrals in the window
        SCHEDULE_NO_SUCCESS = "schedule_no_success"  # successful schedule runs in window
        # Webhook endpoints disabled for failing every delivery (in the window, still off).
        ENDPOINT_DISABLED = "endpoint_disabled"
        # Providers whose circuit breaker is open now or opened in the window.
        PROVIDER_DOWN = "provider_down"
        # Executions past their due time by more than the window: a timer not fired, or a
        # running one nobody advanced (README.md, "Alerts").
        EXECUTIONS_STUCK = "executions_stuck"
        # % of executions finished in the window that completed (lower is worse).
        EXECUTION_SUCCESS_RATE = "execution_success_rate"

    class Channel(models.TextChoices):
        EMAIL = "email"
        WEBHOOK = "webhook"
        SLACK = "slack"

    workspace = models.ForeignKey("core.Workspace", on_delete=models.CASCADE,
                                  related_name="alert_rules")
    flow = models.ForeignKey("flows.Flow", on_delete=models.CASCADE, null=True, blank=True,
                             related_name="alert_rules")
    name = models.CharField(max_length=200)
    type = models.CharField(max_length=24, choices=Type.choices)
    # Fires when the value reaches the threshold (schedule_no_success: falls below it).
    threshold = models.FloatField()
    window_seconds = models.PositiveIntegerField(default=300)
    # Narrows message-based types to one message channel (sms, email, ...); blank = all.
    message_channel = models.CharField(max_length=10, blank=True, default="")
    schedule_id = models.CharField(max_length=64, blank=True, default="")
    # A failure rate over fewer outcomes than this is not judged (1 failure of 1 is 100 %).
    min_samples = models.PositiveIntegerField(default=1)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    recipients = models.JSONField(default=list)  # email addresses or webhook URLs
    enabled = models.BooleanField(default=True)
    # Minimum time between two notifications of this rule, so a flapping value cannot page
    # every minute.
    cooldown_seconds = models.PositiveIntegerField(default=3600)
    # While muted the rule is still evaluated and its incidents recorded, but nobody is
    # notified (planned maintenance, a known outage).
    muted_until = models.DateTimeField(null=True, blank=True)
    last_value = models.FloatField(null=True, blank=True)
    last_evaluated_at = models.DateTimeField(null=True, blank=True)
    last_notified_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        indexes = [models.Index(fields=["enabled", "workspace"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.type})"


class AlertEvent(models.Model):
    """One incident of a rule: triggered, maybe notified, later resolved."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="events")
    workspace = models.ForeignKey("core.Workspace", on_delete=models.CASCADE,
                                  related_name="alert_events")
    value = models.FloatField()
    threshold = models.FloatField()
    summary = models.TextField(blank=True, default="")
    triggered_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_value = models.FloatField(null=True, blank=True)
    # False when the rule was still cooling down: recorded, nobody notified.
    notified = models.BooleanField(default=False)
    # The messages (ids) carrying the notification and, later, the resolution notice.
    message_ids = models.JSONField(default=list, blank=True)
    resolve_message_ids = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-triggered_at", "-id"]
        indexes = [models.Index(fields=["workspace", "-triggered_at"])]
        constraints = [
            # At most one open incident per rule, even with two evaluators racing.
            models.UniqueConstraint(fields=["rule"], condition=models.Q(resolved_at__isnull=True),
                                    name="alert_event_one_open_per_rule"),
        ]

    def __str__(self) -> str:
        state = "resolved" if self.resolved_at else "firing"
        return f"{self.rule} {state} at {self.triggered_at:%Y-%m-%d %H:%M}"



class CountedLabels(models.Model):
    """A metric's labels and how many rows (and, for histograms, seconds) they count."""

    metric = models.CharField(max_length=20)
    a = models.CharField(max_length=64, blank=True, default="")
    b = models.CharField(max_length=64, blank=True, default="")
    c = models.CharField(max_length=64, blank=True, default="")
    n = models.BigIntegerField(default=0)
    seconds = models.FloatField(default=0.0)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.metric}{{{self.a},{self.b},{self.c}}} {self.n:+d}"


class MetricCount(CountedLabels):
    """A running total behind /metrics (monitoring.counters).

    Written only by PostgreSQL: triggers on the messages, attempts, executions and steps
    tables append MetricDelta rows in the writing transaction, and counters_compact folds
    them in here, so a scrape reads a few hundred rows however large the history is.
    """

    class Meta:
        constraints = [models.UniqueConstraint(fields=["metric", "a", "b", "c"],
                                               name="metric_count_labels_unique")]


class MetricDelta(CountedLabels):
    """A change to a MetricCount, appended by a trigger (insert-only, so concurrent writers
    never wait on one counter row); counters_compact folds and deletes them."""

    id = models.BigAutoField(primary_key=True)


class HourlyCounted(models.Model):
    """What one workspace's messages (by creation hour) or executions (by start hour) of one
    status count: rows, the rows with a time (sent, or finished) and their seconds."""

    workspace_id = models.UUIDField()
    kind = models.CharField(max_length=10)  # message | execution
    hour = models.DateTimeField()  # the UTC hour
    status = models.CharField(max_length=20)
    n = models.BigIntegerField(default=0)
    timed = models.BigIntegerField(default=0)
    seconds = models.FloatField(default=0.0)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.kind} {self.hour:%Y-%m-%d %H:00} {self.status} {self.n:+d}"


class HourlyCount(HourlyCounted):
    """The overview's hourly totals (monitoring.rollups), kept like MetricCount: PostgreSQL
    triggers append HourlyDelta rows and counters_compact folds them in, so the overview
    reads a few hundred rows per window however many messages it covers."""

    class Meta:
        constraints = [models.UniqueConstraint(fields=["workspace_id", "kind", "hour", "status"],
                                               name="hourly_count_unique")]


class HourlyDelta(HourlyCounted):
    """A change to an HourlyCount, appended by a trigger; counters_compact folds them."""

    id = models.BigAutoField(primary_key=True)


class FlowHourlyCounted(models.Model):
    """How many of one workspace's executions of one flow (those contacts entered) finished
    in one hour with one status and a duration in one bucket (monitoring.rollups: a log
    scale, eight buckets per doubling)."""

    workspace_id = models.UUIDField()
    flow_id = models.UUIDField()
    hour = models.DateTimeField()  # the UTC hour of completed_at
    status = models.CharField(max_length=20)
    bucket = models.SmallIntegerField()
    n = models.BigIntegerField(default=0)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return (f"{self.flow_id} {self.hour:%Y-%m-%d %H:00} {self.status} "
                f"#{self.bucket} {self.n:+d}")


class FlowHourlyCount(FlowHourlyCounted):
    """The overview's per-flow totals of finished executions, kept like HourlyCount: PostgreSQL
    triggers append FlowHourlyDelta rows and counters_compact folds them in, so the per-flow
    table, its percentiles and the execution success rate read a few hundred rows."""

    class Meta:
        constraints = [models.UniqueConstraint(
            fields=["workspace_id", "hour", "flow_id", "status", "bucket"],
            name="flow_hourly_count_unique")]


class FlowHourlyDelta(FlowHourlyCounted):
    """A change to a FlowHourlyCount, appended by a trigger; counters_compact folds them."""

    id = models.BigAutoField(primary_key=True)


class HistoryPurge(models.Model):
    """One run of the retention purge (monitoring.services.retention_purge): when, what it
    deleted per kind, and the error that stopped it, if any. /metrics and the dashboard
    show the last one."""

    started_at = models.DateTimeField(db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Per kind (messages, steps, executions, ...): the rows of that kind deleted.
    deleted = models.JSONField(default=dict, blank=True)
    # Every row deleted, dependent rows (attempts, timeline entries, steps) included.
    rows = models.BigIntegerField(default=0)
    error = models.TextField(blank=True, default="")
    # False when the run stopped at RETENTION_RUN_SECONDS with history left for the next.
    complete = models.BooleanField(default=True)

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"history purge at {self.started_at:%Y-%m-%d %H:%M}: {self.rows} row(s)"

    @property
    def ok(self) -> bool:
        return self.finished_at is not None and not self.error

    @property
    def deleted_items(self) -> list[tuple[str, int]]:
        """(kind, rows) by kind name (the JSON column keeps no order)."""
        return sorted(self.deleted.items())
