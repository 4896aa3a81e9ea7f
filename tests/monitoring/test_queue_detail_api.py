"""One queue's details and jobs (GET /api/v1/queues/{queue}), and its actions: retry the
failed messages, clean the completed ones older than an age."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from core.models import AuditEntry, DeadLetter
from messaging.models import DeliveryAttempt, Message
from tests.factories import (
    DeliveryAttemptFactory,
    MessageFactory,
    StaffUserFactory,
    WorkspaceFactory,
)
from tests.support.stub_server import Reply, StubServer
from tests.support.waiting import wait_until


@pytest.fixture
def staff_api() -> APIClient:
    client = APIClient()
    client.force_login(StaffUserFactory(username="ops"))
    return client


@pytest.mark.django_db
def test_the_queue_detail_counts_and_lists_each_state(api, workspace):
    for status in ("queued", "queued", "sending", "scheduled", "retrying", "failed", "sent",
                   "delivered"):
        MessageFactory(workspace=workspace, status=status, channel="sms")
    MessageFactory(workspace=workspace, status="queued", channel="mms")  # same queue
    MessageFactory(workspace=workspace, status="queued", channel="email")  # another queue
    MessageFactory(workspace=WorkspaceFactory(), status="queued", channel="sms")  # another's

    response = api.get("/api/v1/queues/sms")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["queue"], body["channels"], body["paused"]) == ("sms", ["sms", "mms"], False)
    assert body["counts"] == {"waiting": 3, "active": 1, "scheduled": 2, "failed": 1,
                              "completed": 2}
    assert {state: len(jobs) for state, jobs in body["messages"].items()} == {
        "waiting": 3, "active": 1, "scheduled": 2, "failed": 1}
    assert {job["workspace"] for jobs in body["messages"].values() for job in jobs} == {
        str(workspace.pk)}
    assert {job["status"] for job in body["messages"]["scheduled"]} == {"scheduled",
                                                                        "retrying"}


@pytest.mark.django_db
def test_the_limit_caps_each_list_and_staff_see_every_workspace(api, staff_api, workspace):
    for _ in range(3):
        MessageFactory(workspace=workspace, status="queued", channel="email")
    MessageFactory(workspace=WorkspaceFactory(), status="queued", channel="email")
    body = api.get("/api/v1/queues/email?limit=2").json()
    assert (body["counts"]["waiting"], len(body["messages"]["waiting"])) == (3, 2)
    assert staff_api.get("/api/v1/queues/email").json()["counts"]["waiting"] == 4


@pytest.mark.django_db
@pytest.mark.parametrize("url,status,field", [
    ("/api/v1/queues/fax", 404, "queue"),
    ("/api/v1/queues/sms?limit=0", 400, "limit"),
    ("/api/v1/queues/sms?limit=101", 400, "limit"),
    ("/api/v1/queues/sms?limit=x", 400, "limit"),
])
def test_bad_queue_or_limit_answers_naming_it(api, url, status, field):
    response = api.get(url)
    assert response.status_code == status
    assert field in response.json()["error"]["fields"]


@pytest.mark.django_db
def test_the_health_metrics_and_statistics_paths_are_not_read_as_queues(api):
    assert "queues" in api.get("/api/v1/queues/health").json()
    assert "window_seconds" in api.get("/api/v1/queues/statistics").json()


@pytest.mark.django_db
def test_clean_deletes_the_queues_completed_messages_older_than_the_age(api, workspace,
                                                                       api_key):
    old = timezone.now() - timedelta(days=3)
    gone = [MessageFactory(workspace=workspace, status=status, channel="sms", updated_at=old)
            for status in ("sent", "delivered")]
    DeliveryAttemptFactory(message=gone[0])
    kept = [MessageFactory(workspace=workspace, status="sent", channel="sms"),  # recent
            MessageFactory(workspace=workspace, status="failed", channel="sms",
                           updated_at=old),  # not completed
            MessageFactory(workspace=workspace, status="sent", channel="email",
                           updated_at=old),  # another queue
            MessageFactory(workspace=WorkspaceFactory(), status="sent", channel="sms",
                           updated_at=old)]  # another workspace

    response = api.post("/api/v1/queues/sms/clean", {"older_than": "2d"}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json() == {"queue": "sms", "older_than_seconds": 172800, "deleted": 2}
    assert set(Message.objects.values_list("pk", flat=True)) == {m.pk for m in kept}
    assert not DeliveryAttempt.objects.exists()
    entry = AuditEntry.objects.get(action="queue.clean")
    assert (entry.workspace, entry.target_id, entry.detail["deleted"]) == (workspace, "sms", 2)


@pytest.mark.django_db
@pytest.mark.parametrize("body", [{}, {"older_than": "soon"}, {"older_than": "5y"},
                                  {"older_than": 3}])
def test_clean_without_a_readable_age_answers_400_and_deletes_nothing(api, workspace, body):
    MessageFactory(workspace=workspace, status="sent", channel="sms",
                   updated_at=timezone.now() - timedelta(days=3))
    response = api.post("/api/v1/queues/sms/clean", body, format="json")
    assert response.status_code == 400
    assert "older_than" in response.json()["error"]["fields"]
    assert Message.objects.count() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
def test_retry_failed_sends_the_queues_failed_messages_again(api, workspace,
                                                             stub_server: StubServer,
                                                             live_worker):
    workspace.settings = {"providers": {"sms": {"name": "http", "api_url": stub_server.url}}}
    workspace.save()
    stub_server.script("/send-sms", Reply(400, {"error": "number blocked"}))
    created = api.post("/api/v1/messages", {"channel": "sms", "to": "+14155552671",
                                            "body": "x"}, format="json").json()
    wait_until(lambda: Message.objects.get(pk=created["id"]).status == "failed")
    assert api.get("/api/v1/queues/sms").json()["counts"]["failed"] == 1

    response = api.post("/api/v1/queues/sms/retry-failed")
    assert response.status_code == 200, response.json()
    assert {k: response.json()[k] for k in ("queue", "matched", "replayed", "remaining")} == {
        "queue": "sms", "matched": 1, "replayed": 1, "remaining": 0}
    wait_until(lambda: Message.objects.get(pk=created["id"]).status == "sent")
    assert DeadLetter.objects.get().status == "replayed"
    assert api.post("/api/v1/queues/sms/retry-failed").json()["matched"] == 0


@pytest.mark.django_db
def test_retry_failed_touches_only_the_queue_and_the_workspace(api, workspace):
    from tests.factories import DeadLetterFactory

    mine = MessageFactory(workspace=workspace, status="failed", channel="email")
    DeadLetterFactory(workspace=workspace, source_id=str(mine.pk), channel="email")
    other = MessageFactory(workspace=WorkspaceFactory(), status="failed", channel="sms")
    DeadLetterFactory(workspace=other.workspace, source_id=str(other.pk), channel="sms")
    body = api.post("/api/v1/queues/sms/retry-failed").json()
    assert (body["matched"], body["replayed"]) == (0, 0)
    assert Message.objects.get(pk=other.pk).status == "failed"
