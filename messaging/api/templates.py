"""Templates REST API: named content in several languages, its versions and a preview for
a contact (README.md, "Templates")."""
from __future__ import annotations

from typing import Any

import django_filters
from django.core.validators import validate_slug
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import ApiError, StrictCharField, WorkspaceScoped
from core.audit import actor_of
from core.models import Contact, Workspace
from messaging import templates
from messaging.api.idempotency import idempotent
from messaging.models import Channel, Template, TemplateVersion
from messaging.selectors import template_versions_list, templates_list

VARIANTS_HELP = ("Locale (a language tag: \"en\", \"de-AT\") -> the channel's content "
                 "fields as POST /api/v1/messages takes them (sms {body}, email {subject, "
                 "html and/or text}, ...); every {{ variable }} must be one a message can "
                 "render.")
DEFAULT_LOCALE_HELP = "The variant a contact gets whose locale (or its language) has none."
TOPIC_HELP = ("A topic's key: the messages made from the template belong to it unless the "
              "send names another; null for none.")


class TemplateInputSerializer(serializers.Serializer):
    name = StrictCharField(max_length=200)
    channel = serializers.ChoiceField(choices=Channel.choices)
    variants = serializers.DictField(child=serializers.DictField(), help_text=VARIANTS_HELP)
    default_locale = StrictCharField(max_length=35, help_text=DEFAULT_LOCALE_HELP)
    topic = StrictCharField(max_length=64, required=False, allow_null=True,
                            validators=[validate_slug], help_text=TOPIC_HELP)


class TemplateUpdateSerializer(TemplateInputSerializer):
    name = StrictCharField(max_length=200, required=False)
    channel = serializers.ChoiceField(choices=Channel.choices, required=False,
                                      help_text="Cannot change (400 if it differs).")
    variants = serializers.DictField(child=serializers.DictField(), required=False,
                                     help_text=VARIANTS_HELP)
    default_locale = StrictCharField(max_length=35, required=False,
                                     help_text=DEFAULT_LOCALE_HELP)


class TemplateVersionSerializer(serializers.ModelSerializer):
    """One version of a template, as it was written (never changed)."""

    version = serializers.IntegerField(source="number", read_only=True)
    variants = serializers.DictField(child=serializers.DictField(), read_only=True,
                                     help_text=VARIANTS_HELP)
    topic: serializers.SlugRelatedField = serializers.SlugRelatedField(
        slug_field="key", read_only=True, allow_null=True, help_text=TOPIC_HELP)

    class Meta:
        model = TemplateVersion
        fields = ["version", "variants", "default_locale", "topic", "created_at"]
        read_only_fields = fields


class TemplateSerializer(serializers.ModelSerializer):
    """A template with its current version's content."""

    version = serializers.IntegerField(source="current.number", read_only=True,
                                       help_text="The current version (1 when created).")
    variants = serializers.DictField(source="current.variants", child=serializers.DictField(),
                                     read_only=True, help_text=VARIANTS_HELP)
    default_locale = serializers.CharField(source="current.default_locale", read_only=True,
                                           help_text=DEFAULT_LOCALE_HELP)
    topic: serializers.SlugRelatedField = serializers.SlugRelatedField(
        source="current.topic", slug_field="key", read_only=True, allow_null=True,
        help_text=TOPIC_HELP)

    class Meta:
        model = Template
        fields = ["id", "name", "channel", "version", "variants", "default_locale", "topic",
                  "created_at", "updated_at"]
        read_only_fields = fields


class TemplatePreviewInputSerializer(serializers.Serializer):
    contact_id = serializers.UUIDField()
    version = serializers.IntegerField(required=False, min_value=1,
                                       help_text="A past version's number; the current one "
                                                 "when left out.")


class TemplatePreviewSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    locale = serializers.CharField(help_text="The variant chosen for the contact's locale.")
    content = serializers.DictField(help_text="The variant rendered for the contact, as a "
                                              "message's `rendered`.")


