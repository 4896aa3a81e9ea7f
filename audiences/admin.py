"""Admin for contact imports (follow one, read its failed rows), broadcasts (follow,
cancel), both started from the API, and segments (edited here too, checked as by the API)."""
from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from audiences import broadcasts, segments
from audiences.models import Broadcast, ContactImport, ContactImportError, Segment
from core.audit import actor_of


class ContactImportErrorInline(admin.TabularInline):
    model = ContactImportError
    fields = ["row", "field", "message", "record"]
    readonly_fields = ["row", "field", "message", "record"]
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = False

    def get_queryset(self, request: HttpRequest):  # type: ignore[no-untyped-def]
        """Show the first rows only: an import may have thousands of failures."""
        return super().get_queryset(request).order_by("row")


@admin.register(ContactImport)
class ContactImportAdmin(admin.ModelAdmin):
    list_display = ["created_at", "workspace", "filename", "format", "status", "rows_total",
                    "rows_done", "rows_created", "rows_updated", "rows_failed"]
    list_filter = ["status", "format"]
    search_fields = ["filename", "id"]
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in ContactImport._meta.fields]
    inlines = [ContactImportErrorInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # an import is an upload through the API


@admin.register(Broadcast)
class BroadcastAdmin(admin.ModelAdmin):
    """Broadcasts are made through the API; here they are followed, and cancelled."""

    list_display = ["created_at", "workspace", "name", "channel", "status", "targeted",
                    "skipped", "throttle", "send_at", "completed_at"]
    list_filter = ["status", "channel"]
    search_fields = ["name", "id"]
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in Broadcast._meta.fields]
    actions = ["cancel"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Cancel the selected broadcasts")
    def cancel(self, request: HttpRequest, queryset: QuerySet[Broadcast]) -> None:
        """Cancel each broadcast still running (the others are left as they are)."""
        done = 0
        for broadcast in queryset:
            try:
                broadcasts.broadcast_cancel(broadcast=broadcast,
                                            actor=actor_of(request, "admin"))
                done += 1
            except broadcasts.NotCancellable:
                continue
        self.message_user(request, f"{done} broadcast(s) cancelled.", messages.SUCCESS)


class SegmentForm(forms.ModelForm):
    class Meta:
        model = Segment
        fields = ["workspace", "name", "rules"]

    def clean(self):  # type: ignore[no-untyped-def]
        """Check the rules as the API does (unknown segments, cycles, bad conditions)."""
        data = super().clean() or {}
        workspace, rules = data.get("workspace"), data.get("rules")
        if workspace is not None and rules is not None:
            try:
                segments.rules_expand(workspace=workspace, rules=rules,
                                      segment_id=None if self.instance._state.adding
                                      else str(self.instance.pk))
                if not self.instance._state.adding:
                    segments.segment_change_check(segment=self.instance, rules=rules)
            except segments.SegmentInvalid as exc:
                self.add_error("rules", "; ".join(exc.fields["rules"]))
        return data


@admin.register(Segment)
class SegmentAdmin(admin.ModelAdmin):
    form = SegmentForm
    list_display = ["name", "workspace", "created_at", "updated_at"]
    search_fields = ["name", "id"]
    list_filter = ["workspace"]
    readonly_fields = ["id", "created_at", "updated_at"]
