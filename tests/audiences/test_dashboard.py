from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
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


def sending_broadcast(workspace, name: str) -> Broadcast:
    """Return a sending broadcast with one recipient (its stats are counted live)."""
    broadcast = Broadcast.objects.create(workspace=workspace, name=name, channel="sms",
                                         content={"body": "hi"}, status="sending",
                                         targeted=1)
    message = MessageFactory(workspace=workspace, status="queued")
    BroadcastRecipient.objects.create(broadcast=broadcast, contact=message.contact,
                                      message=message, position=0)
    return broadcast


def test_the_broadcasts_page_counts_a_page_of_stats_in_one_query(client, workspace):
    client.force_login(StaffUserFactory())
    url, params = reverse("dashboard:broadcasts"), {"workspace": str(workspace.pk)}
    sending_broadcast(workspace, "First")
    with CaptureQueriesContext(connection) as one:
        assert client.get(url, params).status_code == 200
    for name in ("Second", "Third"):
        sending_broadcast(workspace, name)
    with CaptureQueriesContext(connection) as three:
        response = client.get(url, params)
    assert [row.stats["pending"] for row in response.context["items"]] == [1, 1, 1]
    assert len(three.captured_queries) == len(one.captured_queries)
