"""The endpoints dashboard page and admin: endpoints, their deliveries by status, replay."""
from __future__ import annotations

import pytest
from django.urls import reverse

from messaging.events.outbox import event_emit
from messaging.models import Message, MessageStatus, WebhookEndpoint
from tests.factories import WorkspaceFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def endpoint(workspace) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(workspace=workspace, url="https://h.example.com/e",
                                          events=["*"])


def deliveries(workspace, status: str, count: int) -> list[Message]:
    made = [event_emit(workspace_id=workspace.pk, type="message.sent", data={})[0]
            for _ in range(count)]
    Message.objects.filter(pk__in=[m.pk for m in made]).update(status=status)
    return made


def test_the_page_lists_endpoints_and_filters_deliveries_by_status(staff, workspace,
                                                                   endpoint):
    failed = deliveries(workspace, MessageStatus.FAILED, 2)
    deliveries(workspace, MessageStatus.SENT, 1)
    response = staff.get(reverse("dashboard:endpoints"), {
        "workspace": str(workspace.pk), "endpoint": str(endpoint.pk), "status": "failed"})
    assert response.status_code == 200
    html = response.content.decode()
    assert f'data-endpoint="{endpoint.pk}"' in html
    shown = {str(d.pk) for d in response.context["deliveries"]}
    assert shown == {str(d.pk) for d in failed}


def test_replay_from_the_dashboard_creates_a_new_delivery_of_the_same_event(
        staff, workspace, endpoint):
    [failed] = deliveries(workspace, MessageStatus.FAILED, 1)
    response = staff.post(reverse("dashboard:delivery-replay", args=[failed.pk]))
    assert response.status_code == 302
    copy = Message.objects.get(parent=failed)
    assert copy.webhook_endpoint_id == endpoint.pk
    assert copy.metadata["_event_id"] == failed.metadata["_event_id"]
    assert copy.status == MessageStatus.QUEUED


def test_another_workspaces_endpoint_is_not_listed(staff, workspace, endpoint):
    other = WorkspaceFactory()
    response = staff.get(reverse("dashboard:endpoints"), {
        "workspace": str(other.pk), "endpoint": str(endpoint.pk)})
    assert list(response.context["rows"]) == []
    assert response.context["deliveries"] is None


def test_the_admin_lists_endpoints_without_their_secret(staff, endpoint):
    response = staff.get(reverse("admin:messaging_webhookendpoint_change", args=[endpoint.pk]))
    assert response.status_code == 200
    assert endpoint.secret not in response.content.decode()
