"""Email unsubscribe end to end: API -> live worker -> a real SMTP server (or the HTTP
stand-in) carrying List-Unsubscribe, then the link's page and its one-click POST."""
from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pytest
from django.test import Client

from messaging.models import Message, Suppression
from messaging.recipients import unsubscribe
from tests.factories import ContactFactory
from tests.support.smtp_server import RecordingHandler, running, smtp_settings
from tests.support.stub_server import Reply
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

BASE = "https://relay.test"
ONE_CLICK = "List-Unsubscribe=One-Click"


@pytest.fixture
def smtp(workspace, settings) -> Iterator[RecordingHandler]:
    """The workspace's email goes to a real local SMTP server; links start with BASE."""
    settings.PUBLIC_BASE_URL = BASE
    settings.UNSUBSCRIBE_MAILTO = ""
    settings.EMAIL_FROM = "Relay <noreply@relay.example>"
    handler = RecordingHandler()
    with running(handler) as port:
        workspace.settings = {"providers": {"email": smtp_settings(port)}}
        workspace.save()
        yield handler


@pytest.fixture
def browser() -> Client:
    """A client that enforces CSRF, as a mail provider's one-click POST meets it."""
    return Client(enforce_csrf_checks=True)


def send(api, **payload: Any) -> str:
    response = api.post("/api/v1/messages", {"channel": "email", "subject": "News", **payload},
                        format="json")
    assert response.status_code == 201, response.json()
    return response.json()["id"]


def final(message_id: str) -> Message:
    wait_until(lambda: Message.objects.get(id=message_id).status in ("sent", "suppressed"))
    return Message.objects.get(id=message_id)


def mail_to(handler: RecordingHandler, address: str) -> EmailMessage:
    raw = wait_until(lambda: next((raw for _, rcpt, raw in handler.received
                                   if rcpt == [address]), None))
    return email.message_from_bytes(raw, policy=email.policy.default)


def links(mime: EmailMessage) -> tuple[str, str]:
    """Return the (https, mailto) URIs of a List-Unsubscribe header."""
    uris = re.findall(r"<([^>]+)>", str(mime["List-Unsubscribe"]))
    [https] = [u for u in uris if u.startswith("https://")]
    [mailto] = [u for u in uris if u.startswith("mailto:")]
    return https, mailto


def one_click(browser: Client, url: str):
    return browser.post(urlsplit(url).path, data=ONE_CLICK,
                        content_type="application/x-www-form-urlencoded")


def unsubscribed(contact) -> bool:
    contact.refresh_from_db()
    return not contact.email_subscribed


def test_a_marketing_email_carries_list_unsubscribe_and_its_one_click_post_unsubscribes(
        api, workspace, smtp, browser, live_worker):
    contact = ContactFactory(workspace=workspace, email="ann@example.com")
    message_id = send(api, contact_id=str(contact.id), category="marketing", html="<p>Sale</p>")

    assert final(message_id).status == "sent"
    mime = mail_to(smtp, "ann@example.com")
    https, mailto = links(mime)
    assert mime["List-Unsubscribe-Post"] == ONE_CLICK
    token = https.removeprefix(f"{BASE}/u/")
    assert https == f"{BASE}/u/{token}"
    target = unsubscribe.read_token(token)
    assert (target.workspace_id, target.contact_id, target.channel) == (
        str(workspace.id), str(contact.id), "email")
    # The mailto names the same token, in its subject (RFC 5321 caps a local part at 64).
    assert mailto.startswith("mailto:unsubscribe@relay.example?subject=")
    assert unquote(mailto.partition("subject=")[2]) == f"unsubscribe {token}"

    response = one_click(browser, https)
    assert response.status_code == 200
    assert unsubscribed(contact)
    row = Suppression.objects.get(workspace=workspace, channel="email")
    assert (row.address, row.reason, row.source) == (
        "ann@example.com", "unsubscribed", "list-unsubscribe")
    # Idempotent: a second one-click changes nothing and still answers 200.
    assert one_click(browser, https).status_code == 200
    assert Suppression.objects.filter(workspace=workspace).count() == 1


def test_a_transactional_email_has_no_list_unsubscribe_but_its_template_link_works(
        api, workspace, smtp, browser, live_worker):
    contact = ContactFactory(workspace=workspace, email="bo@example.com")
    message_id = send(api, contact_id=str(contact.id),
                      text="Your receipt. Stop our news: {{ unsubscribe_url }}")

    message = final(message_id)
    mime = mail_to(smtp, "bo@example.com")
    assert mime["List-Unsubscribe"] is None
    assert mime["List-Unsubscribe-Post"] is None
    [url] = re.findall(rf"{re.escape(BASE)}/u/\S+", mime.get_content().strip())
    assert message.rendered["text"] == f"Your receipt. Stop our news: {url}"

    page = browser.get(urlsplit(url).path)
    assert page.status_code == 200
    assert b"<form method=\"post\">" in page.content
    assert b"b\xe2\x80\xa2\xe2\x80\xa2\xe2\x80\xa2@example.com" in page.content  # masked
    assert not unsubscribed(contact)
    assert not Suppression.objects.exists()

    done = browser.post(urlsplit(url).path)  # the page's own button: an empty form
    assert done.status_code == 200
    assert b"You are unsubscribed" in done.content
    assert unsubscribed(contact)


