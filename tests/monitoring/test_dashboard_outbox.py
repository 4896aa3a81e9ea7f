"""The development outbox: what the console provider sent, per workspace, staff only."""
from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.factories import MembershipFactory, StaffUserFactory, WorkspaceFactory, sent_message

pytestmark = pytest.mark.django_db


def outbox(client, workspace):
    return client.get(reverse("dashboard:outbox"), {"workspace": str(workspace.pk)})


def test_the_outbox_shows_console_sends_of_the_selected_workspace_only(staff, workspace):
    now = timezone.now()
    mine = sent_message(workspace, created=now, provider="console", to="+14155550001",
                        rendered={"body": "Hi Ada, your order shipped"})
    email = sent_message(workspace, created=now, provider="console", channel="email",
                         to="ada@example.com",
                         rendered={"subject": "Receipt #7", "text": "Thanks, Ada"})
    sent_message(workspace, created=now, provider="twilio", rendered={"body": "real SMS"})
    other = WorkspaceFactory()
    sent_message(other, created=now, provider="console", rendered={"body": "not yours"})

    response = outbox(staff, workspace)
    html = response.content.decode()

    assert response.status_code == 200
    assert [item.message for item in response.context["items"]] in ([mine, email],
                                                                     [email, mine])
    assert "Hi Ada, your order shipped" in html and "+14155550001" in html
    assert "Receipt #7" in html and "Thanks, Ada" in html
    assert reverse("dashboard:message-detail", args=[mine.pk]) in html
    assert "real SMS" not in html and "not yours" not in html


def test_the_nav_links_the_outbox_while_a_channel_uses_the_console(staff, workspace,
                                                                   settings):
    link = reverse("dashboard:outbox")
    overview = reverse("dashboard:overview")
    assert link in staff.get(overview, {"workspace": str(workspace.pk)}).content.decode()

    settings.SMS_PROVIDER, settings.EMAIL_PROVIDER, settings.AI_PROVIDER = (
        "twilio", "smtp", "openai")
    html = staff.get(overview, {"workspace": str(workspace.pk)}).content.decode()
    assert link not in html


def test_the_outbox_is_for_the_workspaces_members_and_staff(client, workspace):
    assert outbox(client, workspace).status_code == 302  # to the login page
    client.force_login(StaffUserFactory(is_staff=False))
    assert outbox(client, workspace).status_code == 403  # a member of no workspace
    client.force_login(MembershipFactory(role="viewer").user)
    assert outbox(client, workspace).status_code == 404  # another workspace's member
    client.force_login(MembershipFactory(workspace=workspace, role="viewer").user)
    assert outbox(client, workspace).status_code == 200
