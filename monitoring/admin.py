from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, StreamingHttpResponse

from core.audit import Actor, actor_of
from core.models import DeadLetter
from monitoring import alerts, services
from monitoring.models import AlertEvent, AlertRule, HistoryPurge


def _actor(request: HttpRequest) -> Actor:
    return actor_of(request, "admin")


@admin.register(DeadLetter)
class DeadLetterAdmin(admin.ModelAdmin):
    list_display = ["id", "workspace", "kind", "channel", "source_id", "error_code", "attempts",
                    "status", "replay_count", "created_at"]
    list_filter = ["status", "kind", "channel", "created_at", "workspace"]
    search_fields = ["source_id", "flow_id", "error", "error_code", "replay_result"]
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in DeadLetter._meta.fields]
    list_select_related = ["workspace"]
    actions = ["retry", "discard", "export_csv", "export_json"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # dead letters are filed by the pipeline and the flow engine

    @admin.action(description="Retry (replay) selected dead letters")
    def retry(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        report = services.dead_letters_replay(queryset=queryset, actor=_actor(request))
        self.message_user(request, f"Replayed {report.replayed} of {report.matched}.",
                          messages.SUCCESS if report.replayed else messages.INFO)
        for refusal in report.refusals[:10]:
            self.message_user(request, f"#{refusal['id']} refused: {refusal['reason']}",
                              messages.WARNING)

    @admin.action(description="Discard selected dead letters")
    def discard(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        count = services.dead_letters_discard(queryset=queryset, actor=_actor(request))
        self.message_user(request, f"Discarded {count}; entries that were not open are "
                                   f"unchanged.")

    @admin.action(description="Export selected dead letters (CSV)")
    def export_csv(self, request: HttpRequest,
                   queryset: QuerySet[DeadLetter]) -> StreamingHttpResponse:
        return _export(queryset, "csv")

    @admin.action(description="Export selected dead letters (JSON)")
    def export_json(self, request: HttpRequest,
                    queryset: QuerySet[DeadLetter]) -> StreamingHttpResponse:
        return _export(queryset, "json")


def _export(queryset: QuerySet[DeadLetter], fmt: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(
        services.dead_letters_export(queryset=queryset, fmt=fmt),
        content_type="text/csv; charset=utf-8" if fmt == "csv" else "application/json")
    response["Content-Disposition"] = f'attachment; filename="dead-letters.{fmt}"'
    return response


class AlertRuleForm(forms.ModelForm):
    class Meta:
        model = AlertRule
        fields = ["workspace", "name", "type", "flow", "threshold", "window_seconds",
                  "message_channel", "schedule_id", "min_samples", "channel", "recipients",
                  "enabled", "cooldown_seconds"]

    def clean(self) -> dict:
        cleaned = super().clean()
        if cleaned is None:  # ModelForm.clean() returns cleaned_data; the stubs allow None
            raise TypeError("ModelForm.clean() returned None")
        if self.errors:
            return cleaned
        rule = AlertRule(**cleaned)
        try:
            alerts.alert_rule_validate(rule=rule)
        except ValidationError as exc:
            raise ValidationError(exc.message_dict) from exc
        return cleaned


class AlertEventInline(admin.TabularInline):
    model = AlertEvent
    extra = 0
    can_delete = False
    fields = ("triggered_at", "value", "resolved_at", "resolved_value", "notified", "summary")
    readonly_fields = fields
    ordering = ["-triggered_at"]
    max_num = 0

    def has_add_permission(self, request: HttpRequest, obj: AlertRule | None = None) -> bool:
        return False


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    form = AlertRuleForm
    list_display = ["name", "workspace", "type", "threshold", "window_seconds", "channel",
                    "enabled", "muted_until", "last_value", "last_evaluated_at",
                    "last_notified_at"]
    list_filter = ["enabled", "type", "channel", "workspace"]
    search_fields = ["name", "workspace__slug"]
    readonly_fields = ["last_value", "last_evaluated_at", "last_notified_at", "created_at",
                       "updated_at"]
    list_select_related = ["workspace"]
    inlines = [AlertEventInline]
    actions = ["evaluate_now"]

    @admin.action(description="Evaluate selected rules now")
    def evaluate_now(self, request: HttpRequest, queryset: QuerySet[AlertRule]) -> None:
        outcomes = [alerts.alert_rule_evaluate(rule_id=rule.pk) for rule in queryset]
        summary = ", ".join(f"{name}: {outcomes.count(name)}" for name in sorted(set(outcomes)))
        self.message_user(request, f"Evaluated {len(outcomes)} rule(s): {summary}.")


@admin.register(AlertEvent)
class AlertEventAdmin(admin.ModelAdmin):
    list_display = ["id", "rule", "workspace", "triggered_at", "value", "resolved_at",
                    "resolved_value", "notified"]
    list_filter = ["notified", ("resolved_at", admin.EmptyFieldListFilter), "workspace",
                   "rule__type"]
    search_fields = ["summary", "rule__name"]
    date_hierarchy = "triggered_at"
    readonly_fields = [f.name for f in AlertEvent._meta.fields]
    list_select_related = ["rule", "workspace"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(HistoryPurge)
class HistoryPurgeAdmin(admin.ModelAdmin):
    """The retention purge's runs (read-only: beat and `purge_history --retention` write)."""

    list_display = ["started_at", "finished_at", "rows", "deleted", "complete", "error"]
    date_hierarchy = "started_at"
    readonly_fields = [f.name for f in HistoryPurge._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
