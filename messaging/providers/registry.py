"""Which providers send a channel's messages for a workspace, in order, and with which
settings.

Adding a provider is one module with the class plus one line in its channel's entry of
messaging.channels. A provider class may define `defaults() -> dict` (its environment
settings); a workspace's `settings["providers"][key]` picks the provider by "name" and
overrides the rest, or is a list of such entries: the providers in failover order. Without
a list, the environment's (`SMS_PROVIDERS=twilio,http`) are the order, the workspace's
overrides applying to the first.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.utils import timezone
from django.utils.module_loading import import_string

from messaging.channels import CHANNELS
from messaging.providers import webhook
from messaging.providers.base import Provider

if TYPE_CHECKING:
    from core.models import Workspace

# Channel -> provider name -> dotted path of its class (the channel table's, at import).
PROVIDERS: dict[str, dict[str, str]] = {name: spec.providers for name, spec in CHANNELS.items()}


def default_name(channel: str) -> str:
    """Return the environment's provider name for a channel (its only one if it has no
    setting naming it)."""
    spec = CHANNELS[channel]
    if spec.provider_setting is None:
        return next(iter(spec.providers))
    return getattr(settings, spec.provider_setting)


def default_names(channel: str) -> list[str]:
    """Return the environment's providers of a channel in failover order (its <X>_PROVIDERS
    list, else its one <X>_PROVIDER)."""
    spec = CHANNELS[channel]
    if spec.provider_setting is None:
        return [next(iter(spec.providers))]
    names = getattr(settings, f"{spec.provider_setting}S", None) or []
    return list(dict.fromkeys(names)) or [default_name(channel)]


def _workspace_entries(workspace: Workspace, channel: str) -> Any:
    providers = (workspace.settings or {}).get("providers")
    key = CHANNELS[channel].provider_settings_key
    return providers.get(key) if isinstance(providers, dict) else None


def workspace_override(workspace: Workspace, channel: str,
                       name: str | None = None) -> dict[str, Any]:
    """Return a copy of the workspace's settings for a channel's provider ({} if none): of
    the list's entry with this name (its first entry without a name), or of its one entry."""
    entries = _workspace_entries(workspace, channel)
    if isinstance(entries, list):
        named = [e for e in entries if isinstance(e, dict)
                 and (name is None or e.get("name") == name)]
        entries = named[0] if named else None
    return dict(entries) if isinstance(entries, dict) else {}


@dataclass(frozen=True)
class Choice:
    """One provider of a channel's failover order, ready to call."""

    provider: Provider
    config: dict[str, Any]
    name: str
    position: int  # 0 for the first provider
    # The circuit breaker this call counts against: the environment's provider is one
    # breaker for every workspace; a workspace's own settings (its account, its endpoint)
    # are a breaker of their own, so one workspace's bad account opens nobody else's.
    breaker_id: str  # "" : none

    def idempotency_key(self, message_id: str) -> str:
        """Return the key of this provider's request for a message: the message id for the
        first provider (as with one provider), `<id>:<name>` for each next one. The same
        provider gets the same key on every attempt, so it can deduplicate a repeat."""
        return message_id if self.position == 0 else f"{message_id}:{self.name}"


def providers_for(workspace: Workspace, channel: str) -> list[Choice]:
    """Return the workspace's providers for a channel in failover order, each with its
    config (defaults + overrides). Raises ValueError for an unknown channel or name."""
    spec = CHANNELS.get(channel)
    if spec is None:
        raise ValueError(f"unknown channel {channel!r}")
    entries = _workspace_entries(workspace, channel)
    defaults: list[dict[str, Any]] = [{"name": name} for name in default_names(channel)]
    if spec.provider_setting is None:
        # Only one way to deliver: the workspace's settings configure it, whatever they name.
        entries = [{**workspace_override(workspace, channel), **defaults[0]}]
    elif isinstance(entries, list) and entries:
        pass
    elif isinstance(entries, dict) and entries.get("name"):
        entries = [entries]
    elif isinstance(entries, dict) and entries:  # overrides of the environment's first
        entries = [{**defaults[0], **entries}, *defaults[1:]]
    else:
        entries = defaults
    return [_choice(workspace, spec.name, dict(entry), index)
            for index, entry in enumerate(entries) if isinstance(entry, dict)]


def _choice(workspace: Workspace, channel: str, entry: dict[str, Any], position: int) -> Choice:
    spec = CHANNELS[channel]
    name = entry.pop("name", None) or default_name(channel)
    if spec.provider_setting is None:
        name = default_name(channel)
    path = spec.providers.get(name)
    if path is None:
        raise ValueError(f"unknown {channel} provider {name!r}; "
                         f"choose one of {sorted(spec.providers)}")
    provider = load(path)
    defaults = getattr(provider, "defaults", None)
    config = {**(defaults() if defaults else {}), **entry}
    if spec.workspace_secrets:
        # The signing secrets live on the workspace itself, never in free-form settings.
        config["secrets"] = webhook.signing_secrets(
            workspace.webhook_secret, workspace.webhook_secret_previous,
            workspace.webhook_secret_rotated_at, timezone.now(),
            timedelta(hours=settings.WEBHOOK_SECRET_OVERLAP_HOURS))
    # No breaker for a channel without a choice of provider (webhooks: each call goes to a
    # customer's own endpoint, whose health is nobody else's).
    breaker_id = ""
    if spec.provider_setting is not None:
        breaker_id = f"{spec.provider_settings_key}:{name}"
        if entry:
            breaker_id += f":ws:{workspace.pk}"
    return Choice(provider, config, name, position, breaker_id)


def provider_named(workspace: Workspace, channel: str, name: str
                   ) -> tuple[Provider, dict[str, Any]]:
    """Return the workspace's provider of this name for a channel and its config (the one
    that sent a message, for its callbacks); the first provider when none has the name."""
    choices = providers_for(workspace, channel)
    choice = next((c for c in choices if c.name == name), choices[0])
    return choice.provider, choice.config


@functools.cache
def load(path: str) -> Provider:
    """Return the one instance of the provider class at this dotted path."""
    return import_string(path)()


def provider_for(workspace: Workspace, channel: str) -> tuple[Provider, dict[str, Any]]:
    """Return the workspace's first provider for a channel and its config (defaults +
    overrides). Raises ValueError for an unknown channel or provider name."""
    choice = providers_for(workspace, channel)[0]
    return choice.provider, choice.config
