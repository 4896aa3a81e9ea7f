"""Templates: named message content in several languages, kept in versions (README.md,
"Templates").

A template's variants map a locale ("en", "de-AT") to the channel's content fields, exactly
as a message takes them, and are checked by the composer's own content check; every text in
them must render with the one renderer (messaging.delivery.templating), so an unknown
variable or a filter is refused when the template is saved, not found when it is sent.
Every change to its content writes a new version, and a message made from the template
points at the version it took (messaging.compose), so editing never rewrites what was sent.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.audit import Actor, audit
from core.models import Contact, Workspace, validate_locale
from messaging.building import message_build
from messaging.channels import CHANNELS
from messaging.compose import MessageInvalid, content_check
from messaging.delivery.templating import render_content, template_problems, variant_pick
from messaging.models import Template, TemplateVersion, Topic

# What a version holds (a change to any of them writes the next version).
VERSIONED = ("variants", "default_locale", "topic")


class TemplateInvalid(Exception):
    """The template cannot be saved; `fields` maps each refused input to its reasons."""

    def __init__(self, fields: dict[str, Any]) -> None:
        super().__init__("; ".join(f"{key}: {value}" for key, value in fields.items()))
        self.fields = fields


def _texts(value: Any) -> Iterator[str]:
    """Yield every string inside a content value (a webhook payload nests them)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _texts(item)


def _variant_errors(channel: str, content: Any) -> dict[str, Any]:
    """Return what is wrong with one variant's content, by field."""
    spec = CHANNELS[channel]
    if not isinstance(content, dict):
        return {"non_field_errors": ["Must be a JSON object of the channel's content fields "
                                     f"({', '.join(spec.field_names)})."]}
    errors: dict[str, Any] = {name: [f"Not a content field of the {channel} channel "
                                     f"({', '.join(spec.field_names)})."]
                              for name in sorted(set(content) - set(spec.field_names))}
    if errors:
        return errors
    try:
        content_check(data={**content, "channel": channel})
    except MessageInvalid as exc:
        errors.update(exc.fields)
    for name, value in content.items():
        problems = [problem for text in _texts(value) for problem in template_problems(text)]
        if problems:
            errors.setdefault(name, []).extend(problems)
    return errors


def _variants_errors(channel: str, variants: Any, default_locale: Any) -> dict[str, Any]:
    """Return what is wrong with the variants and the default locale, by field."""
    if not isinstance(variants, dict) or not variants:
        return {"variants": ["Must be a JSON object of at least one locale -> content."]}
    errors: dict[str, Any] = {}
    seen: dict[str, str] = {}
    for locale, content in variants.items():
        try:
            validate_locale(locale)
        except ValidationError as exc:
            errors[locale] = exc.messages
            continue
        if locale.lower() in seen:
            errors[locale] = [f"The same locale as '{seen[locale.lower()]}'."]
            continue
        seen[locale.lower()] = locale
        problems = _variant_errors(channel, content)
        if problems:
            errors[locale] = problems
    found: dict[str, Any] = {"variants": errors} if errors else {}
    if default_locale not in variants:
        found["default_locale"] = ["Must be one of the variants' locales."]
    return found


def _topic(workspace: Workspace, key: str | None) -> Topic | None:
    """Return the workspace's topic of this key (None for none); raise for an unknown one."""
    if not key:
        return None
    topic = Topic.objects.filter(workspace=workspace, key=key).first()
    if topic is None:
        raise TemplateInvalid({"topic": ["No such topic in this workspace."]})
    return topic


def _check(*, workspace: Workspace, channel: str, variants: Any, default_locale: Any,
           topic: str | None) -> Topic | None:
    """Return the topic named; raise TemplateInvalid naming every bad input."""
    errors = _variants_errors(channel, variants, default_locale)
    try:
        found = _topic(workspace, topic)
    except TemplateInvalid as exc:
        errors.update(exc.fields)
    if errors:
        raise TemplateInvalid(errors)
    return found


def _name_check(workspace: Workspace, name: str, template: Template | None = None) -> None:
    """Refuse a name another template of the workspace has."""
    taken = Template.objects.filter(workspace=workspace, name=name, deleted_at__isnull=True)
    if template is not None:
        taken = taken.exclude(pk=template.pk)
    if taken.exists():
        raise TemplateInvalid({"name": ["A template with this name already exists."]})


@contextmanager
def _name_kept(workspace: Workspace, name: str, template: Template | None = None
               ) -> Iterator[None]:
    """Write the block's template rows in a savepoint; refuse the name as _name_check does
    when another template took it after the check (a concurrent create or rename: the
    unique constraint refuses the second)."""
    try:
        with transaction.atomic():
            yield
    except IntegrityError:
        _name_check(workspace, name, template)
        raise


