"""Admin pages for messages, their attempts, stored idempotent answers, suppressions and
webhook endpoints with their deliveries."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from core.audit import actor_of
from messaging.channels import CHANNEL_QUEUES
from messaging.delivery.creation import NotCancellable, message_cancel
from messaging.delivery.pauses import queue_pause, queue_resume
from messaging.events.endpoints import deliveries_replay_failed, endpoint_disable, endpoint_enable
from messaging.models import (
    DeliveryAttempt,
    IdempotencyRecord,
    Message,
    QueuePause,
    Suppression,
    Template,
    TemplateVersion,
    Topic,
    TopicPreference,
    WebhookEndpoint,
)


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    fields = ("number", "provider", "started_at", "finished_at", "outcome", "status_code",
              "error_code", "error", "possible_duplicate", "task_id")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["id", "workspace", "channel", "direction", "to", "status", "status_reason",
                    "category",
                    "attempts", "priority", "scheduled_for", "created_at", "sent_at",
                    "possible_duplicate"]
    list_filter = ["status", "channel", "direction", "category", "suppressed_reason",
                   "priority", "source", "possible_duplicate", "workspace"]
    search_fields = ["id", "to", "sender", "provider_message_id", "last_error"]
    date_hierarchy = "created_at"
    list_select_related = ["workspace"]
    readonly_fields = [f.name for f in Message._meta.fields]
    inlines = [DeliveryAttemptInline]
    actions = ["cancel"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # messages are created through the API or flows, never by hand

    @admin.action(description="Cancel selected messages (scheduled, queued or retrying)")
    def cancel(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        cancelled = skipped = 0
        for message in queryset:
            try:
                message_cancel(message=message, actor=actor_of(request, "admin"))
                cancelled += 1
            except NotCancellable:
                skipped += 1
        self.message_user(request, f"Cancelled {cancelled}; {skipped} were past cancelling.")


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(admin.ModelAdmin):
    list_display = ["key", "workspace", "in_flight", "status_code", "created_at"]
    list_filter = ["in_flight", "workspace"]
    search_fields = ["key"]
    readonly_fields = ["workspace", "key", "request_hash", "in_flight", "status_code",
                       "response_body", "created_at"]


@admin.register(Suppression)
class SuppressionAdmin(admin.ModelAdmin):
    list_display = ["address", "channel", "reason", "source", "workspace", "created_at"]
    list_filter = ["channel", "reason", "workspace"]
    search_fields = ["address", "source"]
    list_select_related = ["workspace"]
    readonly_fields = ["created_at"]


@admin.register(Topic)
class TopicAdmin(admin.ModelAdmin):
    list_display = ["key", "name", "default_opt_in", "critical", "workspace", "created_at"]
    list_filter = ["critical", "default_opt_in", "workspace"]
    search_fields = ["key", "name"]
    list_select_related = ["workspace"]
    readonly_fields = ["created_at", "updated_at"]


class TemplateVersionInline(admin.TabularInline):
    model = TemplateVersion
    extra = 0
    can_delete = False
    fields = ("number", "default_locale", "topic", "variants", "created_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a version is written by a change through the API, checked there


@admin.register(Template)
class TemplateAdmin(admin.ModelAdmin):
    """Templates and every version; content changes go through the API, which checks the
    variables and writes the next version (README.md, "Templates")."""

    list_display = ["name", "channel", "current", "workspace", "updated_at", "deleted_at"]
    list_filter = ["channel", "workspace", ("deleted_at", admin.EmptyFieldListFilter)]
    search_fields = ["name"]
    list_select_related = ["workspace", "current"]
    readonly_fields = ["workspace", "channel", "current", "created_at", "updated_at",
                       "deleted_at"]
    inlines = [TemplateVersionInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # made through the API, which checks the variants


@admin.register(TopicPreference)
class TopicPreferenceAdmin(admin.ModelAdmin):
    list_display = ["contact", "topic", "channel", "opted_in", "updated_at"]
    list_filter = ["channel", "opted_in"]
    search_fields = ["topic__key", "contact__email", "contact__phone"]
    list_select_related = ["contact", "topic"]
    raw_id_fields = ["contact", "topic"]
    readonly_fields = ["updated_at"]


class DeliveryInline(admin.TabularInline):
    model = Message
    fk_name = "webhook_endpoint"
    verbose_name = "delivery"
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ("created_at", "status", "attempts", "last_error", "sent_at", "failed_at")
    readonly_fields = fields
    ordering = ("-created_at",)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    list_display = ["url", "workspace", "enabled", "failing_since", "disabled_at",
                    "created_at"]
    list_filter = ["enabled", "workspace"]
    search_fields = ["url", "description"]
    list_select_related = ["workspace"]
    # The secrets sign deliveries: shown once to the customer, never here.
    exclude = ["secret", "secret_previous"]
    readonly_fields = ["secret_rotated_at", "failing_since", "disabled_at",
                       "disabled_reason", "created_at", "updated_at"]
    inlines = [DeliveryInline]
    actions = ["disable", "enable", "replay_failed"]

    @admin.action(description="Disable (cancels pending deliveries)")
    def disable(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for endpoint in queryset.filter(enabled=True):
            endpoint_disable(endpoint=endpoint)
        self.message_user(request, "Disabled.")

    @admin.action(description="Enable")
    def enable(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for endpoint in queryset.filter(enabled=False):
            endpoint_enable(endpoint=endpoint)
        self.message_user(request, "Enabled.")

    @admin.action(description="Replay failed deliveries of the last 7 days")
    def replay_failed(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        since = timezone.now() - timedelta(days=7)
        count = sum(len(deliveries_replay_failed(endpoint=endpoint, since=since))
                    for endpoint in queryset.filter(enabled=True))
        self.message_user(request, f"Replayed {count} deliveries.")


class QueuePauseForm(forms.ModelForm):
    queue = forms.ChoiceField(choices=[(name, name) for name in CHANNEL_QUEUES])

    class Meta:
        model = QueuePause
        fields = ["queue", "workspace", "reason"]


@admin.register(QueuePause)
class QueuePauseAdmin(admin.ModelAdmin):
    """Paused queues: adding one pauses (no workspace: every workspace), deleting resumes
    and releases the held messages in order; both through messaging.delivery.pauses, audited."""

    form = QueuePauseForm
    list_display = ["queue", "workspace", "paused_at", "paused_by", "reason"]
    list_filter = ["queue"]
    list_select_related = ["workspace"]
    readonly_fields = ["paused_at", "paused_by"]

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return obj is None  # a pause is added or removed, never edited

    def save_model(self, request: Any, obj: QueuePause, form: Any, change: bool) -> None:
        pause, _ = queue_pause(queue=obj.queue, workspace=obj.workspace,
                               actor=actor_of(request, "admin"), reason=obj.reason)
        obj.pk = pause.pk

    def delete_model(self, request: Any, obj: QueuePause) -> None:
        queue_resume(queue=obj.queue, workspace=obj.workspace, actor=actor_of(request, "admin"))

    def delete_queryset(self, request: Any, queryset: Any) -> None:
        for pause in queryset.select_related("workspace"):
            self.delete_model(request, pause)
