"""The one table of message channels: the only place that lists them.

For each channel it says which Celery queue carries it, which content fields it takes
(and which are required), how many attempts it gets by default (and the environment
variable that overrides them), which rate-limit key it counts against, which providers
can send it and which setting names the default one. Settings, the worker's queue list,
health, queue metrics, the providers registry and the message composer all read it, so a
new channel is one entry here.

Settings import this module to build their channel-keyed values, so it imports nothing
from Django and reads no settings: it is plain data.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SMS = "sms"
MMS = "mms"
EMAIL = "email"
AI = "ai"
WEBHOOK = "webhook"

# Queues that carry work other than channel deliveries.
DEFAULT_QUEUE = "default"  # sweeps, alerts, heartbeats: light work
FLOWS_QUEUE = "flows"  # flow executions and schedule runs


@dataclass(frozen=True)
class ContentField:
    """One content field: `kind` picks its type check (see messaging.compose).

    Kinds: text (a string up to max_length), url (http(s), literally public), media (a list
    of https URLs), json (any JSON value), headers (an object of short strings). A field
    several channels take is the same field in each.
    """

    name: str
    kind: str = "text"
    max_length: int = 0


@dataclass(frozen=True)
class ChannelSpec:
    """Everything the service knows about one channel (see the module docstring)."""

    name: str
    queue: str
    fields: tuple[ContentField, ...]
    # Content fields a message of this channel cannot go without.
    required: tuple[str, ...]
    # How `to` is found and checked: phone (E.164, or the contact's phone), address (an
    # email address, or the contact's), url (the content's url) or free (taken as given).
    recipient: str
    max_attempts: int
    max_attempts_env: str
    # Deferrals and limits are counted per rate key (RATE_LIMIT_<KEY> in the environment).
    rate_key: str
    # Provider name -> dotted path of its class; workspace settings["providers"][<key>].
    providers: dict[str, str]
    provider_settings_key: str
    # The setting naming the default provider; None: the channel's only provider, always.
    provider_setting: str | None = None
    # At least one of these fields must be non-empty (the error names the first).
    any_of: tuple[str, ...] = ()
    # The provider signs with the workspace's own secrets.
    workspace_secrets: bool = False
    field_names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "field_names", tuple(f.name for f in self.fields))


BODY = ContentField("body", max_length=1600)
MEDIA_URLS = ContentField("media_urls", "media")
SMS_PROVIDERS = {
    "console": "messaging.providers.console.ConsoleProvider",
    "twilio": "messaging.providers.twilio.TwilioProvider",
    "http": "messaging.providers.sms_http.HttpSmsProvider",
}
_LIKE_SMS: dict[str, Any] = {"queue": SMS, "recipient": "phone", "max_attempts": 3,
             "max_attempts_env": "MAX_ATTEMPTS_SMS", "rate_key": SMS,
             "providers": SMS_PROVIDERS, "provider_settings_key": SMS,
             "provider_setting": "SMS_PROVIDER"}

# In the order lists show them. MMS shares the SMS queue, attempts, rate limit, providers
# and provider settings: it is SMS with media.
CHANNELS: dict[str, ChannelSpec] = {spec.name: spec for spec in (
    ChannelSpec(SMS, fields=(BODY,), required=("body",), **_LIKE_SMS),
    ChannelSpec(MMS, fields=(BODY, MEDIA_URLS), required=("media_urls",), **_LIKE_SMS),
    ChannelSpec(
        EMAIL, queue=EMAIL, recipient="address",
        fields=(ContentField("subject", max_length=998), ContentField("html", max_length=512_000),
                ContentField("text", max_length=512_000)),
        required=("subject",), any_of=("html", "text"),
        max_attempts=5, max_attempts_env="MAX_ATTEMPTS_EMAIL",  # as the older email queue had
        rate_key=EMAIL, provider_settings_key=EMAIL, provider_setting="EMAIL_PROVIDER",
        providers={"console": "messaging.providers.console.ConsoleProvider",
                   "smtp": "messaging.providers.smtp.SmtpProvider",
                   "http": "messaging.providers.email_http.HttpEmailProvider"}),
    ChannelSpec(
        AI, queue=AI, recipient="free",
        fields=(ContentField("prompt", max_length=32_000),
                ContentField("system", max_length=32_000),
                ContentField("model", max_length=100), ContentField("callback_url", "url")),
        required=("prompt",),
        max_attempts=3, max_attempts_env="MAX_ATTEMPTS_AI",
        rate_key=AI, provider_settings_key=AI, provider_setting="AI_PROVIDER",
        providers={"console": "messaging.providers.console.ConsoleProvider",
                   "openai": "messaging.providers.ai_openai.OpenAIProvider"}),
    ChannelSpec(
        WEBHOOK, queue=WEBHOOK, recipient="url",
        fields=(ContentField("url", "url"), ContentField("payload", "json"),
                ContentField("headers", "headers")),
        required=("url", "payload"),
        max_attempts=5, max_attempts_env="MAX_ATTEMPTS_WEBHOOK",
        rate_key=WEBHOOK, provider_settings_key=WEBHOOK, workspace_secrets=True,
        providers={"webhook": "messaging.providers.webhook.WebhookProvider"}),
)}

CHANNEL_NAMES: tuple[str, ...] = tuple(CHANNELS)
# Each content field once, in table order (a field shared by channels is one object).
CONTENT_FIELDS: dict[str, ContentField] = {
    f.name: f for spec in CHANNELS.values() for f in spec.fields}
# The queues carrying channel deliveries, and the channels each one carries.
QUEUE_CHANNELS: dict[str, tuple[str, ...]] = {
    queue: tuple(name for name, spec in CHANNELS.items() if spec.queue == queue)
    for queue in dict.fromkeys(spec.queue for spec in CHANNELS.values())}
CHANNEL_QUEUES: tuple[str, ...] = tuple(QUEUE_CHANNELS)
# Every queue a worker must consume (the Procfile's `-Q` list says the same; a test checks).
ALL_QUEUES: tuple[str, ...] = (DEFAULT_QUEUE, *CHANNEL_QUEUES, FLOWS_QUEUE)
# Rate-limit key -> the environment variable holding its default limit.
RATE_LIMIT_ENVS: dict[str, str] = {
    spec.rate_key: f"RATE_LIMIT_{spec.rate_key.upper()}" for spec in CHANNELS.values()}


def queue_for(channel: str) -> str:
    """Return the Celery queue that carries a channel's deliveries."""
    spec = CHANNELS.get(channel)
    return spec.queue if spec else channel


def rate_key_for(channel: str) -> str:
    """Return the key a channel's rate limit and deferrals are counted under."""
    spec = CHANNELS.get(channel)
    return spec.rate_key if spec else channel

