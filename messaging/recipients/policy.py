"""The recipients' rules: one pre-send policy for every contact-facing message.

The pipeline asks `decide` about each message it has just claimed, at the moment of sending,
so a STOP, an unsubscribe or a settings change made after the message was accepted still
counts. The checks run in this order, and the first that does not allow decides:

1. Who it is for: only channels with a suppression list (messaging.channels: sms, mms and
   email) reach people; webhooks, AI calls, operator alerts (source `alert`) and keyword
   confirmations (source `keyword`) are always allowed.
2. Consent, as the channel's spec says (`opt_out`, `consent_flag`): an sms/mms (opt-out
   "all") to a contact with `sms_subscribed` off, or to a phone on the workspace's
   suppression list, is suppressed whatever its category. An email (opt-out "marketing"):
   a contact with `email_subscribed` off gets no marketing email; a suppressed address gets
   no email at all when it bounced, complained, texted STOP or was added by hand, and no
   marketing email when it unsubscribed.
3. Subscription topics (recipients.preferences): a message naming a topic its contact
   opted out of on the message's channel, or whose topic defaults to out with no opt-in,
   is suppressed (`preference`), whatever its category; critical topics always pass.
4. Quiet hours (marketing, channels whose spec says `quiet_hours`: sms/mms): inside the
   workspace's window, in the contact's
   time zone (else the workspace's), the message is deferred to the window's end plus a
   per-message jitter.
5. Frequency caps (marketing only): over the workspace's cap for the channel, the message
   is deferred until the rolling window allows it, or suppressed when the workspace's
   `frequency_cap_action` is `suppress`.

Suppressed is final and never an attempt; deferred puts the message back on its timer.
"""
from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone

from core.parsing import Cap, parse_clock
from messaging.channels import list_of, spec_of
from messaging.models import Category, Message, SuppressedReason, Suppression
from messaging.recipients import caps
from messaging.recipients.preferences import refused_by_preference

ALLOWED, DEFERRED, SUPPRESSED = "allowed", "deferred", "suppressed"
# Sources whose messages do not go to the workspace's contacts as such: alerts go to staff,
# keyword confirmations answer the recipient's own STOP/START/HELP and must reach them.
EXEMPT_SOURCES = frozenset({"alert", "keyword"})
# The channels that reach a person, and the list each one reads, are their specs'
# `suppression_list` (list_of). With opt-out "marketing" (email), these list rows stop only
# marketing (the recipient asked for no more of it).
MARKETING_ONLY_EMAIL_REASONS = frozenset({Suppression.Reason.UNSUBSCRIBED})
# With opt-out "marketing", a suppressed message's reason, from its list row's (STOP,
# manual, provider: the address).
EMAIL_REASONS: dict[str, str] = {
    Suppression.Reason.BOUNCED: SuppressedReason.BOUNCED,
    Suppression.Reason.COMPLAINED: SuppressedReason.COMPLAINED,
    Suppression.Reason.UNSUBSCRIBED: SuppressedReason.UNSUBSCRIBED}
QUIET_HOURS, FREQUENCY_CAPS, FREQUENCY_CAP_ACTION = (
    "quiet_hours", "frequency_caps", "frequency_cap_action")


@dataclass(frozen=True)
class Decision:
    """What the policy decided: allowed, deferred (until `until`) or suppressed (reason)."""

    outcome: str
    reason: str = ""
    until: datetime | None = None
    check: str = ""  # the check that decided: consent, quiet_hours, frequency_cap

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"outcome": self.outcome}
        if self.reason:
            data["reason"] = self.reason
        if self.until is not None:
            data["until"] = self.until.isoformat()
        return data


ALLOW = Decision(ALLOWED)
# Allowed, and counted against the recipient's frequency cap.
CAP_COUNTED = Decision(ALLOWED, check="frequency_cap")


def is_contact_facing(message: Message) -> bool:
    """Tell whether the policy applies to the message at all."""
    return list_of(message.channel) is not None and message.source not in EXEMPT_SOURCES