def _version_add(template: Template, *, variants: dict, default_locale: str,
                 topic: Topic | None) -> TemplateVersion:
    """Write the template's next version and make it the current one (in the caller's
    transaction, the template row locked)."""
    last = template.current.number if template.current else 0
    version = TemplateVersion.objects.create(template=template, number=last + 1,
                                             variants=variants, default_locale=default_locale,
                                             topic=topic)
    template.current = version
    template.updated_at = timezone.now()
    template.save(update_fields=["current", "updated_at"])
    return version


def template_create(*, workspace: Workspace, name: str, channel: str, variants: Any,
                    default_locale: Any, topic: str | None = None,
                    actor: Actor | None = None) -> Template:
    """Record a template and its first version; raise TemplateInvalid, having written
    nothing, for a taken name, bad variants, a default locale without a variant or an
    unknown topic."""
    _name_check(workspace, name)
    found = _check(workspace=workspace, channel=channel, variants=variants,
                   default_locale=default_locale, topic=topic)
    with transaction.atomic():
        with _name_kept(workspace, name):
            template = Template.objects.create(workspace=workspace, name=name,
                                               channel=channel)
        _version_add(template, variants=variants, default_locale=default_locale, topic=found)
        if actor is not None:
            audit(actor=actor, action="template.create", workspace=workspace,
                  target_type="template", target_id=template.pk, detail={"version": 1})
    return template


def template_update(*, template: Template, changes: dict[str, Any],
                    actor: Actor | None = None) -> Template:
    """Apply `changes` (name, variants, default_locale, topic; the channel is fixed):
    a change of content writes the next version, a new name alone does not. Raise
    TemplateInvalid, having written nothing, as template_create does."""
    if "channel" in changes and changes["channel"] != template.channel:
        raise TemplateInvalid({"channel": ["A template's channel cannot change; make a new "
                                           "template."]})
    workspace = template.workspace
    with transaction.atomic():
        # What it holds now, read under the row lock: an update that committed since the
        # caller read the template is kept, not overwritten with what the caller read.
        template = (Template.objects.select_for_update(of=("self",))
                    .select_related("current__topic").get(pk=template.pk))
        current = template.current
        assert current is not None  # written with the template
        now = {"variants": current.variants, "default_locale": current.default_locale,
               "topic": current.topic.key if current.topic else None}
        wanted = {**now, **{key: changes[key] for key in VERSIONED if key in changes}}
        if "name" in changes:
            _name_check(workspace, changes["name"], template)
        found = _check(workspace=workspace, channel=template.channel, **wanted)
        if "name" in changes and changes["name"] != template.name:
            template.name = changes["name"]
            with _name_kept(workspace, changes["name"], template):
                template.save(update_fields=["name", "updated_at"])
        if wanted != now:
            _version_add(template, variants=wanted["variants"],
                         default_locale=wanted["default_locale"], topic=found)
        if actor is not None:
            audit(actor=actor, action="template.update", workspace=template.workspace_id,
                  target_type="template", target_id=template.pk,
                  detail={"version": template.current.number if template.current else 0})
    return template


def template_delete(*, template: Template, actor: Actor | None = None) -> None:
    """Delete a template for the API and for sends, keeping its rows: the messages made
    from it still answer the version they took, and a broadcast still sending keeps taking
    its version. Its name is free again."""
    with transaction.atomic():
        if actor is not None:
            audit(actor=actor, action="template.delete", workspace=template.workspace_id,
                  target_type="template", target_id=template.pk,
                  detail={"name": template.name})
        Template.objects.filter(pk=template.pk).update(deleted_at=timezone.now())


def template_preview(*, template: Template, contact: Contact,
                     number: int | None = None) -> tuple[TemplateVersion, str, dict[str, Any]]:
    """Return the version (the current one, or `number`), the locale and the content the
    contact would get, rendered as a delivery renders it (links included); raise
    TemplateVersion.DoesNotExist for a version the template does not have."""
    version = (template.current if number is None
               else template.versions.select_related("topic").get(number=number))
    assert version is not None  # written with the template
    locale, content = variant_pick(version.variants, version.default_locale, contact.locale)
    to = contact.email if CHANNELS[template.channel].recipient == "address" else contact.phone
    message = message_build(workspace=template.workspace, channel=template.channel, to=to,
                            contact=contact, content=content, source="preview")
    message.topic = version.topic
    return version, locale, render_content(message)
