"""Messages, their delivery attempts and stored idempotent answers."""
from __future__ import annotations

import uuid
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower

from core.models import Contact, Workspace, new_webhook_secret
from messaging.channels import CHANNEL_NAMES, CHANNELS

# The channels of messaging.channels as model choices; members are named by their upper-case
# values (Channel.SMS).
# (django-stubs type only the class form of TextChoices.)
Channel = models.TextChoices(  # type: ignore[call-overload]
    "Channel", [(name.upper(), name) for name in CHANNEL_NAMES])


class MessageStatus(models.TextChoices):
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    SENDING = "sending"
    RETRYING = "retrying"
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # The pre-send policy refused it (suppressed_reason says why): final, never attempted.
    SUPPRESSED = "suppressed"
    # An inbound message (direction inbound): stored as it arrived, nothing to send.
    RECEIVED = "received"


class Category(models.TextChoices):
    """What the recipient's rules treat a message as (README.md, "Recipients' rules")."""
    TRANSACTIONAL = "transactional"
    MARKETING = "marketing"


class Direction(models.TextChoices):
    OUTBOUND = "outbound"
    INBOUND = "inbound"


class SuppressedReason(models.TextChoices):
    UNSUBSCRIBED = "unsubscribed"
    SUPPRESSED_ADDRESS = "suppressed_address"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    FREQUENCY_CAP = "frequency_cap"
    PREFERENCE = "preference"  # the contact opted out of the message's topic


class WaitReason(models.TextChoices):
    """Why a live message waits (the API's `waiting_for`): `scheduled` says only that a timer
    holds it, this says whose timer (docs/glossary.md)."""
    SEND_AT = "send_at"  # the sender asked for a later time (send_at / a flow delay)
    RETRY = "retry_backoff"  # a transient provider error: the next attempt's backoff
    RATE_LIMIT = "rate_limit"  # its channel's (or endpoint's) rate limit booked a later slot
    QUIET_HOURS = "quiet_hours"  # the recipient's quiet hours
    FREQUENCY_CAP = "frequency_cap"  # the recipient's frequency cap (action: defer)
    PAUSE = "pause"  # its queue is paused (status_reason names the pause)
    PROVIDER_DOWN = "provider_down"  # every provider's circuit breaker is open


class Priority(models.TextChoices):
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


# Statuses a durable timer (due_at) governs: the dispatcher turns them into `queued`.
TIMER_STATUSES = (MessageStatus.SCHEDULED, MessageStatus.RETRYING)

# Metadata keys starting with this are the service's own (the older endpoints' ids and
# rate key, an event delivery's event): senders cannot write them (messaging.compose) and
# the API's answers and events leave them out (messaging.api.serializers).
INTERNAL_METADATA_PREFIX = "_"


def metadata_public(metadata: Any) -> Any:
    """Return metadata as its sender gave it, without the service's own keys, for what the
    outside sees (API answers, event payloads); anything but a dict is returned as is."""
    if not isinstance(metadata, dict):
        return metadata
    return {key: value for key, value in metadata.items()
            if not str(key).startswith(INTERNAL_METADATA_PREFIX)}

# The channels whose `to` is a person's phone or email address: what a search by recipient
# looks through (messaging.selectors.messages_to), indexed on lower(to).
RECIPIENT_CHANNELS = tuple(name for name, spec in CHANNELS.items()
                           if spec.recipient in ("phone", "address"))

CANCELLABLE_STATUSES = (MessageStatus.SCHEDULED, MessageStatus.QUEUED, MessageStatus.RETRYING)
FINAL_STATUSES = (MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.UNDELIVERED,
                  MessageStatus.FAILED, MessageStatus.CANCELLED, MessageStatus.SUPPRESSED)
# Successes: the provider accepted the message (and perhaps confirmed its delivery).
SUCCESS_STATUSES = frozenset({MessageStatus.SENT, MessageStatus.DELIVERED})
# Failures: undelivered was accepted but the carrier could not deliver it, a failure to the sender.
FAILURE_STATUSES = frozenset({MessageStatus.FAILED, MessageStatus.UNDELIVERED})


