from __future__ import annotations

from django.contrib import admin

from monitoring.models import DeadLetter


@admin.register(DeadLetter)
class DeadLetterAdmin(admin.ModelAdmin):
    list_display = ["id", "workspace", "kind", "channel", "source_id", "error_code", "attempts",
                    "status", "replay_count", "created_at"]
    list_filter = ["status", "kind", "channel", "workspace"]
    search_fields = ["source_id", "error", "error_code"]
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in DeadLetter._meta.fields]
    list_select_related = ["workspace"]
