"""PATCH /api/v1/workspace: settings as a partial update, checked like the admin page."""
from __future__ import annotations

import pytest

from core.models import Workspace
from tests.factories import WorkspaceFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/workspace"

# (key, a value the service reads) for every known setting.
GOOD_SETTINGS = [
    ("quiet_hours", {"start": "21:00", "end": "08:00"}),
    ("frequency_caps", {"sms": "3/day", "email": "10/week"}),
    ("frequency_cap_action", "suppress"),
    ("keyword_replies", {"stop": "You are unsubscribed.", "start": "Welcome back.",
                         "help": "Reply STOP to stop."}),
    ("keyword_replies_by_provider", True),
    ("callback_base_url", "https://crm.example.com/hooks"),
    ("compat_workspace_ids", ["10001", 12]),
    ("rate_limits", {"sms": "5/s", "email": "20/min burst 5"}),
    ("providers", {"sms": {"name": "twilio", "account_sid": "AC1", "auth_token": "t0k"},
                   "email": {"name": "smtp", "username": "u", "password": "pw"}}),
]

# (settings, the path the answer names): the API and the admin page refuse them all.
BAD_SETTINGS = [
    ({"quiet_hours": {"start": "9pm", "end": "08:00"}}, "quiet_hours.start"),
    ({"quiet_hours": {"start": "24:00", "end": "08:00"}}, "quiet_hours.start"),
    ({"quiet_hours": {"start": "21:00", "end": "21:00"}}, "quiet_hours.end"),
    ({"quiet_hours": {"start": "21:00"}}, "quiet_hours.end"),
    ({"quiet_hours": {"start": "21:00", "end": "08:00", "tz": "UTC"}}, "quiet_hours.tz"),
    ({"quiet_hours": "21:00-08:00"}, "quiet_hours"),
    ({"frequency_caps": {"sms": "3/fortnight"}}, "frequency_caps.sms"),
    ({"frequency_caps": {"sms": 3}}, "frequency_caps.sms"),
    ({"frequency_caps": {"sms": "0/day"}}, "frequency_caps.sms"),
    ({"frequency_caps": {"webhook": "3/day"}}, "frequency_caps.webhook"),
    ({"frequency_cap_action": "drop"}, "frequency_cap_action"),
    ({"keyword_replies": {"stop": ""}}, "keyword_replies.stop"),
    ({"keyword_replies": {"help": "x" * 321}}, "keyword_replies.help"),
    ({"keyword_replies": {"quit": "bye"}}, "keyword_replies.quit"),
    ({"keyword_replies_by_provider": "yes"}, "keyword_replies_by_provider"),
    ({"callback_base_url": "ftp://crm.example.com"}, "callback_base_url"),
    ({"compat_workspace_ids": [True]}, "compat_workspace_ids"),
    ({"rate_limits": {"sms": "fast"}}, "rate_limits.sms"),
    ({"rate_limits": {"fax": "5/s"}}, "rate_limits.fax"),
    ({"providers": {"sms": {"name": "pigeon"}}}, "providers.sms.name"),
    ({"providers": {"sms": {"name": "smtp"}}}, "providers.sms.name"),
    ({"providers": {"fax": {"name": "console"}}}, "providers.fax"),
    ({"providers": {"sms": "twilio"}}, "providers.sms"),
    ({"providers": {"email": {"name": "smtp", "port": [25]}}}, "providers.email.port"),
    ({"colour": "blue"}, "colour"),
]


def patch(api, body):
    return api.patch(URL, body, format="json")


@pytest.mark.parametrize("key,value", GOOD_SETTINGS, ids=[k for k, _ in GOOD_SETTINGS])
def test_each_known_setting_is_stored(api, workspace, key, value):
    response = patch(api, {"settings": {key: value}})
    assert response.status_code == 200, response.json()
    workspace.refresh_from_db()
    assert workspace.settings[key] == value


