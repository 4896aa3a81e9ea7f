"""The older clients' remaining contracts, each as such a client calls it (only the key
added): metadata passed on to /send-sms, the older engine's flat job callback, a past or
offset-less scheduledFor, `phoneNumber` for `to`, and an AI reply in the SMS shape."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from core.models import DeadLetter
from messaging.models import Message, MessageStatus
from tests.support.stub_server import Reply, StubServer
from tests.support.waiting import wait_until

SMS_URL = "/api/schedule-sms"
JOB_URL = "/api/schedule-job"
AI_URL = "/api/schedule-ai-response"
COMPLETION = {"id": "chatcmpl-9", "model": "m",
              "choices": [{"message": {"role": "assistant", "content": "We open at 9."}}]}


def sms_body(**extra: Any) -> dict[str, Any]:
    """Return a schedule-sms body as the older client builds it (neutral ids)."""
    return {"to": "+14155552671", "message": "Your table is ready", "contactId": "crm-contact-1",
            "workspaceId": "crm-workspace-1", "delay": 0, "metadata": {"campaign": "c1"},
            **extra}


def flow_job(callback: str, **extra: Any) -> dict[str, Any]:
    """Return the older flow engine's EXECUTE_FLOW_NODE job (QueueService.scheduleJob)."""
    return {"type": "EXECUTE_FLOW_NODE", "data": {
        "nodeId": "node-1", "flowId": "flow-1", "contactId": "crm-contact-1",
        "workspaceId": "crm-workspace-1", "executionId": "exec-1"},
        "callbackEndpoint": callback, "delay": 0, **extra}


@pytest.fixture
def crm_workspace(workspace):
    """The workspace, known to the older client by its own id crm-workspace-1."""
    workspace.settings = {**workspace.settings, "compat_workspace_ids": ["crm-workspace-1"]}
    workspace.save()
    return workspace


def use_sms_api(workspace, url: str) -> None:
    workspace.settings = {**workspace.settings,
                          "providers": {"sms": {"name": "http", "api_url": url}}}
    workspace.save()


def created(response) -> Message:
    assert response.status_code == 201, response.json()
    return Message.objects.get(id=response.json()["jobId"])


# --- 1. metadata passed on to /send-sms ------------------------------------------------------

@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
def test_send_sms_forwarding_carries_the_jobs_metadata(api, crm_workspace,
                                                       stub_server: StubServer, live_worker):
    use_sms_api(crm_workspace, stub_server.url)
    metadata = {"campaign": "c1", "nested": {"step": 2}, "_private": "dropped"}
    job_id = created(api.post(SMS_URL, sms_body(metadata=metadata), format="json")).id

    body = stub_server.wait_for(1, path="/send-sms")[0].json()
    assert body["metadata"] == {"campaign": "c1", "nested": {"step": 2},
                                "contactId": "crm-contact-1"}
    # Today's fields stay as they were.
    assert (body["to"], body["message"]) == ("+14155552671", "Your table is ready")
    assert (body["contactId"], body["workspaceId"]) == ("crm-contact-1", "crm-workspace-1")
    assert body["relayMessageId"] == str(job_id)
    assert "_compat" not in body["metadata"]


# --- 2. the older engine's flat job callback ------------------------------------------------

@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
def test_a_job_asking_for_the_flat_shape_gets_it(api, crm_workspace, stub_server: StubServer,
                                                 live_worker, allow_local):
    job = flow_job(f"{stub_server.url}/api/flow-node-completed", callbackShape="flat")
    response = api.post(JOB_URL, job, format="json")
    message = created(response)
    assert response.json()["ignored_fields"] == []

    body = stub_server.wait_for(1, path="/api/flow-node-completed")[0].json()
    assert body == {"jobId": str(message.id),
                    "result": {"type": "EXECUTE_FLOW_NODE", "data": job["data"]},
                    "nodeId": "node-1", "executionId": "exec-1", "flowId": "flow-1",
                    "contactId": "crm-contact-1", "workspaceId": "crm-workspace-1"}


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
def test_the_workspace_setting_makes_every_job_flat(api, crm_workspace, stub_server: StubServer,
                                                    live_worker, allow_local):
    crm_workspace.settings = {**crm_workspace.settings, "compat_callback_shape": "flat"}
    crm_workspace.save()
    job = flow_job(f"{stub_server.url}/api/job-completed")
    del job["data"]["nodeId"]
    message = created(api.post(JOB_URL, job, format="json"))

    body = stub_server.wait_for(1, path="/api/job-completed")[0].json()
    assert set(body) == {"jobId", "result", "nodeId", "executionId", "flowId", "contactId",
                         "workspaceId"}
    assert (body["jobId"], body["nodeId"], body["executionId"]) == (str(message.id), None,
                                                                    "exec-1")


