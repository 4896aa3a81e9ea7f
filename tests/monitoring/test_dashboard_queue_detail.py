"""The dashboard's queue page: jobs per state, retry failed and clean completed buttons."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from core.models import DeadLetter, Membership
from messaging.models import Message
from tests.factories import (
    DeadLetterFactory,
    MembershipFactory,
    MessageFactory,
    WorkspaceFactory,
)

pytestmark = pytest.mark.django_db


def test_the_queues_page_counts_each_queues_jobs_and_links_its_page(staff, workspace):
    for status in ("queued", "sending", "scheduled", "failed", "failed"):
        MessageFactory(workspace=workspace, status=status, channel="sms")
    page = staff.get(f"/dashboard/queues/?workspace={workspace.pk}").content.decode()
    assert "1 waiting · 1 active · 1 scheduled · 2 failed" in page
    assert f'href="/dashboard/queues/sms/?workspace={workspace.pk}"' in page


def test_the_queue_page_lists_each_states_messages(staff, workspace):
    waiting = MessageFactory(workspace=workspace, status="queued", channel="sms")
    failed = MessageFactory(workspace=workspace, status="failed", channel="sms",
                            last_error="HTTP 400: number blocked")
    MessageFactory(workspace=WorkspaceFactory(), status="queued", channel="sms", to="+1999")
    response = staff.get(f"/dashboard/queues/sms/?workspace={workspace.pk}")
    assert response.status_code == 200
    page = response.content.decode()
    assert [(state, count) for state, count, _ in response.context["states"]] == [
        ("waiting", 1), ("active", 0), ("scheduled", 0), ("failed", 1)]
    assert f"/dashboard/messages/{waiting.pk}/" in page
    assert f"/dashboard/messages/{failed.pk}/" in page
    assert "number blocked" in page
    assert "+1999" not in page
    assert "Retry failed (1)" in page and "Clean completed older than" in page


def test_an_unknown_queue_page_is_404(staff, workspace):
    assert staff.get(f"/dashboard/queues/fax/?workspace={workspace.pk}").status_code == 404


def test_retry_failed_replays_the_queues_dead_letters(staff, workspace):
    message = MessageFactory(workspace=workspace, status="failed", channel="sms")
    DeadLetterFactory(workspace=workspace, source_id=str(message.pk), channel="sms")
    response = staff.post(f"/dashboard/queues/sms/action/?workspace={workspace.pk}",
                          {"action": "retry"}, follow=True)
    assert "1 failed sms message(s) queued again." in response.content.decode()
    assert Message.objects.get(pk=message.pk).status == "queued"
    assert DeadLetter.objects.get().status == "replayed"


def test_clean_deletes_the_completed_messages_older_than_the_age(staff, workspace):
    old = timezone.now() - timedelta(days=8)
    MessageFactory(workspace=workspace, status="sent", channel="sms", updated_at=old)
    kept = MessageFactory(workspace=workspace, status="sent", channel="sms")
    response = staff.post(f"/dashboard/queues/sms/action/?workspace={workspace.pk}",
                          {"action": "clean", "older_than": "7d"}, follow=True)
    assert "1 completed sms message(s) older than 7d deleted." in response.content.decode()
    assert list(Message.objects.values_list("pk", flat=True)) == [kept.pk]


def test_a_viewer_sees_the_page_but_no_buttons_and_may_not_act(client, workspace):
    viewer = MembershipFactory(workspace=workspace, role=Membership.Role.VIEWER).user
    client.force_login(viewer)
    page = client.get(f"/dashboard/queues/sms/?workspace={workspace.pk}").content.decode()
    assert "Retry failed" not in page and "Clean completed" not in page
    MessageFactory(workspace=workspace, status="sent", channel="sms",
                   updated_at=timezone.now() - timedelta(days=8))
    response = client.post(f"/dashboard/queues/sms/action/?workspace={workspace.pk}",
                           {"action": "clean", "older_than": "7d"})
    assert response.status_code == 403
    assert Message.objects.count() == 1
