"""Every channel through every provider: API -> database -> broker -> live worker -> a real
local stand-in (HTTP stub or SMTP server); plus Twilio's signed status callbacks."""
from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import hmac
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, urlencode

import pytest
from django.test import Client

from messaging.models import DeliveryAttempt, Message
from tests.factories import ContactFactory
from tests.support.smtp_server import RecordingHandler, running, smtp_settings
from tests.support.stub_server import Reply, StubServer
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

ACCOUNT_SID = "AC0123456789abcdef"
AUTH_TOKEN = "twilio-auth-token-1"
FROM_NUMBER = "+14155550199"
MESSAGES_PATH = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
STATUS_PATH = "/api/v1/providers/twilio/status"


def status_of(message_id: str) -> str:
    return Message.objects.get(id=message_id).status


def wait_for_status(message_id: str, status: str) -> Message:
    wait_until(lambda: status_of(message_id) == status)
    return Message.objects.get(id=message_id)


def use_providers(workspace, **providers: dict[str, Any]) -> None:
    workspace.settings = {"providers": providers}
    workspace.save()


def use_twilio(workspace, stub: StubServer) -> None:
    use_providers(workspace, sms={"name": "twilio", "account_sid": ACCOUNT_SID,
                                  "auth_token": AUTH_TOKEN, "from_number": FROM_NUMBER,
                                  "api_base": stub.url, "public_base_url": ""})


def form_of(request) -> dict[str, list[str]]:
    return parse_qs(request.body.decode())


def send(api, **payload: Any) -> str:
    response = api.post("/api/v1/messages", payload, format="json")
    assert response.status_code == 201, response.json()
    return response.json()["id"]


# --- SMS / MMS via Twilio -------------------------------------------------------------------

