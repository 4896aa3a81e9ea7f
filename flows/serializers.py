"""How the API shows executions and schedule runs (also the `data` of their events)."""
from __future__ import annotations

from rest_framework import serializers

from flows.models import Execution, ScheduleRun


class ExecutionSerializer(serializers.ModelSerializer):
    flow_id = serializers.UUIDField(read_only=True)
    contact_id = serializers.UUIDField(read_only=True)
    version = serializers.IntegerField(source="version.number", read_only=True)
    duration_seconds = serializers.FloatField(read_only=True, allow_null=True)  # null: running
    exit_reason = serializers.CharField(
        read_only=True, help_text='"goal" or "event:<name>" when exited, else empty')
    converted_at = serializers.DateTimeField(
        read_only=True, allow_null=True, help_text="when the flow's goal arrived for it")
    converted_node = serializers.CharField(
        read_only=True, help_text="the node it had reached when the goal arrived")
    time_to_convert_seconds = serializers.FloatField(read_only=True, allow_null=True)
    parent_id = serializers.UUIDField(
        read_only=True, allow_null=True,
        help_text="a parallel branch's: the execution that forked it (null for one a contact "
                  "entered)")

    class Meta:
        model = Execution
        fields = ["id", "flow_id", "version", "contact_id", "status", "source", "data",
                  "current_node", "wake_at", "waiting_event", "paused_at", "paused_by",
                  "error", "exit_reason", "converted_at", "converted_node",
                  "time_to_convert_seconds", "parent_id", "started_at", "completed_at",
                  "duration_seconds"]


class ScheduleRunSerializer(serializers.ModelSerializer):
    bulk_start_id = serializers.UUIDField(read_only=True, allow_null=True)
    summary = serializers.CharField(read_only=True,
                                    help_text='e.g. "1 of 3 started, 2 skipped (already in '
                                              'the flow)"')

    class Meta:
        model = ScheduleRun
        fields = ["id", "occurrence_at", "status", "summary", "total", "started", "skipped",
                  "refused", "missing", "error", "bulk_start_id", "fired_at", "finished_at"]
        read_only_fields = fields
