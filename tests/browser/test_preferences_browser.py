"""The hosted preference page in a real browser: a contact opens the signed link of an
email, unticks a topic on one channel, saves, and the choice is what the policy reads; a
critical topic's boxes cannot be unticked (README.md, "Subscription topics")."""
from __future__ import annotations

from typing import Any

import pytest

from messaging.models import Message, Topic, TopicPreference
from messaging.recipients import preferences
from tests.factories import ContactFactory, WorkspaceFactory

pytestmark = pytest.mark.django_db(transaction=True)  # the live server reads committed rows

WAIT_SECONDS = 15


def _css(browser: Any, selector: str) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, WAIT_SECONDS).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, selector)))


def test_a_contact_turns_a_topic_off_for_email_on_the_preference_page(browser, live_server,
                                                                      settings):
    settings.PUBLIC_BASE_URL = live_server.url
    workspace = WorkspaceFactory(name="Acme")
    Topic.objects.create(workspace=workspace, key="promotions", name="Promotions")
    Topic.objects.create(workspace=workspace, key="security", name="Security alerts",
                         critical=True)
    contact = ContactFactory(workspace=workspace, email="kim@example.com")
    message = Message.objects.create(workspace=workspace, contact=contact, channel="email",
                                     to=contact.email, content={"subject": "s", "text": "t"})

    browser.get(preferences.preferences_url(message))
    assert "Acme" in _css(browser, "h1").text
    email_box = _css(browser, "input[name='promotions.email']")
    assert email_box.is_selected() and _css(browser, "input[name='promotions.sms']").is_selected()
    critical = _css(browser, "input[name='security.email']")
    assert critical.is_selected() and not critical.is_enabled()
    email_box.click()
    _css(browser, "button[type=submit]").click()

    assert "saved" in _css(browser, "#saved").text
    assert not _css(browser, "input[name='promotions.email']").is_selected()
    assert _css(browser, "input[name='promotions.sms']").is_selected()
    chosen = {(p.topic.key, p.channel): p.opted_in
              for p in TopicPreference.objects.filter(contact=contact)}
    assert chosen == {("promotions", "email"): False, ("promotions", "sms"): True}

    promo = Message.objects.create(workspace=workspace, contact=contact, channel="email",
                                   to=contact.email, content={"subject": "s", "text": "t"},
                                   topic=Topic.objects.get(key="promotions"))
    assert preferences.refused_by_preference([promo]) == {promo.pk}


def test_a_changed_link_shows_the_invalid_page(browser, live_server):
    browser.get(f"{live_server.url}/p/not-a-token")
    assert "does not work" in _css(browser, "h1").text
