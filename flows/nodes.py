"""What each node type does when the engine reaches it."""
from __future__ import annotations

import zoneinfo
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

from django.utils import timezone

from flows.graph import SEND_TYPES
from flows.rules import evaluate
from messaging.models import Message
from messaging.templating import render_data


@dataclass
class Result:
    output: dict[str, Any] = field(default_factory=dict)
    handle: str | None = None  # which exit to take (condition: "true"/"false")
    wait: bool = False
    wake_at: datetime | None = None
    event: str = ""
    message: Message | None = None  # an unsaved message a send node waits for
    input: dict[str, Any] = field(default_factory=dict)
    failed: bool = False
    error: str = ""
    contact_update: dict[str, Any] = field(default_factory=dict)  # attributes to write


def channel_of(node: dict) -> str | None:
    """Return the message channel a send node uses (sms with media is mms)."""
    channel = SEND_TYPES.get(node.get("type", ""))
    if channel == "sms" and (node.get("data") or {}).get("media_urls"):
        return "mms"
    return channel


def run(node: dict, context: dict, *, execution: Any, step: Any) -> Result:
    """Run one node and say what happens next."""
    kind = node["type"]
    data = node.get("data") or {}
    if kind in SEND_TYPES:
        return send(node, data, context, execution=execution, step=step)
    handler = HANDLERS[kind]
    return handler(data, context, execution)


def condition(data: dict, context: dict, execution: Any) -> Result:
    matched = evaluate(data["rules"], context)
    return Result(output={"result": matched}, handle="true" if matched else "false")


def update_contact(data: dict, context: dict, execution: Any) -> Result:
    """Merge attributes (templates rendered) into the contact; the engine writes them when
    it persists the step, and later nodes of the same walk already see them."""
    values = render_data(data.get("attributes") or {}, context)
    contact = context["contact"]
    contact["attributes"] = {**(contact.get("attributes") or {}), **values}
    return Result(output={"attributes": values}, contact_update=values)


def end(data: dict, context: dict, execution: Any) -> Result:
    return Result()


def delay(data: dict, context: dict, execution: Any) -> Result:
    """Wait a duration, until a datetime, or until a local time of day (contact's zone)."""
    now = timezone.now()
    if "seconds" in data:
        wake = now + timedelta(seconds=float(data["seconds"]))
    elif "until" in data:
        wake = datetime.fromisoformat(str(data["until"]).replace("Z", "+00:00"))
    else:
        wake = next_local_time(str(data["until_local_time"]), context, execution, now)
    if wake <= now:
        return Result(output={"waited_until": wake.isoformat(), "skipped": True})
    return Result(wait=True, wake_at=wake, output={"until": wake.isoformat()})


def next_local_time(hhmm: str, context: dict, execution: Any, now: datetime) -> datetime:
    """Return the next moment the contact's clock (else the workspace's) shows hh:mm."""
    name = context["contact"].get("timezone") or execution.workspace.timezone or "UTC"
    try:
        zone = zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zone = zoneinfo.ZoneInfo("UTC")
    hour, minute = (int(part) for part in hhmm.split(":"))
    local_now = now.astimezone(zone)
    candidate = datetime.combine(local_now.date(), time(hour, minute), tzinfo=zone)
    if candidate <= local_now:
        candidate = datetime.combine(local_now.date() + timedelta(days=1), time(hour, minute),
                                     tzinfo=zone)
    return candidate


def wait_for_event(data: dict, context: dict, execution: Any) -> Result:
    wake = timezone.now() + timedelta(seconds=int(data["timeout_seconds"]))
    return Result(wait=True, wake_at=wake, event=str(data["event"]),
                  output={"event": data["event"], "timeout_at": wake.isoformat()})


# Node data keys passed on to the message API, per channel.
SEND_FIELDS = ("to", "body", "media_urls", "subject", "html", "text", "url", "payload",
               "headers", "prompt", "system", "model", "callback_url", "priority")


def send(node: dict, data: dict, context: dict, *, execution: Any, step: Any) -> Result:
    """Validate the node's message like the API does and hand it to the pipeline."""
    from messaging.api.messages import MessageCreateSerializer

    channel = channel_of(node)
    payload = {key: data[key] for key in SEND_FIELDS if key in data}
    payload.update(channel=channel, contact_id=str(execution.contact_id), metadata={
        "flow_id": str(execution.flow_id), "execution_id": str(execution.pk),
        "node_id": node["id"],
        "_context": {"trigger": context["trigger"], "steps": context["steps"]}})
    if channel == "webhook":
        payload.pop("to", None)
    serializer = MessageCreateSerializer(data=payload, context={
        "workspace": execution.workspace, "source": "flow"})
    if not serializer.is_valid():
        return Result(failed=True, error=f"invalid message: {serializer.errors}")
    message = serializer.build()
    return Result(wait=True, message=message, input={"channel": channel},
                  output={"message_id": str(message.id)})


HANDLERS = {"condition": condition, "update_contact": update_contact, "end": end,
            "delay": delay, "wait_for_event": wait_for_event}
