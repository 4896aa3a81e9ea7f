"""Admin pages for workspaces, their API keys and contacts."""
from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest

from core.audit import actor_of, audit
from core.models import ApiKey, AuditEntry, Contact, Membership, Scope, Workspace
from core.services import api_key_create, api_key_revoke
from core.workspace_settings import validate_settings

_KEY_FIELDS = ("name", "prefix", "scopes", "expires_at", "created_at", "last_used_at",
               "revoked_at")


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    extra = 0
    fields = _KEY_FIELDS
    readonly_fields = _KEY_FIELDS
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # keys are made by the "create API key" action, so the secret is shown


class WorkspaceForm(forms.ModelForm):
    """The workspace page's form: settings are JSON, checked by the same rules as
    PATCH /api/v1/workspace (core.workspace_settings) before they are saved."""

    class Meta:
        model = Workspace
        fields = ["name", "slug", "timezone", "settings", "is_active", "webhook_secret",
                  "webhook_secret_previous", "webhook_secret_rotated_at"]

    def clean_settings(self) -> Any:
        """Check the settings JSON (see core.workspace_settings)."""
        value = self.cleaned_data.get("settings")
        validate_settings({} if value is None else value)
        return value


@admin.register(Workspace)
class WorkspaceAdmin(admin.ModelAdmin):
    form = WorkspaceForm
    list_display = ["name", "slug", "timezone", "is_active", "created_at"]
    search_fields = ["name", "slug"]
    list_filter = ["is_active"]
    readonly_fields = ["id", "created_at", "updated_at"]
    inlines = [ApiKeyInline]
    actions = ["create_key"]

    def save_model(self, request: Any, obj: Workspace, form: Any, change: bool) -> None:
        """Save, and log a change in the audit log (field names only) in the same
        transaction."""
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            if change and form.changed_data:
                audit(actor=actor_of(request, "admin"), action="workspace.update",
                      workspace=obj, target_type="workspace", target_id=obj.pk,
                      detail={"fields": sorted(form.changed_data)})

    @admin.action(description="Create an API key (shown once)")
    def create_key(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for workspace in queryset:
            _, secret = api_key_create(workspace=workspace, name="admin")
            self.message_user(request, f"New key for {workspace.slug} (copy it now, it is "
                                       f"not shown again): {secret}", messages.WARNING)


class ApiKeyForm(forms.ModelForm):
    """A key's page: its scopes as checkboxes (at least one) and its expiry are editable."""

    scopes = forms.MultipleChoiceField(choices=Scope.choices,
                                       widget=forms.CheckboxSelectMultiple,
                                       help_text="read: GET; send: messages, executions, "
                                                 "events; manage: every other write.")

    class Meta:
        model = ApiKey
        fields = ["name", "scopes", "expires_at"]

    def clean_scopes(self) -> list[str]:
        """Keep the canonical order (read, send, manage)."""
        chosen = set(self.cleaned_data["scopes"])
        return [scope for scope in Scope.values if scope in chosen]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    form = ApiKeyForm
    list_display = ["prefix", "name", "workspace", "scopes", "expires_at", "created_at",
                    "last_used_at", "revoked_at"]
    list_filter = ["workspace", ("revoked_at", admin.EmptyFieldListFilter),
                   ("expires_at", admin.EmptyFieldListFilter)]
    search_fields = ["prefix", "name", "workspace__slug"]
    readonly_fields = ["workspace", "prefix", "hashed_key", "created_at", "last_used_at",
                       "revoked_at"]
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Revoke selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for key in queryset:
            api_key_revoke(api_key=key)
        self.message_user(request, f"Revoked {queryset.count()} key(s).")


@admin.register(Contact)
class ContactAdmin(admin.ModelAdmin):
    list_display = ["__str__", "workspace", "first_name", "last_name", "phone", "email",
                    "created_at"]
    list_filter = ["workspace", "sms_subscribed", "email_subscribed", "locale"]
    search_fields = ["external_id", "first_name", "last_name", "phone", "email"]
    readonly_fields = ["id", "created_at", "updated_at"]
    list_select_related = ["workspace"]


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    """The audit log, read-only: entries are written only by the actions they record."""

    list_display = ["created_at", "workspace", "actor", "source", "action", "target_type",
                    "target_id", "ip"]
    list_filter = ["action", "source", "workspace"]
    search_fields = ["actor", "target_id", "action"]
    date_hierarchy = "created_at"
    list_select_related = ["workspace"]
    readonly_fields = [f.name for f in AuditEntry._meta.fields]

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    """Who may use the dashboard for which workspace, and in which role (core.roles)."""

    list_display = ["user", "workspace", "role", "created_at"]
    list_filter = ["role", "workspace"]
    search_fields = ["user__username", "workspace__slug"]
    list_select_related = ["user", "workspace"]
    autocomplete_fields = ["user", "workspace"]
