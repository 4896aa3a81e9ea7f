"""A message's timeline and a recipient's page in a real browser: an operator searches by
a phone number however written, opens the address's page (consent, suppressions, cap
counts, every message of the range), then one message's timeline. Screenshots land in
test-artifacts/screenshots/."""
from __future__ import annotations

import pytest

from messaging.delivery import creation
from messaging.models import Suppression
from messaging.ratelimit import client as redis_client
from messaging.recipients import caps
from tests.browser.test_dashboard_browser import _all, _css, _log_in, _screenshot, _wait
from tests.factories import ContactFactory, StaffUserFactory, WorkspaceFactory
from tests.messaging.test_timeline import deliver
from tests.support.stub_server import Reply

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

PHONE = "+14155550177"


@pytest.fixture
def recipient(stub_server, allow_local):
    """A contact who got one marketing SMS after a 503 and a retry, then unsubscribed, so
    the next was suppressed; a 2/day cap counts the first; the phone texted STOP."""
    workspace = WorkspaceFactory(name="Acme Dental")
    for key in redis_client().scan_iter(match=f"{caps.KEY_PREFIX}{workspace.pk}*"):
        redis_client().delete(key)
    workspace.settings = {"frequency_caps": {"sms": "2/day"},
                          "providers": {"sms": {"name": "http", "api_url": stub_server.url}}}
    workspace.save()
    contact = ContactFactory(workspace=workspace, phone=PHONE, first_name="Ada",
                             external_id="crm-7")
    first = creation.message_create(workspace=workspace, channel="sms", to=PHONE,
                                    contact=contact, content={"body": "Spring offer"},
                                    category="marketing")
    stub_server.script("/send-sms", Reply(status=503, body={"error": "busy"}))
    assert deliver(str(first.pk)) == "retrying"
    assert deliver(str(first.pk)) == "sent"
    contact.sms_subscribed = False
    contact.save()
    second = creation.message_create(workspace=workspace, channel="sms", to=PHONE,
                                     contact=contact, content={"body": "Summer offer"},
                                     category="marketing")
    assert deliver(str(second.pk)) == "suppressed"
    Suppression.objects.create(workspace=workspace, channel="sms", address=PHONE,
                               reason=Suppression.Reason.STOP, source="keyword")
    return {"workspace": workspace, "first": first, "second": second, "contact": contact}


def test_an_operator_finds_a_number_and_reads_its_page_and_a_messages_timeline(
        browser, live_server, recipient):
    workspace, first = recipient["workspace"], recipient["first"]
    _log_in(browser, live_server.url, StaffUserFactory())
    browser.get(f"{live_server.url}/dashboard/messages/?workspace={workspace.pk}")

    # Search by the number as a customer would say it.
    field = _css(browser, "input[name=recipient]")
    field.send_keys("+1 (415) 555-0177")
    field.submit()
    _css(browser, "#recipient-page-link").click()

    # The recipient's page: counts, consent, suppression, cap, the messages.
    assert _css(browser, "#recipient-address").text == PHONE
    assert _css(browser, "#recipient-total").text.startswith("2")
    assert "unsubscribed" in _css(browser, "#recipient-consent").text
    assert "stop" in _css(browser, "#recipient-suppressions").text
    assert "1 of 2/day counted now" in _css(browser, "#recipient-caps").text
    rows = _all(browser, "#recipient-messages tr[data-message]")
    assert [row.get_attribute("data-message") for row in rows] == [
        str(recipient["second"].pk), str(first.pk)]
    _screenshot(browser, "30-recipient")

    # The first message's timeline: accepted, the 503, the retry that sent it, in order.
    _css(browser, f'#recipient-messages tr[data-message="{first.pk}"] a').click()
    _wait(browser).until(lambda b: str(first.pk) in b.current_url)
    entries = _all(browser, "table.timeline tr[data-timeline]")
    assert [e.get_attribute("data-timeline") for e in entries] == [
        "accepted", "provider_call", "provider_call"]
    assert "503" in entries[1].text and "retrying" in entries[1].text
    assert "sent" in entries[2].text
    _screenshot(browser, "31-message-timeline")

    # Back to the address from the message.
    _css(browser, "a.recipient-link").click()
    assert _css(browser, "#recipient-address").text == PHONE
