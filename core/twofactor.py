"""Two-factor sign-in: a TOTP app and single-use recovery codes (django-otp).

Any user may turn it on; from then on a sign-in with the password alone reaches only the
second step (`/accounts/2fa/verify/`). It is required, before anything else, of the members
of a workspace whose settings say `require_two_factor`, and of staff before they act
(replay, discard, pause, ... in the dashboard; any change in the admin):
`TWO_FACTOR_REQUIRED_FOR_STAFF`. A session is "verified" once its user typed a code after
the password (django-otp keeps the device in the session); `TwoFactorMiddleware` sends an
unverified session to the second step, and a user who must have 2FA and has none to the
setup page. The API (API keys) is not concerned.

django-otp (https://django-otp-official.readthedocs.io/) checks the codes (a 30 s TOTP step,
one step of drift) and slows down repeated wrong ones on each device by itself.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import urlencode
from django_otp import devices_for_user
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from core.audit import Actor, audit, client_ip
from core.models import Workspace

RECOVERY_CODES = 10
TOTP_NAME = "authenticator app"
RECOVERY_NAME = "recovery codes"
REQUIRE_SETTING = "require_two_factor"


def has_two_factor(user: Any) -> bool:
    """Return whether the user has a confirmed TOTP device (2FA turned on)."""
    return bool(getattr(user, "pk", None)) and TOTPDevice.objects.filter(
        user=user, confirmed=True).exists()


def is_verified(user: Any) -> bool:
    """Return whether this request's session passed the second step (django-otp's flag)."""
    check: Callable[[], bool] | None = getattr(user, "is_verified", None)
    return bool(check and check())


def state(user: Any) -> tuple[bool, bool]:
    """Return (2FA is on, a workspace of the user requires it) in one query: the
    middleware asks on every page."""
    row = get_user_model().objects.filter(pk=user.pk).annotate(
        on=Exists(TOTPDevice.objects.filter(user=OuterRef("pk"), confirmed=True)),
        required=Exists(Workspace.objects.filter(
            memberships__user=OuterRef("pk"), **{f"settings__{REQUIRE_SETTING}": True})),
    ).values_list("on", "required").first()
    return (bool(row[0]), bool(row[1])) if row else (False, False)


def workspaces_requiring(user: Any) -> list[Workspace]:
    """Return the user's workspaces whose settings require two-factor sign-in."""
    if not getattr(user, "is_authenticated", False):
        return []
    return [workspace for workspace in Workspace.objects.filter(memberships__user=user)
            if (workspace.settings or {}).get(REQUIRE_SETTING) is True]


def staff_must_verify(user: Any) -> bool:
    """Return whether this user, as staff, must pass 2FA before acting."""
    return bool(settings.TWO_FACTOR_REQUIRED_FOR_STAFF and getattr(user, "is_staff", False))


def may_act(user: Any) -> bool:
    """Return False for staff who may not act yet: 2FA required and this session unverified."""
    return not staff_must_verify(user) or is_verified(user)


def _actor(request: HttpRequest) -> Actor:
    return Actor(name=f"user:{request.user.get_username()}", source="dashboard",
                 ip=client_ip(request))


def totp_start(*, user: Any) -> TOTPDevice:
    """Return the user's unconfirmed TOTP device (a new secret each time it is started)."""
    TOTPDevice.objects.filter(user=user, confirmed=False).delete()
    return TOTPDevice.objects.create(user=user, name=TOTP_NAME, confirmed=False)


def totp_confirm(*, request: HttpRequest, device: TOTPDevice, token: str) -> list[str] | None:
    """Turn 2FA on when the token matches the new device: confirm it, replace any earlier
    device, make fresh recovery codes and mark this session verified. Return the codes
    (shown once), or None for a wrong token."""
    if device.confirmed or not device.verify_token(token.strip()):
        return None
    user = request.user
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user).exclude(pk=device.pk).delete()
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        codes = recovery_codes_replace(user=user)
        audit(actor=_actor(request), action="auth.two_factor_enable", target_type="user",
              target_id=user.get_username())
    from django_otp import login as otp_login

    otp_login(request, device)
    return codes


def recovery_codes_replace(*, user: Any) -> list[str]:
    """Return a new set of single-use recovery codes; the previous set stops working."""
    device, _ = StaticDevice.objects.get_or_create(
        user=user, name=RECOVERY_NAME, defaults={"confirmed": True})
    device.token_set.all().delete()
    codes = [StaticToken.random_token() for _ in range(RECOVERY_CODES)]
    StaticToken.objects.bulk_create([StaticToken(device=device, token=code) for code in codes])
    return codes


def recovery_codes_left(user: Any) -> int:
    return StaticToken.objects.filter(device__user=user, device__confirmed=True).count()


def verify(*, request: HttpRequest, token: str) -> bool:
    """Pass the second step with a TOTP code or a recovery code (used up); mark the
    session verified. Return whether a device accepted the token."""
    token = "".join(token.split())
    for device in devices_for_user(request.user, confirmed=True):
        if device.verify_token(token):
            from django_otp import login as otp_login

            otp_login(request, device)
            return True
    return False


def disable(*, request: HttpRequest) -> None:
    """Turn 2FA off for the request's user: remove every device (audited)."""
    user = request.user
    with transaction.atomic():
        for device in devices_for_user(user, confirmed=None):
            device.delete()
        audit(actor=_actor(request), action="auth.two_factor_disable", target_type="user",
              target_id=user.get_username())


# --- where an unverified session may go ------------------------------------------------
# Signing in, out, the second step and the setup page itself; static files; the API and
# machine endpoints (API keys, not sessions).
_EXEMPT_PREFIXES = ("/accounts/login/", "/accounts/logout/", "/accounts/2fa/", "/static/",
                    "/api/", "/health", "/metrics", "/u/", "/admin/login/", "/admin/logout/")


class TwoFactorMiddleware:
    """Send a signed-in user to the second step when the session is not verified yet, or to
    the setup page when 2FA is required of them and not on (after django-otp's
    OTPMiddleware). Staff without 2FA may read; their changes in the admin are refused."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if (user is None or not user.is_authenticated
                or request.path.startswith(_EXEMPT_PREFIXES)):
            return self.get_response(request)
        if not is_verified(user):
            on, required = state(user)
            if on:
                return _to("two_factor_verify", request)
            if required:
                return _to("two_factor", request)
        if (request.method == "POST" and request.path.startswith("/admin/")
                and not may_act(user)):
            return _to("two_factor", request)
        return self.get_response(request)


def _to(name: str, request: HttpRequest) -> HttpResponse:
    return redirect(f"{reverse(name)}?{urlencode({'next': request.get_full_path()})}")
