"""Pages for recipients (no login): the email unsubscribe link (README.md, "Email
unsubscribe")."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

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
