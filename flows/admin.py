"""Admin for flows and schedules; every change goes through the services."""
from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from core.audit import actor_of
from flows import cron, operations, schedules, services
from flows.graph import validate
from flows.models import (
    BulkStart,
    Execution,
    Flow,
    FlowSchedule,
    FlowVersion,
    ScheduleRun,
    Step,
)


class FlowForm(forms.ModelForm):
    class Meta:
        model = Flow
        fields = ["workspace", "name", "description", "status", "trigger", "nodes", "edges",
                  "settings"]

    def clean(self) -> dict[str, Any]:
        """Refuse a graph with problems, one admin error line per problem."""
        cleaned = super().clean()
        if cleaned is None:  # ModelForm.clean() returns cleaned_data; the stubs allow None
            raise TypeError("ModelForm.clean() returned None")
        errors = validate(cleaned.get("nodes"), cleaned.get("edges"))
        if errors:
            raise forms.ValidationError([
                f"{e.get('node') or e.get('edge') or 'graph'}: {e['message']}" for e in errors])
        return cleaned


class FlowVersionInline(admin.TabularInline):
    model = FlowVersion
    extra = 0
    fields = ("number", "created_at")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Flow)
class FlowAdmin(admin.ModelAdmin):
    form = FlowForm
    list_display = ["name", "workspace", "status", "created_at", "updated_at"]
    list_filter = ["status", "workspace"]
    search_fields = ["name", "description"]
    readonly_fields = ["id", "created_at", "updated_at"]
    inlines = [FlowVersionInline]
    actions = ["publish", "activate", "pause"]

    @admin.action(description="Publish a new version")
    def publish(self, request: HttpRequest, queryset: QuerySet) -> None:
        for flow in queryset:
            services.flow_publish(flow=flow)
        self.message_user(request, f"Published {queryset.count()} flow(s).")

    @admin.action(description="Activate")
    def activate(self, request: HttpRequest, queryset: QuerySet) -> None:
        for flow in queryset:
            services.flow_set_status(flow=flow, status=Flow.Status.ACTIVE)

    @admin.action(description="Pause")
    def pause(self, request: HttpRequest, queryset: QuerySet) -> None:
        for flow in queryset:
            services.flow_set_status(flow=flow, status=Flow.Status.PAUSED)


class StepInline(admin.TabularInline):
    model = Step
    extra = 0
    can_delete = False
    ordering = ["started_at", "id"]
    fields = ("node_id", "node_type", "visit", "status", "started_at", "completed_at",
              "input", "output", "error", "message", "retry_count")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Execution)
