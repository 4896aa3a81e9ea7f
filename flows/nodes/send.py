"""The send nodes (send_sms, send_email, send_webhook, ai_reply): hand a message to the
messaging pipeline and wait until it is final.

They differ only in their schema check and channel; running and dry-running them is shared,
and this module is the one place a flow composes a message (with the API's composer).
"""
from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from django.utils import timezone

from flows.nodes.base import Check, NodeType, Preview, Result, data_of
from flows.nodes.checks import DURATION_HELP, duration_seconds, is_str, is_text, is_url, optional
from messaging.channels import AI, EMAIL, MMS, SMS, WEBHOOK
from messaging.channels import CHANNELS as CHANNEL_SPECS
from messaging.compose import MessageInvalid, message_compose
from messaging.delivery.templating import render_fields

MAX_MEDIA_URLS = 10
ON_FAILURE_CHOICES = ("continue", "stop")
# Node data keys passed on to the message API, per channel.
SEND_FIELDS = ("to", "body", "media_urls", "subject", "html", "text", "url", "payload",
               "headers", "prompt", "system", "model", "callback_url", "priority", "category",
               "template", "topic")
# A template id (checked against the workspace's templates when the node sends) and a
# topic key (a slug, as the topics API takes it).
_UUID = re.compile(r"[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}")
_SLUG = re.compile(r"[-a-zA-Z0-9_]{1,64}")
# A send node's category when it names none is the composer's default for flows: marketing.
CATEGORY_CHOICES = ("transactional", "marketing")
# A send that waits for its outcome (data.wait_for "delivered", data.timeout) leaves by one
# of these exits; an exit without an edge ends the execution there.
WAIT_FOR_CHOICES = ("delivered",)
OUTCOME_EXITS: dict[str, tuple[int, int]] = {"delivered": (0, 1), "failed": (0, 1),
                                             "timeout": (0, 1)}
OUTCOME_TYPES = ("send_sms", "send_email")


def outcome_exits(data: dict) -> dict[str, tuple[int, int]] | None:
    """Return the outcome exits of a send node that waits for its outcome, else None."""
    return OUTCOME_EXITS if "wait_for" in data else None


def check_outcome(name: str, data: dict) -> list[str]:
    """Check wait_for and timeout: both or neither, on an SMS or email send only."""
    if "wait_for" not in data:
        return [f"{name} data.timeout needs data.wait_for"] if "timeout" in data else []
    if name not in OUTCOME_TYPES:
        return [f"{name} cannot wait for its outcome (only send_sms and send_email)"]
    problems = [] if data["wait_for"] in WAIT_FOR_CHOICES else [
        f"{name} data.wait_for must be 'delivered'"]
    if duration_seconds(data.get("timeout")) is None:
        problems.append(f"{name} data.timeout (with wait_for) must be {DURATION_HELP}")
    return problems


def check_send_sms(data: dict) -> list[str]:
    """Require a body; media URLs and a recipient are optional."""
    problems = [] if is_text(data.get("body")) else ["send_sms needs data.body"]
    problems += optional(
        data, "media_urls", _is_media_urls,
        f"send_sms data.media_urls must be a list of 1 to {MAX_MEDIA_URLS} https URLs",
    )
    return problems + optional(data, "to", is_text, "send_sms data.to must be a non-empty string")


def _is_media_urls(value: Any) -> bool:
    return (
        isinstance(value, list)
        and 1 <= len(value) <= MAX_MEDIA_URLS
        and all(is_url(url, ("https",)) for url in value)
    )


def check_send_email(data: dict) -> list[str]:
    """Require a subject and an html or text body."""
    problems = [] if is_text(data.get("subject")) else ["send_email needs data.subject"]
    for key in ("html", "text"):
        problems += optional(data, key, is_str, f"send_email data.{key} must be a string")
    if not (is_text(data.get("html")) or is_text(data.get("text"))):
        problems.append("send_email needs data.html or data.text")
    return problems + optional(
        data, "to", is_text, "send_email data.to must be a non-empty string"
    )


def check_send_webhook(data: dict) -> list[str]:
    """Require an http(s) URL and a payload; headers must map strings to strings."""
    problems = []
    if not is_url(data.get("url")):
        problems.append("send_webhook needs data.url (an http:// or https:// URL)")
    if "payload" not in data:
        problems.append("send_webhook needs data.payload")
    return problems + optional(
        data, "headers", _is_string_map, "send_webhook data.headers must map strings to strings"
    )


def _is_string_map(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(key, str) and isinstance(item, str) for key, item in value.items()
    )


def check_ai_reply(data: dict) -> list[str]:
    """Require a prompt; system, model and callback URL are optional."""
    problems = [] if is_text(data.get("prompt")) else ["ai_reply needs data.prompt"]
    for key in ("system", "model"):
        message = f"ai_reply data.{key} must be a non-empty string"
        problems += optional(data, key, is_text, message)
    return problems + optional(
        data, "callback_url", is_url,
        "ai_reply data.callback_url must be an http:// or https:// URL",
    )


