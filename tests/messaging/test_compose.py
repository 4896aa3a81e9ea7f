"""The composer every way of sending shares: it builds unsaved messages or says why not."""
from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from messaging.compose import message_compose
from messaging.models import Message, MessageStatus
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


def test_it_returns_an_unsaved_message_with_the_channel_content_only(workspace):
    message = message_compose(workspace=workspace, source="flow", data={
        "channel": "mms", "to": "+1 415 555 2671", "body": "Look",
        "media_urls": ["https://example.com/a.png"], "metadata": {"node_id": "n1"}})
    assert message.content == {"body": "Look", "media_urls": ["https://example.com/a.png"]}
    assert (message.to, message.source, message.status) == ("+14155552671", "flow",
                                                            MessageStatus.QUEUED)
    assert message.metadata == {"node_id": "n1"} and message.max_attempts == 3
    assert not Message.objects.exists()


def test_it_raises_a_validation_error_per_field(workspace):
    with pytest.raises(ValidationError) as caught:
        message_compose(workspace=workspace, data={"channel": "email", "to": "nope",
                                                   "subject": "s", "html": "x"})
    assert caught.value.message_dict == {
        "to": ["A valid email address is required (to, or a contact with an email)."]}


def test_it_reports_every_field_type_error_at_once(workspace):
    with pytest.raises(ValidationError) as caught:
        message_compose(workspace=workspace, data={"channel": "sms", "to": 5, "body": 5,
                                                   "priority": "urgent"})
    assert set(caught.value.message_dict) == {"to", "body", "priority"}


def test_it_refuses_fields_the_channel_does_not_take(workspace):
    with pytest.raises(ValidationError) as caught:
        message_compose(workspace=workspace, data={"channel": "sms", "to": "+14155552671",
                                                   "body": "x", "url": "https://e.com"})
    assert caught.value.message_dict == {"url": ["Not used by the sms channel."]}


def test_it_looks_each_contact_up_once_per_cache(workspace, django_assert_num_queries):
    contact = ContactFactory(workspace=workspace, phone="+14155552672")
    cache: dict = {}
    data = {"channel": "sms", "contact_id": str(contact.id), "body": "Hi"}
    with django_assert_num_queries(1):
        first = message_compose(workspace=workspace, data=data, contacts_cache=cache)
        second = message_compose(workspace=workspace, data=data, contacts_cache=cache)
    assert first.contact == second.contact == contact and first.to == "+14155552672"


@pytest.mark.parametrize("source", ["api", "flow", "compat"])
def test_no_sender_writes_reserved_metadata_whatever_the_source(workspace, source):
    with pytest.raises(ValidationError) as caught:
        message_compose(workspace=workspace, source=source, data={
            "channel": "ai", "prompt": "x", "metadata": {"_rate_limit_key": "one-of-many"}})
    assert caught.value.message_dict == {"metadata": ["_rate_limit_key is a reserved key."]}


def test_the_endpoint_that_owns_a_reserved_key_adds_it_beside_the_senders(workspace):
    message = message_compose(workspace=workspace, source="compat",
                              data={"channel": "ai", "prompt": "x", "metadata": {"a": 1}},
                              reserved={"_rate_limit_key": "user:a"})
    assert message.metadata == {"a": 1, "_rate_limit_key": "user:a"}
    with pytest.raises(ValueError):
        message_compose(workspace=workspace, data={"channel": "ai", "prompt": "x"},
                        reserved={"campaign": "not reserved"})