class WebhookEndpoint(models.Model):
    """A customer's URL that receives the workspace's events (README.md, "Events").

    Each delivery is a webhook Message pointing here, signed with this endpoint's secret.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE,
                                  related_name="webhook_endpoints")
    url = models.CharField(max_length=2048)
    events = models.JSONField(default=list)  # event types, or ["*"] for all
    description = models.CharField(max_length=500, blank=True, default="")
    enabled = models.BooleanField(default=True)
    rate_limit = models.CharField(max_length=50, blank=True, default="")  # e.g. "10/s"
    # Standard Webhooks secrets; the previous one keeps signing for a day after a rotation.
    secret = models.CharField(max_length=100, default=new_webhook_secret)
    secret_previous = models.CharField(max_length=100, blank=True, default="")
    secret_rotated_at = models.DateTimeField(null=True, blank=True)
    # The first failed attempt since the last successful delivery (None: healthy).
    failing_since = models.DateTimeField(null=True, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["workspace", "enabled"])]

    def __str__(self) -> str:
        return f"{self.url} ({'enabled' if self.enabled else 'disabled'})"


class Message(models.Model):
    """One message, outbound (sent through the pipeline) or inbound (received, stored as it
    arrived); this row, not the broker, is the truth about it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="messages")
    contact = models.ForeignKey(Contact, on_delete=models.SET_NULL, null=True, blank=True,
                                related_name="messages")
    # The subscription topic it belongs to (README.md, "Subscription topics"); the policy
    # asks the contact's preference for it.
    topic = models.ForeignKey("Topic", on_delete=models.SET_NULL, null=True, blank=True,
                              related_name="messages")
    # The template version its content was taken from (README.md, "Templates"), or None.
    template_version = models.ForeignKey("TemplateVersion", on_delete=models.SET_NULL,
                                         null=True, blank=True, related_name="messages")
    channel = models.CharField(max_length=10, choices=Channel.choices)
    to = models.CharField(max_length=2048, blank=True, default="")
    status = models.CharField(max_length=12, choices=MessageStatus.choices,
                              default=MessageStatus.QUEUED)
    priority = models.CharField(max_length=6, choices=Priority.choices, default=Priority.NORMAL)
    category = models.CharField(max_length=13, choices=Category.choices,
                                default=Category.TRANSACTIONAL)
    # The delivery lane it is claimed from, "<queue>:priority" or "<queue>:bulk" (set by
    # messaging.building from the channel, category and priority: messaging.lanes).
    lane = models.CharField(max_length=40, blank=True, default="")
    direction = models.CharField(max_length=8, choices=Direction.choices,
                                 default=Direction.OUTBOUND)
    # Who sent it: the recipient's phone for an inbound message ("" for outbound).
    sender = models.CharField(max_length=320, blank=True, default="")
    suppressed_reason = models.CharField(max_length=20, blank=True, default="",
                                         choices=SuppressedReason.choices)
    content = models.JSONField(default=dict)  # as submitted (templates unrendered)
    rendered = models.JSONField(null=True, blank=True)  # as sent
    # The sender's, answered as given; keys starting with INTERNAL_METADATA_PREFIX are the
    # service's own (only the endpoints that own them write them; no answer shows them).
    metadata = models.JSONField(default=dict, blank=True)
    # A flow send's template context ({"trigger", "steps"}): the service's, not the sender's,
    # so it lives apart from metadata, where no answer, event or provider sees it.
    flow_context = models.JSONField(null=True, blank=True)
    # api | compat | flow | alert | ai | keyword (STOP/START/HELP replies) | inbound
    source = models.CharField(max_length=20, default="api")
    # The X-Request-ID of the request (or of the task's request) that created it: every log
    # line about the message carries it, a retry hours later too (core.logcontext).
    request_id = models.CharField(max_length=128, blank=True, default="")
    parent = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True,
                               related_name="children")  # e.g. the AI message of a callback
    # An event delivery: the endpoint it goes to (and is signed for).
    webhook_endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.SET_NULL,
                                         null=True, blank=True, related_name="deliveries")
    # Receives this message's status events, signed with the workspace's secret.
    status_callback_url = models.CharField(max_length=2048, blank=True, default="")
    scheduled_for = models.DateTimeField(null=True, blank=True)
    # The durable timer: when a scheduled/retrying/deferred message is next due.
    due_at = models.DateTimeField(null=True, blank=True)
    # A rate-limit slot booked for this message: when reached, it goes without re-booking.
    rate_slot_at = models.DateTimeField(null=True, blank=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=3)
    provider = models.CharField(max_length=30, blank=True, default="")
    provider_message_id = models.CharField(max_length=200, blank=True, default="",
                                           db_index=True)
    response = models.JSONField(null=True, blank=True)  # e.g. the AI reply
    last_error = models.TextField(blank=True, default="")
    error_code = models.CharField(max_length=50, blank=True, default="")
    possible_duplicate = models.BooleanField(default=False)
    # Leases that expired after the claim and before the provider call (the worker died
    # with the message still waiting its turn in the batch): each gives its attempt back,
    # up to max_attempts of them, so a message that kills its worker cannot loop forever.
    lost_before_call = models.PositiveSmallIntegerField(default=0)
    # Why a live message waits, when something other than its own timer holds it: "paused:
    # sms (workspace)" while its queue is paused (README.md, "Pausing"), or the WaitReason of
    # a deferral (rate_limit, quiet_hours, frequency_cap). Cleared when claimed.
    status_reason = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["workspace", "-created_at"]),
            models.Index(fields=["workspace", "status"]),
            # The dispatcher's and sweeper's scans touch only live rows.
            models.Index(fields=["status", "due_at"], name="message_timer_idx",
                         condition=Q(status__in=["scheduled", "retrying"])),
            models.Index(fields=["status", "enqueued_at"], name="message_live_idx",
                         condition=Q(status__in=["queued", "sending"])),
            # A delivery task's claim: the workspaces with queued rows in a lane (a skip
            # scan), then each one's oldest (messaging.delivery.sending._claim_next).
            models.Index(fields=["lane", "workspace", "created_at", "id"],
                         name="message_claim_idx", condition=Q(status="queued")),
            # Inbound routing on the shared number asks which workspace last texted a phone
            # (messaging.incoming.inbound); partial, so email and webhook rows (long `to`) stay out.
            models.Index(fields=["to", "-created_at"], name="message_sms_to_recent_idx",
                         condition=Q(direction="outbound", channel__in=["sms", "mms"])),
            # A search by recipient (phones are E.164, emails compared lowercased), and by
            # an inbound message's sender.
            models.Index(Lower("to"), name="message_recipient_idx",
                         condition=Q(channel__in=RECIPIENT_CHANNELS)),
            models.Index(fields=["sender"], name="message_sender_idx",
                         condition=Q(direction="inbound")),
            # The dashboard overview's newest failures: a walk down the failed rows only.
            models.Index(fields=["workspace", "-updated_at"], name="message_failed_recent_idx",
                         condition=Q(status__in=["failed", "undelivered"])),
        ]
        constraints = [
            # A provider's repeated webhook (same MessageSid) stores its message once.
            models.UniqueConstraint(
                fields=["workspace", "provider_message_id"], name="inbound_provider_id_unique",
                condition=Q(direction="inbound") & ~Q(provider_message_id="")),
        ]

    def __str__(self) -> str:
        return f"{self.channel} {self.id} ({self.status})"

    @property
    def waiting_for(self) -> str | None:
        """Return the WaitReason of a `scheduled` or `retrying` message, else None."""
        if self.status == MessageStatus.RETRYING:
            return WaitReason.RETRY
        if self.status != MessageStatus.SCHEDULED:
            return None
        if self.status_reason.startswith("paused"):
            return WaitReason.PAUSE
        if self.status_reason in WaitReason.values:
            return self.status_reason
        return WaitReason.SEND_AT


