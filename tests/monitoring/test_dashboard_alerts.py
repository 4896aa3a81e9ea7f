"""Alert rules acted on from the dashboard: created, edited, muted and tested; viewers read."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from standardwebhooks import Webhook

from core.models import Membership
from messaging.models import Message
from monitoring import alerts
from monitoring.models import AlertRule
from tests.factories import (
    AlertRuleFactory,
    MembershipFactory,
    MessageFactory,
    WorkspaceFactory,
)
from tests.support.stub_server import StubServer

pytestmark = pytest.mark.django_db

NEW_RULE = {"name": "SMS failing", "type": "failure_rate", "threshold": "20",
            "window_seconds": "600", "message_channel": "sms", "schedule_id": "",
            "min_samples": "1", "channel": "email",
            "recipients": "ops@example.com\noncall@example.com", "cooldown_seconds": "1800",
            "enabled": "on"}


@pytest.fixture
def admin(client: Client, workspace) -> Client:
    client.force_login(MembershipFactory(workspace=workspace, role=Membership.Role.ADMIN).user)
    return client


@pytest.fixture
def viewer(client: Client, workspace) -> Client:
    client.force_login(MembershipFactory(workspace=workspace).user)
    return client


def _create(client: Client, workspace, **changes: str):
    return client.post(reverse("dashboard:alert-rule-create"),
                       {**NEW_RULE, "workspace": str(workspace.pk), **changes})


def test_an_admin_creates_a_rule_from_the_alerts_page(admin, workspace):
    page = admin.get(reverse("dashboard:alerts")).content.decode()
    assert 'id="alert-rule-form"' in page

    response = _create(admin, workspace)

    assert response.status_code == 302
    rule = AlertRule.objects.get(workspace=workspace)
    assert (rule.name, rule.threshold, rule.message_channel, rule.recipients) == (
        "SMS failing", 20.0, "sms", ["ops@example.com", "oncall@example.com"])
    page = admin.get(response["Location"]).content.decode()
    assert "Alert rule SMS failing created." in page
    assert f'data-rule="{rule.pk}"' in page


@pytest.mark.parametrize("changes, field, message", [
    ({"recipients": "not-an-address"}, "recipients", "is not an email address"),
    ({"threshold": "150"}, "threshold", "percentage"),
    ({"window_seconds": "5"}, "window_seconds", "between 60"),
    ({"type": "schedule_no_success"}, "schedule_id", "Required"),
    ({"channel": "webhook", "recipients": "http://127.0.0.1/hook"}, "recipients", ""),
    ({"name": ""}, "name", "required"),
])
def test_a_bad_rule_answers_400_naming_the_field_and_creates_nothing(admin, workspace,
                                                                     changes, field, message):
    response = _create(admin, workspace, **changes)

    assert response.status_code == 400
    errors = response.context["form"].errors
    assert field in errors and message in " ".join(errors[field])
    assert f'data-field-error="{field}"' in response.content.decode()
    assert not AlertRule.objects.exists()


def test_forms_need_the_csrf_token(workspace):
    client = Client(enforce_csrf_checks=True)
    client.force_login(MembershipFactory(workspace=workspace, role="owner").user)
    assert _create(client, workspace).status_code == 403
    assert not AlertRule.objects.exists()


def test_an_admin_edits_a_rule_and_bad_input_changes_nothing(admin, workspace):
    rule = AlertRuleFactory(workspace=workspace, threshold=50)
    url = reverse("dashboard:alert-rule-edit", args=[rule.pk])
    form = admin.get(url).context["form"]
    data = {name: form[name].value() if form[name].value() is not None else ""
            for name in form.fields}
    data["recipients"] = "\n".join(rule.recipients)
    data["enabled"] = "on"

    bad = admin.post(url, {**data, "threshold": "-1"})
    assert bad.status_code == 400
    rule.refresh_from_db()
    assert rule.threshold == 50

    response = admin.post(url, {**data, "threshold": "75", "name": "Renamed"})
    assert response.status_code == 302
    rule.refresh_from_db()
    assert (rule.threshold, rule.name) == (75, "Renamed")


def test_a_muted_rule_records_incidents_but_notifies_nobody(admin, workspace):
    rule = AlertRuleFactory(workspace=workspace)
    response = admin.post(reverse("dashboard:alert-rule-mute", args=[rule.pk]), {"hours": "8"})
    assert response.status_code == 302
    rule.refresh_from_db()
    assert timedelta(hours=7, minutes=59) < rule.muted_until - timezone.now() <= timedelta(hours=8)
    assert "muted until" in admin.get(reverse("dashboard:alerts")).content.decode()

    now = timezone.now()
    MessageFactory(workspace=workspace, status="failed", failed_at=now - timedelta(minutes=1))
    assert alerts.alert_rule_evaluate(rule_id=rule.pk, now=now) == "suppressed"
    assert rule.events.get().notified is False
    assert not Message.objects.filter(source="alert").exists()

    admin.post(reverse("dashboard:alert-rule-mute", args=[rule.pk]), {"hours": "0"})
    rule.refresh_from_db()
    assert rule.muted_until is None
    assert admin.post(reverse("dashboard:alert-rule-mute", args=[rule.pk]),
                      {"hours": "3"}).status_code == 400


def test_a_test_notification_is_queued_like_an_alert(admin, workspace):
    rule = AlertRuleFactory(workspace=workspace, recipients=["a@example.com", "b@example.com"])

    response = admin.post(reverse("dashboard:alert-rule-test", args=[rule.pk]), follow=True)

    assert "Test notification queued for 2 recipients" in response.content.decode()
    sent = Message.objects.filter(source="alert").order_by("to")
    assert [m.to for m in sent] == ["a@example.com", "b@example.com"]
    assert all(m.status == "queued" and m.metadata["alert_test"] for m in sent)
    assert sent[0].content["subject"].startswith(f"[test] {rule.name}")
    assert not rule.events.exists()  # a test is not an incident


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
def test_a_test_notification_reaches_a_webhook_signed(stub_server: StubServer, live_worker,
                                                      allow_local):
    workspace = WorkspaceFactory()
    client = Client()
    client.force_login(MembershipFactory(workspace=workspace, role="owner").user)
    rule = AlertRuleFactory(workspace=workspace, channel="webhook",
                            recipients=[f"{stub_server.url}/hooks/alert"])

    client.post(reverse("dashboard:alert-rule-test", args=[rule.pk]))

    hook = stub_server.wait_for(1)[0]
    body = Webhook(workspace.webhook_secret).verify(hook.body, hook.headers)
    assert body["type"] == "alert.test"
    assert body["rule"]["id"] == rule.pk


def test_a_viewer_reads_alerts_but_cannot_change_them(viewer, workspace):
    rule = AlertRuleFactory(workspace=workspace)
    html = viewer.get(reverse("dashboard:alerts")).content.decode()
    assert f'data-rule="{rule.pk}"' in html
    assert 'id="alert-rule-form"' not in html and "Send test" not in html and "Mute" not in html

    assert viewer.get(reverse("dashboard:alert-rule-edit", args=[rule.pk])).status_code == 403
    for name, data in (("dashboard:alert-rule-mute", {"hours": "1"}),
                       ("dashboard:alert-rule-test", {}),
                       ("dashboard:alert-rule-edit", {"name": "x"})):
        assert viewer.post(reverse(name, args=[rule.pk]), data).status_code == 403
    assert _create(viewer, workspace).status_code == 403
    rule.refresh_from_db()
    assert rule.muted_until is None and rule.name != "x"
    assert AlertRule.objects.count() == 1
    assert not Message.objects.exists()


def test_another_workspaces_rule_answers_404(admin):
    rule = AlertRuleFactory(workspace=WorkspaceFactory())
    assert admin.get(reverse("dashboard:alert-rule-edit", args=[rule.pk])).status_code == 404
    for name in ("dashboard:alert-rule-mute", "dashboard:alert-rule-test"):
        assert admin.post(reverse(name, args=[rule.pk]), {"hours": "1"}).status_code == 404
    assert _create(admin, rule.workspace).status_code == 404