def list_address(message: Message) -> str:
    """Return the recipient as the suppression list stores it: an email lower-cased (a
    message keeps the case it was given), a phone (already E.164) or other kind as it is."""
    spec = spec_of(message.channel)
    return message.to.strip().lower() if spec and spec.recipient == "address" else message.to


def suppressions_for(messages: Iterable[Message]) -> dict[tuple[Any, str, str], str]:
    """Return {(workspace id, list, address): reason} for the messages' recipients, in one
    query."""
    wanted = {(m.workspace_id, list_of(m.channel), list_address(m)) for m in messages
              if is_contact_facing(m) and m.to}
    if not wanted:
        return {}
    # All three columns, so the lookup uses the whole unique index (workspace, channel,
    # address): without the channel it scanned every row of the workspace (8 ms a batch
    # with a 100,000-row list).
    rows = Suppression.objects.filter(
        workspace_id__in={w for w, _, _ in wanted}, channel__in={c for _, c, _ in wanted},
        address__in={a for _, _, a in wanted},
    ).values_list("workspace_id", "channel", "address", "reason")
    return {(w, c, a): reason for w, c, a, reason in rows if (w, c, a) in wanted}


def decide_all(messages: list[Message], *, now: datetime | None = None,
               count: bool = True) -> dict[Any, Decision]:
    """Return the decision for each message (by primary key). With `count` off, frequency
    caps are read, not consumed (a dry run)."""
    return _decide_batch(messages, suppressions_for(messages), now or timezone.now(), count)


def decide(message: Message, *, listed: dict[tuple[Any, str, str], str],
           now: datetime, count: bool = True) -> Decision:
    """Return what the rules say about sending this message now."""
    return _decide_batch([message], listed, now, count)[message.pk]


def _decide_batch(messages: list[Message], listed: dict[tuple[Any, str, str], str],
                  now: datetime, count: bool) -> dict[Any, Decision]:
    """Run the checks in order; the messages that reach the caps ask Redis together (one
    round trip for the batch, not one per message)."""
    decisions: dict[Any, Decision] = {}
    capped: list[tuple[Message, str, Cap]] = []
    unwanted = refused_by_preference(messages)
    for message in messages:
        early = _before_caps(message, listed, now, unwanted)
        wanted = _cap_of(message) if early is None else None
        if wanted is not None:
            capped.append((message, *wanted))
        else:
            decisions[message.pk] = early or ALLOW
    waits = caps.take_many([(key, cap, str(m.pk)) for m, key, cap in capped], take=count)
    for (message, _, _), wait in zip(capped, waits, strict=True):
        decisions[message.pk] = _cap_decision(message, wait, now)
    return decisions


def _before_caps(message: Message, listed: dict[tuple[Any, str, str], str],
                 now: datetime, unwanted: set[Any]) -> Decision | None:
    """Return the decision of the checks before the caps, or None to ask the caps."""
    if not is_contact_facing(message):
        return ALLOW
    refused = _consent(message, listed)
    if refused is not None:
        return refused
    if message.pk in unwanted:
        return _suppress(SuppressedReason.PREFERENCE, check="preference")
    if message.category != Category.MARKETING:
        return ALLOW
    return _quiet_hours(message, now)


def _consent(message: Message, listed: dict[tuple[Any, str, str], str]) -> Decision | None:
    """Apply the channel's consent rule (its spec's opt_out and consent_flag)."""
    spec = spec_of(message.channel)
    if spec is None or spec.suppression_list is None:  # only contact-facing ones get here
        return None
    contact = message.contact
    marketing = message.category == Category.MARKETING
    listing = listed.get((message.workspace_id, spec.suppression_list,
                          list_address(message)))
    opted_out = bool(contact is not None and spec.consent_flag
                     and not getattr(contact, spec.consent_flag))
    if spec.opt_out == "all":
        if opted_out:
            return _suppress(SuppressedReason.UNSUBSCRIBED)
        if listing is not None:
            return _suppress(SuppressedReason.SUPPRESSED_ADDRESS)
        return None
    if listing is not None and (marketing or listing not in MARKETING_ONLY_EMAIL_REASONS):
        return _suppress(EMAIL_REASONS.get(listing, SuppressedReason.SUPPRESSED_ADDRESS))
    if marketing and opted_out:
        return _suppress(SuppressedReason.UNSUBSCRIBED)
    return None