class DeliveryAttempt(models.Model):
    """One provider call for a message, with its outcome."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="delivery_attempts")
    number = models.PositiveIntegerField()
    provider = models.CharField(max_length=30, blank=True, default="")
    task_id = models.CharField(max_length=64, blank=True, default="")
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=16, blank=True, default="")  # sent|retry|failed|lost
    status_code = models.IntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    error_code = models.CharField(max_length=50, blank=True, default="")
    response = models.JSONField(null=True, blank=True)
    possible_duplicate = models.BooleanField(default=False)
    # Each provider call of this attempt, in order (failover): [{"provider", "idempotency_key",
    # "outcome": sent|failed|skipped, "status_code", "error_code", "error", "ms"}]; `provider`
    # above is the last one called.
    provider_calls = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["message", "number"]
        constraints = [models.UniqueConstraint(fields=["message", "number"],
                                               name="attempt_number_unique")]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.message_id} ({self.outcome or 'running'})"


class Suppression(models.Model):
    """An address a workspace must not send to on a channel (sms covers mms: one phone).

    Email rows with reason `unsubscribed` stop marketing email only; every other row stops
    every message of its channel to the address (README.md, "Recipients' rules")."""

    class Reason(models.TextChoices):
        STOP = "stop"              # the recipient texted a STOP keyword
        UNSUBSCRIBED = "unsubscribed"  # an unsubscribe link or List-Unsubscribe
        BOUNCED = "bounced"        # a hard bounce
        COMPLAINED = "complained"  # a spam complaint
        PROVIDER = "provider"      # the provider refused the address (Twilio 21610)
        MANUAL = "manual"          # added through the API or admin

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE,
                                  related_name="suppressions")
    channel = models.CharField(max_length=10, choices=[("sms", "sms"), ("email", "email")])
    address = models.CharField(max_length=320)
    reason = models.CharField(max_length=20, choices=Reason.choices, default=Reason.MANUAL)
    source = models.CharField(max_length=100, blank=True, default="")  # who/what added it
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["workspace", "channel", "address"],
                                               name="suppression_unique")]

    def __str__(self) -> str:
        return f"{self.channel} {self.address} ({self.reason})"


class Topic(models.Model):
    """A subscription topic of a workspace (`promotions`, `reminders`): its contacts choose,
    per channel, whether its messages reach them. `default_opt_in` answers for a contact
    who never chose; a `critical` topic cannot be turned off (README.md, "Subscription
    topics")."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="topics")
    key = models.SlugField(max_length=64)
    name = models.CharField(max_length=200)
    description = models.CharField(max_length=500, blank=True, default="")
    default_opt_in = models.BooleanField(default=True)
    critical = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]
        constraints = [models.UniqueConstraint(fields=["workspace", "key"],
                                               name="topic_key_unique")]

    def __str__(self) -> str:
        return self.key


