"""Frequency caps asked for a whole batch at once (one Redis round trip), against the real
Redis: the batch counts exactly as the same requests one by one would."""
from __future__ import annotations

import uuid

import pytest

from messaging import ratelimit
from messaging.models import Message
from messaging.recipients import caps
from messaging.recipients.policy import decide_all
from tests.factories import ContactFactory

CAP = caps.Cap.parse("2/day")


@pytest.fixture
def key():
    name = caps.cap_key(str(uuid.uuid4()), "sms", "contact")
    yield name
    ratelimit.client().delete(name)


def test_a_batch_counts_in_order_and_never_twice(key):
    waits = caps.take_many([(key, CAP, "a"), (key, CAP, "b"), (key, CAP, "c"),
                            (key, CAP, "a")])
    assert waits[:2] == [0, 0] and waits[3] == 0  # "a" again passes without counting
    assert 86_000 < waits[2] <= 86_400
    assert sorted(ratelimit.client().zrange(key, 0, -1)) == ["a", "b"]


def test_looking_counts_nothing(key):
    assert caps.take_many([(key, CAP, "a"), (key, CAP, "b")], take=False) == [0, 0]
    assert ratelimit.client().zcard(key) == 0
    assert caps.take_many([]) == []


@pytest.mark.django_db
def test_decide_all_caps_a_contact_across_one_batch(workspace):
    workspace.settings = {"frequency_caps": {"sms": "2/day"}}
    workspace.save()
    contact = ContactFactory(workspace=workspace, phone="+14155550100")
    messages = [Message(workspace=workspace, contact=contact, channel="sms",
                        to="+14155550100", category="marketing", content={"body": "x"})
                for _ in range(3)]
    try:
        decisions = decide_all(messages)
        assert [decisions[m.pk].outcome for m in messages] == [
            "allowed", "allowed", "deferred"]
        assert decisions[messages[2].pk].reason == "frequency_cap"
        # Evaluated again (a re-claimed batch), the counted ones pass and nothing is added.
        again = decide_all(messages)
        assert [again[m.pk].outcome for m in messages] == ["allowed", "allowed", "deferred"]
        assert ratelimit.client().zcard(
            caps.cap_key(str(workspace.id), "sms", str(contact.id))) == 2
    finally:
        ratelimit.client().delete(caps.cap_key(str(workspace.id), "sms", str(contact.id)))