def _suppress(reason: str, check: str = "consent") -> Decision:
    return Decision(SUPPRESSED, reason=str(reason), check=check)


# --- quiet hours ------------------------------------------------------------------------------

def quiet_window(workspace_settings: dict) -> tuple[time, time] | None:
    """Return the workspace's (start, end) quiet hours, or None when unset or unreadable."""
    value = (workspace_settings or {}).get(QUIET_HOURS)
    if not isinstance(value, dict):
        return None
    try:
        start, end = parse_clock(value.get("start")), parse_clock(value.get("end"))
    except (ValueError, TypeError):
        return None
    return (start, end) if start != end else None


def quiet_until(window: tuple[time, time], local: datetime) -> datetime | None:
    """Return when the quiet window that `local` (an aware local time) falls in ends, or
    None when it is outside the window. A window may wrap midnight (21:00-08:00)."""
    start, end = window
    clock = local.time().replace(tzinfo=None)
    # A window that wraps midnight (21:00-08:00) holds the times after its start or before its end.
    inside = start <= clock < end if start < end else clock >= start or clock < end
    if not inside:
        return None
    day = local.date() if clock < end else local.date() + timedelta(days=1)
    naive = datetime.combine(day, end)
    return naive.replace(tzinfo=local.tzinfo)


def recipient_zone(message: Message) -> ZoneInfo:
    """Return the contact's time zone, else the workspace's, else UTC."""
    name = (message.contact.timezone if message.contact is not None else "") or \
        message.workspace.timezone or "UTC"
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError):
        return ZoneInfo("UTC")


def jitter_seconds(message: Message) -> float:
    """Return the message's own offset inside the jitter span (stable across evaluations,
    so a list released at the end of the window spreads out instead of firing at once)."""
    span = settings.QUIET_HOURS_JITTER_SECONDS
    if span <= 0:
        return 0.0
    return (zlib.crc32(str(message.pk).encode()) % (span * 1000)) / 1000


def _quiet_hours(message: Message, now: datetime) -> Decision | None:
    spec = spec_of(message.channel)
    if spec is None or not spec.quiet_hours:
        return None
    window = quiet_window(message.workspace.settings)
    if window is None:
        return None
    end = quiet_until(window, now.astimezone(recipient_zone(message)))
    if end is None:
        return None
    until = end.astimezone(UTC) + timedelta(seconds=jitter_seconds(message))
    return Decision(DEFERRED, reason="quiet_hours", until=until, check="quiet_hours")


# --- frequency caps ---------------------------------------------------------------------------

def _cap_of(message: Message) -> tuple[str, Cap] | None:
    """Return the message's cap key and cap, or None when its channel has no cap."""
    list_name = list_of(message.channel)
    cap = cap_of_list(message.workspace.settings or {}, list_name) if list_name else None
    if cap is None or not list_name:
        return None
    who = str(message.contact_id) if message.contact_id else message.to
    return caps.cap_key(str(message.workspace_id), list_name, who), cap


def cap_of_list(workspace_settings: dict, list_name: str) -> Cap | None:
    """Return the workspace's frequency cap on a list (sms, email), or None without one."""
    configured = workspace_settings.get(FREQUENCY_CAPS)
    text = configured.get(list_name) if isinstance(configured, dict) else None
    if not text:
        return None
    try:
        return Cap.parse(text)
    except ValueError:
        return None


def _cap_decision(message: Message, wait: float, now: datetime) -> Decision:
    """Return the decision once the cap answered `wait` seconds (0: there is room, and the
    message counts against the cap: said by `check`, for its timeline)."""
    if wait <= 0:
        return CAP_COUNTED
    if (message.workspace.settings or {}).get(FREQUENCY_CAP_ACTION) == "suppress":
        return _suppress(SuppressedReason.FREQUENCY_CAP, check="frequency_cap")
    return Decision(DEFERRED, reason="frequency_cap", until=now + timedelta(seconds=wait),
                    check="frequency_cap")
