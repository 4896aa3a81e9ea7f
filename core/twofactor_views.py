"""The two-factor pages: turn it on (scan, confirm, keep the recovery codes), the second
step after the password, new recovery codes, turn it off (core.twofactor does the work)."""
from __future__ import annotations

import base64
import io

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST
from django_otp.plugins.otp_totp.models import TOTPDevice
from django_otp.qr import write_qrcode_image

from core import twofactor


def _qr_data_uri(url: str) -> str:
    """Return the otpauth URL as an SVG QR code in a data: URI (the CSP allows data: images,
    and nothing leaves the service)."""
    out = io.BytesIO()
    write_qrcode_image(url, out)
    return "data:image/svg+xml;base64," + base64.b64encode(out.getvalue()).decode()


def _next(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(target, {request.get_host()},
                                       require_https=request.is_secure()):
        return target
    return "/dashboard/"


@login_required
@require_http_methods(["GET", "POST"])
def setup(request: HttpRequest) -> HttpResponse:
    """Show whether 2FA is on; start (a new secret and its QR code) and confirm it."""
    user = request.user
    context: dict = {"enabled": twofactor.has_two_factor(user), "next": _next(request),
                     "required_by": twofactor.workspaces_requiring(user),
                     "staff_must": twofactor.staff_must_verify(user),
                     "codes_left": twofactor.recovery_codes_left(user)}
    pending = TOTPDevice.objects.filter(user=user, confirmed=False).first()
    if request.method == "POST" and request.POST.get("step") == "start":
        pending = twofactor.totp_start(user=user)
    elif request.method == "POST" and request.POST.get("step") == "confirm" and pending:
        codes = twofactor.totp_confirm(request=request, device=pending,
                                       token=request.POST.get("token", ""))
        if codes is not None:
            return render(request, "registration/two_factor_codes.html",
                          {"codes": codes, "next": context["next"]})
        context["error"] = "That code did not match. Check the app's clock and try again."
    if pending is not None:
        context.update(pending=pending, qr=_qr_data_uri(pending.config_url),
                       secret=base64.b32encode(pending.bin_key).decode().rstrip("="))
    return render(request, "registration/two_factor.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def verify(request: HttpRequest) -> HttpResponse:
    """The second step: a code from the app, or a recovery code."""
    if twofactor.is_verified(request.user) or not twofactor.has_two_factor(request.user):
        return redirect(_next(request))
    error = ""
    if request.method == "POST":
        if twofactor.verify(request=request, token=request.POST.get("token", "")):
            return redirect(_next(request))
        error = "That code did not match (a recovery code works once)."
    return render(request, "registration/two_factor_verify.html",
                  {"error": error, "next": _next(request)}, status=400 if error else 200)


@login_required
@require_POST
def recovery_codes(request: HttpRequest) -> HttpResponse:
    """Replace the recovery codes (a verified session only) and show the new ones once."""
    if not (twofactor.has_two_factor(request.user) and twofactor.is_verified(request.user)):
        return redirect("two_factor")
    codes = twofactor.recovery_codes_replace(user=request.user)
    return render(request, "registration/two_factor_codes.html",
                  {"codes": codes, "next": "/dashboard/"})


@login_required
@require_POST
def turn_off(request: HttpRequest) -> HttpResponse:
    """Turn 2FA off after a current code (not while a workspace of the user requires it)."""
    if twofactor.workspaces_requiring(request.user):
        messages.error(request, "A workspace you belong to requires two-factor sign-in.")
    elif twofactor.verify(request=request, token=request.POST.get("token", "")):
        twofactor.disable(request=request)
        messages.success(request, "Two-factor sign-in is off.")
    else:
        messages.error(request, "That code did not match; two-factor sign-in stays on.")
    return redirect("two_factor")