def test_an_sms_goes_through_twilio_with_basic_auth(api, workspace, stub_server, live_worker):
    use_twilio(workspace, stub_server)
    stub_server.script(MESSAGES_PATH, Reply(201, {"sid": "SM123", "status": "queued"}))
    contact = ContactFactory(workspace=workspace, first_name="Ada", phone="+14155552671")
    message_id = send(api, channel="sms", contact_id=str(contact.id),
                      body="Hi {{ contact.first_name }}")

    request = stub_server.wait_for(1, path=MESSAGES_PATH)[0]
    assert request.method == "POST"
    assert request.header("Content-Type") == "application/x-www-form-urlencoded"
    assert form_of(request) == {"To": ["+14155552671"], "From": [FROM_NUMBER],
                                "Body": ["Hi Ada"]}
    assert request.header("Authorization") == "Basic " + base64.b64encode(
        f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    assert request.header("Idempotency-Key") == message_id

    message = wait_for_status(message_id, "sent")
    assert (message.provider, message.provider_message_id) == ("twilio", "SM123")
    assert message.sent_at is not None
    attempt = DeliveryAttempt.objects.get(message_id=message_id)
    assert (attempt.outcome, attempt.status_code) == ("sent", 201)


def test_an_mms_repeats_media_url_through_twilio(api, workspace, stub_server, live_worker):
    use_twilio(workspace, stub_server)
    stub_server.script(MESSAGES_PATH, Reply(201, {"sid": "MM456", "status": "queued"}))
    urls = ["https://example.com/a.png", "https://example.com/b.jpg"]
    message_id = send(api, channel="mms", to="+14155552671", body="Look", media_urls=urls)

    request = stub_server.wait_for(1, path=MESSAGES_PATH)[0]
    assert form_of(request) == {"To": ["+14155552671"], "From": [FROM_NUMBER],
                                "Body": ["Look"], "MediaUrl": urls}
    message = wait_for_status(message_id, "sent")
    assert (message.provider, message.provider_message_id) == ("twilio", "MM456")


def test_a_twilio_error_code_fails_the_sms_for_good(api, workspace, stub_server, live_worker):
    use_twilio(workspace, stub_server)
    stub_server.script(MESSAGES_PATH, Reply(400, {
        "code": 21211, "message": "The 'To' number is not a valid phone number.",
        "status": 400}))
    message_id = send(api, channel="sms", to="+14155552671", body="x")
    message = wait_for_status(message_id, "failed")
    assert message.error_code == "21211"
    assert "21211" in message.last_error
    assert len(stub_server.requests) == 1


# --- email ----------------------------------------------------------------------------------

def test_an_email_goes_through_the_http_email_api(api, workspace, stub_server, live_worker):
    use_providers(workspace, email={"name": "http", "api_url": stub_server.url,
                                    "api_key": "email-key", "from_email": "news@relay.example"})
    stub_server.script("/api/email/send", Reply(202, {"id": "em-789"}))
    contact = ContactFactory(workspace=workspace, first_name="<b>Bo</b>",
                             email="bo@example.com")
    message_id = send(api, channel="email", contact_id=str(contact.id),
                      subject="Hello {{ contact.first_name }}",
                      html="<p>Dear {{ contact.first_name }}</p>")

    request = stub_server.wait_for(1, path="/api/email/send")[0]
    assert request.method == "POST"
    body = request.json()
    assert body["to"] == "bo@example.com"
    assert body["from"] == "news@relay.example"
    assert body["subject"] == "Hello <b>Bo</b>"
    assert body["html"] == "<p>Dear &lt;b&gt;Bo&lt;/b&gt;</p>"
    assert body["text"] == "Dear <b>Bo</b>"
    assert body["contactId"] == str(contact.id)
    assert body["workspaceId"] == str(workspace.id)
    assert body["messageId"] == message_id
    assert request.header("Authorization") == "Bearer email-key"
    assert request.header("Idempotency-Key") == message_id
    message = wait_for_status(message_id, "sent")
    assert (message.provider, message.provider_message_id) == ("http", "em-789")


@pytest.fixture
def smtp_server() -> Iterator[tuple[RecordingHandler, int]]:
    """A real SMTP server on 127.0.0.1 and its port."""
    handler = RecordingHandler()
    with running(handler) as port:
        yield handler, port


def test_an_email_goes_through_smtp_rendered_and_escaped(api, workspace, smtp_server,
                                                         live_worker):
    handler, port = smtp_server
    use_providers(workspace, email=smtp_settings(port))
    contact = ContactFactory(workspace=workspace, first_name="<b>Bo</b>",
                             email="bo@example.com", attributes={"plan": "gold & co"})
    message_id = send(api, channel="email", contact_id=str(contact.id),
                      subject="Hi {{ contact.first_name }}",
                      html="<p>Hello {{ contact.first_name }},</p>"
                           "<p>Plan: {{ contact.attributes.plan }}</p>")

    message = wait_for_status(message_id, "sent")
    [(mail_from, rcpt_tos, raw)] = handler.received
    assert mail_from == "noreply@relay.example"
    assert rcpt_tos == ["bo@example.com"]
    mime: EmailMessage = email.message_from_bytes(raw, policy=email.policy.default)
    assert mime.get_content_type() == "multipart/alternative"
    assert mime["Subject"] == "Hi <b>Bo</b>"
    assert mime["To"] == "bo@example.com"
    assert mime["Message-ID"] == f"<{message_id}@relay.example>"
    assert mime["X-Message-Id"] == message_id
    parts = {part.get_content_type(): part.get_content() for part in mime.iter_parts()}
    assert set(parts) == {"text/plain", "text/html"}
    assert parts["text/html"].strip() == ("<p>Hello &lt;b&gt;Bo&lt;/b&gt;,</p>"
                                          "<p>Plan: gold &amp; co</p>")
    assert parts["text/plain"].strip().splitlines() == ["Hello <b>Bo</b>,", "Plan: gold & co"]
    assert message.provider == "smtp"
    assert message.provider_message_id == f"<{message_id}@relay.example>"
    assert message.rendered["html"] == parts["text/html"].strip()


# --- AI -------------------------------------------------------------------------------------

def test_an_ai_message_sends_the_system_prompt_and_model_override(api, workspace, stub_server,
                                                                   live_worker):
    use_providers(workspace, ai={"name": "openai", "api_base": f"{stub_server.url}/v1",
                                 "api_key": "sk-test", "model": "configured-model"})
    stub_server.script("/v1/chat/completions", Reply(200, {
        "id": "chatcmpl-1", "model": "override-model",
        "choices": [{"message": {"role": "assistant", "content": "Tuesday at 9."}}],
        "usage": {"total_tokens": 12}}))
    contact = ContactFactory(workspace=workspace, first_name="Ada")
    message_id = send(api, channel="ai", contact_id=str(contact.id),
                      system="You are terse. The customer is {{ contact.first_name }}.",
                      prompt="When can we meet?", model="override-model")

    request = stub_server.wait_for(1, path="/v1/chat/completions")[0]
    assert request.json() == {"model": "override-model", "messages": [
        {"role": "system", "content": "You are terse. The customer is Ada."},
        {"role": "user", "content": "When can we meet?"}]}
    assert request.header("Authorization") == "Bearer sk-test"
    assert request.header("Idempotency-Key") == message_id
    message = wait_for_status(message_id, "sent")
    assert (message.provider, message.provider_message_id) == ("openai", "chatcmpl-1")
    assert message.response == {"response_text": "Tuesday at 9.", "model": "override-model",
                                "usage": {"total_tokens": 12}}


def test_an_ai_message_without_override_uses_the_configured_model(api, workspace,
                                                                   stub_server, live_worker):
    use_providers(workspace, ai={"name": "openai", "api_base": stub_server.url,
                                 "api_key": "sk-test", "model": "configured-model"})
    stub_server.script("/chat/completions", Reply(200, {
        "choices": [{"message": {"role": "assistant", "content": "ok"}}]}))
    message_id = send(api, channel="ai", prompt="Ping")
    request = stub_server.wait_for(1, path="/chat/completions")[0]
    assert request.json() == {"model": "configured-model",
                              "messages": [{"role": "user", "content": "Ping"}]}
    wait_for_status(message_id, "sent")


# --- console (no settings) ------------------------------------------------------------------

@pytest.mark.parametrize("payload", [
    {"channel": "sms", "to": "+14155552671", "body": "hello"},
    {"channel": "email", "to": "ann@example.com", "subject": "s", "html": "<p>x</p>"},
    {"channel": "ai", "prompt": "hello"},
])
def test_without_settings_the_console_provider_sends(api, workspace, live_worker, payload):
    assert workspace.settings == {}
    message_id = send(api, **payload)
    message = wait_for_status(message_id, "sent")
    assert message.provider == "console"
    assert message.provider_message_id == f"console-{message_id}"
    assert message.attempts == 1


# --- Twilio status callbacks ----------------------------------------------------------------

def twilio_signature(token: str, url: str, params: dict[str, str]) -> str:
    """Twilio's algorithm, by hand: base64(HMAC-SHA1(token, url + name1 + value1 + ...))
    with the POST parameters sorted by name."""
    data = url + "".join(name + params[name] for name in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()
                            ).decode()


def callback_params(sid: str, status: str, **extra: str) -> dict[str, str]:
    return {"AccountSid": ACCOUNT_SID, "ApiVersion": "2010-04-01", "From": FROM_NUMBER,
            "To": "+14155552671", "MessageSid": sid, "SmsSid": sid, "MessageStatus": status,
            "SmsStatus": status, **extra}


def post_callback(path: str, params: dict[str, str], signature: str):
    return Client().post(path, data=urlencode(params),
                         content_type="application/x-www-form-urlencoded",
                         HTTP_X_TWILIO_SIGNATURE=signature)


@pytest.fixture
def sent_via_twilio(api, workspace, stub_server, live_worker, settings) -> Message:
    """An SMS sent through Twilio (the stub) as SM123, now `sent`."""
    settings.PUBLIC_BASE_URL = ""
    use_twilio(workspace, stub_server)
    stub_server.script(MESSAGES_PATH, Reply(201, {"sid": "SM123", "status": "queued"}))
    message_id = send(api, channel="sms", to="+14155552671", body="x")
    return wait_for_status(message_id, "sent")


def test_a_signed_delivered_callback_marks_the_sms_delivered(sent_via_twilio):
    path = f"{STATUS_PATH}?message_id={sent_via_twilio.id}"
    params = callback_params("SM123", "delivered")
    signature = twilio_signature(AUTH_TOKEN, f"http://testserver{path}", params)

    response = post_callback(path, params, signature)

    assert response.status_code == 204
    message = Message.objects.get(id=sent_via_twilio.id)
    assert message.status == "delivered"
    assert message.delivered_at is not None and message.delivered_at >= message.sent_at


def test_a_wrong_signature_answers_403_and_changes_nothing(sent_via_twilio):
    path = f"{STATUS_PATH}?message_id={sent_via_twilio.id}"
    params = callback_params("SM123", "delivered")
    wrong_key = twilio_signature("not-the-token", f"http://testserver{path}", params)
    other_url = twilio_signature(AUTH_TOKEN, f"http://testserver{STATUS_PATH}", params)
    tampered = twilio_signature(AUTH_TOKEN, f"http://testserver{path}",
                                callback_params("SM123", "undelivered"))

    for signature in (wrong_key, other_url, tampered, ""):
        response = post_callback(path, params, signature)
        assert response.status_code == 403, signature
        assert response.json()["error"]["code"] == "bad_signature"

    message = Message.objects.get(id=sent_via_twilio.id)
    assert (message.status, message.delivered_at) == ("sent", None)


def test_an_undelivered_callback_moves_sent_to_undelivered(sent_via_twilio):
    path = f"{STATUS_PATH}?message_id={sent_via_twilio.id}"
    params = callback_params("SM123", "undelivered", ErrorCode="30003")

    response = post_callback(path, params,
                             twilio_signature(AUTH_TOKEN, f"http://testserver{path}", params))

    assert response.status_code == 204
    message = Message.objects.get(id=sent_via_twilio.id)
    assert message.status == "undelivered"
    assert message.error_code == "30003"
    assert "30003" in message.last_error
    assert message.delivered_at is None


def test_a_callback_without_message_id_is_matched_by_message_sid(sent_via_twilio):
    params = callback_params("SM123", "delivered")
    signature = twilio_signature(AUTH_TOKEN, f"http://testserver{STATUS_PATH}", params)

    assert post_callback(STATUS_PATH, params, signature).status_code == 204
    assert status_of(sent_via_twilio.id) == "delivered"


def test_a_url_signed_with_the_default_port_is_accepted(sent_via_twilio):
    path = f"{STATUS_PATH}?message_id={sent_via_twilio.id}"
    params = callback_params("SM123", "delivered")
    signature = twilio_signature(AUTH_TOKEN, f"http://testserver:80{path}", params)

    assert post_callback(path, params, signature).status_code == 204
    assert status_of(sent_via_twilio.id) == "delivered"


def test_intermediate_and_late_callbacks_do_not_move_the_status_back(sent_via_twilio):
    path = f"{STATUS_PATH}?message_id={sent_via_twilio.id}"
    url = f"http://testserver{path}"
    for status, expected in (("sent", "sent"), ("delivered", "delivered"),
                             ("undelivered", "delivered"), ("queued", "delivered")):
        params = callback_params("SM123", status)
        assert post_callback(path, params, twilio_signature(AUTH_TOKEN, url, params)
                             ).status_code == 204
        assert status_of(sent_via_twilio.id) == expected, status


def test_a_callback_for_an_unknown_message_answers_404(sent_via_twilio):
    path = f"{STATUS_PATH}?message_id=00000000-0000-0000-0000-000000000000"
    params = callback_params("SM999", "delivered")
    response = post_callback(path, params,
                             twilio_signature(AUTH_TOKEN, f"http://testserver{path}", params))
    assert response.status_code == 404
    assert status_of(sent_via_twilio.id) == "sent"
