"""The one table of message channels: the only place that lists them.

For each channel it says which Celery queue carries it, which content fields it takes
(and which are required), how many attempts it gets by default (and the environment
variable that overrides them), which rate-limit key it counts against, which providers
can send it and which setting names the default one; and what the recipients' rules and
inbound need to know (its suppression list, consent, quiet hours, unsubscribe links,
whether it receives and answers keywords). Settings, the worker's queue list, health, queue
metrics, the providers registry, the message composer, the recipients' rules and inbound
all read it, so a new channel is one entry here (or one `channel_register` call) plus its
provider module.

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
    # --- Recipients' rules (messaging.recipients) ----------------------------------------
    # The suppression list its recipients are looked up on (sms and mms share "sms": one
    # phone); None: the channel reaches no person (webhooks, AI), so no rule applies to it.
    # The list's addresses are normalised by `recipient` (phone: E.164, address: lower-case
    # email, free: trimmed).
    suppression_list: str | None = None
    # What a recipient's own opt-out (the contact's consent flag off, an `unsubscribed` list
    # row) stops: "all" (every message, as carriers require of a STOP; any list row reads
    # suppressed_address) or "marketing" (marketing only; a bounce, complaint or manual row
    # still stops everything and keeps its reason).
    opt_out: str = "all"
    # The Contact boolean saying the contact consents to this channel ("" for none).
    consent_flag: str = ""
    # Marketing messages wait out the workspace's quiet hours (frequency caps apply to every
    # channel with a suppression list, counted per list).
    quiet_hours: bool = False
    # Marketing messages carry a signed unsubscribe link (List-Unsubscribe, RFC 8058).
    unsubscribe_link: bool = False
    # --- Receiving (messaging.incoming) --------------------------------------------------
    # The channel receives messages (stored as inbound rows, then a keyword or an event).
    inbound: bool = False
    # The channel on which STOP/START/HELP are answered ("" : keywords do not apply); an
    # mms keyword is answered by sms, which needs no media.
    keyword_reply_channel: str = ""
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
             "provider_setting": "SMS_PROVIDER", "suppression_list": SMS,
             "consent_flag": "sms_subscribed", "quiet_hours": True, "inbound": True,
             "keyword_reply_channel": SMS}

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
        suppression_list=EMAIL, opt_out="marketing", consent_flag="email_subscribed",
        unsubscribe_link=True,
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

# The tables below derive from CHANNELS (_derive fills them, and channel_register keeps
# them current).
CHANNEL_NAMES: tuple[str, ...] = ()
# Each content field once, in table order (a field shared by channels is one object).
CONTENT_FIELDS: dict[str, ContentField] = {}
# The queues carrying channel deliveries, and the channels each one carries.
QUEUE_CHANNELS: dict[str, tuple[str, ...]] = {}
CHANNEL_QUEUES: tuple[str, ...] = ()
# Every queue a worker must consume (the Procfile's `-Q` list says the same; a test checks).
ALL_QUEUES: tuple[str, ...] = ()
# Rate-limit key -> the environment variable holding its default limit.
RATE_LIMIT_ENVS: dict[str, str] = {}
# Suppression list -> how its addresses are normalised (the `recipient` of its channels).
SUPPRESSION_LISTS: dict[str, str] = {}
OPT_OUTS = ("all", "marketing")
# The Contact field holding a recipient of each kind (inbound finds the sender's contacts
# by it; keywords change the consent of those contacts).
CONTACT_FIELDS: dict[str, str] = {"phone": "phone", "address": "email"}


def _derive() -> None:
    """Recompute the tables derived from CHANNELS. Dicts change in place, so a module that
    imported one sees a registered channel; tuples are rebound (read them as
    `channels.NAME`). Settings and the worker's queue list are built once, at start."""
    global CHANNEL_NAMES, CHANNEL_QUEUES, ALL_QUEUES
    lists: dict[str, str] = {}
    for spec in CHANNELS.values():
        if spec.opt_out not in OPT_OUTS:
            raise ValueError(f"{spec.name}: opt_out must be one of {OPT_OUTS}")
        if spec.suppression_list is not None and \
                lists.setdefault(spec.suppression_list, spec.recipient) != spec.recipient:
            raise ValueError(f"{spec.name}: the {spec.suppression_list} list holds "
                             f"{lists[spec.suppression_list]} addresses, not {spec.recipient}")
    SUPPRESSION_LISTS.clear()
    SUPPRESSION_LISTS.update(lists)
    CHANNEL_NAMES = tuple(CHANNELS)
    CONTENT_FIELDS.clear()
    CONTENT_FIELDS.update({f.name: f for spec in CHANNELS.values() for f in spec.fields})
    QUEUE_CHANNELS.clear()
    QUEUE_CHANNELS.update({
        queue: tuple(name for name, spec in CHANNELS.items() if spec.queue == queue)
        for queue in dict.fromkeys(spec.queue for spec in CHANNELS.values())})
    CHANNEL_QUEUES = tuple(QUEUE_CHANNELS)
    ALL_QUEUES = tuple(dict.fromkeys((DEFAULT_QUEUE, *CHANNEL_QUEUES, FLOWS_QUEUE)))
    RATE_LIMIT_ENVS.clear()
    RATE_LIMIT_ENVS.update({spec.rate_key: f"RATE_LIMIT_{spec.rate_key.upper()}"
                            for spec in CHANNELS.values()})


_derive()
# The table's own channels, which channel_unregister leaves alone.
BUILT_IN: frozenset[str] = frozenset(CHANNELS)


def channel_register(*, spec: ChannelSpec) -> None:
    """Add a channel to the table (a plug-in's, or a test's stand-in), so the pipeline,
    the recipients' rules, the providers registry and inbound treat it like the built-in
    ones. Values settings build at start (MAX_ATTEMPTS, RATE_LIMITS, the worker's queues)
    do not grow: set them too, or register before settings load. Raise ValueError for a
    name already taken or a spec that contradicts the table."""
    if spec.name in CHANNELS:
        raise ValueError(f"channel {spec.name!r} already exists")
    CHANNELS[spec.name] = spec
    try:
        _derive()
    except ValueError:
        del CHANNELS[spec.name]
        _derive()
        raise


def channel_unregister(*, name: str) -> None:
    """Remove a channel channel_register added (a test's stand-in, when it is done);
    raise ValueError for one of the table's own."""
    if name in BUILT_IN:
        raise ValueError(f"channel {name!r} is one of the table's own")
    CHANNELS.pop(name, None)
    _derive()


def spec_of(channel: str) -> ChannelSpec | None:
    """Return the channel's spec, or None for a name that is no channel."""
    return CHANNELS.get(channel)


def list_of(channel: str) -> str | None:
    """Return the suppression list a channel's recipients are on (None: it reaches no one)."""
    spec = CHANNELS.get(channel)
    return spec.suppression_list if spec else None


def queue_for(channel: str) -> str:
    """Return the Celery queue that carries a channel's deliveries."""
    spec = CHANNELS.get(channel)
    return spec.queue if spec else channel


def rate_key_for(channel: str) -> str:
    """Return the key a channel's rate limit and deferrals are counted under."""
    spec = CHANNELS.get(channel)
    return spec.rate_key if spec else channel

