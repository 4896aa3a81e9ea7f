"""Failover between a channel's providers, end to end: API -> live worker -> two local
stand-in providers (an HTTP SMS API first, a Twilio-like API second)."""
from __future__ import annotations

import socket
import time

import pytest

from core.models import DeadLetter
from messaging.models import DeliveryAttempt, Message
from tests.support.stub_server import Reply
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

TWILIO_PATH = "/2010-04-01/Accounts/AC1/Messages.json"


def use_two_providers(workspace, first_url: str, second, **extra) -> None:
    workspace.settings = {"providers": {"sms": [
        {"name": "http", "api_url": first_url},
        {"name": "twilio", "api_base": second.url, "account_sid": "AC1", "auth_token": "t",
         "from_number": "+14155550000"}]}, **extra}
    workspace.save()


def send_sms(api) -> str:
    response = api.post("/api/v1/messages", {"channel": "sms", "to": "+14155552671",
                                             "body": "code 1234"}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def message(message_id: str) -> Message:
    return Message.objects.get(id=message_id)


def attempts(message_id: str) -> list[DeliveryAttempt]:
    return list(DeliveryAttempt.objects.filter(message_id=message_id).order_by("number"))


def closed_port() -> str:
    """Return the URL of a local port nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_a_503_sends_the_message_through_the_next_provider_in_the_same_attempt(
        api, workspace, stub_server, second_stub_server, live_worker):
    use_two_providers(workspace, stub_server.url, second_stub_server)
    stub_server.default = Reply(503, {"error": "down"})
    second_stub_server.default = Reply(201, {"sid": "SM1", "status": "queued"})
    message_id = send_sms(api)
    wait_until(lambda: message(message_id).status == "sent")
    first = stub_server.wait_for(1, path="/send-sms")[0]
    second = second_stub_server.wait_for(1, path=TWILIO_PATH)[0]
    assert first.header("Idempotency-Key") == message_id
    assert second.header("Idempotency-Key") == f"{message_id}:twilio"
    assert (message(message_id).provider, message(message_id).attempts) == ("twilio", 1)
    [attempt] = attempts(message_id)
    assert (attempt.outcome, attempt.provider, attempt.status_code) == ("sent", "twilio", 201)
    assert [(c["provider"], c["outcome"], c["status_code"]) for c in attempt.provider_calls] == [
        ("http", "failed", 503), ("twilio", "sent", 201)]
    detail = api.get(f"/api/v1/messages/{message_id}").json()
    assert [c["provider"] for c in detail["attempts_log"][0]["provider_calls"]] == [
        "http", "twilio"]


def test_a_refused_connection_fails_over(api, workspace, second_stub_server, live_worker):
    use_two_providers(workspace, closed_port(), second_stub_server)
    message_id = send_sms(api)
    wait_until(lambda: message(message_id).status == "sent")
    [attempt] = attempts(message_id)
    assert [(c["provider"], c["outcome"], c["error_code"]) for c in attempt.provider_calls] == [
        ("http", "failed", "connection"), ("twilio", "sent", "")]
    assert not attempt.possible_duplicate


def test_a_permanent_error_does_not_fail_over(api, workspace, stub_server, second_stub_server,
                                              live_worker):
    use_two_providers(workspace, stub_server.url, second_stub_server)
    stub_server.script("/send-sms", Reply(400, {"error": "invalid number"}))
    message_id = send_sms(api)
    wait_until(lambda: message(message_id).status == "failed")
    time.sleep(0.3)
    assert second_stub_server.requests == []
    assert DeadLetter.objects.filter(source_id=message_id).count() == 1
    assert [c["provider"] for c in attempts(message_id)[0].provider_calls] == ["http"]


def test_a_429_fails_over_only_with_a_long_retry_after(
        api, workspace, stub_server, second_stub_server, live_worker, dispatcher,
        fast_retries, settings):
    settings.PROVIDER_FAILOVER_RETRY_AFTER_SECONDS = 5
    use_two_providers(workspace, stub_server.url, second_stub_server)
    stub_server.script("/send-sms", Reply(429, {"error": "slow"}, headers={"Retry-After": "60"}),
                       Reply(429, {"error": "slow"}, headers={"Retry-After": "1"}))
    long_wait = send_sms(api)
    wait_until(lambda: message(long_wait).status == "sent")
    assert message(long_wait).provider == "twilio"
    short_wait = send_sms(api)
    wait_until(lambda: message(short_wait).status == "sent", timeout=20)
    assert [a.provider for a in attempts(short_wait)] == ["http", "http"]
    assert len(second_stub_server.requests) == 1


def test_an_unknown_outcome_is_retried_on_the_same_provider(
        api, workspace, stub_server, second_stub_server, live_worker, dispatcher,
        fast_retries, settings):
    settings.PROVIDER_TIMEOUT_SECONDS = 0.5
    use_two_providers(workspace, stub_server.url, second_stub_server)
    stub_server.script("/send-sms", Reply(200, {"id": "late"}, delay=1.5))
    message_id = send_sms(api)
    wait_until(lambda: message(message_id).status == "sent", timeout=20)
    assert second_stub_server.requests == []
    first, second = attempts(message_id)
    assert (first.outcome, first.provider, first.possible_duplicate) == ("retry", "http", True)
    assert [c["provider"] for c in first.provider_calls] == ["http"]
    assert second.provider == "http"
    keys = {r.header("Idempotency-Key") for r in stub_server.wait_for(2, path="/send-sms")}
    assert keys == {message_id}  # the same key: the provider can deduplicate the repeat


def test_an_unknown_outcome_fails_over_when_the_workspace_allows_it(
        api, workspace, stub_server, second_stub_server, live_worker, settings):
    settings.PROVIDER_TIMEOUT_SECONDS = 0.5
    use_two_providers(workspace, stub_server.url, second_stub_server,
                      failover_on_unknown_outcome=True)
    stub_server.script("/send-sms", Reply(200, {"id": "late"}, delay=1.5))
    message_id = send_sms(api)
    wait_until(lambda: message(message_id).status == "sent")
    [attempt] = attempts(message_id)
    assert [(c["provider"], c["outcome"]) for c in attempt.provider_calls] == [
        ("http", "failed"), ("twilio", "sent")]


def test_each_provider_sends_a_message_at_most_once_across_attempts(
        api, workspace, stub_server, second_stub_server, live_worker, dispatcher,
        fast_retries, settings):
    """The first provider is down; the second accepts but answers too late (outcome
    unknown), so the attempt is retried: the second provider sees its own key again and
    deduplicates it. In total the message was accepted once."""
    settings.PROVIDER_TIMEOUT_SECONDS = 0.5
    use_two_providers(workspace, stub_server.url, second_stub_server)
    stub_server.default = Reply(503, {"error": "down"})
    for server in (stub_server, second_stub_server):
        server.dedupe_header = "Idempotency-Key"
    second_stub_server.script(TWILIO_PATH, Reply(201, {"sid": "SM1"}, delay=1.5))
    second_stub_server.default = Reply(201, {"sid": "SM2"})
    message_id = send_sms(api)
    wait_until(lambda: message(message_id).status == "sent", timeout=20)
    assert len(second_stub_server.requests) == 1 and second_stub_server.deduplicated == 1
    assert message(message_id).provider_message_id == "SM1"
    assert [a.outcome for a in attempts(message_id)] == ["retry", "sent"]
    assert not DeadLetter.objects.exists()


@pytest.fixture
def quick_breakers(settings) -> None:
    settings.PROVIDER_BREAKER_FAILURES = 3
    settings.PROVIDER_BREAKER_COOLDOWN_SECONDS = 1.0


def test_an_open_breaker_sends_straight_to_the_next_provider_until_a_probe_closes_it(
        api, workspace, stub_server, second_stub_server, live_worker, quick_breakers):
    use_two_providers(workspace, stub_server.url, second_stub_server)
    stub_server.default = Reply(503, {"error": "down"})
    first = [send_sms(api) for _ in range(3)]
    wait_until(lambda: all(message(m).status == "sent" for m in first))
    health = api.get("/api/v1/providers/health").json()["providers"]
    http = next(row for row in health if row["channel"] == "sms" and row["name"] == "http")
    assert (http["state"], http["failed"], http["position"]) == ("open", 3, 0)
    assert http["opened_at"] is not None
    passed_over = send_sms(api)
    wait_until(lambda: message(passed_over).status == "sent")
    assert len(stub_server.requests) == 3  # not called while open
    [attempt] = attempts(passed_over)
    assert [(c["provider"], c["outcome"]) for c in attempt.provider_calls] == [("twilio", "sent")]
    stub_server.default = Reply(200, {"id": "ok"})
    time.sleep(1.1)
    probe = send_sms(api)
    wait_until(lambda: message(probe).status == "sent")
    assert message(probe).provider == "http"
    health = api.get("/api/v1/providers/health").json()["providers"]
    http = next(row for row in health if row["channel"] == "sms" and row["name"] == "http")
    assert (http["state"], http["sent"], http["failed"]) == ("closed", 1, 3)
    twilio = next(row for row in health if row["channel"] == "sms" and row["name"] == "twilio")
    assert (twilio["state"], twilio["sent"], twilio["position"]) == ("closed", 4, 1)
    assert twilio["latency_p95_ms"] is not None


def test_with_every_breaker_open_a_message_waits_without_spending_attempts(
        api, workspace, stub_server, live_worker, dispatcher, quick_breakers, settings):
    settings.PROVIDER_BREAKER_COOLDOWN_SECONDS = 5.0  # long enough to see it wait
    settings.RETRY_BASE_SECONDS = 0.1
    settings.RETRY_CAP_SECONDS = 0.1
    workspace.settings = {"providers": {"sms": {"name": "http", "api_url": stub_server.url}}}
    workspace.save()
    stub_server.script("/send-sms", *[Reply(503, {"error": "down"})] * 3)
    opened = [send_sms(api) for _ in range(3)]
    stub_server.wait_for(3, path="/send-sms")
    wait_until(lambda: api.get("/api/v1/providers/health").json()["providers"][0]["state"]
               == "open")
    waiting = send_sms(api)
    wait_until(lambda: api.get(f"/api/v1/messages/{waiting}").json()["waiting_for"]
               == "provider_down")
    assert message(waiting).attempts == 0 and attempts(waiting) == []
    assert len(stub_server.requests) == 3  # nothing called while the breaker is open
    wait_until(lambda: all(message(m).status == "sent" for m in [*opened, waiting]),
               timeout=20)
    assert message(waiting).attempts == 1
    assert [message(m).attempts for m in opened] == [2, 2, 2]
    assert len(stub_server.requests) == 7 and not DeadLetter.objects.exists()


def test_a_fallback_whose_outcome_is_unknown_gets_the_retry_not_the_recovered_first(
        api, workspace, stub_server, second_stub_server, live_worker, dispatcher,
        fast_retries, settings):
    """The first provider fails, the second may have sent it (its answer timed out): the
    retry goes to the second again (its own key: deduplicated), not to the first, which
    has recovered meanwhile and would send the message a second time."""
    settings.PROVIDER_TIMEOUT_SECONDS = 0.5
    use_two_providers(workspace, stub_server.url, second_stub_server)
    second_stub_server.dedupe_header = "Idempotency-Key"
    stub_server.script("/send-sms", Reply(503, {"error": "down"}))
    second_stub_server.script(TWILIO_PATH, Reply(201, {"sid": "SM1"}, delay=1.5))
    message_id = send_sms(api)
    wait_until(lambda: message(message_id).status == "sent", timeout=20)
    assert len(stub_server.requests) == 1  # only the 503
    assert second_stub_server.deduplicated == 1
    assert [a.provider for a in attempts(message_id)] == ["twilio", "twilio"]
    assert message(message_id).provider_message_id == "SM1"


def test_after_a_worker_died_calling_the_fallback_the_retry_starts_at_the_fallback(
        workspace, stub_server, second_stub_server):
    """As the sweeper leaves it: queued again, flagged possible_duplicate, and the note
    that the second provider was being called when the worker died."""
    from messaging.delivery import creation, failover
    from messaging.delivery.sending import messages_deliver

    use_two_providers(workspace, stub_server.url, second_stub_server)
    created = creation.message_create(workspace=workspace, channel="sms", to="+14155552671",
                                      content={"body": "code"})
    Message.objects.filter(pk=created.pk).update(possible_duplicate=True, attempts=1)
    failover._mark(str(created.pk), 1)
    assert messages_deliver(message_ids=[str(created.pk)]) == {str(created.pk): "sent"}
    assert stub_server.requests == []
    [request] = second_stub_server.requests
    assert request.header("Idempotency-Key") == f"{created.pk}:twilio"
