"""Writes for workspaces, API keys and contacts."""
from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from core.audit import COMMAND, Actor, audit
from core.models import ApiKey, Contact, Membership, Workspace, all_scopes, new_webhook_secret
from core.workspace_settings import SettingsInvalid, settings_merge

KEY_PREFIX = "rk_"


def _hash_key(secret: str) -> str:
    # Keys carry 256 random bits, so a fast hash is safe (a slow KDF only matters for
    # guessable secrets such as passwords) and keeps authentication cheap per request.
    return hashlib.sha256(secret.encode()).hexdigest()


def workspace_create(*, name: str, timezone_name: str = "UTC", slug: str | None = None,
                     settings_: dict | None = None) -> Workspace:
    """Create a workspace with a unique slug derived from its name."""
    base = slugify(slug or name)[:90] or "workspace"
    candidate = base
    for attempt in range(2, 1000):
        if not Workspace.objects.filter(slug=candidate).exists():
            break
        candidate = f"{base}-{attempt}"
    workspace = Workspace(name=name, slug=candidate, timezone=timezone_name,
                          settings=settings_ or {})
    workspace.full_clean()
    workspace.save()
    return workspace


def workspace_update(*, workspace: Workspace, name: str | None = None,
                     timezone_name: str | None = None,
                     settings_changes: dict | None = None,
                     actor: Actor | None = None) -> Workspace:
    """Change a workspace's name, time zone and settings (merged, see
    core.workspace_settings.settings_merge) in one write; raise SettingsInvalid naming every
    refused field, having written nothing. The audit log gets the changed field names and
    settings paths (never their values: settings hold provider secrets)."""
    with transaction.atomic():
        # Locked, so two changes to different keys at once both land.
        locked = Workspace.objects.select_for_update().get(pk=workspace.pk)
        errors = {}
        if settings_changes is not None:
            try:
                locked.settings = settings_merge(locked.settings, settings_changes)
            except SettingsInvalid as exc:
                errors.update(exc.fields)
        if name is not None:
            locked.name = name
        if timezone_name is not None:
            locked.timezone = timezone_name
        try:
            locked.full_clean(exclude=["settings", "slug", "webhook_secret"])
        except ValidationError as exc:
            errors.update({field: list(messages) for field, messages
                           in exc.message_dict.items()})
        if errors:
            raise SettingsInvalid(errors)
        locked.save(update_fields=["name", "timezone", "settings", "updated_at"])
        fields = [field for field, value in (("name", name), ("timezone", timezone_name),
                                             ("settings", settings_changes)) if value is not None]
        audit(actor=actor or COMMAND, action="workspace.update", workspace=locked,
              target_type="workspace", target_id=locked.pk,
              detail={"fields": fields, "settings": setting_paths(settings_changes or {})})
    return locked


def workspace_rotate_webhook_secret(*, workspace: Workspace) -> str:
    """Give the workspace a new webhook signing secret and return it; the previous one
    keeps signing for WEBHOOK_SECRET_OVERLAP_HOURS (two `v1,` signatures)."""
    workspace.webhook_secret_previous = workspace.webhook_secret
    workspace.webhook_secret = new_webhook_secret()
    workspace.webhook_secret_rotated_at = timezone.now()
    workspace.save(update_fields=["webhook_secret", "webhook_secret_previous",
                                  "webhook_secret_rotated_at", "updated_at"])
    return workspace.webhook_secret


def setting_paths(changes: dict, prefix: str = "", depth: int = 3) -> list[str]:
    """Return the dotted paths a settings change touches ("rate_limits.sms"), values left
    out."""
    paths: list[str] = []
    for key, value in changes.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and depth > 1:
            paths.extend(setting_paths(value, f"{path}.", depth - 1))
        else:
            paths.append(path)
    return paths


class ApiKeyExpired(Exception):
    """The key is genuine but its expiry time has passed."""

    def __init__(self, key: ApiKey) -> None:
        super().__init__(f"This API key expired at {key.expires_at:%Y-%m-%dT%H:%M:%SZ}.")
        self.key = key


def scopes_clean(scopes: Iterable[str] | None) -> list[str]:
    """Return the scopes in canonical order; raise ValueError naming an unknown or no scope."""
    if scopes is None:
        return all_scopes()
    wanted = {scope.strip() for scope in scopes if scope.strip()}
    unknown = sorted(wanted - set(all_scopes()))
    if unknown:
        raise ValueError(f"Unknown scope '{unknown[0]}' (choose from {', '.join(all_scopes())}).")
    if not wanted:
        raise ValueError(f"Give at least one scope ({', '.join(all_scopes())}).")
    return [scope for scope in all_scopes() if scope in wanted]


