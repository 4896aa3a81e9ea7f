"""Which provider sends a channel's messages for a workspace, and with which settings.

Adding a provider is one module with the class plus one line in PROVIDERS. A provider class
may define `defaults() -> dict` (its environment settings); a workspace's
`settings["providers"][channel]` picks the provider by "name" and overrides the rest.
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.utils.module_loading import import_string

from messaging.providers.base import Provider

if TYPE_CHECKING:
    from core.models import Workspace

_SMS = {
    "console": "messaging.providers.console.ConsoleProvider",
    "twilio": "messaging.providers.twilio.TwilioProvider",
    "http": "messaging.providers.sms_http.HttpSmsProvider",
}
PROVIDERS: dict[str, dict[str, str]] = {
    "sms": _SMS,
    "mms": _SMS,  # MMS goes through the SMS provider (and its workspace settings)
    "email": {
        "console": "messaging.providers.console.ConsoleProvider",
        "smtp": "messaging.providers.smtp.SmtpProvider",
        "http": "messaging.providers.email_http.HttpEmailProvider",
    },
    "ai": {
        "console": "messaging.providers.console.ConsoleProvider",
        "openai": "messaging.providers.ai_openai.OpenAIProvider",
    },
    "webhook": {"webhook": "messaging.providers.webhook.WebhookProvider"},
}
# The channel whose workspace settings a channel uses.
SETTINGS_CHANNEL = {"mms": "sms"}


def default_name(channel: str) -> str:
    """Return the environment's provider name for a channel."""
    return {
        "sms": settings.SMS_PROVIDER,
        "mms": settings.SMS_PROVIDER,
        "email": settings.EMAIL_PROVIDER,
        "ai": settings.AI_PROVIDER,
    }.get(channel, "webhook")


def workspace_override(workspace: Workspace, channel: str) -> dict[str, Any]:
    """Return a copy of the workspace's provider settings for a channel ({} if none)."""
    providers = (workspace.settings or {}).get("providers")
    override = providers.get(SETTINGS_CHANNEL.get(channel, channel)) if isinstance(
        providers, dict) else None
    return dict(override) if isinstance(override, dict) else {}


@functools.cache
def load(path: str) -> Provider:
    """Return the one instance of the provider class at this dotted path."""
    return import_string(path)()


def provider_for(workspace: Workspace, channel: str) -> tuple[Provider, dict[str, Any]]:
    """Return the workspace's provider for a channel and its config (defaults + overrides).

    Raises ValueError for an unknown channel or provider name.
    """
    if channel not in PROVIDERS:
        raise ValueError(f"unknown channel {channel!r}")
    override = workspace_override(workspace, channel)
    name = override.pop("name", None) or default_name(channel)
    if channel == "webhook":
        name = "webhook"  # there is only one way to deliver a webhook
    path = PROVIDERS[channel].get(name)
    if path is None:
        raise ValueError(f"unknown {channel} provider {name!r}; "
                         f"choose one of {sorted(PROVIDERS[channel])}")
    provider = load(path)
    defaults = getattr(provider, "defaults", None)
    config = {**(defaults() if defaults else {}), **override}
    if channel == "webhook":
        # The signing secrets live on the workspace itself, never in free-form settings.
        config["secrets"] = [workspace.webhook_secret, workspace.webhook_secret_previous]
    return provider, config