class TemplateFilter(django_filters.FilterSet):
    name = django_filters.CharFilter()
    channel = django_filters.ChoiceFilter(choices=Channel.choices)

    class Meta:
        model = Template
        fields = ["name", "channel"]


def _invalid(exc: templates.TemplateInvalid) -> ApiError:
    return ApiError(400, "Invalid input.", fields=exc.fields)


class TemplateViewSet(WorkspaceScoped, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                      viewsets.GenericViewSet):
    """The key's workspace's message templates."""

    serializer_class = TemplateSerializer
    filterset_class = TemplateFilter
    ordering_fields = ["name", "created_at", "updated_at"]
    search_fields = ["name"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    model = Template

    def scoped_queryset(self, *, workspace: Workspace) -> QuerySet[Template]:
        return templates_list(workspace=workspace)

    @extend_schema(request=TemplateInputSerializer, responses={201: TemplateSerializer})
    def create(self, request: Request) -> Response:
        """Create a template and its version 1 (400 naming the field: a bad locale, content
        or variable, a default_locale without a variant, an unknown topic, a taken name).
        Honours Idempotency-Key."""
        def handler() -> Response:
            serializer = TemplateInputSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            try:
                template = templates.template_create(workspace=self.workspace,
                                                     actor=actor_of(request, "api"),
                                                     **serializer.validated_data)
            except templates.TemplateInvalid as exc:
                raise _invalid(exc) from exc
            return Response(TemplateSerializer(template).data, status=201)
        return idempotent(request, handler)

    @extend_schema(request=TemplateUpdateSerializer, responses={200: TemplateSerializer})
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        """Change a template: new content (variants, default_locale, topic) makes its next
        version, which later sends take; messages already made keep theirs."""
        template = self.get_object()
        serializer = TemplateUpdateSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        try:
            template = templates.template_update(template=template,
                                                 changes=dict(serializer.validated_data),
                                                 actor=actor_of(request, "api"))
        except templates.TemplateInvalid as exc:
            raise _invalid(exc) from exc
        return Response(TemplateSerializer(templates_list(workspace=self.workspace)
                                           .get(pk=template.pk)).data)

    @extend_schema(request=None, responses={204: None})
    def destroy(self, request: Request, pk: str | None = None) -> Response:
        """Delete a template: gone from the API and from sends; what was made from it keeps
        its version."""
        templates.template_delete(template=self.get_object(), actor=actor_of(request, "api"))
        return Response(status=204)

    @extend_schema(responses={200: TemplateVersionSerializer(many=True)})
    @action(detail=True, methods=["get"], filter_backends=[])
    def versions(self, request: Request, pk: str | None = None) -> Response:
        """List the template's versions, newest first."""
        page = self.paginate_queryset(template_versions_list(template=self.get_object()))
        return self.get_paginated_response(TemplateVersionSerializer(page, many=True).data)

    @extend_schema(request=TemplatePreviewInputSerializer,
                   responses={200: TemplatePreviewSerializer})
    @action(detail=True, methods=["post"])
    def preview(self, request: Request, pk: str | None = None) -> Response:
        """Render the template for a contact of the workspace in the contact's locale
        (falling back to its language, then the default), sending nothing."""
        template = self.get_object()
        serializer = TemplatePreviewInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data: dict[str, Any] = serializer.validated_data
        contact = Contact.objects.filter(workspace=self.workspace,
                                         pk=data["contact_id"]).first()
        if contact is None:
            raise ApiError(400, "Invalid input.", fields={"contact_id": ["No such contact."]})
        try:
            version, locale, content = templates.template_preview(
                template=template, contact=contact, number=data.get("version"))
        except TemplateVersion.DoesNotExist as exc:
            raise ApiError(400, "Invalid input.", fields={
                "version": ["The template has no such version."]}) from exc
        return Response(TemplatePreviewSerializer(
            {"version": version.number, "locale": locale, "content": content}).data)
