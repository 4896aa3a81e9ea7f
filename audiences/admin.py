"""Admin for contact imports: follow one, read its failed rows (imports start from the API)."""
from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from audiences.models import ContactImport, ContactImportError


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