class ExecutionAdmin(admin.ModelAdmin):
    list_display = ["id", "flow", "contact", "status", "exit_reason", "source", "current_node",
                    "started_at", "completed_at", "converted_at"]
    list_filter = ["status", "source", "exit_reason", "workspace", "flow"]
    search_fields = ["id", "contact__external_id", "contact__phone", "contact__email"]
    date_hierarchy = "started_at"
    list_select_related = ["flow", "contact"]
    readonly_fields = [f.name for f in Execution._meta.fields]
    inlines = [StepInline]
    actions = ["cancel", "pause", "resume", "retry_failed_step"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Cancel selected executions")
    def cancel(self, request: HttpRequest, queryset: QuerySet) -> None:
        for execution in queryset:
            operations.execution_cancel(execution=execution, actor=actor_of(request, "admin"))
        self.message_user(request, "Cancelled the running and waiting ones.")

    @admin.action(description="Pause selected executions")
    def pause(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._each(request, queryset, operations.execution_pause, "Paused")

    @admin.action(description="Resume selected executions")
    def resume(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._each(request, queryset, operations.execution_resume, "Resumed")

    def _each(self, request: HttpRequest, queryset: QuerySet, operation: Any,
              verb: str) -> None:
        done = skipped = 0
        for execution in queryset.filter(status__in=operations.ACTIVE):
            operation(execution=execution, actor=actor_of(request, "admin"))
            done += 1
        skipped = queryset.count() - done
        self.message_user(request, f"{verb} {done}; {skipped} were finished.")

    @admin.action(description="Retry the failed step of selected executions")
    def retry_failed_step(self, request: HttpRequest, queryset: QuerySet) -> None:
        retried = 0
        refused: list[str] = []
        for execution in queryset.filter(status=Execution.Status.FAILED):
            step = execution.steps.filter(status=Step.Status.FAILED).order_by("-id").first()
            if step is not None:
                try:
                    operations.step_retry(step=step)
                except operations.NotRetryable as exc:
                    refused.append(f"{execution.pk}: {exc}")
                    continue
                retried += 1
        self.message_user(request, f"Retried {retried} execution(s).", messages.INFO)
        for reason in refused:
            self.message_user(request, f"Not retried: {reason}", messages.WARNING)


@admin.register(BulkStart)
class BulkStartAdmin(admin.ModelAdmin):
    list_display = ["id", "flow", "status", "total", "started", "skipped", "refused",
                    "created_at"]
    list_filter = ["status"]
    readonly_fields = [f.name for f in BulkStart._meta.fields]


# --- Schedules -----------------------------------------------------------------------------


class FlowScheduleForm(forms.ModelForm):
    class Meta:
        model = FlowSchedule
        fields = ["cron", "timezone", "enabled", "audience", "data", "catch_up"]

    def clean(self) -> dict[str, Any]:
        """Check the expression and time zone the way the API does."""
        cleaned = super().clean()
        if cleaned is None:  # ModelForm.clean() returns cleaned_data; the stubs allow None
            raise TypeError("ModelForm.clean() returned None")
        for name, check in (("cron", cron.cron_parse), ("timezone", cron.zone_get)):
            try:
                check(cleaned.get(name))
            except cron.CronError as exc:
                self.add_error(name, str(exc))
        return cleaned


@admin.register(FlowSchedule)
class FlowScheduleAdmin(admin.ModelAdmin):
    """Schedules; edits go through the services so the beat task changes with them."""

    form = FlowScheduleForm
    list_display = ["id", "flow", "cron", "timezone", "enabled", "next_run_at", "runs",
                    "successes", "failures", "last_run_at", "last_run_status"]
    list_filter = ["enabled", "last_run_status", "workspace"]
    list_select_related = ["flow"]
    readonly_fields = ["id", "workspace", "flow", "periodic_task", "active_since", "runs",
                       "successes", "failures", "last_run_at", "last_run_status",
                       "next_run_at", "created_at", "updated_at"]
    actions = ["enable", "disable", "sync"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # created through the API, which checks the flow and the audience

    def save_model(self, request: HttpRequest, obj: FlowSchedule, form: forms.ModelForm,
                   change: bool) -> None:
        changes = {name: form.cleaned_data[name] for name in form.changed_data}
        schedules.schedule_update(schedule=FlowSchedule.objects.get(pk=obj.pk), **changes)

    def delete_model(self, request: HttpRequest, obj: FlowSchedule) -> None:
        schedules.schedule_delete(schedule=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for schedule in queryset:
            schedules.schedule_delete(schedule=schedule)

    @admin.action(description="Enable")
    def enable(self, request: HttpRequest, queryset: QuerySet) -> None:
        for schedule in queryset:
            schedules.schedule_update(schedule=schedule, enabled=True)

    @admin.action(description="Disable")
    def disable(self, request: HttpRequest, queryset: QuerySet) -> None:
        for schedule in queryset:
            schedules.schedule_update(schedule=schedule, enabled=False)

    @admin.action(description="Repair beat tasks of all schedules (sync_schedules)")
    def sync(self, request: HttpRequest, queryset: QuerySet) -> None:
        for line in schedules.schedules_sync().lines():
            self.message_user(request, line, messages.INFO)


@admin.register(ScheduleRun)
class ScheduleRunAdmin(admin.ModelAdmin):
    list_display = ["id", "schedule", "occurrence_at", "status", "summary", "fired_at",
                    "finished_at"]
    list_filter = ["status"]
    date_hierarchy = "occurrence_at"
    readonly_fields = ["summary", *(f.name for f in ScheduleRun._meta.fields)]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
