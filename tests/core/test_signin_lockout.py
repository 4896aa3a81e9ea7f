"""Sign-in lockout on every password form, through the real middleware, database and Redis:
after LOGIN_FAILURE_LIMIT failures for a username or from an address, the right password is
refused until the cool-off has passed; lockouts are audited, counted and lifted in admin."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import F
from django.test import Client

from core.models import AuditEntry
from core.signin import LOCKOUT_ACTION
from tests.factories import PASSWORD, MembershipFactory, StaffUserFactory

pytestmark = pytest.mark.django_db

LIMIT = settings.AXES_FAILURE_LIMIT
TOKEN = "metrics-test-token"


def _login(client: Client, path: str, username: str, password: str, ip: str, **extra):
    return client.post(path, {"username": username, "password": password},
                       REMOTE_ADDR=ip, **extra)


def _signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def _end_the_cool_off() -> None:
    """Move every stored failure back past the cool-off, as if that much time had passed."""
    AccessAttempt.objects.update(
        attempt_time=F("attempt_time") - settings.AXES_COOLOFF_TIME - timedelta(seconds=1))


@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/"])
def test_a_username_is_locked_after_repeated_failures_from_any_address(path):
    user = StaffUserFactory()
    for n in range(LIMIT):
        response = _login(Client(), path, user.username, "wrong", f"198.51.100.{n + 1}")
        # The form again with its error; the failure that reaches the limit gets the
        # lockout page at once.
        assert response.status_code == (429 if n == LIMIT - 1 else 200)
    client = Client()
    refused = _login(client, path, user.username, PASSWORD, "203.0.113.9")
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) > 0
    assert "Sign-in paused" in refused.content.decode()
    assert not _signed_in(client)

    _end_the_cool_off()
    accepted = _login(client, path, user.username, PASSWORD, "203.0.113.9")
    assert accepted.status_code == 302
    assert _signed_in(client)


def test_an_address_is_locked_after_failures_for_many_usernames():
    user = StaffUserFactory()
    for n in range(LIMIT):
        _login(Client(), "/accounts/login/", f"guess{n}", "wrong", "192.0.2.50")
    client = Client()
    refused = _login(client, "/accounts/login/", user.username, PASSWORD, "192.0.2.50")
    assert refused.status_code == 429
    assert not _signed_in(client)
    # The same user from another address is not this address's lockout.
    elsewhere = Client()
    assert _login(elsewhere, "/accounts/login/", user.username, PASSWORD,
                  "192.0.2.51").status_code == 302

    _end_the_cool_off()
    assert _login(client, "/accounts/login/", user.username, PASSWORD,
                  "192.0.2.50").status_code == 302


def test_forwarded_for_headers_do_not_escape_the_address_limit():
    user = StaffUserFactory()
    for n in range(LIMIT):
        _login(Client(), "/accounts/login/", f"guess{n}", "wrong", "192.0.2.60",
               HTTP_X_FORWARDED_FOR=f"10.0.0.{n}")
    refused = _login(Client(), "/accounts/login/", user.username, PASSWORD, "192.0.2.60",
                     HTTP_X_FORWARDED_FOR="10.9.9.9")
    assert refused.status_code == 429


def test_a_client_asking_for_json_gets_the_api_error_shape():
    user = StaffUserFactory()
    for _ in range(LIMIT):
        _login(Client(), "/accounts/login/", user.username, "wrong", "192.0.2.70")
    refused = _login(Client(), "/accounts/login/", user.username, PASSWORD, "192.0.2.70",
                     HTTP_ACCEPT="application/json")
    assert refused.status_code == 429
    body = refused.json()["error"]
    assert body["code"] == "locked_out"
    assert body["retry_after"] == int(refused["Retry-After"])
    assert 0 < body["retry_after"] <= settings.AXES_COOLOFF_TIME.total_seconds() + 1


def test_the_password_change_form_counts_toward_the_lockout():
    member = MembershipFactory().user
    client = Client()
    client.force_login(member)
    for n in range(LIMIT):
        response = client.post("/accounts/password/", {
            "old_password": "wrong", "new_password1": "a-new-long-secret-1",
            "new_password2": "a-new-long-secret-1"}, REMOTE_ADDR="192.0.2.80")
        assert response.status_code == (429 if n == LIMIT - 1 else 200)
    refused = client.post("/accounts/password/", {
        "old_password": PASSWORD, "new_password1": "a-new-long-secret-1",
        "new_password2": "a-new-long-secret-1"}, REMOTE_ADDR="192.0.2.81")
    assert refused.status_code == 429
    member.refresh_from_db()
    assert member.check_password(PASSWORD)
    # The sign-in form refuses the same username too.
    assert _login(Client(), "/accounts/login/", member.username, PASSWORD,
                  "192.0.2.82").status_code == 429

    _end_the_cool_off()
    changed = client.post("/accounts/password/", {
        "old_password": PASSWORD, "new_password1": "a-new-long-secret-1",
        "new_password2": "a-new-long-secret-1"}, REMOTE_ADDR="192.0.2.81")
    assert changed.status_code == 302
    member.refresh_from_db()
    assert member.check_password("a-new-long-secret-1")


def test_the_admin_password_change_is_the_guarded_page():
    client = Client()
    client.force_login(StaffUserFactory())
    response = client.get("/admin/password_change/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/password/"


def test_a_lockout_is_audited_once_and_counted_in_metrics(client, settings):
    settings.METRICS_TOKEN = TOKEN

    def scrape() -> dict[str, float]:
        text = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode()
        return {name: float(value) for name, value in re.findall(
            r'^(relay_login_(?:failures|lockouts)_total\{form="admin"\}) (\S+)$', text, re.M)}

    before = scrape()
    user = StaffUserFactory()
    for _ in range(LIMIT + 3):  # the last three are refused during the cool-off
        _login(Client(), "/admin/login/", user.username, "wrong", "192.0.2.90")
    entries = AuditEntry.objects.filter(action=LOCKOUT_ACTION)
    assert entries.count() == 1
    entry = entries.get()
    assert (entry.source, entry.ip, entry.target_id) == ("admin", "192.0.2.90", user.username)
    assert entry.detail["failures"] == LIMIT
    after = scrape()
    failures = 'relay_login_failures_total{form="admin"}'
    lockouts = 'relay_login_lockouts_total{form="admin"}'
    assert after[failures] - before.get(failures, 0) == LIMIT + 3
    assert after[lockouts] - before.get(lockouts, 0) == 1


def test_staff_see_and_lift_a_lockout_in_admin():
    user = StaffUserFactory()
    for _ in range(LIMIT):
        _login(Client(), "/accounts/login/", user.username, "wrong", "192.0.2.100")
    assert _login(Client(), "/accounts/login/", user.username, PASSWORD,
                  "192.0.2.101").status_code == 429

    operator = Client()
    operator.force_login(StaffUserFactory())
    listing = operator.get("/admin/axes/accessattempt/")
    assert listing.status_code == 200
    assert user.username in listing.content.decode()
    ids = [str(pk) for pk in AccessAttempt.objects.values_list("pk", flat=True)]
    response = operator.post("/admin/axes/accessattempt/", {
        "action": "delete_selected", "_selected_action": ids, "post": "yes"})
    assert response.status_code == 302
    assert not AccessAttempt.objects.exists()

    client = Client()
    assert _login(client, "/accounts/login/", user.username, PASSWORD,
                  "192.0.2.101").status_code == 302
    assert _signed_in(client)


def test_api_keys_are_not_affected_by_sign_in_lockouts(api):
    for n in range(LIMIT):
        _login(Client(), "/accounts/login/", f"guess{n}", "wrong", "127.0.0.1")
    assert api.get("/api/v1/workspace", REMOTE_ADDR="127.0.0.1").status_code == 200


def test_behind_a_trusted_proxy_the_address_is_the_one_the_proxy_saw(settings):
    """All clients reach the web process from the proxy's address; the proxy appends the
    real one to X-Forwarded-For. Entries left of it are the client's own and do not count."""
    settings.TRUSTED_PROXY_HOPS = 1
    user = StaffUserFactory()
    for n in range(LIMIT):
        _login(Client(), "/accounts/login/", f"guess{n}", "wrong", "10.0.0.2",
               HTTP_X_FORWARDED_FOR=f"203.0.113.{n}, 192.0.2.110")
    # Another client behind the same proxy is not locked out ...
    assert _login(Client(), "/accounts/login/", user.username, PASSWORD, "10.0.0.2",
                  HTTP_X_FORWARDED_FOR="192.0.2.111").status_code == 302
    # ... the guessing one is, whatever it writes in front.
    assert _login(Client(), "/accounts/login/", user.username, PASSWORD, "10.0.0.2",
                  HTTP_X_FORWARDED_FOR="198.51.100.7, 192.0.2.110").status_code == 429
    assert AuditEntry.objects.get(action=LOCKOUT_ACTION).ip == "192.0.2.110"
