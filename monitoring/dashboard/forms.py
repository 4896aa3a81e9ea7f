"""Forms of the dashboard: GET filters (so a filtered page is a shareable link) and the alert
rule forms."""
from __future__ import annotations

import copy
from typing import Any, cast

from django import forms
from django.core.exceptions import ValidationError

from core.models import DeadLetter, Workspace
from flows.models import Execution, Flow, FlowSchedule
from flows.schedule_api import ScheduleInputSerializer
from messaging.models import Channel, MessageStatus
from messaging.selectors import RecipientField
from monitoring import alerts
from monitoring.dashboard.selectors.windows import DEFAULT_RANGE, RANGES, REFRESH_CHOICES
from monitoring.models import AlertRule

ANY = [("", "any")]


class FilterForm(forms.Form):
    """A GET form whose invalid fields are ignored instead of failing the page."""

    def __init__(self, data: Any = None, *args: Any, **kwargs: Any) -> None:
        if data is not None:
            # A field missing from the query string shows (and means) its default, instead
            # of a select falling back to its first option.
            data = data.copy()
            for name, field in self.base_fields.items():
                if field.initial is not None and name not in data:
                    data[name] = field.initial
        super().__init__(data, *args, **kwargs)

    def values(self) -> dict[str, Any]:
        """Return the valid filter values; a bad value behaves like no filter."""
        self.is_valid()
        cleaned = getattr(self, "cleaned_data", {})
        return {name: cleaned.get(name) or self.fields[name].initial or ""
                for name in self.fields}


class OverviewForm(FilterForm):
    range = forms.ChoiceField(choices=[(key, label) for key, (label, _) in RANGES.items()],
                              required=False, initial=DEFAULT_RANGE)
    refresh = forms.ChoiceField(choices=[(key, label) for key, (label, _)
                                         in REFRESH_CHOICES.items()],
                                required=False, initial="off", label="Auto-refresh")


