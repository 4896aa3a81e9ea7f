"""Which provider sends a channel's messages for a workspace, and with which settings.

Adding a provider is one module with the class plus one line in its channel's entry of
messaging.channels. A provider class may define `defaults() -> dict` (its environment
settings); a workspace's `settings["providers"][key]` picks the provider by "name" and
overrides the rest.
"""
from __future__ import annotations

import functools
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


def workspace_override(workspace: Workspace, channel: str) -> dict[str, Any]:
    """Return a copy of the workspace's provider settings for a channel ({} if none)."""
    providers = (workspace.settings or {}).get("providers")
    key = CHANNELS[channel].provider_settings_key
    override = providers.get(key) if isinstance(providers, dict) else None
    return dict(override) if isinstance(override, dict) else {}


@functools.cache
def load(path: str) -> Provider:
    """Return the one instance of the provider class at this dotted path."""
    return import_string(path)()


def provider_for(workspace: Workspace, channel: str) -> tuple[Provider, dict[str, Any]]:
    """Return the workspace's provider for a channel and its config (defaults + overrides).

    Raises ValueError for an unknown channel or provider name.
    """
    # The table itself, not PROVIDERS: a channel registered after import sends too.
    spec = CHANNELS.get(channel)
    if spec is None:
        raise ValueError(f"unknown channel {channel!r}")
    override = workspace_override(workspace, channel)
    name = override.pop("name", None)
    if not name or spec.provider_setting is None:  # None: only one way to deliver
        name = default_name(channel)
    path = spec.providers.get(name)
    if path is None:
        raise ValueError(f"unknown {channel} provider {name!r}; "
                         f"choose one of {sorted(spec.providers)}")
    provider = load(path)
    defaults = getattr(provider, "defaults", None)
    config = {**(defaults() if defaults else {}), **override}
    if spec.workspace_secrets:
        # The signing secrets live on the workspace itself, never in free-form settings.
        config["secrets"] = webhook.signing_secrets(
            workspace.webhook_secret, workspace.webhook_secret_previous,
            workspace.webhook_secret_rotated_at, timezone.now(),
            timedelta(hours=settings.WEBHOOK_SECRET_OVERLAP_HOURS))
    return provider, config
