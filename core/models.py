"""The records every app writes: tenants (workspaces), their API keys and contacts, and the
dead letters of whatever failed for good. The bottom layer: it imports no other app."""
from __future__ import annotations

import base64
import re
import secrets
import uuid
import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q


def validate_timezone(value: str) -> None:
    """Refuse names that are not IANA time zones."""
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"'{value}' is not a valid IANA time zone.")


# A BCP 47 language tag as templates use them: a language, then an optional script and
# region ("de", "de-AT", "zh-Hant-TW", "es-419"); compared without regard to case.
LOCALE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z]{4})?(-([A-Za-z]{2}|[0-9]{3}))?")


def validate_locale(value: str) -> None:
    """Refuse text that is no language tag (README.md, "Templates")."""
    if not isinstance(value, str) or not LOCALE.fullmatch(value):
        raise ValidationError(f"'{value}' is not a language tag (e.g. de or de-AT).")


def new_webhook_secret() -> str:
    """Return a fresh Standard Webhooks secret: whsec_ + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class Workspace(models.Model):
    """A tenant: every row in the service belongs to exactly one workspace."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    # Per-workspace overrides: {"rate_limits": {"sms": {"per_second": 5}}, "providers": {...}}
    settings = models.JSONField(default=dict, blank=True)
    is_active = models.BooleanField(default=True)
    # Standard Webhooks signing secret ("whsec_<base64>"); during a rotation the previous
    # one signs too, so receivers can switch over without dropping deliveries.
    webhook_secret = models.CharField(max_length=100, default=new_webhook_secret)
    webhook_secret_previous = models.CharField(max_length=100, blank=True, default="")
    webhook_secret_rotated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        db_table = "messaging_workspace"  # the rows stayed put when the model moved to core

    def __str__(self) -> str:
        return f"{self.name} ({self.slug})"


class Scope(models.TextChoices):
    """What an API key may do (see core.auth.HasScope for which request needs which)."""

    READ = "read"  # GET and HEAD
    SEND = "send"  # create messages, batches, executions, events, inbound
    MANAGE = "manage"  # every other write: configuration, contacts, replays, pauses


def all_scopes() -> list[str]:
    """Return every scope: a key made without a choice (and every older key) has them all."""
    return [scope.value for scope in Scope]


class ApiKey(models.Model):
    """A workspace API key; only its SHA-256 is stored, the secret is shown once."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, default="default")
    prefix = models.CharField(max_length=16, unique=True)
    hashed_key = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    scopes = models.JSONField(default=all_scopes, blank=True,
                              help_text="Any of read, send, manage.")
    # After this the key answers 401 "expired"; empty: it never expires.
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"
        db_table = "messaging_apikey"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class Contact(models.Model):
    """A person a workspace sends to; phone is stored in E.164."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="contacts")
    external_id = models.CharField(max_length=200, null=True, blank=True)
    first_name = models.CharField(max_length=100, blank=True, default="")
    last_name = models.CharField(max_length=100, blank=True, default="")
    phone = models.CharField(max_length=20, blank=True, default="", db_index=True)
    email = models.EmailField(blank=True, default="", db_index=True)
    timezone = models.CharField(max_length=64, blank=True, default="",
                                validators=[validate_timezone])
    # The language a template is rendered in ("de-AT", falling back to "de", then the
    # template's default); blank: the default.
    locale = models.CharField(max_length=35, blank=True, default="",
                              validators=[validate_locale])
    attributes = models.JSONField(default=dict, blank=True)
    sms_subscribed = models.BooleanField(default=True)
    email_subscribed = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        db_table = "messaging_contact"
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "external_id"],
                condition=Q(external_id__isnull=False),
                name="contact_external_id_unique_per_workspace",
            )
        ]
        indexes = [models.Index(fields=["workspace", "-created_at"])]

    def __str__(self) -> str:
        return self.external_id or self.phone or self.email or str(self.id)


class DeadLetter(models.Model):
    """What failed for good (a message or a flow step), with enough to replay it."""

    class Kind(models.TextChoices):
        MESSAGE = "message"
        STEP = "step"

    class Status(models.TextChoices):
        OPEN = "open"
        REPLAYED = "replayed"
        DISCARDED = "discarded"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE,
                                  related_name="dead_letters")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    source_id = models.CharField(max_length=64, db_index=True)  # message or step id
    channel = models.CharField(max_length=10, blank=True, default="")
    flow_id = models.CharField(max_length=64, blank=True, default="")
    error = models.TextField(blank=True, default="")
    error_code = models.CharField(max_length=50, blank=True, default="")
    attempts = models.PositiveIntegerField(default=0)
    payload = models.JSONField(default=dict)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    replay_count = models.PositiveIntegerField(default=0)
    replay_result = models.TextField(blank=True, default="")
    replayed_at = models.DateTimeField(null=True, blank=True)
    # Who replayed or discarded it: "api:<key prefix>", "admin:<username>", "command".
    replayed_by = models.CharField(max_length=100, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        db_table = "monitoring_deadletter"
        indexes = [models.Index(fields=["workspace", "status", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.source_id} ({self.status})"


class AuditEntry(models.Model):
    """Who did what to which object, when and from where (core.audit writes it, in the same
    transaction as the action). Entries are only ever added."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, null=True, blank=True,
                                  related_name="audit_entries")  # null: a global action
    # "api:<key prefix>", "user:<username>" or "command".
    actor = models.CharField(max_length=150)
    # Where the action came from: api, dashboard, admin or command.
    source = models.CharField(max_length=20, blank=True, default="")
    ip = models.GenericIPAddressField(null=True, blank=True)
    # queue.pause, queue.resume, execution.pause, execution.resume, execution.cancel,
    # message.cancel, dead_letter.replay, dead_letter.discard, workspace.update,
    # webhook_secret.rotate (README.md, "Audit log").
    action = models.CharField(max_length=50)
    target_type = models.CharField(max_length=50, blank=True, default="")
    target_id = models.CharField(max_length=100, blank=True, default="")
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "audit entries"
        indexes = [models.Index(fields=["workspace", "-created_at"]),
                   models.Index(fields=["workspace", "action", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.actor} {self.action} {self.target_type} {self.target_id}".strip()


class Membership(models.Model):
    """A dashboard user's role in one workspace (what a role may do: core.roles)."""

    class Role(models.TextChoices):
        OWNER = "owner"
        ADMIN = "admin"
        VIEWER = "viewer"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="memberships")
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE,
                                  related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["workspace__name", "user__username"]
        constraints = [models.UniqueConstraint(fields=["user", "workspace"],
                                               name="membership_unique_per_user_workspace")]

    def __str__(self) -> str:
        return f"{self.user} · {self.workspace.slug} ({self.role})"
