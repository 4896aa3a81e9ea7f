"""The older queue service's endpoints (/api/schedule-*, /api/job-status) for its clients.

Payloads are those of the older QueueService.js client: `delay` in milliseconds, `message`
for the SMS text, `workspaceId` in the body (checked against the API key's workspace).
"""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient
from standardwebhooks.webhooks import Webhook

from messaging.models import Message, MessageStatus
from tests.factories import ContactFactory, WorkspaceFactory
from tests.support.stub_server import Reply, StubServer
from tests.support.waiting import wait_until

pytestmark = pytest.mark.django_db

SMS_URL = "/api/schedule-sms"
EMAIL_URL = "/api/schedule-email"
JOB_URL = "/api/schedule-job"


def sms_payload(workspace, **extra: Any) -> dict[str, Any]:
    """Return a schedule-sms body exactly as the older client builds it."""
    return {"to": "+14155552671", "message": "Your table is ready", "contactId": "legacy-42",
            "workspaceId": str(workspace.id), "delay": 0, "metadata": {"campaign": "c1"},
            **extra}


def email_payload(workspace, **extra: Any) -> dict[str, Any]:
    """Return a schedule-email body exactly as the older client builds it."""
    return {"to": "ann@example.com", "subject": "Welcome", "html": "<p>Hello</p>",
            "contactId": "legacy-43", "workspaceId": str(workspace.id), "delay": 0,
            "metadata": {"campaign": "c2"}, **extra}


def job_payload(workspace, callback: str = "https://hooks.example.com/jobs",
                **extra: Any) -> dict[str, Any]:
    """Return a schedule-job body exactly as the older client builds it."""
    return {"type": "follow_up", "data": {"workspaceId": str(workspace.id), "step": 2},
            "callbackEndpoint": callback, "delay": 0, **extra}


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def assert_created(response, delay_ms: float) -> Message:
    """Check the older service's 201 answer and return the message it names."""
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["success"] is True
    expected = timezone.now() + timedelta(milliseconds=delay_ms)
    assert abs((parse_time(body["scheduledTime"]) - expected).total_seconds()) < 2
    assert body["scheduledTime"].endswith("Z")
    return Message.objects.get(id=body["jobId"])


# --- schedule-sms ---------------------------------------------------------------------------

def test_it_schedules_an_sms_now_with_the_old_payload(api, workspace):
    message = assert_created(api.post(SMS_URL, sms_payload(workspace), format="json"), 0)
    assert message.workspace == workspace
    assert (message.channel, message.to, message.status) == ("sms", "+14155552671", "queued")
    assert message.content == {"body": "Your table is ready"}
    assert message.metadata == {"campaign": "c1", "contactId": "legacy-42", "_compat": {
        "contactId": "legacy-42", "workspaceId": str(workspace.id)}}
    assert message.contact is None
    assert message.source == "compat"


def test_it_delays_an_sms_by_the_milliseconds_given(api, workspace):
    response = api.post(SMS_URL, sms_payload(workspace, delay=90_000), format="json")
    message = assert_created(response, 90_000)
    assert response.json()["status"] == "delayed"
    assert message.status == "scheduled"
    expected = timezone.now() + timedelta(seconds=90)
    assert abs((message.scheduled_for - expected).total_seconds()) < 2
    assert message.due_at == message.scheduled_for


def test_a_media_url_makes_it_an_mms(api, workspace):
    response = api.post(SMS_URL, sms_payload(workspace, mediaUrl="https://example.com/a.png"),
                        format="json")
    message = assert_created(response, 0)
    assert message.channel == "mms"
    assert message.content == {"body": "Your table is ready",
                                "media_urls": ["https://example.com/a.png"]}


def test_a_list_of_media_urls_is_accepted(api, workspace):
    urls = ["https://example.com/a.png", "https://example.com/b.jpg"]
    message = assert_created(api.post(SMS_URL, sms_payload(workspace, mediaUrl=urls),
                                      format="json"), 0)
    assert message.channel == "mms" and message.content["media_urls"] == urls


def test_a_contact_id_of_ours_links_the_contact_and_stays_in_metadata(api, workspace):
    contact = ContactFactory(workspace=workspace, phone="+14155552699")
    payload = sms_payload(workspace, contactId=str(contact.id))
    del payload["to"]
    message = assert_created(api.post(SMS_URL, payload, format="json"), 0)
    assert message.contact == contact
    assert message.to == "+14155552699"
    assert message.metadata["contactId"] == str(contact.id)


