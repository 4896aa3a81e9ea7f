"""Filter forms of the dashboard pages (all GET, so a filtered page is a shareable link)."""
from __future__ import annotations

from typing import Any, cast

from django import forms

from core.models import DeadLetter, Workspace
from flows.models import Execution, Flow
from messaging.models import Channel, MessageStatus
from monitoring.dashboard.selectors.windows import DEFAULT_RANGE, RANGES, REFRESH_CHOICES

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
    q = forms.CharField(required=False, max_length=200, label="Search",
                        widget=forms.TextInput(attrs={"placeholder": "to, error, contact"}))


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