class TopicPreference(models.Model):
    """A contact's choice for one topic on one channel's list (sms covers mms)."""

    contact = models.ForeignKey(Contact, on_delete=models.CASCADE,
                                related_name="topic_preferences")
    topic = models.ForeignKey(Topic, on_delete=models.CASCADE, related_name="preferences")
    channel = models.CharField(max_length=10, choices=[("sms", "sms"), ("email", "email")])
    opted_in = models.BooleanField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["topic__key", "channel"]
        constraints = [models.UniqueConstraint(fields=["contact", "topic", "channel"],
                                               name="topic_preference_unique")]
        indexes = [models.Index(fields=["topic", "contact"], name="topic_pref_topic_idx")]

    def __str__(self) -> str:
        return f"{self.contact_id} {self.topic_id} {self.channel}: {self.opted_in}"


class Template(models.Model):
    """A named message content of a workspace in several languages (README.md,
    "Templates"). Its content lives in versions: every change adds one, and a message keeps
    the version it was made from."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE,
                                  related_name="templates")
    name = models.CharField(max_length=200)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    # The newest version (what a send takes), kept here so a send reads one row.
    current = models.ForeignKey("TemplateVersion", on_delete=models.SET_NULL, null=True,
                                blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # A deleted template is kept (hidden from the API and from sends), so the messages and
    # broadcasts made from it keep the version they took.
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["workspace", "name"],
                                               condition=Q(deleted_at__isnull=True),
                                               name="template_unique_name")]

    def __str__(self) -> str:
        return self.name


class TemplateVersion(models.Model):
    """One version of a template, never changed once written: its variants (locale ->
    the channel's content fields), default locale and topic."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    template = models.ForeignKey(Template, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()  # 1, 2, ... per template
    variants = models.JSONField()
    default_locale = models.CharField(max_length=35)
    topic = models.ForeignKey(Topic, on_delete=models.SET_NULL, null=True, blank=True,
                              related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["template", "-number"]
        constraints = [models.UniqueConstraint(fields=["template", "number"],
                                               name="template_version_unique_number")]

    def __str__(self) -> str:
        return f"{self.template_id} v{self.number}"


class IdempotencyRecord(models.Model):
    """The stored answer to a POST made with an Idempotency-Key (24 h)."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE)
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    in_flight = models.BooleanField(default=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["workspace", "key"],
                                               name="idempotency_key_unique")]

    def __str__(self) -> str:
        return self.key


class QueuePause(models.Model):
    """A paused channel queue: for one workspace, or for every workspace (workspace null).

    The row is the truth: while it exists the pipeline holds the queue's messages instead of
    sending them; resuming deletes it (the audit log keeps the history)."""

    queue = models.CharField(max_length=20)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, null=True, blank=True,
                                  related_name="queue_pauses")
    paused_at = models.DateTimeField(auto_now_add=True)
    # The actor: "api:<key prefix>", "user:<username>" or "command".
    paused_by = models.CharField(max_length=150, blank=True, default="")
    reason = models.CharField(max_length=500, blank=True, default="")

    class Meta:
        ordering = ["queue", "paused_at"]
        constraints = [
            models.UniqueConstraint(fields=["queue", "workspace"], name="queue_pause_unique",
                                    condition=Q(workspace__isnull=False)),
            models.UniqueConstraint(fields=["queue"], name="queue_pause_global_unique",
                                    condition=Q(workspace__isnull=True)),
        ]

    def __str__(self) -> str:
        return f"{self.queue} paused ({self.scope})"

    @property
    def scope(self) -> str:
        """Return "workspace" or "global"."""
        return "global" if self.workspace_id is None else "workspace"


class TimelineKind(models.TextChoices):
    """What a timeline entry records (README.md, "Timelines")."""
    ACCEPTED = "accepted"  # created: by whom and through what (API key, flow, schedule)
    DEFERRED = "deferred"  # the recipients' rules put it off (quiet hours, frequency cap)
    SUPPRESSED = "suppressed"  # the recipients' rules refused it (no provider call)
    PAUSED = "paused"  # a paused queue held it
    RELEASED = "released"  # the pause was lifted (or the sweeper released it)
    RATE_LIMITED = "rate_limited"  # a rate limit booked a later slot (counted on one row)
    PROVIDER_CALL = "provider_call"  # one provider call: status, latency, error, outcome
    RECEIPT = "receipt"  # a carrier's status callback or an email event moved it
    EVENT = "event"  # an event it raised, with the deliveries made for it
    CANCELLED = "cancelled"  # cancelled (by whom)


class TimelineEntry(models.Model):
    """One fact of a message's life, written in the transaction of the change it describes;
    never updated except to count a repeat of the same fact (rate-limit deferrals)."""

    id = models.BigAutoField(primary_key=True)
    # Indexed by (message, id) below, which also serves the cascade's lookups. No database
    # constraint: its check, once per row at every commit of the delivery path, was most of
    # the timeline's cost (README.md, "Timelines"); rows are written only for the message
    # being changed in the same transaction, and deleting a message through the ORM (the
    # only way the service deletes them: purge_history, admin) deletes its entries.
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="timeline",
                                db_index=False, db_constraint=False)
    kind = models.CharField(max_length=16, choices=TimelineKind.choices)
    at = models.DateTimeField()
    # How many times this fact happened in a row, and the last time (for counted kinds).
    count = models.PositiveIntegerField(default=1)
    last_at = models.DateTimeField(null=True, blank=True)
    detail = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)

    class Meta:
        ordering = ["message", "id"]
        indexes = [models.Index(fields=["message", "id"], name="timeline_message_idx")]

    def __str__(self) -> str:
        return f"{self.kind} of {self.message_id} at {self.at:%Y-%m-%d %H:%M:%S}"