@pytest.mark.parametrize("settings,path", BAD_SETTINGS, ids=[p for _, p in BAD_SETTINGS])
def test_a_bad_value_answers_400_naming_the_field_and_writes_nothing(api, workspace, settings,
                                                                      path):
    workspace.settings = {"frequency_caps": {"sms": "3/day"}}
    workspace.save()
    # A good key beside the bad one is not written either.
    good = next((k, v) for k, v in GOOD_SETTINGS if k not in settings)
    response = patch(api, {"name": "Renamed", "settings": {**settings, good[0]: good[1]}})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert f"settings.{path}" in error["fields"], error
    workspace.refresh_from_db()
    assert workspace.settings == {"frequency_caps": {"sms": "3/day"}}
    assert workspace.name != "Renamed"


def test_keys_merge_and_null_removes_one(api, workspace):
    workspace.settings = {"frequency_caps": {"sms": "3/day"}, "frequency_cap_action": "suppress",
                          "callback_base_url": "https://crm.example.com"}
    workspace.save()
    response = patch(api, {"settings": {"quiet_hours": {"start": "22:00", "end": "07:30"},
                                        "frequency_cap_action": None}})
    assert response.status_code == 200
    assert response.json()["settings"] == {
        "frequency_caps": {"sms": "3/day"}, "callback_base_url": "https://crm.example.com",
        "quiet_hours": {"start": "22:00", "end": "07:30"}}
    workspace.refresh_from_db()
    assert "frequency_cap_action" not in workspace.settings
    assert workspace.settings["quiet_hours"] == {"start": "22:00", "end": "07:30"}


def test_provider_secrets_are_write_only(api, workspace):
    response = patch(api, {"settings": {"providers": {"sms": {
        "name": "twilio", "account_sid": "AC1", "auth_token": "first-token"}}}})
    assert response.status_code == 200
    assert "first-token" not in response.content.decode()
    assert response.json()["settings"]["providers"]["sms"]["auth_token"] == "***"
    assert "first-token" not in api.get(URL).content.decode()
    # What GET showed, sent back with one change, keeps the stored secret.
    shown = api.get(URL).json()["settings"]["providers"]
    shown["sms"]["account_sid"] = "AC2"
    assert patch(api, {"settings": {"providers": shown}}).status_code == 200
    workspace.refresh_from_db()
    assert workspace.settings["providers"]["sms"] == {
        "name": "twilio", "account_sid": "AC2", "auth_token": "first-token"}
    # A new value replaces it.
    patch(api, {"settings": {"providers": {"sms": {"name": "twilio", "account_sid": "AC2",
                                                   "auth_token": "second-token"}}}})
    workspace.refresh_from_db()
    assert workspace.settings["providers"]["sms"]["auth_token"] == "second-token"


def test_the_mask_for_a_secret_never_stored_is_refused(api, workspace):
    response = patch(api, {"settings": {"providers": {"sms": {"name": "twilio",
                                                              "auth_token": "***"}}}})
    assert response.status_code == 400
    assert "settings.providers.sms.auth_token" in response.json()["error"]["fields"]
    workspace.refresh_from_db()
    assert "providers" not in workspace.settings


@pytest.mark.parametrize("key,value", [("api_url", "http://169.254.169.254/latest"),
                                       ("from_number", "+14155550000")])
def test_where_a_provider_connects_and_sends_from_is_for_operators(api, workspace, key, value):
    response = patch(api, {"settings": {"providers": {"sms": {"name": "http", key: value}}}})
    assert response.status_code == 400
    assert f"settings.providers.sms.{key}" in response.json()["error"]["fields"]
    workspace.refresh_from_db()
    assert workspace.settings == {}


def test_operator_set_provider_endpoints_survive_an_api_change(api, workspace):
    workspace.settings = {"providers": {"sms": {"name": "http", "api_url": "https://sms.example",
                                                "api_key": "k1"}}}
    workspace.save()
    shown = api.get(URL).json()["settings"]["providers"]
    shown["sms"]["api_key"] = "k2"
    assert patch(api, {"settings": {"providers": shown}}).status_code == 200
    workspace.refresh_from_db()
    assert workspace.settings["providers"]["sms"] == {
        "name": "http", "api_url": "https://sms.example", "api_key": "k2"}