def test_another_workspaces_contact_id_is_not_linked(api, workspace):
    stranger = ContactFactory(workspace=WorkspaceFactory())
    message = assert_created(api.post(SMS_URL, sms_payload(workspace,
                                                           contactId=str(stranger.id)),
                                      format="json"), 0)
    assert message.contact is None
    assert message.metadata["contactId"] == str(stranger.id)


def test_the_workspace_slug_is_accepted_as_workspace_id(api, workspace):
    response = api.post(SMS_URL, sms_payload(workspace, workspaceId=workspace.slug),
                        format="json")
    assert_created(response, 0)


def test_a_missing_workspace_id_means_the_keys_workspace(api, workspace):
    payload = sms_payload(workspace)
    del payload["workspaceId"]
    assert assert_created(api.post(SMS_URL, payload, format="json"), 0).workspace == workspace


@pytest.mark.parametrize("url,payload", [
    (SMS_URL, sms_payload),
    (EMAIL_URL, email_payload),
    (JOB_URL, job_payload),
])
def test_another_workspaces_id_answers_403_and_creates_nothing(api, workspace, url, payload):
    other = WorkspaceFactory()
    body = payload(workspace)
    if url == JOB_URL:
        body["data"]["workspaceId"] = str(other.id)
    else:
        body["workspaceId"] = str(other.id)
    response = api.post(url, body, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "workspace_mismatch"
    assert Message.objects.count() == 0


def test_another_workspaces_slug_answers_403(api, workspace):
    other = WorkspaceFactory()
    response = api.post(SMS_URL, sms_payload(workspace, workspaceId=other.slug), format="json")
    assert response.status_code == 403
    assert Message.objects.count() == 0


@pytest.mark.parametrize("change,field", [
    ({"message": None}, "message"),
    ({"to": None}, "to"),
    ({"to": "12345"}, "to"),
    ({"delay": -1}, "delay"),
    ({"delay": "5000"}, "delay"),
    ({"delay": True}, "delay"),
    ({"metadata": "campaign=c1"}, "metadata"),
    ({"metadata": ["c1"]}, "metadata"),
    ({"mediaUrl": "http://example.com/a.png"}, "mediaUrl"),
    ({"mediaUrl": "https://127.0.0.1/a.png"}, "mediaUrl"),
])
def test_bad_sms_input_answers_400_in_the_old_field_names(api, workspace, change, field):
    payload = {key: value for key, value in {**sms_payload(workspace), **change}.items()
               if value is not None}
    response = api.post(SMS_URL, payload, format="json")
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in error["fields"], error
    assert not {"body", "delay_seconds", "media_urls", "send_at"} & set(error["fields"])
    assert Message.objects.count() == 0


def test_a_non_object_body_answers_400(api):
    response = api.post(SMS_URL, ["+14155552671"], format="json")
    assert response.status_code == 400
    assert Message.objects.count() == 0


def test_an_absurd_delay_answers_400_not_500(workspace, api_key):
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key}")
    response = client.post(SMS_URL, sms_payload(workspace, delay=1e20), format="json")
    assert response.status_code == 400
    assert "delay" in response.json()["error"]["fields"]
    assert Message.objects.count() == 0


def test_an_idempotency_key_replays_the_first_answer(api, workspace):
    first = api.post(SMS_URL, sms_payload(workspace), format="json", HTTP_IDEMPOTENCY_KEY="c1")
    second = api.post(SMS_URL, sms_payload(workspace), format="json", HTTP_IDEMPOTENCY_KEY="c1")
    assert first.status_code == second.status_code == 201
    assert first.json()["jobId"] == second.json()["jobId"]
    assert Message.objects.count() == 1


# --- schedule-email -------------------------------------------------------------------------

def test_it_schedules_an_email_with_the_old_payload(api, workspace):
    response = api.post(EMAIL_URL, email_payload(workspace, delay=5000), format="json")
    message = assert_created(response, 5000)
    assert (message.channel, message.to, message.status) == ("email", "ann@example.com",
                                                             "scheduled")
    assert message.content == {"subject": "Welcome", "html": "<p>Hello</p>"}
    assert message.metadata == {"campaign": "c2", "contactId": "legacy-43", "_compat": {
        "contactId": "legacy-43", "workspaceId": str(workspace.id)}}