def test_after_an_unsubscribe_marketing_email_is_suppressed_and_transactional_still_sent(
        api, workspace, smtp, browser, live_worker):
    contact = ContactFactory(workspace=workspace, email="cy@example.com")
    url = unsubscribe.unsubscribe_url(Message(workspace=workspace, contact=contact,
                                              channel="email", to=contact.email))
    assert one_click(browser, url).status_code == 200

    marketing = final(send(api, contact_id=str(contact.id), category="marketing", text="Sale"))
    receipt = final(send(api, contact_id=str(contact.id), text="Your receipt"))

    assert (marketing.status, marketing.suppressed_reason) == ("suppressed", "unsubscribed")
    assert receipt.status == "sent"
    assert [rcpt for _, rcpt, _ in smtp.received] == [["cy@example.com"]]
    assert mail_to(smtp, "cy@example.com").get_content().strip() == "Your receipt"


def test_an_email_without_a_contact_unsubscribes_its_address(
        api, workspace, smtp, browser, live_worker):
    message_id = send(api, to="Dee@Example.com", category="marketing", text="Sale")

    assert final(message_id).status == "sent"
    https, _ = links(mail_to(smtp, "Dee@Example.com"))
    assert unsubscribe.read_token(https.rpartition("/")[2]).address == "dee@example.com"
    assert one_click(browser, https).status_code == 200
    row = Suppression.objects.get(workspace=workspace)
    assert (row.address, row.reason) == ("dee@example.com", "unsubscribed")

    again = final(send(api, to="DEE@example.com", category="marketing", text="Sale"))
    assert (again.status, again.suppressed_reason) == ("suppressed", "unsubscribed")


@pytest.mark.parametrize("spoil", [
    lambda token: token[:-1] + ("A" if token[-1] != "A" else "B"),  # the signature
    lambda token: ("x" if token[0] != "x" else "y") + token[1:],  # the signed data
    lambda token: "not-a-token",
    lambda token: token.partition(":")[0],  # no signature at all
])
def test_a_tampered_token_answers_400_and_changes_nothing(workspace, browser, settings, spoil):
    settings.PUBLIC_BASE_URL = BASE
    contact = ContactFactory(workspace=workspace, email="eve@example.com")
    token = unsubscribe.make_token(workspace_id=workspace.id, contact_id=contact.id,
                                   address="")
    path = f"/u/{spoil(token)}"

    page = browser.get(path)
    posted = browser.post(path, data=ONE_CLICK,
                          content_type="application/x-www-form-urlencoded")

    assert page.status_code == posted.status_code == 400
    assert b"This link does not work" in page.content
    assert not unsubscribed(contact)
    assert not Suppression.objects.exists()


def test_a_token_signed_for_something_else_is_refused(workspace, browser):
    from django.core import signing

    contact = ContactFactory(workspace=workspace)
    forged = signing.Signer(salt="another.purpose").sign_object(
        [str(workspace.id), str(contact.id), "", "email"], compress=True)
    assert browser.post(f"/u/{forged}").status_code == 400
    assert not unsubscribed(contact)


def test_the_http_email_provider_sends_the_headers_for_marketing_only(
        api, workspace, stub_server, settings, live_worker):
    settings.PUBLIC_BASE_URL = BASE
    settings.UNSUBSCRIBE_MAILTO = "leave@lists.relay.example"
    workspace.settings = {"providers": {"email": {"name": "http", "api_url": stub_server.url}}}
    workspace.save()
    stub_server.script("/api/email/send", Reply(202, {"id": "e-1"}))
    contact = ContactFactory(workspace=workspace, email="fay@example.com")

    send(api, contact_id=str(contact.id), category="marketing", text="Sale")
    marketing = stub_server.wait_for(1, path="/api/email/send")[0].json()
    send(api, contact_id=str(contact.id), text="Receipt")
    receipt = stub_server.wait_for(2, path="/api/email/send")[1].json()

    token = unsubscribe.token_for(Message(workspace=workspace, contact=contact,
                                          channel="email", to=contact.email))
    subject = quote(f"unsubscribe {token}")
    assert marketing["headers"] == {
        "List-Unsubscribe": f"<{BASE}/u/{token}>, "
                            f"<mailto:leave@lists.relay.example?subject={subject}>",
        "List-Unsubscribe-Post": ONE_CLICK}
    assert "headers" not in receipt


def test_without_a_public_https_url_only_the_mailto_is_offered(workspace, settings):
    settings.UNSUBSCRIBE_MAILTO = ""
    settings.EMAIL_FROM = "news@mail.shop.example"
    contact = ContactFactory(workspace=workspace)
    message = Message(workspace=workspace, contact=contact, channel="email", to=contact.email,
                      category="marketing")

    settings.PUBLIC_BASE_URL = ""
    headers = unsubscribe.list_unsubscribe_headers(message)
    assert headers["List-Unsubscribe"].startswith("<mailto:unsubscribe@mail.shop.example?")
    assert "List-Unsubscribe-Post" not in headers  # RFC 8058 one-click needs HTTPS
    assert unsubscribe.unsubscribe_url(message) == ""

    settings.PUBLIC_BASE_URL = "http://localhost:8000"
    assert "List-Unsubscribe-Post" not in unsubscribe.list_unsubscribe_headers(message)
    settings.UNSUBSCRIBE_MAILTO = "-"
    assert unsubscribe.list_unsubscribe_headers(message) == {
        "List-Unsubscribe": f"<{unsubscribe.unsubscribe_url(message)}>"}


def test_other_channels_have_no_unsubscribe_link(workspace, settings):
    settings.PUBLIC_BASE_URL = BASE
    contact = ContactFactory(workspace=workspace)
    sms = Message(workspace=workspace, contact=contact, channel="sms", to=contact.phone,
                  category="marketing")
    assert unsubscribe.unsubscribe_url(sms) == ""
    assert unsubscribe.list_unsubscribe_headers(sms) == {}
