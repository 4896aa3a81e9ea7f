"""The queue statistics API, the dashboard and the alert evaluator read one data set alike."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from core.models import Workspace
from messaging.models import MessageStatus
from monitoring import alerts
from monitoring.dashboard.selectors.overview import message_series
from monitoring.dashboard.selectors.windows import window_for
from tests.factories import AlertRuleFactory, MessageFactory, StaffUserFactory

pytestmark = pytest.mark.django_db

SUCCEEDED, FAILED = 4, 4


def one_data_set(workspace: Workspace) -> None:
    """Create sms messages with every outcome a minute ago: 4 succeeded, 4 failed, 3 other."""
    at = timezone.now() - timedelta(minutes=1)
    common = {"workspace": workspace, "channel": "sms", "created_at": at - timedelta(seconds=5)}
    for status, count in ((MessageStatus.SENT, 3), (MessageStatus.DELIVERED, 1),
                          (MessageStatus.UNDELIVERED, 2)):
        MessageFactory.create_batch(count, status=status, sent_at=at, **common)
    MessageFactory.create_batch(2, status=MessageStatus.FAILED, failed_at=at, **common)
    for status in (MessageStatus.QUEUED, MessageStatus.RETRYING, MessageStatus.CANCELLED):
        MessageFactory(status=status, **common)


def test_undelivered_counts_as_failed_in_the_api_the_dashboard_and_alerts(
        api: APIClient, client: Client, workspace: Workspace) -> None:
    one_data_set(workspace)

    statistics = api.get("/api/v1/queues/statistics?window=1h").json()
    client.force_login(StaffUserFactory())
    overview = client.get(reverse("dashboard:overview"),
                          {"workspace": str(workspace.pk), "range": "1h"})
    kpis = {kpi.key: kpi.value for kpi in overview.context["kpis"]}
    series = message_series(workspace, window_for(workspace, "1h"))
    rule = AlertRuleFactory(workspace=workspace, window_seconds=3600, min_samples=1)

    assert (statistics["totals"]["completed"], statistics["totals"]["failed"]) == (
        SUCCEEDED, FAILED)
    assert statistics["queues"]["sms"]["success_rate"] == 50.0
    assert statistics["success_rate"] == 50.0
    assert (kpis["sent"], kpis["failed"], kpis["success_rate"]) == ("4", "4", "50.0%")
    assert (sum(series.values["sent"]), sum(series.values["failed"])) == (SUCCEEDED, FAILED)
    assert alerts.rule_measure(rule=rule) == 50.0