def api_key_create(*, workspace: Workspace, name: str = "default",
                   scopes: Iterable[str] | None = None,
                   expires_at: datetime | None = None) -> tuple[ApiKey, str]:
    """Create a key and return it with its secret, which is never stored or shown again.

    Without scopes the key may do everything (read, send, manage), as keys always could."""
    chosen = scopes_clean(scopes)
    if expires_at is not None and expires_at <= timezone.now():
        raise ValueError("The expiry time must be in the future.")
    for _ in range(5):
        prefix = secrets.token_hex(4)
        secret = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
        try:
            with transaction.atomic():
                key = ApiKey.objects.create(workspace=workspace, name=name, prefix=prefix,
                                            hashed_key=_hash_key(secret), scopes=chosen,
                                            expires_at=expires_at)
            return key, secret
        except IntegrityError:
            continue  # prefix collision: 1 in 4 billion, try another
    raise RuntimeError("could not allocate a unique API key prefix")


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    """Revoke a key; requests with it answer 401 from now on."""
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    return api_key


def api_key_authenticate(*, secret: str) -> ApiKey | None:
    """Return the active key matching the secret, refreshing its last-used time.

    Raise ApiKeyExpired for a genuine key past its expiry, so the answer can say so."""
    parts = secret.split("_")
    if len(parts) < 3 or not secret.startswith(KEY_PREFIX):
        return None
    key = (ApiKey.objects.select_related("workspace")
           .filter(prefix=parts[1], revoked_at__isnull=True, workspace__is_active=True).first())
    if key is None or not hmac.compare_digest(key.hashed_key, _hash_key(secret)):
        return None
    now = timezone.now()
    if key.expires_at is not None and key.expires_at <= now:
        raise ApiKeyExpired(key)
    stale = now - timedelta(seconds=settings.API_KEY_TOUCH_SECONDS)
    if key.last_used_at is None or key.last_used_at < stale:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key


class MemberError(ValueError):
    """A membership that cannot be made (unknown role, already a member, bad password)."""


def member_add(*, username: str, workspace: Workspace, role: str,
               password: str | None = None) -> tuple[Membership, str | None]:
    """Give a user (created when new) a role in the workspace; return the membership and
    the password generated for a new user when none was given (shown once, never stored)."""
    if role not in Membership.Role.values:
        raise MemberError(f"Unknown role '{role}' (choose from "
                          f"{', '.join(Membership.Role.values)}).")
    user_model = get_user_model()
    with transaction.atomic():
        user = user_model.objects.select_for_update().filter(username=username).first()
        generated = None
        if user is None:
            generated = None if password else secrets.token_urlsafe(12)
            user = user_model(username=username)
            _password_check(password or generated or "", user)
            user.set_password(password or generated)
            user.save()
        elif password:
            raise MemberError(f"User '{username}' exists already; its password is not "
                              "changed here (it changes its own on the password page).")
        existing = Membership.objects.filter(user=user, workspace=workspace).first()
        if existing is not None:
            raise MemberError(f"'{username}' is already {existing.role} of {workspace.slug}.")
        membership = Membership.objects.create(user=user, workspace=workspace, role=role)
    return membership, generated


def _password_check(password: str, user: Any) -> None:
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise MemberError(" ".join(exc.messages)) from exc


def contact_upsert(*, workspace: Workspace, external_id: str, data: dict) -> tuple[Contact, bool]:
    """Create or update the contact with this external id; return it and whether it was new."""
    with transaction.atomic():
        contact = (Contact.objects.select_for_update()
                   .filter(workspace=workspace, external_id=external_id).first())
        created = contact is None
        if contact is None:
            contact = Contact(workspace=workspace, external_id=external_id)
        for field, value in data.items():
            setattr(contact, field, value)
        try:
            with transaction.atomic():
                contact.save()
        except IntegrityError:
            # A concurrent upsert created it first: update that row instead.
            contact = Contact.objects.select_for_update().get(
                workspace=workspace, external_id=external_id)
            for field, value in data.items():
                setattr(contact, field, value)
            contact.save()
            created = False
    return contact, created
