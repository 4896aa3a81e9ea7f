"""Reads behind the outbox: what the console provider "sent", like a development mail catcher.

The console provider only logs; the durable record is the message row, which keeps the
provider that handled it and the content as rendered at send time.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet

from core.models import Workspace
from messaging.models import SUCCESS_STATUSES, Message
from messaging.providers.console import ConsoleProvider
from messaging.providers.registry import PROVIDERS, provider_for

CONSOLE = ConsoleProvider.name
# The rendered fields that read as a message body, by channel, in the order shown.
BODY_FIELDS = ("body", "text", "html", "prompt", "url", "payload")


@dataclass(frozen=True)
class OutboxItem:
    message: Message
    subject: str
    body: str


def console_in_use(workspace: Workspace) -> bool:
    """Say whether any channel of the workspace sends through the console provider."""
    for channel, names in PROVIDERS.items():
        if CONSOLE not in names:
            continue
        try:
            provider, _ = provider_for(workspace, channel)
        except ValueError:  # a misconfigured channel is reported where it is used
            continue
        if provider.name == CONSOLE:
            return True
    return False


def outbox_messages(workspace: Workspace) -> QuerySet[Message]:
    """Return the workspace's messages the console provider sent, newest first."""
    return (Message.objects.filter(workspace=workspace, provider=CONSOLE,
                                   status__in=SUCCESS_STATUSES)
            .select_related("contact").order_by("-sent_at", "-id"))


def outbox_item(message: Message) -> OutboxItem:
    """Return a message's rendered subject and body as text."""
    rendered: dict[str, Any] = message.rendered or message.content or {}
    parts = [value if isinstance(value, str) else json.dumps(value, indent=2)
             for field in BODY_FIELDS if (value := rendered.get(field)) not in (None, "")]
    return OutboxItem(message=message, subject=str(rendered.get("subject") or ""),
                      body="\n\n".join(parts))
