from __future__ import annotations

import pytest
from django.test import override_settings
from django.utils.module_loading import import_string

from messaging.providers.console import ConsoleProvider
from messaging.providers.registry import PROVIDERS, provider_for, provider_named, providers_for
from messaging.providers.smtp import SmtpProvider
from messaging.providers.twilio import TwilioProvider
from messaging.providers.webhook import WebhookProvider
from tests.factories import WorkspaceFactory

pytestmark = pytest.mark.django_db

TWILIO_OVERRIDE = {"name": "twilio", "account_sid": "ACws", "auth_token": "ws-token",
                   "from_number": "+14155550111"}


@override_settings(SMS_PROVIDER="console", EMAIL_PROVIDER="console", AI_PROVIDER="console")
@pytest.mark.parametrize("channel", ["sms", "mms", "email", "ai"])
def test_default_is_console(channel: str) -> None:
    provider, config = provider_for(WorkspaceFactory(), channel)

    assert isinstance(provider, ConsoleProvider)
    assert config == {}


@override_settings(SMS_PROVIDER="console", TWILIO_API_BASE="https://twilio.test",
                   PUBLIC_BASE_URL="https://relay.test", TWILIO_ACCOUNT_SID="ACenv")
@pytest.mark.parametrize("channel", ["sms", "mms"])
def test_workspace_override_picks_twilio_with_its_credentials(channel: str) -> None:
    workspace = WorkspaceFactory(settings={"providers": {"sms": TWILIO_OVERRIDE}})

    provider, config = provider_for(workspace, channel)

    assert isinstance(provider, TwilioProvider)
    assert config["account_sid"] == "ACws"
    assert config["auth_token"] == "ws-token"
    assert config["from_number"] == "+14155550111"
    assert config["api_base"] == "https://twilio.test"  # environment default kept
    assert config["public_base_url"] == "https://relay.test"
    assert "name" not in config


@override_settings(EMAIL_PROVIDER="smtp", EMAIL_HOST="mail.test", EMAIL_PORT=2525,
                   EMAIL_FROM="noreply@relay.test")
def test_environment_default_provider_and_settings() -> None:
    provider, config = provider_for(WorkspaceFactory(), "email")

    assert isinstance(provider, SmtpProvider)
    assert (config["host"], config["port"], config["from_email"]) == (
        "mail.test", 2525, "noreply@relay.test")


def test_webhook_signs_with_the_workspace_secrets() -> None:
    workspace = WorkspaceFactory(webhook_secret_previous="whsec_b2xk")

    provider, config = provider_for(workspace, "webhook")

    assert isinstance(provider, WebhookProvider)
    assert config["secrets"] == [workspace.webhook_secret, "whsec_b2xk"]


def test_unknown_provider_name_is_a_value_error() -> None:
    workspace = WorkspaceFactory(settings={"providers": {"email": {"name": "carrier-pigeon"}}})

    with pytest.raises(ValueError, match="carrier-pigeon"):
        provider_for(workspace, "email")


@override_settings(SMS_PROVIDER="nope")
def test_unknown_environment_provider_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        provider_for(WorkspaceFactory(), "sms")


def test_instances_are_cached() -> None:
    workspace = WorkspaceFactory(settings={"providers": {"sms": TWILIO_OVERRIDE}})

    assert provider_for(workspace, "sms")[0] is provider_for(workspace, "mms")[0]


def test_every_registered_class_imports_and_has_its_name() -> None:
    for channel, names in PROVIDERS.items():
        for name, path in names.items():
            assert import_string(path).name == name, (channel, name)


@override_settings(SMS_PROVIDERS=["twilio", "http"], SMS_API_URL="https://sms.env")
def test_the_environment_lists_providers_in_failover_order_each_with_its_key() -> None:
    workspace = WorkspaceFactory()
    choices = providers_for(workspace, "mms")
    assert [(c.name, c.position, c.breaker_id) for c in choices] == [
        ("twilio", 0, "sms:twilio"), ("http", 1, "sms:http")]
    assert [c.idempotency_key("m1") for c in choices] == ["m1", "m1:http"]
    assert choices[1].config["api_url"] == "https://sms.env"


@override_settings(SMS_PROVIDERS=["twilio", "http"])
def test_a_workspace_object_overrides_the_first_and_a_list_replaces_the_order() -> None:
    workspace = WorkspaceFactory(settings={"providers": {"sms": {"auth_token": "own"}}})
    first, second = providers_for(workspace, "sms")
    assert (first.name, first.config["auth_token"]) == ("twilio", "own")
    assert first.breaker_id == f"sms:twilio:ws:{workspace.pk}"  # its own account
    assert second.breaker_id == "sms:http"  # the environment's, shared
    workspace.settings = {"providers": {"sms": [{"name": "http", "api_url": "https://a"},
                                                {"name": "console"}]}}
    assert [c.name for c in providers_for(workspace, "sms")] == ["http", "console"]
    assert provider_named(workspace, "sms", "console")[0].name == "console"
    workspace.settings = {"providers": {"sms": TWILIO_OVERRIDE}}
    assert [c.name for c in providers_for(workspace, "sms")] == ["twilio"]
