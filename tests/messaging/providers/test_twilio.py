from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import pytest

from messaging.providers.base import Outbound, ProviderError
from messaging.providers.twilio import STATUS_MAP, TwilioProvider, validate_signature
from tests.support.stub_server import Reply, StubServer

MESSAGES_PATH = "/2010-04-01/Accounts/AC123/Messages.json"
TWILIO_ERROR_21211 = {"code": 21211, "message": "The 'To' number is not a valid phone number.",
                      "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}


def twilio_config(stub: StubServer, **extra: Any) -> dict[str, Any]:
    """Return a Twilio config pointing at the stub server."""
    return {"account_sid": "AC123", "auth_token": "secret-token", "from_number": "+14155550199",
            "messaging_service_sid": "", "api_base": stub.url, "public_base_url": "", **extra}


def form(stub: StubServer) -> dict[str, list[str]]:
    """Return the form fields of the only request the stub received."""
    [request] = stub.requests
    return parse_qs(request.body.decode())


def test_sms_posts_the_exact_form_with_basic_auth_and_idempotency(
        stub_server: StubServer, make_outbound: Callable[..., Outbound]) -> None:
    stub_server.script(MESSAGES_PATH, Reply(201, {"sid": "SM0001", "status": "queued"}))

    receipt = TwilioProvider().send(make_outbound(config=twilio_config(stub_server)))

    assert receipt.provider_message_id == "SM0001"
    assert receipt.status_code == 201
    [request] = stub_server.requests
    assert (request.method, request.path) == ("POST", MESSAGES_PATH)
    assert form(stub_server) == {"To": ["+14155550100"], "From": ["+14155550199"],
                                 "Body": ["Hello"]}
    assert request.header("Authorization") == "Basic " + base64.b64encode(
        b"AC123:secret-token").decode()
    assert request.header("Idempotency-Key") == "msg-0001"
    assert request.header("I-Twilio-Idempotency-Token") == "msg-0001"
    assert request.header("Content-Type") == "application/x-www-form-urlencoded"


def test_mms_repeats_media_url_and_asks_for_status_callbacks(
        stub_server: StubServer, make_outbound: Callable[..., Outbound]) -> None:
    stub_server.script(MESSAGES_PATH, Reply(201, {"sid": "MM0001"}))
    config = twilio_config(stub_server, public_base_url="https://relay.example.com/")
    content = {"body": "Look", "media_urls": ["https://cdn.example.com/a.jpg",
                                              "https://cdn.example.com/b.png"]}

    TwilioProvider().send(make_outbound(channel="mms", content=content, config=config))

    fields = form(stub_server)
    assert fields["MediaUrl"] == ["https://cdn.example.com/a.jpg", "https://cdn.example.com/b.png"]
    assert fields["StatusCallback"] == [
        "https://relay.example.com/api/v1/providers/twilio/status?message_id=msg-0001"]


def test_messaging_service_sid_replaces_from(
        stub_server: StubServer, make_outbound: Callable[..., Outbound]) -> None:
    stub_server.script(MESSAGES_PATH, Reply(201, {"sid": "SM0002"}))
    config = twilio_config(stub_server, messaging_service_sid="MG999")

    TwilioProvider().send(make_outbound(config=config))

    fields = form(stub_server)
    assert fields["MessagingServiceSid"] == ["MG999"]
    assert "From" not in fields
    assert "StatusCallback" not in fields


def test_invalid_number_is_permanent_with_the_twilio_code(
        stub_server: StubServer, make_outbound: Callable[..., Outbound]) -> None:
    stub_server.script(MESSAGES_PATH, Reply(400, TWILIO_ERROR_21211))

    with pytest.raises(ProviderError) as caught:
        TwilioProvider().send(make_outbound(config=twilio_config(stub_server)))

    assert caught.value.permanent is True
    assert caught.value.code == "21211"
    assert caught.value.status_code == 400
    assert "not a valid phone number" in caught.value.message


def test_too_many_requests_is_transient_and_honours_retry_after(
        stub_server: StubServer, make_outbound: Callable[..., Outbound]) -> None:
    body = {"code": 20429, "message": "Too Many Requests", "status": 429}
    stub_server.script(MESSAGES_PATH, Reply(429, body, headers={"Retry-After": "2"}))

    with pytest.raises(ProviderError) as caught:
        TwilioProvider().send(make_outbound(config=twilio_config(stub_server)))

    assert caught.value.permanent is False
    assert caught.value.retry_after == 2
    assert caught.value.code == "20429"


def test_service_unavailable_is_transient(
        stub_server: StubServer, make_outbound: Callable[..., Outbound]) -> None:
    stub_server.script(MESSAGES_PATH, Reply(503, b"upstream down"))

    with pytest.raises(ProviderError) as caught:
        TwilioProvider().send(make_outbound(config=twilio_config(stub_server)))

    assert caught.value.permanent is False
    assert caught.value.status_code == 503


def test_missing_credentials_are_permanent_without_a_request(
        stub_server: StubServer, make_outbound: Callable[..., Outbound]) -> None:
    config = twilio_config(stub_server, auth_token="")

    with pytest.raises(ProviderError) as caught:
        TwilioProvider().send(make_outbound(config=config))

    assert caught.value.permanent is True
    assert stub_server.requests == []


def hand_signature(token: str, data: str) -> str:
    """Return base64(HMAC-SHA1(token, data)), computed here independently of the module."""
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()
                            ).decode()


STATUS_URL = "https://relay.example.com/api/v1/providers/twilio/status?message_id=m1"
STATUS_PARAMS = {"To": "+14155550100", "MessageStatus": "delivered", "MessageSid": "SM1",
                 "AccountSid": "AC123"}


def test_validate_signature_accepts_twilios_scheme() -> None:
    # URL, then each param name + value in name order.
    data = STATUS_URL + "AccountSidAC123" + "MessageSidSM1" + "MessageStatusdelivered" + \
        "To+14155550100"
    signature = hand_signature("secret-token", data)

    assert validate_signature("secret-token", STATUS_URL, STATUS_PARAMS, signature)


def test_validate_signature_refuses_tampering_and_wrong_token() -> None:
    signature = hand_signature("secret-token", STATUS_URL + "AccountSidAC123MessageSidSM1"
                               "MessageStatusdeliveredTo+14155550100")

    tampered = {**STATUS_PARAMS, "MessageStatus": "failed"}
    assert not validate_signature("secret-token", STATUS_URL, tampered, signature)
    assert not validate_signature("other-token", STATUS_URL, STATUS_PARAMS, signature)
    assert not validate_signature("secret-token", STATUS_URL + "&x=1", STATUS_PARAMS, signature)
    assert not validate_signature("secret-token", STATUS_URL, STATUS_PARAMS, "")


def test_validate_signature_with_repeated_params_and_port_variants() -> None:
    url = "https://relay.example.com/hook"
    params = {"MediaUrl": ["https://b.example/2", "https://a.example/1"], "Body": "hi"}
    signed_with_port = hand_signature(
        "tok", "https://relay.example.com:443/hook" + "Bodyhi"
        + "MediaUrlhttps://a.example/1" + "MediaUrlhttps://b.example/2")

    assert validate_signature("tok", url, params, signed_with_port)


def test_status_map_covers_twilio_statuses() -> None:
    assert {status: STATUS_MAP[status] for status in
            ["queued", "sending", "sent", "delivered", "read", "undelivered", "failed"]} == {
        "queued": "sent", "sending": "sent", "sent": "sent", "delivered": "delivered",
        "read": "delivered", "undelivered": "undelivered", "failed": "undelivered"}
