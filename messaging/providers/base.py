"""The one small interface every provider implements, and its error type.

A provider module holds one class with a `name` and `send(outbound) -> Receipt`. It raises
ProviderError for every failure, saying whether retrying can help (`permanent`), whether
the request may have reached the provider (`outcome_unknown`), and any Retry-After.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Outbound:
    """What a provider needs to send one message; content is already rendered."""

    message_id: str
    workspace_id: str
    channel: str  # sms | mms | email | ai | webhook
    to: str
    content: dict[str, Any]
    config: dict[str, Any]  # provider settings: environment defaults + workspace overrides
    contact_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    attempt: int = 1
    # Extra email headers the pipeline computed (List-Unsubscribe on marketing email).
    headers: dict[str, str] = field(default_factory=dict)
    # This provider's idempotency key for the message ("" : the message id); each provider
    # of a failover order has its own (messaging.providers.registry.Choice).
    idempotency_key: str = ""

    @property
    def key(self) -> str:
        """Return the idempotency key every request of this call carries."""
        return self.idempotency_key or self.message_id


@dataclass
class Receipt:
    """A provider's acceptance of a message."""

    provider_message_id: str = ""
    status_code: int | None = None
    response: Any = None  # short, JSON-serialisable excerpt of the provider's answer
    output: dict[str, Any] = field(default_factory=dict)  # e.g. {"response_text": ...} for AI


class ProviderError(Exception):
    """A failed provider call. `suppress_address`: the provider refuses the recipient for
    good because they opted out (Twilio 21610), so the pipeline puts the address on the
    workspace's suppression list with the failure."""

    def __init__(self, message: str, *, permanent: bool, status_code: int | None = None,
                 retry_after: float | None = None, outcome_unknown: bool = False,
                 code: str = "", response: Any = None, suppress_address: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.status_code = status_code
        self.retry_after = retry_after
        self.outcome_unknown = outcome_unknown
        self.code = code
        self.response = response
        self.suppress_address = suppress_address


class Provider(Protocol):
    name: str

    def send(self, outbound: Outbound) -> Receipt: ...