class ExecutionFilterForm(FilterForm):
    flow = forms.ModelChoiceField(queryset=Flow.objects.none(), required=False,
                                  empty_label="any")
    status = forms.ChoiceField(choices=ANY + list(Execution.Status.choices), required=False)
    contact = forms.CharField(required=False, max_length=200,
                              widget=forms.TextInput(attrs={"placeholder": "id, phone, email"}))

    def __init__(self, *args: Any, workspace: Workspace, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # fields["flow"] is the ModelChoiceField declared above; the stubs type it as Field.
        flow_field = cast(forms.ModelChoiceField, self.fields["flow"])
        flow_field.queryset = Flow.objects.filter(workspace=workspace).order_by("name")


class MessageFilterForm(FilterForm):
    status = forms.ChoiceField(choices=ANY + list(MessageStatus.choices), required=False)
    channel = forms.ChoiceField(choices=ANY + list(Channel.choices), required=False)
    recipient = RecipientField(required=False, max_length=320, label="Recipient",
                               widget=forms.TextInput(attrs={"placeholder": "phone or email"}))
    q = forms.CharField(required=False, max_length=200, label="Search",
                        widget=forms.TextInput(attrs={
                            "placeholder": "to, error, contact, provider id"}))

    def recipient_invalid(self) -> bool:
        """Tell whether a recipient was asked for that is neither phone nor email (the
        page then lists nothing rather than everything)."""
        self.is_valid()
        return "recipient" in self.errors


class RecipientForm(forms.Form):
    """The recipient page's address and range (a bad value is shown, not ignored)."""

    address = RecipientField(required=True, max_length=320, label="Address",
                             widget=forms.TextInput(attrs={"placeholder": "phone or email"}))
    since = forms.DateTimeField(required=False, label="Since",
                                widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    until = forms.DateTimeField(required=False, label="Until",
                                widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        since, until = cleaned.get("since"), cleaned.get("until")
        if since and until and since >= until:
            self.add_error("since", "Must be before until.")
        return cleaned


class DeadLetterFilterForm(FilterForm):
    # Open ones by default: that is the work queue; "all" is an explicit choice.
    status = forms.ChoiceField(choices=[*DeadLetter.Status.choices, ("all", "all")],
                               required=False, initial=DeadLetter.Status.OPEN)
    kind = forms.ChoiceField(choices=ANY + list(DeadLetter.Kind.choices), required=False)
    channel = forms.ChoiceField(choices=ANY + list(Channel.choices), required=False)
    error = forms.CharField(required=False, max_length=200, label="Error contains")
    flow = forms.CharField(required=False, max_length=64, label="Flow id")


class AuditFilterForm(FilterForm):
    action = forms.ChoiceField(choices=ANY, required=False)

    def __init__(self, *args: Any, actions: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        action_field = cast(forms.ChoiceField, self.fields["action"])
        action_field.choices = ANY + [(name, name) for name in actions]


class RecipientsField(forms.CharField):
    """Email addresses or URLs, one per line (or comma-separated), stored as a list."""

    widget = forms.Textarea(attrs={"rows": 3})

    def prepare_value(self, value: Any) -> Any:
        return "\n".join(value) if isinstance(value, list) else value

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        text = super().to_python(value) or ""
        return [part.strip() for line in text.splitlines() for part in line.split(",")
                if part.strip()]


class AlertRuleForm(forms.ModelForm):
    """Create or edit an alert rule, checked by the same rules as the API
    (monitoring.alerts.alert_rule_validate)."""

    message_channel = forms.ChoiceField(choices=[("", "all"), *Channel.choices],
                                        required=False)
    recipients = RecipientsField(help_text="Email addresses or webhook URLs, one per line.")

    class Meta:
        model = AlertRule
        fields = ["name", "type", "flow", "threshold", "window_seconds", "message_channel",
                  "schedule_id", "min_samples", "channel", "recipients", "cooldown_seconds",
                  "enabled"]

    def __init__(self, *args: Any, workspace: Workspace, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.instance.workspace = workspace
        flow_field = cast(forms.ModelChoiceField, self.fields["flow"])
        flow_field.queryset = Flow.objects.filter(workspace=workspace).order_by("name")
        flow_field.empty_label = "any"

    def clean(self) -> dict[str, Any]:
        """Check the rule as it would be saved; each problem goes under its field."""
        cleaned = super().clean() or {}
        rule = copy.copy(self.instance)
        for name, value in cleaned.items():
            setattr(rule, name, value)
        try:
            alerts.alert_rule_validate(rule=rule)
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                self.add_error(field if field in self.fields else None, messages)
        return cleaned


MUTE_CHOICES = [("1", "1 hour"), ("8", "8 hours"), ("24", "1 day"), ("168", "1 week")]


class MuteForm(forms.Form):
    hours = forms.TypedChoiceField(choices=[("0", "unmute"), *MUTE_CHOICES], coerce=int)


class ScheduleForm(forms.Form):
    """Create or edit a flow schedule, checked by the same rules as the API
    (flows.schedule_api.ScheduleInputSerializer): cron, time zone, audience, flow."""

    flow = forms.ModelChoiceField(queryset=Flow.objects.none())
    cron = forms.CharField(max_length=120, help_text='Five fields, e.g. "0 9 * * 1-5".')
    timezone = forms.CharField(max_length=64, help_text="e.g. Europe/Berlin")
    audience = forms.JSONField(help_text='{"contact_id": id}, {"contact_ids": [id, ...]} or '
                                         '{"filter": rules}', widget=forms.Textarea(
                                             attrs={"rows": 3}))
    # "data" in the API; a form's own `data` is what was posted.
    trigger_data = forms.JSONField(
        required=False, initial=dict, label="Data", widget=forms.Textarea(attrs={"rows": 2}),
        help_text="What each run's executions get as trigger data.")
    catch_up = forms.ChoiceField(choices=FlowSchedule.CatchUp.choices,
                                 initial=FlowSchedule.CatchUp.SKIP)
    enabled = forms.BooleanField(required=False, initial=True)

    def __init__(self, *args: Any, workspace: Workspace, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.workspace = workspace
        flow_field = cast(forms.ModelChoiceField, self.fields["flow"])
        flow_field.queryset = Flow.objects.filter(workspace=workspace).order_by("name")
        self.fields["timezone"].initial = workspace.timezone

    def clean(self) -> dict[str, Any]:
        """Check the schedule as the API would; each problem goes under its field."""
        cleaned = super().clean() or {}
        if self.errors:
            return cleaned
        body = {**{k: v for k, v in cleaned.items() if k != "trigger_data"},
                "flow": str(cleaned["flow"].pk), "data": cleaned.get("trigger_data") or {}}
        serializer = ScheduleInputSerializer(data=body, context={"workspace": self.workspace})
        if not serializer.is_valid():
            for name, messages in serializer.errors.items():
                for message in messages if isinstance(messages, list) else [messages]:
                    field = "trigger_data" if name == "data" else name
                    self.add_error(field if field in self.fields else None, str(message))
            return cleaned
        return dict(serializer.validated_data)