@pytest.mark.django_db
def test_without_marker_or_setting_the_job_keeps_todays_shape(api, crm_workspace):
    message = created(api.post(JOB_URL, flow_job("https://crm.example.com/api/job-completed"),
                               format="json"))
    assert set(message.content["payload"]) == {"jobId", "type", "data"}


@pytest.mark.django_db
@pytest.mark.parametrize("shape", ["FLAT", "legacy", 1, ""])
def test_an_unknown_callback_shape_answers_400_naming_it(api, crm_workspace, shape):
    response = api.post(JOB_URL, flow_job("https://crm.example.com/api/job-completed",
                                          callbackShape=shape), format="json")
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["callbackShape"]
    assert Message.objects.count() == 0


@pytest.mark.django_db
def test_the_workspace_setting_refuses_an_unknown_shape(api):
    response = api.patch("/api/v1/workspace", {"settings": {"compat_callback_shape": "old"}},
                         format="json")
    assert response.status_code == 400
    assert "settings.compat_callback_shape" in response.json()["error"]["fields"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
def test_a_crm_400_to_the_shape_is_said_plainly_in_the_dead_letter(
        api, crm_workspace, stub_server: StubServer, live_worker, allow_local):
    stub_server.script("/api/flow-node-completed",
                       Reply(400, {"error": "executionId is required"}))
    message = created(api.post(JOB_URL, flow_job(f"{stub_server.url}/api/flow-node-completed"),
                               format="json"))

    wait_until(lambda: DeadLetter.objects.filter(source_id=str(message.id)).exists())
    letter = DeadLetter.objects.get(source_id=str(message.id))
    assert letter.error_code == "callback_shape"
    assert "answered 400 to the job body {jobId, type, data}" in letter.error
    assert 'callbackShape "flat"' in letter.error
    assert "compat_callback_shape" in letter.error
    assert "executionId is required" in letter.error  # the CRM's own words are kept
    assert Message.objects.get(id=message.id).status == MessageStatus.FAILED


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
def test_a_400_from_an_ordinary_webhook_is_not_blamed_on_the_shape(
        api, workspace, stub_server: StubServer, live_worker, allow_local):
    stub_server.script("/hook", Reply(400, {"error": "no"}))
    response = api.post("/api/v1/messages", {"channel": "webhook", "url": f"{stub_server.url}/hook",
                                             "payload": {"a": 1}}, format="json")
    assert response.status_code == 201, response.json()
    wait_until(lambda: DeadLetter.objects.filter(source_id=response.json()["id"]).exists())
    letter = DeadLetter.objects.get(source_id=response.json()["id"])
    assert letter.error_code != "callback_shape"
    assert "callbackShape" not in letter.error


# --- 3. scheduledFor in the past, or without an offset ----------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize("ago", [timedelta(minutes=5), timedelta(days=400)])
def test_a_scheduled_for_in_the_past_sends_at_once(api, crm_workspace, ago):
    when = (timezone.now() - ago).isoformat()
    response = api.post(SMS_URL, sms_body(scheduledFor=when), format="json")
    message = created(response)
    assert (message.status, message.scheduled_for) == (MessageStatus.QUEUED, None)
    assert response.json()["status"] == "waiting"
    sent_at = datetime.fromisoformat(response.json()["scheduledTime"].replace("Z", "+00:00"))
    assert sent_at == message.created_at


@pytest.mark.django_db
@pytest.mark.parametrize("when,instant", [
    ("2030-01-01T09:00:00", datetime(2030, 1, 1, 9, 0, tzinfo=UTC)),
    ("2030-01-01 09:00", datetime(2030, 1, 1, 9, 0, tzinfo=UTC)),
    ("2030-06-01T12:30:00.250", datetime(2030, 6, 1, 12, 30, 0, 250000, tzinfo=UTC)),
])
def test_a_scheduled_for_without_an_offset_is_utc(api, crm_workspace, when, instant):
    response = api.post(SMS_URL, sms_body(scheduledFor=when), format="json")
    message = created(response)
    assert (message.status, message.scheduled_for) == (MessageStatus.SCHEDULED, instant)
    assert response.json()["scheduledTime"] == instant.isoformat().replace("+00:00", "Z")


# --- 4. phoneNumber for to ---------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
def test_phone_number_is_taken_for_to(api, crm_workspace, stub_server: StubServer,
                                      live_worker):
    use_sms_api(crm_workspace, stub_server.url)
    body = sms_body(phoneNumber="+14155552672")
    del body["to"]
    response = api.post(SMS_URL, body, format="json")
    message = created(response)
    assert response.json()["ignored_fields"] == []
    assert message.to == "+14155552672"
    assert stub_server.wait_for(1, path="/send-sms")[0].json()["to"] == "+14155552672"


@pytest.mark.django_db
def test_the_same_number_in_to_and_phone_number_is_one(api, crm_workspace):
    message = created(api.post(SMS_URL, sms_body(phoneNumber="+14155552671"), format="json"))
    assert message.to == "+14155552671"


@pytest.mark.django_db
@pytest.mark.parametrize("change,field", [
    ({"phoneNumber": "+14155552672"}, "phoneNumber"),  # beside another `to`
    ({"to": None, "phoneNumber": "12345"}, "to"),
])
def test_a_bad_phone_number_answers_400_naming_it(api, crm_workspace, change, field):
    body = {k: v for k, v in {**sms_body(), **change}.items() if v is not None}
    response = api.post(SMS_URL, body, format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()["error"]["fields"]
    assert Message.objects.count() == 0


# --- 5. an AI reply in the SMS shape -----------------------------------------------------------

@pytest.fixture
def openai_stub(crm_workspace, stub_server: StubServer, live_worker, allow_local) -> StubServer:
    crm_workspace.settings = {**crm_workspace.settings, "providers": {"ai": {
        "name": "openai", "api_base": stub_server.url, "api_key": "k", "model": "m"}}}
    crm_workspace.save()
    stub_server.script("/chat/completions", Reply(200, COMPLETION))
    return stub_server


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
def test_an_ai_job_in_the_sms_shape_replies_in_the_sms_shape(api, openai_stub: StubServer):
    response = api.post(AI_URL, {"to": "+14155552671", "message": "When do you open?",
                                 "workspaceId": "crm-workspace-1",
                                 "callback_url": f"{openai_stub.url}/send-sms"}, format="json")
    message = created(response)
    assert response.json()["ignored_fields"] == []
    assert message.content["prompt"] == "When do you open?"

    body = openai_stub.wait_for(1, path="/send-sms")[0].json()
    assert body == {"to": "+14155552671", "message": "We open at 9.",
                    "workspaceId": "crm-workspace-1", "jobId": str(message.id)}


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
def test_callback_shape_sms_asks_for_it_on_any_url(api, openai_stub: StubServer):
    created(api.post(AI_URL, {"workspace_id": "crm-workspace-1", "contact_id": "crm-contact-1",
                              "message_id": "m-1", "message_text": "Hours?",
                              "callback_url": f"{openai_stub.url}/replies",
                              "callback_shape": "sms"}, format="json"))
    body = openai_stub.wait_for(1, path="/replies")[0].json()
    # No `to` given: the older worker sent the contact id there.
    assert (body["to"], body["message"], body["workspaceId"]) == (
        "crm-contact-1", "We open at 9.", "crm-workspace-1")


@pytest.mark.django_db
@pytest.mark.parametrize("change,field", [
    ({"callback_shape": "fax"}, "callback_shape"),
    ({"message_text": "x"}, "message"),  # both names for the text
    ({"to": ["+1"]}, "to"),
])
def test_a_bad_sms_shaped_ai_job_answers_400_naming_it(api, crm_workspace, change, field):
    body = {"to": "+14155552671", "message": "Hours?", "workspaceId": "crm-workspace-1",
            "callback_url": "https://crm.example.com/send-sms", **change}
    response = api.post(AI_URL, body, format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()["error"]["fields"]
    assert Message.objects.count() == 0
