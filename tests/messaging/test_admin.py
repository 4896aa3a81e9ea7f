from __future__ import annotations

import json

import pytest

from core.models import ApiKey, DeadLetter
from core.services import api_key_create
from messaging.delivery import creation
from messaging.models import Message
from messaging.templates import template_create, template_update
from tests.messaging.test_workspace_api import BAD_SETTINGS, GOOD_SETTINGS

pytestmark = pytest.mark.django_db


def test_admin_pages_render(staff, workspace):
    message = creation.message_create(workspace=workspace, channel="sms", to="+14155552671",
                                      content={"body": "x"})
    DeadLetter.objects.create(workspace=workspace, kind="message", source_id=str(message.id),
                              error="boom")
    for url in ["/admin/core/workspace/", f"/admin/core/workspace/{workspace.id}/change/",
                "/admin/core/apikey/", "/admin/core/contact/",
                "/admin/messaging/message/", f"/admin/messaging/message/{message.id}/change/",
                "/admin/core/deadletter/", "/admin/messaging/idempotencyrecord/"]:
        assert staff.get(url).status_code == 200, url


def test_admin_revokes_keys_and_cancels_messages(staff, workspace):
    key, _ = api_key_create(workspace=workspace)
    staff.post("/admin/core/apikey/", {"action": "revoke", "_selected_action": [key.pk]})
    assert ApiKey.objects.get(pk=key.pk).revoked_at is not None
    message = creation.message_create(workspace=workspace, channel="sms", to="+14155552671",
                                      content={"body": "x"})
    staff.post("/admin/messaging/message/", {"action": "cancel",
                                             "_selected_action": [message.pk]})
    assert Message.objects.get(pk=message.pk).status == "cancelled"


def change_workspace(staff, workspace, settings: str):
    """POST the workspace's admin page as an operator would, with new settings JSON."""
    return staff.post(f"/admin/core/workspace/{workspace.id}/change/", {
        "name": workspace.name, "slug": workspace.slug, "timezone": workspace.timezone,
        "settings": settings, "is_active": "on", "webhook_secret": workspace.webhook_secret,
        "webhook_secret_previous": "", "api_keys-TOTAL_FORMS": "0",
        "api_keys-INITIAL_FORMS": "0", "api_keys-MIN_NUM_FORMS": "0",
        "api_keys-MAX_NUM_FORMS": "1000"})


def test_an_operator_sets_the_compat_settings_on_the_workspace_page(staff, workspace):
    response = change_workspace(staff, workspace, '{"callback_base_url": '
                                '"https://crm.example.com/hooks", '
                                '"compat_workspace_ids": ["10001", 12]}')
    assert response.status_code == 302, response.context["adminform"].form.errors
    workspace.refresh_from_db()
    assert workspace.settings == {"callback_base_url": "https://crm.example.com/hooks",
                                  "compat_workspace_ids": ["10001", 12]}


@pytest.mark.parametrize("settings,named", [
    ('{"callback_base_url": "ftp://crm.example.com"}', "callback_base_url"),
    ('{"callback_base_url": "crm.example.com/hooks"}', "callback_base_url"),
    ('{"callback_base_url": "https://crm.example.com/?a=1"}', "callback_base_url"),
    ('{"callback_base_url": 7}', "callback_base_url"),
    ('{"compat_workspace_ids": "10001"}', "compat_workspace_ids"),
    ('{"compat_workspace_ids": [true]}', "compat_workspace_ids"),
    ('{"compat_workspace_ids": [""]}', "compat_workspace_ids"),
    ('["10001"]', "JSON object"),
])
def test_the_workspace_page_refuses_bad_compat_settings(staff, workspace, settings, named):
    before = workspace.settings
    response = change_workspace(staff, workspace, settings)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["settings"]
    assert named in " ".join(errors)
    workspace.refresh_from_db()
    assert workspace.settings == before


@pytest.mark.parametrize("settings,path", BAD_SETTINGS, ids=[p for _, p in BAD_SETTINGS])
def test_the_workspace_page_refuses_what_the_api_refuses(staff, workspace, settings, path):
    response = change_workspace(staff, workspace, json.dumps(settings))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["settings"]
    assert any(error.startswith(f"{path}:") for error in errors), errors
    workspace.refresh_from_db()
    assert workspace.settings == {}


def test_the_workspace_page_takes_every_known_setting(staff, workspace):
    settings = dict(GOOD_SETTINGS)
    # The admin page may also set where a provider connects (the API may not).
    settings["providers"] = {"sms": {"name": "http", "api_url": "https://sms.example",
                                     "api_key": "k"}}
    response = change_workspace(staff, workspace, json.dumps(settings))
    assert response.status_code == 302, response.context["adminform"].form.errors
    workspace.refresh_from_db()
    assert workspace.settings == settings


def test_the_template_pages_show_every_version_and_add_none(staff, workspace):
    template = template_create(workspace=workspace, name="welcome", channel="sms",
                               default_locale="en", variants={"en": {"body": "Hi v1"}})
    template_update(template=template, changes={"variants": {"en": {"body": "Hi v2"}}})
    assert staff.get("/admin/messaging/template/").status_code == 200
    page = staff.get(f"/admin/messaging/template/{template.pk}/change/")
    assert page.status_code == 200
    assert "Hi v1" in page.content.decode() and "Hi v2" in page.content.decode()
    assert staff.get("/admin/messaging/template/add/").status_code == 403
