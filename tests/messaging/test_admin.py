from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from core.models import ApiKey, DeadLetter
from core.services import api_key_create
from messaging import pipeline
from messaging.models import Message

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    return client


def test_admin_pages_render(staff, workspace):
    message = pipeline.message_create(workspace=workspace, channel="sms", to="+14155552671",
                                      content={"body": "x"})
    DeadLetter.objects.create(workspace=workspace, kind="message", source_id=str(message.id),
                              error="boom")
    for url in ["/admin/core/workspace/", f"/admin/core/workspace/{workspace.id}/change/",
                "/admin/core/apikey/", "/admin/core/contact/",
                "/admin/messaging/message/", f"/admin/messaging/message/{message.id}/change/",
                "/admin/core/deadletter/", "/admin/messaging/idempotencyrecord/"]:
        assert staff.get(url).status_code == 200, url


def test_admin_revokes_keys_and_cancels_messages(staff, workspace):
    key, _ = api_key_create(workspace=workspace)
    staff.post("/admin/core/apikey/", {"action": "revoke", "_selected_action": [key.pk]})
    assert ApiKey.objects.get(pk=key.pk).revoked_at is not None
    message = pipeline.message_create(workspace=workspace, channel="sms", to="+14155552671",
                                      content={"body": "x"})
    staff.post("/admin/messaging/message/", {"action": "cancel",
                                             "_selected_action": [message.pk]})
    assert Message.objects.get(pk=message.pk).status == "cancelled"
