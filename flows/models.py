"""Flows, their frozen versions, executions and steps."""
from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone


class Flow(models.Model):
    """A flow as the builder edits it: nodes + edges JSON, a trigger, settings."""

    class Status(models.TextChoices):
        DRAFT = "draft"
        ACTIVE = "active"
        PAUSED = "paused"
        ARCHIVED = "archived"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workspace = models.ForeignKey("core.Workspace", on_delete=models.CASCADE,
                                  related_name="flows")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    # {"type": "manual"} | {"type": "event", "event": "signup", "filter": {rules}}
    # | {"type": "schedule"}
    trigger = models.JSONField(default=dict)
    nodes = models.JSONField(default=list)
    edges = models.JSONField(default=list)
    # {"allow_reentry": false, "max_concurrent_per_contact": 1}
    settings = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["workspace", "status"])]

    def __str__(self) -> str:
        return self.name

    @property
    def live_version(self) -> FlowVersion | None:
        return self.versions.order_by("-number").first()


class FlowVersion(models.Model):
    """A published, frozen copy of a flow's graph; executions run one version."""

    flow = models.ForeignKey(Flow, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    nodes = models.JSONField()
    edges = models.JSONField()
    trigger = models.JSONField(default=dict)
    settings = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["flow", "-number"]
        constraints = [models.UniqueConstraint(fields=["flow", "number"],
                                               name="flow_version_unique")]

    def __str__(self) -> str:
        return f"{self.flow} v{self.number}"


# The executions contacts entered: a parallel branch (README.md, "Parallel branches") has
# its `root` set and is a part of the one it belongs to, never an execution of its own in
# a count, a rate or a list of what contacts entered.
ENTERED = Q(root__isnull=True)


class ExecutionQuerySet(models.QuerySet["Execution"]):
    def entered(self) -> ExecutionQuerySet:
        """Keep the executions contacts entered (ENTERED), leaving their branches out."""
        return self.filter(ENTERED)


class Execution(models.Model):
    """One run of a flow version for one contact."""

    class Status(models.TextChoices):
        RUNNING = "running"
        WAITING = "waiting"
        COMPLETED = "completed"
        FAILED = "failed"
        CANCELLED = "cancelled"
        # Ended by the flow's goal or one of its exit_on events (exit_reason says which).
        EXITED = "exited"

    class Source(models.TextChoices):
        MANUAL = "manual"
        EVENT = "event"
        SCHEDULE = "schedule"
        API = "api"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workspace = models.ForeignKey("core.Workspace", on_delete=models.CASCADE,
                                  related_name="executions")
    flow = models.ForeignKey(Flow, on_delete=models.CASCADE, related_name="executions")
    version = models.ForeignKey(FlowVersion, on_delete=models.PROTECT,
                                related_name="executions")
    contact = models.ForeignKey("core.Contact", on_delete=models.CASCADE,
                                related_name="executions")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.API)
    data = models.JSONField(default=dict, blank=True)  # trigger input
    # Where the execution stands: the node to run next (or the one it waits in) and the
    # visit number that node's step will have.
    current_node = models.CharField(max_length=100, blank=True, default="")
    current_visit = models.PositiveIntegerField(default=1)
    visits = models.JSONField(default=dict, blank=True)  # node id -> visits so far
    # The durable timer of a waiting delay or wait_for_event step.
    wake_at = models.DateTimeField(null=True, blank=True)
    waiting_event = models.CharField(max_length=100, blank=True, default="")
    # A worker owns the execution while it advances it; expired leases are taken over.
    lease_until = models.DateTimeField(null=True, blank=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    # Paused by an operator: not advanced, its timers wait, until resumed (README.md,
    # "Pausing"). The status stays what it was (running or waiting).
    paused_at = models.DateTimeField(null=True, blank=True)
    paused_by = models.CharField(max_length=150, blank=True, default="")
    # Journeys (README.md, "Goals and exits"): why an exited execution ended ("goal" or
    # "event:<name>"), and when the flow's goal event arrived for it, with the node it had
    # reached (a goal within the attribution window after completion counts too).
    exit_reason = models.CharField(max_length=110, blank=True, default="")
    converted_at = models.DateTimeField(null=True, blank=True)
    converted_node = models.CharField(max_length=100, blank=True, default="")
    # Parallel branches (README.md, "Parallel branches"): a node with several outgoing edges
    # starts one branch execution per edge, `parent` the execution that forked (it waits at
    # the fork until they all end) and `root` the one the contact entered (null for that).
    parent = models.ForeignKey("self", on_delete=models.CASCADE, null=True, blank=True,
                               related_name="branches")
    root = models.ForeignKey("self", on_delete=models.CASCADE, null=True, blank=True,
                             related_name="+")
    # The fork that started a branch: the parent's position there (its fork node and that
    # node's visit). The parent gathers only the branches of the fork it waits at, not those
    # of an earlier fork of its own (another node, or the same one in a loop).
    fork_node = models.CharField(max_length=100, blank=True, default="")
    fork_visit = models.PositiveIntegerField(null=True, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ExecutionQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            models.Index(fields=["workspace", "-started_at"]),
            models.Index(fields=["flow", "contact", "status"]),
            models.Index(fields=["wake_at"], name="execution_timer_idx",
                         condition=Q(status="waiting", wake_at__isnull=False)),
            models.Index(fields=["contact", "waiting_event"], name="execution_event_idx",
                         condition=Q(status="waiting") & ~Q(waiting_event="")),
            models.Index(fields=["status", "enqueued_at"], name="execution_running_idx",
                         condition=Q(status="running")),
            # The dashboard overview at a large history: the newest failures, and what
            # finished in a window (neither scans the workspace's executions).
            models.Index(fields=["workspace", "-updated_at"], name="execution_failed_idx",
                         condition=Q(status="failed")),
            models.Index(fields=["workspace", "completed_at"], name="execution_finished_idx",
                         condition=Q(completed_at__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.flow} for {self.contact_id} ({self.status})"

    @property
    def duration_seconds(self) -> float | None:
        if self.completed_at is None:
            return None
        return (self.completed_at - self.started_at).total_seconds()

    @property
    def time_to_convert_seconds(self) -> float | None:
        if self.converted_at is None:
            return None
        return (self.converted_at - self.started_at).total_seconds()


class Step(models.Model):
    """One visit of one node; unique per (execution, node, visit) so no node runs twice."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        WAITING = "waiting"
        COMPLETED = "completed"
        FAILED = "failed"
        SKIPPED = "skipped"

    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="steps")
    node_id = models.CharField(max_length=100)
    node_type = models.CharField(max_length=30)
    visit = models.PositiveIntegerField(default=1)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    input = models.JSONField(default=dict, blank=True)
    output = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True, default="")
    message = models.ForeignKey("messaging.Message", on_delete=models.SET_NULL, null=True,
                                blank=True, related_name="flow_steps")
    retry_count = models.PositiveIntegerField(default=0)
    # Set by the engine to when the node began (a walk persists many steps at once).
    started_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["execution", "started_at", "id"]
        constraints = [models.UniqueConstraint(fields=["execution", "node_id", "visit"],
                                               name="step_visit_unique")]

    def __str__(self) -> str:
        return f"{self.node_id}#{self.visit} ({self.status})"

    @property
    def duration_ms(self) -> float | None:
        if self.completed_at is None:
            return None
        return round((self.completed_at - self.started_at).total_seconds() * 1000, 2)


class BulkStart(models.Model):
    """A job starting one execution per contact of an audience, in batches."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        COMPLETED = "completed"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workspace = models.ForeignKey("core.Workspace", on_delete=models.CASCADE)
    flow = models.ForeignKey(Flow, on_delete=models.CASCADE, related_name="bulk_starts")
    source = models.CharField(max_length=10, default="api")
    contact_ids = models.JSONField(null=True, blank=True)
    filter = models.JSONField(null=True, blank=True)
    data = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    total = models.PositiveIntegerField(default=0)
    started = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    # Of the skipped: turned away by the flow's entry rules (still in the flow, or re-entry
    # off); the rest did not match the filter.
    refused = models.PositiveIntegerField(default=0)
    cursor = models.CharField(max_length=64, blank=True, default="")  # last contact id done
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"bulk start {self.id} ({self.status})"


class FlowSchedule(models.Model):
    """A cron schedule that starts a flow for an audience; owns one beat PeriodicTask."""

    class CatchUp(models.TextChoices):
        SKIP = "skip"
        RUN_ONCE = "run_once"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workspace = models.ForeignKey("core.Workspace", on_delete=models.CASCADE,
                                  related_name="flow_schedules")
    flow = models.ForeignKey(Flow, on_delete=models.CASCADE, related_name="schedules")
    cron = models.CharField(max_length=120)  # as given: 5 fields or an alias like @daily
    timezone = models.CharField(max_length=64, default="UTC")
    enabled = models.BooleanField(default=True)
    # {"contact_id": id} | {"contact_ids": [id, ...]} | {"filter": {rules}}
    audience = models.JSONField(default=dict)
    data = models.JSONField(default=dict, blank=True)
    catch_up = models.CharField(max_length=10, choices=CatchUp.choices, default=CatchUp.SKIP)
    # Beat's copy of the schedule; SET_NULL so deleting it in admin leaves a mismatch that
    # sync_schedules repairs instead of silently deleting the schedule.
    periodic_task = models.OneToOneField("django_celery_beat.PeriodicTask",
                                         on_delete=models.SET_NULL, null=True, blank=True,
                                         related_name="flow_schedule")
    # Occurrences before this instant never fire: creating, re-enabling or re-timing a
    # schedule at 09:03 must not start the 09:00 run.
    active_since = models.DateTimeField()
    runs = models.PositiveIntegerField(default=0)
    successes = models.PositiveIntegerField(default=0)
    failures = models.PositiveIntegerField(default=0)
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_run_status = models.CharField(max_length=10, blank=True, default="")
    next_run_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [
            models.Index(fields=["workspace", "flow"]),
            models.Index(fields=["next_run_at"], name="schedule_due_idx",
                         condition=Q(enabled=True)),
        ]

    def __str__(self) -> str:
        return f"{self.flow} at {self.cron} ({self.timezone})"


class ScheduleRun(models.Model):
    """One occurrence of a schedule; unique per (schedule, occurrence) so it fires once."""

    class Status(models.TextChoices):
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        SKIPPED = "skipped"  # missed while down, older than the grace, catch_up "skip"

    schedule = models.ForeignKey(FlowSchedule, on_delete=models.CASCADE,
                                 related_name="schedule_runs")
    occurrence_at = models.DateTimeField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    bulk_start = models.ForeignKey(BulkStart, on_delete=models.SET_NULL, null=True,
                                   blank=True, related_name="schedule_runs")
    total = models.PositiveIntegerField(default=0)
    started = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    # Of the skipped: still in the flow from an earlier start (max_concurrent_per_contact);
    # the rest did not match the filter.
    refused = models.PositiveIntegerField(default=0)
    missing = models.PositiveIntegerField(default=0)  # audience contacts deleted since
    error = models.TextField(blank=True, default="")
    fired_at = models.DateTimeField()  # when a wake-up inserted it (occurrence_at + latency)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-occurrence_at"]
        constraints = [models.UniqueConstraint(fields=["schedule", "occurrence_at"],
                                               name="schedule_run_unique")]
        indexes = [models.Index(fields=["status", "updated_at"], name="schedule_run_open_idx",
                                condition=Q(status="running"))]

    def __str__(self) -> str:
        return f"{self.schedule_id} @ {self.occurrence_at:%Y-%m-%d %H:%M}Z ({self.status})"

    @property
    def summary(self) -> str:
        """Say what the run did in an operator's words: "1 of 3 started, 2 skipped (already
        in the flow)", with contacts the filter did not match and deleted ones if any."""
        if self.status == self.Status.SKIPPED:
            return "not started (missed while down; catch_up is skip)"
        parts = [f"{self.started} of {self.total} started"]
        if self.refused:
            parts.append(f"{self.refused} skipped (already in the flow)")
        if self.skipped > self.refused:
            parts.append(f"{self.skipped - self.refused} did not match the filter")
        if self.missing:
            parts.append(f"{self.missing} no longer exist")
        if self.status == self.Status.RUNNING:
            parts.append("so far")
        return ", ".join(parts)


def _delete_periodic_task(sender: type, instance: FlowSchedule, **kwargs: object) -> None:
    """Delete the schedule's beat task with it, whatever deleted it (API, admin, a flow's
    cascade), in the same transaction, and tell running beats the table changed."""
    from django_celery_beat.models import PeriodicTask, PeriodicTasks

    if instance.periodic_task_id and PeriodicTask.objects.filter(
            pk=instance.periodic_task_id).delete()[0]:
        PeriodicTasks.update_changed()


# models.signals rather than a new import: this module's head belongs to the existing models.
models.signals.post_delete.connect(_delete_periodic_task, sender=FlowSchedule,
                                   dispatch_uid="flows.schedule.delete_periodic_task")
