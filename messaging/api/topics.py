"""Subscription topics REST API, and a contact's preferences (README.md, "Subscription
topics")."""
from __future__ import annotations

from typing import Any

import django_filters
from django.core.validators import validate_slug
from django.db.models import QuerySet
from rest_framework import serializers, viewsets

from core.api import ApiError, StrictBooleanField, StrictCharField, WorkspaceScoped
from core.models import Contact, Workspace
from messaging.models import Topic
from messaging.recipients.preferences import (
    PreferencesInvalid,
    preference_channels,
    preferences_of,
    preferences_set,
)
from messaging.selectors import topics_list


class TopicSerializer(serializers.ModelSerializer):
    key = StrictCharField(max_length=64, validators=[validate_slug], help_text=(
        "What a message names in its `topic` field; unique in the workspace."))
    name = StrictCharField(max_length=200)
    description = StrictCharField(max_length=500, required=False, allow_blank=True)
    default_opt_in = StrictBooleanField(required=False, default=True, help_text=(
        "Whether a contact who never chose receives the topic's messages."))
    critical = StrictBooleanField(required=False, default=False, help_text=(
        "A critical topic cannot be turned off: its messages always pass."))

    class Meta:
        model = Topic
        fields = ["id", "key", "name", "description", "default_opt_in", "critical",
                  "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]

    def validate_key(self, value: str) -> str:
        taken = Topic.objects.filter(workspace=self.context["workspace"], key=value)
        if self.instance is not None:
            taken = taken.exclude(pk=self.instance.pk)
        if taken.exists():
            raise serializers.ValidationError("A topic with this key already exists.")
        return value


class TopicFilter(django_filters.FilterSet):
    key = django_filters.CharFilter()

    class Meta:
        model = Topic
        fields = ["key", "critical", "default_opt_in"]


class TopicViewSet(WorkspaceScoped, viewsets.ModelViewSet):
    """The key's workspace's subscription topics."""

    serializer_class = TopicSerializer
    filterset_class = TopicFilter
    search_fields = ["key", "name"]
    ordering_fields = ["key", "created_at"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    model = Topic

    def scoped_queryset(self, *, workspace: Workspace) -> QuerySet[Topic]:
        return topics_list(workspace=workspace)

    def perform_create(self, serializer: serializers.BaseSerializer) -> None:
        serializer.save(workspace=self.workspace)


class PreferenceSerializer(serializers.Serializer):
    """A contact's choice for a topic on a channel."""

    topic = StrictCharField(max_length=64, validators=[validate_slug],
                            help_text="The topic's key.")
    channel = serializers.ChoiceField(choices=preference_channels(),
                                      help_text="sms covers mms.")
    opted_in = StrictBooleanField()


class PreferencesSerializer(serializers.Serializer):
    """Every topic of the workspace on every channel (a topic never chosen for shows its
    default; a critical one is always in). A PUT sets the choices it lists and keeps the
    others."""

    preferences = PreferenceSerializer(many=True)


def preferences_answer(contact: Contact) -> dict[str, Any]:
    """Return the contact's preferences as the API answers them."""
    return {"preferences": [
        {"topic": item.topic.key, "channel": item.channel, "opted_in": item.opted_in}
        for item in preferences_of(contact)]}


def preferences_update(contact: Contact, data: Any) -> dict[str, Any]:
    """Validate and apply a PUT's body; raise ApiError 400 naming each field at fault."""
    serializer = PreferencesSerializer(data=data)
    serializer.is_valid(raise_exception=True)
    try:
        preferences_set(contact, serializer.validated_data["preferences"])
    except PreferencesInvalid as exc:
        raise ApiError(400, "Invalid preferences.", fields={"preferences": exc.errors}) from exc
    return preferences_answer(contact)
