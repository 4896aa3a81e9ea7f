"""Admin pages for messages, their attempts and stored idempotent answers."""
from __future__ import annotations

from django.contrib import admin

from core.audit import actor_of
from messaging.models import DeliveryAttempt, IdempotencyRecord, Message, Suppression
from messaging.pipeline import NotCancellable, message_cancel


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    fields = ("number", "provider", "started_at", "finished_at", "outcome", "status_code",
              "error_code", "error", "possible_duplicate", "task_id")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["id", "workspace", "channel", "direction", "to", "status", "category",
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

    def has_add_permission(self, request) -> bool:
        return False  # messages are created through the API or flows, never by hand

    @admin.action(description="Cancel selected messages (scheduled, queued or retrying)")
    def cancel(self, request, queryset) -> None:
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
