"""Pages for recipients (no login): the email unsubscribe link (README.md, "Email
unsubscribe") and the preference page (README.md, "Subscription topics")."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from core.models import Contact
from messaging.recipients.preferences import (
    PreferencesInvalid,
    contact_of,
    preference_channels,
    preferences_of,
    preferences_set,
)
from messaging.recipients.unsubscribe import BadToken, Recipient, recipient_of, unsubscribe

TEMPLATE = "messaging/unsubscribe.html"


def masked(address: str) -> str:
    """Return the address with most of its local part hidden (a link may be forwarded)."""
    local, _, domain = address.partition("@")
    if not domain:
        return ""
    return f"{local[:1]}{'•' * 3}@{domain}"


def page(request: HttpRequest, *, state: str, recipient: Recipient | None = None,
         error: str = "", status: int = 200) -> HttpResponse:
    """Render the unsubscribe page in one of its states: confirm, done, invalid."""
    return render(request, TEMPLATE, status=status, context={
        "state": state, "error": error,
        "workspace_name": recipient.workspace.name if recipient else "",
        "address": masked(recipient.address) if recipient else ""})


# RFC 8058's one-click POST comes from a mail provider with no CSRF token: the signed token
# is the authority, and a POST only ever unsubscribes (it cannot be turned against anyone).
@method_decorator(csrf_exempt, name="dispatch")
class UnsubscribeView(View):
    """GET shows a confirmation page and changes nothing; POST unsubscribes (both the
    page's button and the one-click `List-Unsubscribe=One-Click` POST). A bad token
    answers 400 and changes nothing."""

    http_method_names = ["get", "post", "head"]

    def get(self, request: HttpRequest, token: str) -> HttpResponse:
        try:
            recipient = recipient_of(token)
        except BadToken as exc:
            return page(request, state="invalid", error=str(exc), status=400)
        return page(request, state="confirm", recipient=recipient)

    def post(self, request: HttpRequest, token: str) -> HttpResponse:
        try:
            recipient = unsubscribe(token=token)
        except BadToken as exc:
            return page(request, state="invalid", error=str(exc), status=400)
        return page(request, state="done", recipient=recipient)


def preferences_page(request: HttpRequest, *, contact: Contact | None, saved: bool = False,
                     error: str = "", status: int = 200) -> HttpResponse:
    """Render the preference page: a row per topic, a checkbox per channel."""
    rows: dict[str, dict] = {}
    for item in preferences_of(contact) if contact is not None else []:
        row = rows.setdefault(item.topic.key, {"topic": item.topic, "cells": []})
        row["cells"].append({"channel": item.channel, "opted_in": item.opted_in,
                             "name": field_name(item.topic.key, item.channel)})
    return render(request, "messaging/preferences.html", status=status, context={
        "contact": contact, "rows": list(rows.values()), "channels": preference_channels(),
        "saved": saved, "error": error,
        "workspace_name": contact.workspace.name if contact is not None else ""})


def field_name(topic_key: str, channel: str) -> str:
    """Return the form field of a topic's checkbox on a channel."""
    return f"{topic_key}.{channel}"


class PreferencesView(View):
    """GET shows the contact's topics with a checkbox per channel; POST saves them (a
    checkbox left unticked opts out; a critical topic stays in). A bad token answers 400
    and changes nothing."""

    http_method_names = ["get", "post", "head"]

    def get(self, request: HttpRequest, token: str) -> HttpResponse:
        try:
            contact = contact_of(token)
        except BadToken as exc:
            return preferences_page(request, contact=None, error=str(exc), status=400)
        return preferences_page(request, contact=contact)

    def post(self, request: HttpRequest, token: str) -> HttpResponse:
        try:
            contact = contact_of(token)
        except BadToken as exc:
            return preferences_page(request, contact=None, error=str(exc), status=400)
        items = [{"topic": item.topic.key, "channel": item.channel,
                  "opted_in": field_name(item.topic.key, item.channel) in request.POST}
                 for item in preferences_of(contact) if not item.topic.critical]
        try:
            preferences_set(contact, items)
        except PreferencesInvalid:  # a topic deleted while the page was open
            return preferences_page(request, contact=contact, status=409,
                                    error="The topics changed; check them and save again.")
        return preferences_page(request, contact=contact, saved=True)
