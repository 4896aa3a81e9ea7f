"""OpenAI-compatible chat completions for the ai channel.

Config: api_base, api_key, model. Content: {"prompt", "system" (optional), "model"
(optional, overrides the configured model)}. Delivering the answer to a callback URL is
the caller's job, not this module's.
"""
from __future__ import annotations

from typing import Any

from django.conf import settings

from messaging.providers import http
from messaging.providers.base import Outbound, ProviderError, Receipt
from messaging.providers.shared import auth_headers


def chat_request(outbound: Outbound) -> dict[str, Any]:
    """Return the chat completion request body: the model and the system + user messages."""
    content = outbound.content
    messages = []
    if content.get("system"):
        messages.append({"role": "system", "content": str(content["system"])})
    messages.append({"role": "user", "content": str(content.get("prompt") or "")})
    return {"model": content.get("model") or outbound.config.get("model"), "messages": messages}


def completion_output(body: Any) -> dict[str, Any]:
    """Return {"response_text", "model", "usage"} from a chat completion answer."""
    try:
        text = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        # Retrying the same request would get the same kind of answer: a bug or an
        # incompatible API, not a passing failure.
        raise ProviderError("openai: answer has no choices[0].message.content",
                            permanent=True, code="malformed_response",
                            response=body if isinstance(body, dict) else str(body)[:2000]
                            ) from exc
    return {"response_text": text or "", "model": body.get("model"), "usage": body.get("usage")}


class OpenAIProvider:
    """Ask an OpenAI-compatible chat completions API for one answer."""

    name = "openai"

    @staticmethod
    def defaults() -> dict[str, Any]:
        """Return the environment's AI settings (a workspace may override them)."""
        return {"api_base": settings.AI_API_BASE, "api_key": settings.AI_API_KEY,
                "model": settings.AI_MODEL}

    def send(self, outbound: Outbound) -> Receipt:
        """POST the chat completion; return the answer text in Receipt.output."""
        base = (outbound.config.get("api_base") or "https://api.openai.com/v1").rstrip("/")
        response = http.request("POST", f"{base}/chat/completions",
                                guarded=False,  # operator-configured host
                                json=chat_request(outbound), headers=auth_headers(outbound))
        http.raise_for_response(response)
        body = http.excerpt(response)
        output = completion_output(body)
        return Receipt(provider_message_id=str(body.get("id") or ""),
                       status_code=response.status_code,
                       response={"id": body.get("id"), "model": body.get("model"),
                                 "usage": body.get("usage")},
                       output=output)
