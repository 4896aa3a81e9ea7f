"""The generic HTTP SMS and email providers against a real local HTTP server."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from messaging.providers.base import Outbound, ProviderError
from messaging.providers.email_http import HttpEmailProvider
from messaging.providers.sms_http import HttpSmsProvider
from tests.support.stub_server import Reply, StubServer


def test_sms_posts_exact_json_with_bearer_and_idempotency(
        stub_server: StubServer, make_outbound: Callable[..., Outbound]) -> None:
    stub_server.script("/base/send-sms", Reply(200, {"messageId": "p-77"}))
    outbound = make_outbound(config={"api_url": stub_server.url + "/base/", "api_key": "k1"})

    receipt = HttpSmsProvider().send(outbound)

    [request] = stub_server.requests
    assert (request.method, request.path) == ("POST", "/base/send-sms")
    assert request.json() == {"to": "+14155550100", "message": "Hello",
                              "contactId": "contact-1", "workspaceId": "ws-1",
                              "mediaUrl": None, "mediaUrls": [], "metadata": {}}
    assert request.header("Authorization") == "Bearer k1"
    assert request.header("Idempotency-Key") == "msg-0001"
    assert request.header("Content-Type") == "application/json"
    assert receipt.provider_message_id == "p-77"


def test_a_compat_sms_sends_the_clients_ids_and_ours_under_relay_names(
        stub_server: StubServer, make_outbound: Callable[..., Outbound]) -> None:
    outbound = make_outbound(config={"api_url": stub_server.url}, metadata={
        "_compat": {"contactId": "crm-7", "workspaceId": 10001}})

    HttpSmsProvider().send(outbound)

    assert stub_server.requests[0].json() == {
        "to": "+14155550100", "message": "Hello", "contactId": "crm-7", "workspaceId": 10001,
        "relayMessageId": "msg-0001", "relayWorkspaceId": "ws-1",
        "relayContactId": "contact-1", "mediaUrl": None, "mediaUrls": [], "metadata": {}}


def test_a_compat_message_without_client_ids_falls_back_to_ours(
        stub_server: StubServer, make_outbound: Callable[..., Outbound]) -> None:
    outbound = make_outbound(config={"api_url": stub_server.url}, metadata={"_compat": {}})

    HttpSmsProvider().send(outbound)

    body = stub_server.requests[0].json()
    assert (body["contactId"], body["workspaceId"]) == ("contact-1", "ws-1")
    assert body["relayMessageId"] == "msg-0001"


def test_mms_sends_first_media_url_and_the_list_without_auth_when_no_key(
        stub_server: StubServer, make_outbound: Callable[..., Outbound]) -> None:
    stub_server.script("/send-sms", Reply(201, {"id": "p-78"}))
    content = {"body": "pic", "media_urls": ["https://cdn.example/1.jpg", "https://cdn.example/2"]}

    receipt = HttpSmsProvider().send(make_outbound(
        channel="mms", content=content, config={"api_url": stub_server.url, "api_key": ""}))

    [request] = stub_server.requests
    assert request.json()["mediaUrl"] == "https://cdn.example/1.jpg"
    assert request.json()["mediaUrls"] == ["https://cdn.example/1.jpg", "https://cdn.example/2"]
    assert request.header("Authorization") is None
    assert receipt.provider_message_id == "p-78"


@pytest.mark.parametrize(("status", "permanent"), [(400, True), (401, True), (500, False),
                                                   (429, False)])
def test_sms_errors_follow_the_http_status(
        stub_server: StubServer, make_outbound: Callable[..., Outbound], status: int,
        permanent: bool) -> None:
    stub_server.script("/send-sms", Reply(status, {"error": "nope"}))

    with pytest.raises(ProviderError) as caught:
        HttpSmsProvider().send(make_outbound(config={"api_url": stub_server.url}))

    assert caught.value.permanent is permanent
    assert caught.value.status_code == status


def test_email_posts_exact_json_with_bearer_and_idempotency(
        stub_server: StubServer, make_outbound: Callable[..., Outbound]) -> None:
    stub_server.script("/api/email/send", Reply(202, {"id": "e-1"}))
    outbound = make_outbound(
        channel="email", to="ann@example.com",
        content={"subject": "Hi", "html": "<p>Hello <b>Ann</b></p>", "text": "Hello Ann"},
        config={"api_url": stub_server.url + "/", "api_key": "ek",
                "from_email": "noreply@relay.example"})

    receipt = HttpEmailProvider().send(outbound)

    [request] = stub_server.requests
    assert request.path == "/api/email/send"
    assert request.json() == {"to": "ann@example.com", "from": "noreply@relay.example",
                              "subject": "Hi", "html": "<p>Hello <b>Ann</b></p>",
                              "text": "Hello Ann", "contactId": "contact-1",
                              "workspaceId": "ws-1", "messageId": "msg-0001"}
    assert request.header("Authorization") == "Bearer ek"
    assert request.header("Idempotency-Key") == "msg-0001"
    assert (receipt.provider_message_id, receipt.status_code) == ("e-1", 202)


def test_email_derives_text_from_html(
        stub_server: StubServer, make_outbound: Callable[..., Outbound]) -> None:
    outbound = make_outbound(
        channel="email", to="ann@example.com",
        content={"subject": "Hi", "html": "<p>Hello&nbsp;<b>Ann</b></p><p>Bye</p>"},
        config={"api_url": stub_server.url, "from_email": "noreply@relay.example"})

    HttpEmailProvider().send(outbound)

    assert stub_server.requests[0].json()["text"] == "Hello Ann\nBye"


def test_missing_api_url_is_permanent(make_outbound: Callable[..., Outbound]) -> None:
    with pytest.raises(ProviderError) as caught:
        HttpSmsProvider().send(make_outbound(config={}))
    assert caught.value.permanent is True


def _session_in_a_new_thread() -> Any:
    """Return the session a fresh provider thread gets (sessions are per thread)."""
    import threading

    from messaging.providers import http

    made: list[Any] = []
    thread = threading.Thread(target=lambda: made.append(http.session()))
    thread.start()
    thread.join()
    return made[0]


def test_a_proxy_in_the_environment_is_still_honoured(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    assert _session_in_a_new_thread().trust_env is True


def test_without_proxy_or_netrc_the_environment_is_read_once(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("NETRC", raising=False)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    session = _session_in_a_new_thread()
    assert (session.trust_env, session.verify) == (False, "/etc/ssl/certs/ca-certificates.crt")
    (tmp_path / ".netrc").write_text("machine api.example.com login a password b\n")
    assert _session_in_a_new_thread().trust_env is True
