from __future__ import annotations

from django.contrib import admin, messages

from messaging.models import ApiKey, Contact, DeliveryAttempt, IdempotencyRecord, Message, Workspace
from messaging.pipeline import NotCancellable, message_cancel
from messaging.services import api_key_create, api_key_revoke


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    extra = 0
    fields = ["name", "prefix", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False  # keys are made by the "create API key" action, so the secret is shown


@admin.register(Workspace)
class WorkspaceAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "timezone", "is_active", "created_at"]
    search_fields = ["name", "slug"]
    list_filter = ["is_active"]
    readonly_fields = ["id", "created_at", "updated_at"]
    inlines = [ApiKeyInline]
    actions = ["create_key"]

    @admin.action(description="Create an API key (shown once)")
    def create_key(self, request, queryset) -> None:
        for workspace in queryset:
            _, secret = api_key_create(workspace=workspace, name="admin")
            self.message_user(request, f"New key for {workspace.slug} (copy it now, it is "
                                       f"not shown again): {secret}", messages.WARNING)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["prefix", "name", "workspace", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["workspace", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["prefix", "name", "workspace__slug"]
    readonly_fields = ["workspace", "prefix", "hashed_key", "created_at", "last_used_at",
                       "revoked_at"]
    actions = ["revoke"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description="Revoke selected keys")
    def revoke(self, request, queryset) -> None:
        for key in queryset:
            api_key_revoke(api_key=key)
        self.message_user(request, f"Revoked {queryset.count()} key(s).")


@admin.register(Contact)
class ContactAdmin(admin.ModelAdmin):
    list_display = ["__str__", "workspace", "first_name", "last_name", "phone", "email",
                    "created_at"]
    list_filter = ["workspace", "sms_subscribed", "email_subscribed"]
    search_fields = ["external_id", "first_name", "last_name", "phone", "email"]
    readonly_fields = ["id", "created_at", "updated_at"]
    list_select_related = ["workspace"]


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    fields = ["number", "provider", "started_at", "finished_at", "outcome", "status_code",
              "error_code", "error", "possible_duplicate", "task_id"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["id", "workspace", "channel", "to", "status", "attempts", "priority",
                    "scheduled_for", "created_at", "sent_at", "possible_duplicate"]
    list_filter = ["status", "channel", "priority", "source", "possible_duplicate", "workspace"]
    search_fields = ["id", "to", "provider_message_id", "last_error"]
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
                message_cancel(message=message)
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
