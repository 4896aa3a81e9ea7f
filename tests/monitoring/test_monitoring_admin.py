"""Admin pages for dead letters and alerts: filters, search, actions."""
from __future__ import annotations

import csv
import io

import pytest
from django.test import Client

from core.models import DeadLetter
from messaging.models import Message
from monitoring.models import AlertRule
from tests.factories import (
    AlertRuleFactory,
    DeadLetterFactory,
    MessageFactory,
    StaffUserFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff() -> Client:
    client = Client()
    client.force_login(StaffUserFactory())
    return client


def test_the_pages_render_with_filters_and_search(staff, workspace):
    letter = DeadLetterFactory(workspace=workspace, error="mailbox full")
    rule = AlertRuleFactory(workspace=workspace)
    for url in ["/admin/core/deadletter/?status__exact=open&kind__exact=message",
                "/admin/core/deadletter/?q=mailbox",
                f"/admin/core/deadletter/{letter.pk}/change/",
                "/admin/monitoring/alertrule/", "/admin/monitoring/alertrule/add/",
                f"/admin/monitoring/alertrule/{rule.pk}/change/",
                "/admin/monitoring/alertevent/?resolved_at__isnull=True"]:
        response = staff.get(url)
        assert response.status_code == 200, url
    DeadLetterFactory(workspace=workspace, error="timeout")
    found = staff.get("/admin/core/deadletter/?q=mailbox").context["cl"].result_list
    assert [item.pk for item in found] == [letter.pk]


def test_the_discard_and_export_actions(staff, workspace):
    message = MessageFactory(workspace=workspace, status="failed")
    letter = DeadLetterFactory(workspace=workspace, source_id=str(message.pk))
    response = staff.post("/admin/core/deadletter/",
                          {"action": "export_csv", "_selected_action": [letter.pk]})
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row["source_id"] for row in rows] == [str(message.pk)]
    staff.post("/admin/core/deadletter/",
               {"action": "discard", "_selected_action": [letter.pk]})
    letter.refresh_from_db()
    assert letter.status == "discarded" and letter.replayed_by.startswith("admin:")
    staff.post("/admin/core/deadletter/",
               {"action": "retry", "_selected_action": [letter.pk]})
    assert Message.objects.get(pk=message.pk).status == "failed"  # discarded: not replayed


def test_the_alert_rule_form_refuses_a_rule_that_cannot_deliver(staff, workspace):
    form = {"workspace": str(workspace.pk), "name": "x", "type": "dead_letters",
            "threshold": "1", "window_seconds": "300", "message_channel": "",
            "schedule_id": "", "min_samples": "1", "channel": "webhook",
            "recipients": '["http://127.0.0.1/hook"]', "enabled": "on",
            "cooldown_seconds": "600", "events-TOTAL_FORMS": "0",
            "events-INITIAL_FORMS": "0"}
    response = staff.post("/admin/monitoring/alertrule/add/", form)
    assert response.status_code == 200
    assert not AlertRule.objects.exists()
    form["recipients"] = '["https://hooks.example.com/alert"]'
    response = staff.post("/admin/monitoring/alertrule/add/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert AlertRule.objects.get().recipients == ["https://hooks.example.com/alert"]
    assert DeadLetter.objects.count() == 0
