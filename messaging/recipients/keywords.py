"""Keywords: STOP, START and HELP in the words carriers and Twilio recognise, what each
does to consent and the suppression list, and the reply a workspace sends for it. They
apply to the channels whose spec names a `keyword_reply_channel` (sms and mms).

The lists are the CTIA short-code handbook's opt-out/opt-in/help words as Twilio applies
them to every number (https://help.twilio.com/articles/223134027). A keyword is the whole
message, trimmed, in any case: "stop" and " Stop " are STOP, "please stop" is not.
"""
from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from core.models import Contact, Workspace
from messaging.channels import CHANNELS, CONTACT_FIELDS
from messaging.models import Suppression
from messaging.recipients.suppressions import suppression_add_many, suppression_remove_many

STOP, START, HELP = "stop", "start", "help"
WORDS: dict[str, frozenset[str]] = {
    STOP: frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT",
                     "REVOKE"}),
    START: frozenset({"START", "YES", "UNSTOP", "OPTIN"}),
    HELP: frozenset({"HELP", "INFO"}),
}
KEYWORDS: dict[str, str] = {word: kind for kind, words in WORDS.items() for word in words}

# Workspace settings read here (README.md, "Inbound SMS"): the reply texts by keyword, and
# whether the provider already answers keywords itself (Twilio Advanced Opt-Out).
REPLIES_SETTING = "keyword_replies"
BY_PROVIDER_SETTING = "keyword_replies_by_provider"
DEFAULT_REPLIES = {
    STOP: "You are unsubscribed from {workspace} messages and will get no more. "
          "Reply START to resubscribe.",
    START: "You are resubscribed to {workspace} messages. Reply HELP for help, STOP to "
           "unsubscribe.",
    HELP: "{workspace}: reply STOP to unsubscribe, START to resubscribe. Msg & data rates "
          "may apply.",
}
# A START lifts what the recipient's own opt-out put on the list: their STOP, and the
# provider's refusal that a STOP at the provider caused (Twilio 21610), which Twilio also
# lifts on START. Bounces, complaints and manual rows stay.
LIFTED_BY_START = (Suppression.Reason.STOP, Suppression.Reason.PROVIDER)


def keyword_of(body: Any) -> str | None:
    """Return stop, start or help when the whole body is one of their words, else None."""
    if not isinstance(body, str):
        return None
    return KEYWORDS.get(body.strip().upper())


def keyword_apply(*, kind: str, channel: str, address: str, scope: QuerySet[Workspace],
                  source: str) -> None:
    """Apply a STOP (unsubscribe every contact with the address and suppress it) or a START
    (resubscribe and lift the opt-out rows) in every workspace of `scope`; HELP changes
    nothing. The channel's spec names the list and the contacts' consent flag (sms and mms:
    the sms list, `sms_subscribed`); the address is as that list stores it (E.164)."""
    spec = CHANNELS[channel]
    if kind not in (STOP, START):
        return
    field = CONTACT_FIELDS.get(spec.recipient)
    if spec.consent_flag and field:
        Contact.objects.filter(workspace__in=scope, **{field: address}).update(
            **{spec.consent_flag: kind == START, "updated_at": timezone.now()})
    if spec.suppression_list is None:
        return
    if kind == STOP:
        suppression_add_many(workspaces=scope, channel=spec.suppression_list,
                             address=address, reason=Suppression.Reason.STOP, source=source)
    else:
        suppression_remove_many(workspaces=scope, channel=spec.suppression_list,
                                address=address, reasons=LIFTED_BY_START)


def reply_text(workspace: Workspace, kind: str) -> str | None:
    """Return the workspace's reply to a keyword, or None when its provider answers
    keywords itself. A setting that is not a non-empty string falls back to the default."""
    workspace_settings = workspace.settings if isinstance(workspace.settings, dict) else {}
    if workspace_settings.get(BY_PROVIDER_SETTING) is True:
        return None
    replies = workspace_settings.get(REPLIES_SETTING)
    text = replies.get(kind) if isinstance(replies, dict) else None
    if not isinstance(text, str) or not text.strip():
        text = DEFAULT_REPLIES[kind]
    return text.replace("{workspace}", workspace.name)
