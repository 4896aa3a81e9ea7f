"""Finding messages by who they went to (README.md, "Messages"): a phone however written, an
email address in any case, a provider's message id or a contact's external id, across
statuses and channels."""
from __future__ import annotations

import pytest

from messaging.models import Direction, MessageStatus
from tests.factories import ContactFactory, MessageFactory, WorkspaceFactory

pytestmark = pytest.mark.django_db


def ids(api, query: str) -> set[str]:
    response = api.get(f"/api/v1/messages?{query}")
    assert response.status_code == 200, response.json()
    return {m["id"] for m in response.json()["results"]}


@pytest.fixture
def sent(workspace):
    """Messages to +14155552671 and ada@example.com, in several statuses and channels."""
    ada = ContactFactory(workspace=workspace, external_id="crm-7", phone="+14155552671",
                         email="Ada@Example.com")
    return {
        "sms": MessageFactory(workspace=workspace, contact=ada, to="+14155552671",
                              status=MessageStatus.UNDELIVERED,
                              provider_message_id="SM123"),
        "mms": MessageFactory(workspace=workspace, contact=None, channel="mms",
                              to="+14155552671", status=MessageStatus.SCHEDULED),
        "email": MessageFactory(workspace=workspace, contact=ada, channel="email",
                                to="Ada@Example.com", content={"subject": "s", "text": "t"},
                                status=MessageStatus.FAILED),
        "inbound": MessageFactory(workspace=workspace, contact=None,
                                  direction=Direction.INBOUND, sender="+14155552671",
                                  to="+14155550199", status=MessageStatus.RECEIVED),
        "other": MessageFactory(workspace=workspace, contact=None, to="+14155550100",
                                status=MessageStatus.SENT),
        "elsewhere": MessageFactory(workspace=WorkspaceFactory(), contact=None,
                                    to="+14155552671", status=MessageStatus.SENT),
    }


def test_a_phone_however_written_finds_every_message_to_and_from_it(api, sent):
    wanted = {str(sent[k].pk) for k in ("sms", "mms", "inbound")}

    assert ids(api, "recipient=%2B14155552671") == wanted
    assert ids(api, "recipient=%2B1%20(415)%20555-2671") == wanted
    assert ids(api, "recipient=%2B14155552671&status=scheduled") == {str(sent["mms"].pk)}


def test_an_email_address_is_found_in_any_case(api, sent):
    assert ids(api, "recipient=ADA@example.COM") == {str(sent["email"].pk)}


def test_a_recipient_that_is_neither_phone_nor_email_is_refused(api, sent):
    response = api.get("/api/v1/messages?recipient=nobody")

    assert response.status_code == 400
    assert "recipient" in response.json()["error"]["fields"]


def test_a_provider_message_id_and_a_contacts_external_id_find_their_messages(api, sent):
    assert ids(api, "provider_message_id=SM123") == {str(sent["sms"].pk)}
    assert ids(api, "contact_external_id=crm-7") == {str(sent["sms"].pk),
                                                     str(sent["email"].pk)}
    assert ids(api, "contact_external_id=nobody") == set()
