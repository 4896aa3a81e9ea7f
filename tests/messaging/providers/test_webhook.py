"""The webhook provider against a real local HTTP server, verified with standardwebhooks."""
from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from django.test import override_settings
from standardwebhooks import Webhook

from messaging.providers.base import Outbound, ProviderError
from messaging.providers.webhook import WebhookProvider, sign, signature_header
from tests.support.stub_server import Reply, StubServer

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
PREVIOUS = "whsec_" + base64.b64encode(b"p" * 32).decode()
PAYLOAD = {"type": "contact.created", "data": {"name": "Zoë", "n": 1}}

local_allowed = override_settings(SSRF_ALLOWED_NETWORKS=["127.0.0.0/8"])


def hook(make_outbound: Callable[..., Outbound], stub: StubServer, *, path: str = "/hook",
         secrets: list[str] | None = None, **content: Any) -> Outbound:
    return make_outbound(
        channel="webhook", to="",
        content={"url": stub.url + path, "payload": PAYLOAD, **content},
        config={"secrets": [SECRET, ""] if secrets is None else secrets})


@local_allowed
def test_posts_compact_json_signed_per_standard_webhooks(
        stub_server: StubServer, make_outbound: Callable[..., Outbound]) -> None:
    receipt = WebhookProvider().send(hook(make_outbound, stub_server))

    [request] = stub_server.requests
    assert request.body == json.dumps(PAYLOAD, separators=(",", ":"),
                                      ensure_ascii=False).encode()
    assert Webhook(SECRET).verify(request.body, request.headers) == PAYLOAD
    assert request.header("webhook-id") == "msg-0001"
    assert request.header("Idempotency-Key") == "msg-0001"
    assert request.header("Content-Type") == "application/json"
    assert len(request.header("webhook-signature").split(" ")) == 1
    assert receipt.status_code == 200


@local_allowed
def test_during_rotation_both_secrets_verify(
        stub_server: StubServer, make_outbound: Callable[..., Outbound]) -> None:
    WebhookProvider().send(hook(make_outbound, stub_server, secrets=[SECRET, PREVIOUS]))

    [request] = stub_server.requests
    assert len(request.header("webhook-signature").split(" ")) == 2
    Webhook(SECRET).verify(request.body, request.headers)
    Webhook(PREVIOUS).verify(request.body, request.headers)


@local_allowed
def test_user_headers_are_sent_but_cannot_override_signed_ones(
        stub_server: StubServer, make_outbound: Callable[..., Outbound]) -> None:
    headers = {"X-Team": "ops", "WEBHOOK-SIGNATURE": "v1,forged", "webhook-id": "other",
               "content-type": "text/plain", "Idempotency-Key": "mine"}

    WebhookProvider().send(hook(make_outbound, stub_server, headers=headers))

    [request] = stub_server.requests
    assert request.header("X-Team") == "ops"
    assert "forged" not in request.header("webhook-signature")
    assert request.header("webhook-id") == "msg-0001"
    assert request.header("Content-Type") == "application/json"
    assert request.header("Idempotency-Key") == "msg-0001"
    Webhook(SECRET).verify(request.body, request.headers)


@local_allowed
@pytest.mark.parametrize(("reply", "permanent"), [
    (Reply(410, {"gone": True}), True),
    (Reply(503, b"busy"), False),
    (Reply(429, b"slow down", headers={"Retry-After": "7"}), False),
])
def test_receiver_answers_map_to_permanent_or_transient(
        stub_server: StubServer, make_outbound: Callable[..., Outbound], reply: Reply,
        permanent: bool) -> None:
    stub_server.script("/hook", reply)

    with pytest.raises(ProviderError) as caught:
        WebhookProvider().send(hook(make_outbound, stub_server))

    assert caught.value.permanent is permanent
    assert caught.value.status_code == reply.status


@local_allowed
def test_redirect_is_permanent_and_not_followed(
        stub_server: StubServer, make_outbound: Callable[..., Outbound]) -> None:
    stub_server.script("/hook", Reply(302, b"", headers={"Location": stub_server.url + "/x"}))

    with pytest.raises(ProviderError) as caught:
        WebhookProvider().send(hook(make_outbound, stub_server))

    assert caught.value.permanent is True
    assert caught.value.status_code == 302
    assert len(stub_server.requests) == 1


@override_settings(SSRF_ALLOWED_NETWORKS=["127.0.0.0/8"], PROVIDER_TIMEOUT_SECONDS=0.3)
def test_read_timeout_is_transient_with_unknown_outcome(
        stub_server: StubServer, make_outbound: Callable[..., Outbound]) -> None:
    stub_server.script("/hook", Reply(200, delay=1.5))

    with pytest.raises(ProviderError) as caught:
        WebhookProvider().send(hook(make_outbound, stub_server))

    assert caught.value.permanent is False
    assert caught.value.outcome_unknown is True


@override_settings(SSRF_ALLOWED_NETWORKS=[])
def test_private_address_is_refused_permanently_without_a_request(
        stub_server: StubServer, make_outbound: Callable[..., Outbound]) -> None:
    with pytest.raises(ProviderError) as caught:
        WebhookProvider().send(hook(make_outbound, stub_server))

    assert caught.value.permanent is True
    assert caught.value.code == "ssrf"
    assert stub_server.requests == []


def test_no_secret_is_refused(make_outbound: Callable[..., Outbound],
                              stub_server: StubServer) -> None:
    with pytest.raises(ProviderError) as caught:
        WebhookProvider().send(hook(make_outbound, stub_server, secrets=["", ""]))

    assert caught.value.permanent is True
    assert caught.value.code == "config"


def test_sign_matches_the_reference_library() -> None:
    body = b'{"a":1}'
    reference = Webhook(SECRET).sign("msg_1", datetime.fromtimestamp(1700000000, tz=UTC),
                                     body.decode())

    assert sign(SECRET, "msg_1", 1700000000, body) == reference
    assert signature_header([SECRET, "", PREVIOUS], "msg_1", 1700000000, body) == (
        f"{reference} {sign(PREVIOUS, 'msg_1', 1700000000, body)}")



@local_allowed
def test_header_value_with_newline_is_permanent(
        stub_server: StubServer, make_outbound: Callable[..., Outbound]) -> None:
    with pytest.raises(ProviderError) as caught:
        WebhookProvider().send(hook(make_outbound, stub_server, headers={"X-A": "a\r\nX-B: b"}))

    assert (caught.value.permanent, caught.value.code) == (True, "invalid_request")
    assert stub_server.requests == []