@pytest.mark.parametrize("change,field", [
    ({"to": "not-an-address"}, "to"),
    ({"subject": None}, "subject"),
    ({"html": None}, "html"),
    ({"delay": -5}, "delay"),
    ({"metadata": 7}, "metadata"),
])
def test_bad_email_input_answers_400_in_the_old_field_names(api, workspace, change, field):
    payload = {key: value for key, value in {**email_payload(workspace), **change}.items()
               if value is not None}
    response = api.post(EMAIL_URL, payload, format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()["error"]["fields"]
    assert Message.objects.count() == 0


def test_a_text_only_email_is_accepted(api, workspace):
    payload = email_payload(workspace, text="Hello in plain text")
    del payload["html"]
    message = assert_created(api.post(EMAIL_URL, payload, format="json"), 0)
    assert message.content == {"subject": "Welcome", "text": "Hello in plain text"}


# --- schedule-job ---------------------------------------------------------------------------

def test_it_schedules_a_job_as_a_webhook_to_the_callback(api, workspace):
    response = api.post(JOB_URL, job_payload(workspace, delay=2500), format="json")
    message = assert_created(response, 2500)
    assert message.channel == "webhook"
    assert message.to == "https://hooks.example.com/jobs"
    assert message.content == {"url": "https://hooks.example.com/jobs", "payload": {
        "jobId": str(message.id), "type": "follow_up",
        "data": {"workspaceId": str(workspace.id), "step": 2}}}
    assert message.metadata == {"jobType": "follow_up", "_callback_shape": "job"}


def test_a_job_without_workspace_id_in_data_is_the_keys(api, workspace):
    payload = job_payload(workspace)
    payload["data"] = {"step": 1}
    assert assert_created(api.post(JOB_URL, payload, format="json"), 0).workspace == workspace


@pytest.mark.parametrize("change,field", [
    ({"type": None}, "type"),
    ({"data": None}, "data"),
    ({"data": "step=2"}, "data"),
    ({"callbackEndpoint": None}, "callbackEndpoint"),
    ({"callbackEndpoint": "ftp://hooks.example.com/jobs"}, "callbackEndpoint"),
    ({"callbackEndpoint": "http://10.0.0.5/jobs"}, "callbackEndpoint"),
    ({"delay": -1}, "delay"),
])
def test_bad_job_input_answers_400_in_the_old_field_names(api, workspace, change, field):
    payload = {key: value for key, value in {**job_payload(workspace), **change}.items()
               if value is not None}
    response = api.post(JOB_URL, payload, format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()["error"]["fields"]
    assert "url" not in response.json()["error"]["fields"]
    assert Message.objects.count() == 0


# --- job-status -----------------------------------------------------------------------------

def schedule_sms(api, workspace, **extra: Any) -> str:
    response = api.post(SMS_URL, sms_payload(workspace, **extra), format="json")
    assert response.status_code == 201, response.json()
    return response.json()["jobId"]


@pytest.mark.parametrize("status,state", [
    (MessageStatus.SCHEDULED, "delayed"),
    (MessageStatus.RETRYING, "delayed"),
    (MessageStatus.QUEUED, "waiting"),
    (MessageStatus.SENDING, "active"),
    (MessageStatus.SENT, "completed"),
    (MessageStatus.DELIVERED, "completed"),
    (MessageStatus.UNDELIVERED, "failed"),
    (MessageStatus.FAILED, "failed"),
    (MessageStatus.CANCELLED, "cancelled"),
])
def test_job_status_names_each_message_status_in_the_old_words(api, workspace, status, state):
    job_id = schedule_sms(api, workspace)
    Message.objects.filter(id=job_id).update(status=status)
    response = api.get(f"/api/job-status/{job_id}")
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert body["status"] == state
    assert body["result"]["messageStatus"] == status


def test_a_suppressed_job_failed_in_the_old_words_and_says_why(api, workspace):
    job_id = schedule_sms(api, workspace)
    Message.objects.filter(id=job_id).update(status=MessageStatus.SUPPRESSED,
                                             suppressed_reason="unsubscribed")
    response = api.get(f"/api/job-status/{job_id}")
    assert response.status_code == 200
    assert response.json()["status"] == "failed"
    assert response.json()["result"]["error"] == "suppressed: unsubscribed"


@pytest.mark.parametrize("status", list(MessageStatus))
def test_every_message_status_has_an_old_job_state(api, workspace, status):
    job_id = schedule_sms(api, workspace)
    Message.objects.filter(id=job_id).update(status=status)
    assert api.get(f"/api/job-status/{job_id}").status_code == 200


def test_a_fresh_delayed_job_is_delayed_and_an_immediate_one_waiting(api, workspace):
    delayed = schedule_sms(api, workspace, delay=60_000)
    waiting = schedule_sms(api, workspace, message="now")
    assert api.get(f"/api/job-status/{delayed}").json()["status"] == "delayed"
    assert api.get(f"/api/job-status/{waiting}").json()["status"] == "waiting"


def test_a_completed_job_reports_its_result(api, workspace):
    job_id = schedule_sms(api, workspace)
    sent_at = timezone.now()
    Message.objects.filter(id=job_id).update(status=MessageStatus.SENT, attempts=1,
                                             provider_message_id="SM123", sent_at=sent_at)
    body = api.get(f"/api/job-status/{job_id}").json()
    assert body == {"success": True, "status": "completed", "result": {
        "messageStatus": "sent", "attempts": 1, "providerMessageId": "SM123", "error": None,
        "response": None, "sentAt": sent_at.isoformat()}}


def test_a_failed_job_reports_its_error(api, workspace):
    job_id = schedule_sms(api, workspace)
    Message.objects.filter(id=job_id).update(status=MessageStatus.FAILED, attempts=3,
                                             last_error="HTTP 400: invalid number")
    body = api.get(f"/api/job-status/{job_id}").json()
    assert body["status"] == "failed"
    assert body["result"]["error"] == "HTTP 400: invalid number"
    assert body["result"]["attempts"] == 3
    assert body["result"]["sentAt"] is None


def test_an_ai_job_reports_the_reply_as_its_response(api, workspace):
    job_id = schedule_sms(api, workspace)
    Message.objects.filter(id=job_id).update(status=MessageStatus.SENT,
                                             response={"response_text": "Sure."})
    assert api.get(f"/api/job-status/{job_id}").json()["result"]["response"] == {
        "response_text": "Sure."}


@pytest.mark.parametrize("job_id", [str(uuid.uuid4()), "not-a-uuid", "123"])
def test_job_status_of_an_unknown_id_answers_404(api, job_id):
    response = api.get(f"/api/job-status/{job_id}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_job_status_of_another_workspaces_job_answers_404(api, other_api, workspace):
    job_id = schedule_sms(api, workspace)
    assert other_api.get(f"/api/job-status/{job_id}").status_code == 404
    assert api.get(f"/api/job-status/{job_id}").status_code == 200


@pytest.mark.parametrize("method,url", [
    ("post", SMS_URL), ("post", EMAIL_URL), ("post", JOB_URL),
    ("get", f"/api/job-status/{uuid.uuid4()}"),
])
def test_no_key_answers_401(method, url, workspace):
    client = APIClient()
    if method == "post":
        response = client.post(url, sms_payload(workspace), format="json")
    else:
        response = client.get(url)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert Message.objects.count() == 0


# --- end to end -----------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
def test_a_job_posts_type_and_data_to_the_callback_signed(
        api, workspace, stub_server: StubServer, live_worker, allow_local):
    data = {"workspaceId": str(workspace.id), "contactId": "legacy-42", "step": 2,
            "tags": ["a", "b"]}
    response = api.post(JOB_URL, {"type": "follow_up", "data": data,
                                  "callbackEndpoint": f"{stub_server.url}/jobs/callback",
                                  "delay": 0}, format="json")
    job_id = assert_created(response, 0).id
    request = stub_server.wait_for(1, path="/jobs/callback")[0]
    assert request.method == "POST"
    assert request.json() == {"jobId": str(job_id), "type": "follow_up", "data": data}
    assert request.header("Content-Type") == "application/json"
    assert request.header("webhook-id") == str(job_id)
    Webhook(workspace.webhook_secret).verify(request.body, {
        "webhook-id": request.header("webhook-id"),
        "webhook-timestamp": request.header("webhook-timestamp"),
        "webhook-signature": request.header("webhook-signature")})
    wait_until(lambda: api.get(f"/api/job-status/{job_id}").json()["status"] == "completed")


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
def test_a_delayed_job_is_posted_after_its_delay(
        api, workspace, stub_server: StubServer, live_worker, dispatcher, allow_local):
    response = api.post(JOB_URL, job_payload(workspace, f"{stub_server.url}/jobs/later",
                                             delay=1500), format="json")
    job_id = response.json()["jobId"]
    assert api.get(f"/api/job-status/{job_id}").json()["status"] == "delayed"
    scheduled = parse_time(response.json()["scheduledTime"]).timestamp()
    request = stub_server.wait_for(1, path="/jobs/later")[0]
    assert 0 <= request.at - scheduled < 1.0
    wait_until(lambda: api.get(f"/api/job-status/{job_id}").json()["status"] == "completed")


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
def test_a_jobs_data_is_delivered_verbatim(api, workspace, stub_server: StubServer,
                                           live_worker, allow_local):
    data = {"workspaceId": str(workspace.id), "template": "Hi {{ first_name }}",
            "meta": "{{ metadata.jobType }}"}
    api.post(JOB_URL, {"type": "render_later", "data": data,
                       "callbackEndpoint": f"{stub_server.url}/jobs/verbatim"}, format="json")
    request = stub_server.wait_for(1, path="/jobs/verbatim")[0]
    assert request.json()["data"] == data


@pytest.mark.parametrize("metadata", [[], "", 0, ["x"]])
def test_metadata_that_is_not_an_object_answers_400(api, workspace, metadata):
    response = api.post("/api/schedule-sms", {"to": "+14155552671", "message": "x",
                                              "metadata": metadata}, format="json")
    assert response.status_code == 400
    assert "metadata" in response.json()["error"]["fields"]


# --- scheduledFor ---------------------------------------------------------------------------

def scheduled_body(payload, workspace, when: Any) -> dict[str, Any]:
    """Return an older client's body naming a time instead of a delay."""
    body = payload(workspace, scheduledFor=when)
    del body["delay"]
    return body


@pytest.mark.parametrize("url,payload", [(SMS_URL, sms_payload), (EMAIL_URL, email_payload)])
def test_scheduled_for_schedules_the_message_for_that_instant(api, workspace, url, payload):
    response = api.post(url, scheduled_body(payload, workspace, "2030-01-01T09:00:00+02:00"),
                        format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    instant = datetime(2030, 1, 1, 7, 0, tzinfo=UTC)
    assert body["scheduledTime"] == "2030-01-01T07:00:00Z"
    assert (body["status"], body["ignored_fields"]) == ("delayed", [])
    message = Message.objects.get(id=body["jobId"])
    assert (message.status, message.scheduled_for, message.due_at) == (
        "scheduled", instant, instant)
    assert api.get(f"/api/job-status/{message.id}").json()["status"] == "delayed"


def test_a_queue_service_body_with_delay_zero_and_scheduled_for_is_scheduled(api, workspace):
    # QueueService.js sends `delay: delayMs` (0 by default) with every request.
    response = api.post(SMS_URL, sms_payload(workspace, scheduledFor="2030-01-01T09:00:00Z"),
                        format="json")
    assert response.status_code == 201, response.json()
    message = Message.objects.get(id=response.json()["jobId"])
    assert (message.status, message.scheduled_for) == (
        "scheduled", datetime(2030, 1, 1, 9, 0, tzinfo=UTC))


def test_scheduled_for_in_utc_with_z_is_taken(api, workspace):
    response = api.post(SMS_URL, scheduled_body(sms_payload, workspace,
                                                "2030-06-01T12:30:00.250Z"), format="json")
    message = Message.objects.get(id=response.json()["jobId"])
    assert message.scheduled_for == datetime(2030, 6, 1, 12, 30, 0, 250000, tzinfo=UTC)


def test_a_null_scheduled_for_is_no_schedule(api, workspace):
    response = api.post(SMS_URL, sms_payload(workspace, scheduledFor=None), format="json")
    message = assert_created(response, 0)
    assert message.status == "queued" and message.scheduled_for is None
    assert response.json()["ignored_fields"] == []


def test_a_scheduled_for_just_past_within_the_tolerance_sends_now(api, workspace):
    when = (timezone.now() - timedelta(seconds=5)).isoformat()
    response = api.post(SMS_URL, scheduled_body(sms_payload, workspace, when), format="json")
    assert response.status_code == 201, response.json()
    message = Message.objects.get(id=response.json()["jobId"])
    assert message.status == "queued"
    assert response.json()["status"] == "waiting"


@pytest.mark.parametrize("url,payload", [(SMS_URL, sms_payload), (EMAIL_URL, email_payload)])
@pytest.mark.parametrize("when,delay", [
    ("next tuesday", None),
    ("2030-01-01", None),  # a date is no instant
    ("2030-13-01T09:00:00Z", None),
    ("", None),
    (1893456000000, None),  # epoch milliseconds, not an ISO time
    ({"at": "2030-01-01T09:00:00Z"}, None),
    ("2030-01-01T09:00:00Z", 5000),
    ("2030-01-01T09:00:00Z", 0.5),
])
def test_a_bad_scheduled_for_answers_400_naming_it_and_writes_nothing(
        api, workspace, url, payload, when, delay):
    body = scheduled_body(payload, workspace, when)
    if delay is not None:
        body["delay"] = delay
    response = api.post(url, body, format="json")
    assert response.status_code == 400, response.json()
    assert list(response.json()["error"]["fields"]) == ["scheduledFor"]
    assert Message.objects.count() == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
def test_a_scheduled_sms_goes_out_at_its_time_not_at_once(
        api, workspace, stub_server: StubServer, live_worker, dispatcher):
    workspace.settings = {"providers": {"sms": {"name": "http", "api_url": stub_server.url}}}
    workspace.save()
    when = timezone.now() + timedelta(seconds=2)
    body = scheduled_body(sms_payload, workspace, when.isoformat())
    job_id = api.post(SMS_URL, body, format="json").json()["jobId"]
    request = stub_server.wait_for(1, path="/send-sms")[0]
    assert 0 <= request.at - when.timestamp() < 1.0
    wait_until(lambda: api.get(f"/api/job-status/{job_id}").json()["status"] == "completed")


# --- ignored fields -------------------------------------------------------------------------

@pytest.mark.parametrize("url,payload,extra", [
    (SMS_URL, sms_payload, {"priority": "high", "from": "x"}),
    (EMAIL_URL, email_payload, {"cc": "bo@example.com", "attachments": []}),
    (JOB_URL, job_payload, {"scheduledFor": "2030-01-01T09:00:00Z", "retries": 3}),
])
def test_fields_an_endpoint_does_not_take_are_ignored_and_named(api, workspace, url, payload,
                                                                extra):
    response = api.post(url, payload(workspace, **extra), format="json")
    assert_created(response, 0)
    assert response.json()["ignored_fields"] == sorted(extra)


@pytest.mark.parametrize("url,payload", [(SMS_URL, sms_payload), (EMAIL_URL, email_payload),
                                         (JOB_URL, job_payload)])
def test_an_answer_without_unknown_fields_has_an_empty_ignored_list(api, workspace, url,
                                                                   payload):
    body = api.post(url, payload(workspace), format="json").json()
    assert set(body) == {"success", "jobId", "scheduledTime", "status", "ignored_fields"}
    assert body["ignored_fields"] == []


# --- relative callbackEndpoint --------------------------------------------------------------

def use_callback_base(workspace, base: str) -> None:
    workspace.settings = {**workspace.settings, "callback_base_url": base}
    workspace.save()


def test_a_relative_callback_is_joined_to_the_callback_base_url(api, workspace):
    use_callback_base(workspace, "https://crm.example.com/hooks/")
    response = api.post(JOB_URL, job_payload(workspace, "/api/job-completed"), format="json")
    message = assert_created(response, 0)
    assert message.to == "https://crm.example.com/hooks/api/job-completed"
    assert message.content["url"] == message.to


def test_a_relative_callback_without_the_setting_answers_400_naming_it(api, workspace):
    response = api.post(JOB_URL, job_payload(workspace, "/api/flow-node-completed"),
                        format="json")
    assert response.status_code == 400
    [error] = response.json()["error"]["fields"]["callbackEndpoint"]
    assert "callback_base_url" in error
    assert Message.objects.count() == 0


@pytest.mark.parametrize("base", ["http://10.0.0.5", "http://127.0.0.1:8000/crm",
                                  "http://[::1]:9000", "http://localhost"])
def test_a_callback_base_on_a_private_network_is_refused(api, workspace, base):
    use_callback_base(workspace, base)
    response = api.post(JOB_URL, job_payload(workspace, "/api/job-completed"), format="json")
    assert response.status_code == 400
    assert "callbackEndpoint" in response.json()["error"]["fields"]
    assert Message.objects.count() == 0


def test_a_scheme_relative_callback_is_not_joined(api, workspace):
    use_callback_base(workspace, "https://crm.example.com")
    response = api.post(JOB_URL, job_payload(workspace, "//evil.example.com/x"), format="json")
    assert response.status_code == 400
    assert "callbackEndpoint" in response.json()["error"]["fields"]
    assert Message.objects.count() == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
def test_a_relative_callback_is_delivered_under_the_base_url(
        api, workspace, stub_server: StubServer, live_worker, allow_local):
    use_callback_base(workspace, f"{stub_server.url}/crm")
    body = {"type": "flow_node", "data": {"workspaceId": str(workspace.id), "nodeId": "n1"},
            "callbackEndpoint": "/api/flow-node-completed", "delay": 0}
    job_id = assert_created(api.post(JOB_URL, body, format="json"), 0).id
    request = stub_server.wait_for(1, path="/crm/api/flow-node-completed")[0]
    assert request.json() == {"jobId": str(job_id), "type": "flow_node", "data": body["data"]}
    wait_until(lambda: api.get(f"/api/job-status/{job_id}").json()["status"] == "completed")


# --- the client's own ids -------------------------------------------------------------------

CRM_CONTACT = "11111111-2222-4333-8444-555555555555"


def use_crm_ids(workspace, *ids: Any, **settings: Any) -> None:
    workspace.settings = {**workspace.settings, "compat_workspace_ids": list(ids), **settings}
    workspace.save()


@pytest.mark.parametrize("sent", ["10001", 10001])
def test_a_crm_workspace_id_in_the_setting_is_accepted(api, workspace, sent):
    use_crm_ids(workspace, "10001", 12)
    message = assert_created(api.post(SMS_URL, sms_payload(workspace, workspaceId=sent),
                                      format="json"), 0)
    assert message.workspace == workspace
    assert message.metadata["_compat"] == {"contactId": "legacy-42", "workspaceId": sent}


def test_a_crm_workspace_id_in_job_data_is_accepted(api, workspace):
    use_crm_ids(workspace, 10001)
    payload = job_payload(workspace)
    payload["data"]["workspaceId"] = "10001"
    assert_created(api.post(JOB_URL, payload, format="json"), 0)


@pytest.mark.parametrize("url,payload", [(SMS_URL, sms_payload), (EMAIL_URL, email_payload)])
def test_a_crm_workspace_id_not_in_the_setting_answers_403(api, workspace, url, payload):
    use_crm_ids(workspace, "10001")
    response = api.post(url, payload(workspace, workspaceId="66339"), format="json")
    assert response.status_code == 403
    assert Message.objects.count() == 0


def test_another_workspaces_crm_id_answers_403(api, workspace):
    use_crm_ids(WorkspaceFactory(), "777")
    response = api.post(SMS_URL, sms_payload(workspace, workspaceId="777"), format="json")
    assert response.status_code == 403
    assert Message.objects.count() == 0


@pytest.mark.parametrize("field,value", [("workspaceId", True), ("workspaceId", ["10001"]),
                                         ("workspaceId", 10001.5), ("contactId", {"id": 1}),
                                         ("contactId", False)])
def test_an_id_that_is_not_a_string_or_integer_answers_400(api, workspace, field, value):
    response = api.post(SMS_URL, sms_payload(workspace, **{field: value}), format="json")
    assert response.status_code == 400, response.json()
    assert list(response.json()["error"]["fields"]) == [field]
    assert Message.objects.count() == 0


@pytest.mark.parametrize("key,value", [("_compat", {"workspaceId": "10001"}),
                                       ("_rate_limit_key", "one-of-many"),
                                       ("_callback_shape", "ai_response")])
def test_the_v1_api_cannot_write_the_reserved_metadata_keys(api, workspace, key, value):
    response = api.post("/api/v1/messages", {
        "channel": "ai", "prompt": "x", "metadata": {key: value}}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["metadata"] == [f"{key} is a reserved key."]
    assert Message.objects.count() == 0


def test_a_clients_own_rate_key_and_callback_shape_are_dropped(api, workspace):
    body = sms_payload(workspace, metadata={"campaign": "c1", "_rate_limit_key": "one-of-many",
                                            "_callback_shape": "ai_response"})
    message = assert_created(api.post(SMS_URL, body, format="json"), 0)
    assert set(message.metadata) == {"campaign", "contactId", "_compat"}


def test_a_clients_own_reserved_key_is_replaced_by_what_it_sent(api, workspace):
    body = sms_payload(workspace, metadata={"_compat": {"workspaceId": "spoof"}})
    message = assert_created(api.post(SMS_URL, body, format="json"), 0)
    assert message.metadata["_compat"] == {"contactId": "legacy-42",
                                           "workspaceId": str(workspace.id)}


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
def test_send_sms_carries_the_clients_ids_and_ours_beside_them(
        api, workspace, stub_server: StubServer, live_worker):
    use_crm_ids(workspace, "10001", providers={"sms": {"name": "http",
                                                       "api_url": stub_server.url}})
    stub_server.script("/send-sms", Reply(200, {"messageId": "p-1"}))
    body = {"to": "+14155552671", "message": "Your table is ready", "contactId": CRM_CONTACT,
            "workspaceId": 10001, "delay": 0, "metadata": {}}
    job_id = assert_created(api.post(SMS_URL, body, format="json"), 0).id
    request = stub_server.wait_for(1, path="/send-sms")[0]
    sent = request.json()
    assert sent["to"] == "+14155552671"
    assert sent["message"] == "Your table is ready"
    assert sent["contactId"] == CRM_CONTACT
    assert sent["workspaceId"] == 10001
    assert sent["relayMessageId"] == str(job_id)
    assert sent["relayWorkspaceId"] == str(workspace.id)
    assert sent["relayContactId"] is None
    assert (sent["mediaUrl"], sent["mediaUrls"]) == (None, [])
    assert sent["metadata"] == {"contactId": CRM_CONTACT}
    assert len(sent) == 10
    wait_until(lambda: api.get(f"/api/job-status/{job_id}").json()["status"] == "completed")


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
def test_the_email_api_gets_the_clients_ids_and_ours_beside_them(
        api, workspace, stub_server: StubServer, live_worker):
    contact = ContactFactory(workspace=workspace, email="ann@example.com")
    use_crm_ids(workspace, "10001", providers={"email": {"name": "http",
                                                         "api_url": stub_server.url}})
    body = email_payload(workspace, contactId=str(contact.id), workspaceId="10001")
    job_id = assert_created(api.post(EMAIL_URL, body, format="json"), 0).id
    sent = stub_server.wait_for(1, path="/api/email/send")[0].json()
    assert (sent["to"], sent["subject"], sent["html"]) == ("ann@example.com", "Welcome",
                                                           "<p>Hello</p>")
    assert (sent["contactId"], sent["workspaceId"]) == (str(contact.id), "10001")
    assert (sent["relayMessageId"], sent["messageId"]) == (str(job_id), str(job_id))
    assert sent["relayWorkspaceId"] == str(workspace.id)
    assert sent["relayContactId"] == str(contact.id)


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
def test_a_v1_sms_still_sends_our_ids_only(api, workspace, stub_server: StubServer,
                                           live_worker):
    use_crm_ids(workspace, "10001", providers={"sms": {"name": "http",
                                                       "api_url": stub_server.url}})
    response = api.post("/api/v1/messages", {"channel": "sms", "to": "+14155552671",
                                             "body": "x"}, format="json")
    assert response.status_code == 201
    sent = stub_server.wait_for(1, path="/send-sms")[0].json()
    assert sent == {"to": "+14155552671", "message": "x", "contactId": None,
                    "workspaceId": str(workspace.id), "mediaUrl": None, "mediaUrls": [],
                    "metadata": {}}
