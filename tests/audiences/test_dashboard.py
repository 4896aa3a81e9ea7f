from __future__ import annotations

import pytest
from django.urls import reverse

from audiences.models import Broadcast, BroadcastRecipient
from tests.factories import MessageFactory, StaffUserFactory, WorkspaceFactory

pytestmark = pytest.mark.django_db


def test_the_broadcasts_page_shows_progress_and_stats(client, workspace):
    client.force_login(StaffUserFactory())
    broadcast = Broadcast.objects.create(workspace=workspace, name="Spring sale",
                                         channel="sms", content={"body": "hi"},
                                         status="sending", created_all=True, targeted=4,
                                         throttle="1000/min")
    for position, status in enumerate(["sent", "delivered", "queued", "suppressed"]):
        message = MessageFactory(workspace=workspace, status=status)
        BroadcastRecipient.objects.create(broadcast=broadcast, contact=message.contact,
                                          message=message, position=position)
    Broadcast.objects.create(workspace=WorkspaceFactory(), name="Elsewhere", channel="sms",
                             content={"body": "x"})

    response = client.get(reverse("dashboard:broadcasts"), {"workspace": str(workspace.pk)})

    assert response.status_code == 200
    html = response.content.decode()
    assert f'data-broadcast="{broadcast.pk}"' in html
    assert '<progress max="100" value="75"' in html
    assert "Elsewhere" not in html
    [row] = response.context["items"]
    assert (row.stats["pending"], row.stats["sent"], row.stats["delivered"],
            row.stats["suppressed"]) == (1, 1, 1, 1)
