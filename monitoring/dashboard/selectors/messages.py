"""Reads behind the messages list."""
from __future__ import annotations

from django.db.models import Q, QuerySet

from core.models import Workspace
from messaging.models import Message
from messaging.selectors import messages_to
from monitoring.dashboard.selectors.common import as_uuid, contact_filter


def messages_list(workspace: Workspace, *, status: str = "", channel: str = "",
                  search: str = "", recipient: str = "") -> QuerySet[Message]:
    """Return the workspace's messages, newest first, filtered as asked (`recipient` as
    messaging.selectors.recipient_normalize returns it)."""
    queryset = (Message.objects.filter(workspace=workspace).select_related("contact")
                .order_by("-created_at", "-id"))
    if status:
        queryset = queryset.filter(status=status)
    if channel:
        queryset = queryset.filter(channel=channel)
    if recipient:
        queryset = messages_to(queryset, recipient)
    if search:
        query = (Q(to__icontains=search) | Q(last_error__icontains=search)
                 | Q(provider_message_id=search.strip()) | contact_filter(search))
        message_id = as_uuid(search)
        if message_id is not None:
            query |= Q(id=message_id)
        queryset = queryset.filter(query)
    return queryset
