"""Two-factor sign-in through the real pages: turning it on with a TOTP code, the second
step after the password (app code or single-use recovery code), staff who may read but not
act before it, and a workspace that requires it of its members."""
from __future__ import annotations

import re
import time

import pytest
from django.test import Client
from django_otp.oath import hotp
from django_otp.plugins.otp_totp.models import TOTPDevice

from core.models import AuditEntry
from tests.factories import (
    PASSWORD,
    MembershipFactory,
    StaffUserFactory,
    WorkspaceFactory,
    failed_message,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _staff_need_two_factor(settings) -> None:
    settings.TWO_FACTOR_REQUIRED_FOR_STAFF = True


def code(device: TOTPDevice) -> str:
    """Return the code an authenticator app shows for the device: the current time step, or
    the next unused one (a step's code works once, and a confirmation near a step boundary
    moves the device's drift)."""
    device.refresh_from_db()
    current = int((time.time() - device.t0) // device.step) + device.drift
    counter = max(current, device.last_t + 1)
    return f"{hotp(device.bin_key, counter, digits=device.digits):06d}"


def back_off_passed() -> None:
    """Let django-otp's back-off after a wrong code (1 s, doubling) pass."""
    TOTPDevice.objects.update(throttling_failure_count=0, throttling_failure_timestamp=None)


def sign_in(client: Client, user, ip: str = "192.0.2.10"):
    return client.post("/accounts/login/", {"username": user.username, "password": PASSWORD},
                       REMOTE_ADDR=ip)


def turn_on(client: Client) -> tuple[TOTPDevice, list[str]]:
    """Set up 2FA through the page; return the device and the recovery codes shown."""
    client.post("/accounts/2fa/", {"step": "start"})
    device = TOTPDevice.objects.get(confirmed=False)
    page = client.post("/accounts/2fa/", {"step": "confirm", "token": code(device)})
    assert page.status_code == 200
    codes = re.findall(r"<code>([a-z0-9]+)</code>", page.content.decode())
    device.refresh_from_db()
    return device, codes


def test_a_user_turns_it_on_and_then_needs_a_code_after_the_password():
    member = MembershipFactory().user
    client = Client()
    sign_in(client, member)
    setup = client.post("/accounts/2fa/", {"step": "start"})
    assert 'src="data:image/svg+xml;base64,' in setup.content.decode()
    device = TOTPDevice.objects.get(user=member, confirmed=False)
    wrong = client.post("/accounts/2fa/", {"step": "confirm", "token": "000000"})
    assert "did not match" in wrong.content.decode()
    device, codes = turn_on(client)
    assert device.confirmed and len(codes) == 10
    assert AuditEntry.objects.filter(action="auth.two_factor_enable").count() == 1

    again = Client()
    assert sign_in(again, member).status_code == 302
    page = again.get("/dashboard/")
    assert page.status_code == 302 and page["Location"].startswith("/accounts/2fa/verify/")
    assert again.get("/admin/").status_code == 302
    refused = again.post("/accounts/2fa/verify/", {"token": "123456", "next": "/dashboard/"})
    assert refused.status_code == 400
    # Right after a wrong code even the right one waits out the back-off ...
    assert again.post("/accounts/2fa/verify/", {"token": code(device)}
                      ).status_code == 400
    back_off_passed()  # ... then it is accepted.
    ok = again.post("/accounts/2fa/verify/", {"token": code(device),
                                              "next": "/dashboard/"})
    assert ok.status_code == 302 and ok["Location"] == "/dashboard/"
    assert again.get("/dashboard/").status_code in (200, 302)
    assert not again.get("/dashboard/").get("Location", "").startswith("/accounts/2fa/")


def test_a_recovery_code_works_once():
    member = MembershipFactory().user
    client = Client()
    sign_in(client, member)
    _, codes = turn_on(client)
    first = Client()
    sign_in(first, member)
    assert first.post("/accounts/2fa/verify/", {"token": codes[0]}).status_code == 302
    second = Client()
    sign_in(second, member)
    assert second.post("/accounts/2fa/verify/", {"token": codes[0]}).status_code == 400


def test_the_password_alone_never_reaches_a_page_once_it_is_on():
    staff = StaffUserFactory()
    client = Client()
    sign_in(client, staff)
    turn_on(client)
    other = Client()
    sign_in(other, staff)
    for path in ("/dashboard/", "/admin/", "/admin/core/workspace/", "/accounts/password/"):
        response = other.get(path)
        assert response.status_code == 302, path
        assert response["Location"].startswith("/accounts/2fa/verify/"), path


def test_staff_read_but_do_not_act_until_they_pass_two_factor():
    workspace = WorkspaceFactory()
    _, letter = failed_message(workspace, error="HTTP 500")
    staff = StaffUserFactory()
    client = Client()
    sign_in(client, staff)
    assert client.get("/dashboard/", {"workspace": str(workspace.pk)}).status_code == 200
    retry = f"/dashboard/dead-letters/{letter.pk}/retry/"
    assert client.post(retry, {"workspace": str(workspace.pk)}).status_code == 403
    # The admin refuses changes too, and says where to go.
    change = client.post("/admin/core/workspace/add/", {"name": "x"})
    assert change.status_code == 302 and change["Location"].startswith("/accounts/2fa/")
    letter.refresh_from_db()
    assert letter.status == "open"

    turn_on(client)  # this session is verified by the confirmation
    response = client.post(retry, {"workspace": str(workspace.pk)})
    assert response.status_code == 302
    letter.refresh_from_db()
    assert letter.status == "replayed"


def test_a_workspace_that_requires_it_sends_members_to_the_setup():
    membership = MembershipFactory()
    workspace = membership.workspace
    workspace.settings = {"require_two_factor": True}
    workspace.save()
    client = Client()
    sign_in(client, membership.user)
    response = client.get("/dashboard/", {"workspace": str(workspace.pk)})
    assert response.status_code == 302 and response["Location"].startswith("/accounts/2fa/")
    page = client.get(response["Location"])
    assert "requires two-factor sign-in" in page.content.decode()
    turn_on(client)
    assert client.get("/dashboard/", {"workspace": str(workspace.pk)}).status_code == 200


def test_an_owner_requires_it_through_the_workspace_settings(api, workspace):
    response = api.patch("/api/v1/workspace", {"settings": {"require_two_factor": True}},
                         format="json")
    assert response.status_code == 200, response.content
    workspace.refresh_from_db()
    assert workspace.settings["require_two_factor"] is True
    bad = api.patch("/api/v1/workspace", {"settings": {"require_two_factor": "yes"}},
                    format="json")
    assert bad.status_code == 400


def test_turning_it_off_needs_a_current_code():
    member = MembershipFactory().user
    client = Client()
    sign_in(client, member)
    device, _ = turn_on(client)
    client.post("/accounts/2fa/off/", {"token": "000000"})
    assert TOTPDevice.objects.filter(user=member).exists()
    back_off_passed()
    client.post("/accounts/2fa/off/", {"token": code(device)})
    assert not TOTPDevice.objects.filter(user=member).exists()
    assert AuditEntry.objects.filter(action="auth.two_factor_disable").count() == 1


def test_the_api_is_not_concerned(api):
    assert api.get("/api/v1/workspace").status_code == 200
