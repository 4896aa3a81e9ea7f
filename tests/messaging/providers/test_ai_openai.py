"""The OpenAI-compatible provider against a real local HTTP server."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from messaging.providers.ai_openai import OpenAIProvider
from messaging.providers.base import Outbound, ProviderError
from tests.support.stub_server import Reply, StubServer

COMPLETION = {
    "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini-2024-07-18",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "Hi Ann!"}}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
}


def ai_outbound(make_outbound: Callable[..., Outbound], stub: StubServer,
                **content: Any) -> Outbound:
    return make_outbound(
        channel="ai", to="",
        content=content or {"prompt": "Greet Ann", "system": "Be brief."},
        config={"api_base": stub.url + "/v1/", "api_key": "sk-test", "model": "gpt-4o-mini"})


def test_posts_a_chat_completion_and_returns_the_answer(
        stub_server: StubServer, make_outbound: Callable[..., Outbound]) -> None:
    stub_server.script("/v1/chat/completions", Reply(200, COMPLETION))

    receipt = OpenAIProvider().send(ai_outbound(make_outbound, stub_server))

    [request] = stub_server.requests
    assert request.path == "/v1/chat/completions"
    assert request.json() == {"model": "gpt-4o-mini", "messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Greet Ann"}]}
    assert request.header("Authorization") == "Bearer sk-test"
    assert request.header("Idempotency-Key") == "msg-0001"
    assert receipt.output == {"response_text": "Hi Ann!", "model": "gpt-4o-mini-2024-07-18",
                              "usage": COMPLETION["usage"]}
    assert receipt.provider_message_id == "chatcmpl-1"


def test_content_model_overrides_config_and_no_system_message(
        stub_server: StubServer, make_outbound: Callable[..., Outbound]) -> None:
    stub_server.script("/v1/chat/completions", Reply(200, COMPLETION))

    OpenAIProvider().send(ai_outbound(make_outbound, stub_server, prompt="Q", model="gpt-4.1"))

    assert stub_server.requests[0].json() == {
        "model": "gpt-4.1", "messages": [{"role": "user", "content": "Q"}]}


def test_server_error_is_transient(
        stub_server: StubServer, make_outbound: Callable[..., Outbound]) -> None:
    stub_server.script("/v1/chat/completions", Reply(500, {"error": {"message": "boom"}}))

    with pytest.raises(ProviderError) as caught:
        OpenAIProvider().send(ai_outbound(make_outbound, stub_server))

    assert caught.value.permanent is False
    assert caught.value.status_code == 500


def test_answer_without_choices_is_permanent(
        stub_server: StubServer, make_outbound: Callable[..., Outbound]) -> None:
    stub_server.script("/v1/chat/completions", Reply(200, {"id": "x", "choices": []}))

    with pytest.raises(ProviderError) as caught:
        OpenAIProvider().send(ai_outbound(make_outbound, stub_server))

    assert caught.value.permanent is True
    assert caught.value.code == "malformed_response"