def test_name_and_timezone_change_and_a_bad_timezone_is_refused(api, workspace):
    response = patch(api, {"name": "Acme", "timezone": "Europe/Berlin"})
    assert response.status_code == 200
    assert response.json()["timezone"] == "Europe/Berlin"
    workspace.refresh_from_db()
    assert (workspace.name, workspace.timezone) == ("Acme", "Europe/Berlin")
    response = patch(api, {"timezone": "Mars/Olympus"})
    assert response.status_code == 400 and "timezone" in response.json()["error"]["fields"]
    response = patch(api, {"slug": "other"})
    assert response.status_code == 400 and "slug" in response.json()["error"]["fields"]
    response = patch(api, {"settings": ["quiet_hours"]})
    assert response.status_code == 400 and "settings" in response.json()["error"]["fields"]
    workspace.refresh_from_db()
    assert (workspace.name, workspace.timezone, workspace.slug) == (
        "Acme", "Europe/Berlin", workspace.slug)


def test_another_workspace_is_untouched(api, workspace):
    other = WorkspaceFactory(settings={"quiet_hours": {"start": "20:00", "end": "09:00"}})
    assert patch(api, {"settings": {"quiet_hours": {"start": "21:00", "end": "08:00"},
                                    "frequency_caps": {"sms": "1/day"}}}).status_code == 200
    other.refresh_from_db()
    assert other.settings == {"quiet_hours": {"start": "20:00", "end": "09:00"}}
    assert Workspace.objects.get(pk=workspace.pk).settings["frequency_caps"] == {"sms": "1/day"}


def test_the_policy_reads_what_the_api_wrote(api, workspace):
    """A value the API accepts is one the pipeline parses (the same parsers)."""
    from messaging.recipients.policy import quiet_window

    patch(api, {"settings": {"quiet_hours": {"start": "21:30", "end": "06:00"}}})
    workspace.refresh_from_db()
    start, end = quiet_window(workspace.settings)
    assert (start.hour, start.minute, end.hour, end.minute) == (21, 30, 6, 0)


def test_a_list_of_providers_is_a_failover_order_each_named_once(api, workspace):
    order = [{"name": "twilio", "account_sid": "AC1"}, {"name": "console"}]
    response = patch(api, {"settings": {"providers": {"sms": order},
                                        "failover_on_unknown_outcome": True}})
    assert response.status_code == 200, response.content
    workspace.refresh_from_db()
    assert workspace.settings["providers"]["sms"] == order
    twice = patch(api, {"settings": {"providers": {"sms": [{"name": "console"},
                                                           {"name": "console"}]}}})
    assert "settings.providers.sms" in twice.json()["error"]["fields"]
    unknown = patch(api, {"settings": {"providers": {"sms": [{"name": "pigeon"}]},
                                       "failover_on_unknown_outcome": "yes"}})
    assert {"settings.providers.sms.0.name", "settings.failover_on_unknown_outcome"} <= set(
        unknown.json()["error"]["fields"])


def test_a_masked_secret_in_a_provider_list_keeps_its_stored_value(api, workspace):
    workspace.settings = {"providers": {"sms": [
        {"name": "twilio", "auth_token": "t1"}, {"name": "http", "api_url": "https://a.example",
                                                 "api_key": "k1"}]}}
    workspace.save()
    shown = api.get(URL).json()["settings"]["providers"]
    assert shown["sms"][0]["auth_token"] == "***"
    shown["sms"][1]["api_key"] = "k2"
    assert patch(api, {"settings": {"providers": shown}}).status_code == 200
    workspace.refresh_from_db()
    assert workspace.settings["providers"]["sms"] == [
        {"name": "twilio", "auth_token": "t1"},
        {"name": "http", "api_url": "https://a.example", "api_key": "k2"}]
    moved = [{"name": "http", "api_url": "https://b.example"}, {"name": "twilio"}]
    response = patch(api, {"settings": {"providers": {"sms": moved}}})
    assert "settings.providers.sms.0.api_url" in response.json()["error"]["fields"]