# Send node type -> message channel.
CHANNELS = {"send_sms": SMS, "send_email": EMAIL, "send_webhook": WEBHOOK, "ai_reply": AI}


def channel_of(node: dict) -> str | None:
    """Return the message channel a send node uses (sms with media is mms)."""
    channel = CHANNELS.get(node.get("type", ""))
    if channel == SMS and data_of(node).get("media_urls"):
        return MMS
    return channel


def run(node: dict, context: dict, execution: Any) -> Result:
    """Compose the node's message with the API's composer and hand it to the pipeline."""
    try:
        # The execution's contact is loaded already: the composer need not look it up.
        message = message_compose(workspace=execution.workspace, source="flow",
                                  data=_payload(node, context, execution),
                                  contacts_cache={("pk", str(execution.contact_id)):
                                                  execution.contact})
    except MessageInvalid as exc:
        return Result(failed=True, error=f"invalid message: {exc.message_dict}")
    # What its templates may quote besides the contact and metadata; the service's own, so
    # it goes beside the message's metadata, not in it (no answer or event shows it).
    message.flow_context = {"trigger": context["trigger"], "steps": context["steps"]}
    data = data_of(node)
    if "wait_for" in data:  # waits for the receipt, until the timeout's timer
        timeout = timezone.now() + timedelta(seconds=duration_seconds(data["timeout"]) or 0)
        return Result(wait=True, message=message, wake_at=timeout,
                      input={"channel": channel_of(node), "wait_for": data["wait_for"]},
                      output={"message_id": str(message.id), "timeout_at": timeout.isoformat()})
    return Result(wait=True, message=message, input={"channel": channel_of(node)},
                  output={"message_id": str(message.id)})


def _payload(node: dict, context: dict, execution: Any) -> dict[str, Any]:
    """Return the message as the API would receive it, tagged with where it comes from."""
    data = data_of(node)
    channel = channel_of(node)
    payload = {key: data[key] for key in SEND_FIELDS if key in data}
    payload.update(channel=channel, contact_id=str(execution.contact_id), metadata={
        "flow_id": str(execution.flow_id), "execution_id": str(execution.pk),
        "node_id": node["id"]})
    if channel == WEBHOOK:
        payload.pop("to", None)
    return payload


def dry_run(node: dict, context: dict, events: list[str]) -> Preview:
    """Render the message for the sample contact and show it instead of sending it."""
    data = data_of(node)
    channel = channel_of(node)
    rendered = render_fields({k: data[k] for k in SEND_FIELDS if k in data}, context)
    to = rendered.get("to") or (context["contact"].get("email") if channel == EMAIL
                                else context["contact"].get("phone", ""))
    if channel == WEBHOOK:
        to = rendered.get("url", "")
    # A send that waits for its outcome is shown delivered.
    return Preview(output={"would_send": channel, "to": to}, message={
        "node_id": node["id"], "channel": channel, "to": to, "content": rendered},
        handle="delivered" if "wait_for" in data else None)


def check_template(name: str, data: dict) -> list[str]:
    """Check a send that names a template instead of its content: a template id, none of
    the channel's content fields beside it (the recipient may still be given)."""
    problems = [] if isinstance(data["template"], str) and _UUID.fullmatch(
        data["template"]) else [f"{name} data.template must be a template id"]
    content = [key for key in CHANNEL_SPECS[CHANNELS[name]].field_names if key in data]
    if content:
        problems.append(f"{name} names a template and its content "
                        f"({', '.join(content)}): give one")
    return problems + optional(data, "to", is_text, f"{name} data.to must be a non-empty "
                               "string")


def _with_on_failure(name: str, check: Check) -> Check:
    """Return the check (a template's instead when the node names one) followed by those
    every send node shares: on_failure, category, topic and the outcome."""
    def checked(data: dict) -> list[str]:
        problems = check_template(name, data) if "template" in data else check(data)
        problems += optional(data, "topic", lambda value: isinstance(value, str) and bool(
            _SLUG.fullmatch(value)), f"{name} data.topic must be a topic's key")
        if data.get("on_failure", "stop") not in ON_FAILURE_CHOICES:
            problems.append(f"{name} data.on_failure must be 'continue' or 'stop'")
        if data.get("category", "marketing") not in CATEGORY_CHOICES:
            problems.append(f"{name} data.category must be 'transactional' or 'marketing'")
        return problems + check_outcome(name, data)
    return checked


def _send_type(name: str, check: Check) -> NodeType:
    return NodeType(name=name, check=_with_on_failure(name, check), run=run, dry_run=dry_run,
                    channel=CHANNELS[name], exits_for=outcome_exits)


SEND_SMS = _send_type("send_sms", check_send_sms)
SEND_EMAIL = _send_type("send_email", check_send_email)
SEND_WEBHOOK = _send_type("send_webhook", check_send_webhook)
AI_REPLY = _send_type("ai_reply", check_ai_reply)
