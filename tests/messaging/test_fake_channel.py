"""A channel added from outside the channel table: one spec registered at test time (with
the settings that are built at start), its provider class in this module, and nothing else.
It sends through the real pipeline to a local HTTP server, its suppression list makes the
policy suppress, and it receives into messaging.incoming.inbound (messaging/channels.py)."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from messaging import channels
from messaging.channels import (
    BODY,
    DEFAULT_QUEUE,
    ChannelSpec,
    ContentField,
    channel_register,
    channel_unregister,
)
from messaging.delivery import creation
from messaging.incoming.inbound import Received, inbound_receive, route_to
from messaging.models import Direction, Message, MessageStatus, Suppression
from messaging.providers import http
from messaging.providers.base import Outbound, Receipt
from messaging.recipients import policy
from tests.factories import ContactFactory
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

PUSH = "push"
DEVICE = "device-7f3a"


class PushProvider:
    """A push service's API at the network edge: POST <api_url>/push, one JSON body."""

    name = "push"

    def send(self, outbound: Outbound) -> Receipt:
        """POST the notification; raise ProviderError (raise_for_response) on failure."""
        response = http.request(
            "POST", f"{outbound.config['api_url'].rstrip('/')}/push", guarded=False,
            json={"token": outbound.to, **outbound.content},
            headers={"Idempotency-Key": outbound.message_id})
        http.raise_for_response(response)
        return Receipt(provider_message_id=f"push-{outbound.message_id}",
                       status_code=response.status_code)


# Push shares the default queue: the worker's queue list is built when settings load, so a
# channel with a queue of its own is one registered before that (a plug-in's, at import).
SPEC = ChannelSpec(
    PUSH, queue=DEFAULT_QUEUE, recipient="free",
    fields=(ContentField("title", max_length=100), BODY), required=("body",),
    max_attempts=3, max_attempts_env="MAX_ATTEMPTS_PUSH", rate_key=PUSH,
    providers={"push": f"{__name__}.PushProvider"}, provider_settings_key=PUSH,
    suppression_list=PUSH, inbound=True)


@pytest.fixture
def push(settings, workspace, stub_server) -> Iterator[None]:
    """Register the push channel (and the settings built at start), and point the
    workspace's push provider at the stub server."""
    channel_register(spec=SPEC)
    settings.MAX_ATTEMPTS = {**settings.MAX_ATTEMPTS, PUSH: SPEC.max_attempts}
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, PUSH: ""}
    settings.WORKSPACE_PROVIDER_NAMES = {**settings.WORKSPACE_PROVIDER_NAMES,
                                         PUSH: tuple(SPEC.providers)}
    workspace.settings = {"providers": {PUSH: {"api_url": stub_server.url}}}
    workspace.save()
    yield
    channel_unregister(name=PUSH)


def send(workspace, contact=None, body: str = "Hi {{ contact.first_name }}") -> Message:
    return creation.message_create(workspace=workspace, channel=PUSH, to=DEVICE,
                                   contact=contact, content={"title": "News", "body": body},
                                   category="marketing")


def test_a_registered_channel_sends_through_the_pipeline_to_its_provider(
        push, workspace, stub_server, live_worker):
    contact = ContactFactory(workspace=workspace, first_name="Ada")

    message = send(workspace, contact)

    wait_until(lambda: Message.objects.get(pk=message.pk).status == MessageStatus.SENT)
    [request] = stub_server.requests
    assert request.path == "/push"
    assert request.json() == {"token": DEVICE, "title": "News", "body": "Hi Ada"}
    assert request.headers["Idempotency-Key"] == str(message.pk)
    assert Message.objects.get(pk=message.pk).provider_message_id == f"push-{message.pk}"


def test_an_address_on_the_channels_list_is_suppressed_without_a_call(
        push, api, workspace, stub_server, live_worker):
    added = api.post("/api/v1/suppressions", {"channel": PUSH, "address": f" {DEVICE} "},
                     format="json")
    assert added.status_code == 201, added.json()
    assert Suppression.objects.get().address == DEVICE  # trimmed, as the list stores it

    message = send(workspace)

    wait_until(lambda: Message.objects.get(pk=message.pk).status == MessageStatus.SUPPRESSED)
    assert Message.objects.get(pk=message.pk).suppressed_reason == "suppressed_address"
    assert stub_server.requests == []


def test_the_channels_spec_says_whether_quiet_hours_apply(push, workspace):
    workspace.settings = {**workspace.settings, "quiet_hours": {"start": "09:00",
                                                                "end": "17:00"}}
    noon = datetime(2026, 6, 1, 12, 0, tzinfo=ZoneInfo(workspace.timezone or "UTC"))
    pushed, texted = (creation.message_build(workspace=workspace, channel=channel, to=to,
                                             content={"body": "x"}, category="marketing")
                      for channel, to in ((PUSH, DEVICE), ("sms", "+14155552671")))

    decisions = policy.decide_all([pushed, texted], now=noon)

    assert policy.is_contact_facing(pushed)
    assert decisions[texted.pk].outcome == policy.DEFERRED  # sms's spec says quiet_hours
    assert decisions[pushed.pk].outcome == policy.ALLOWED  # push's does not


def test_a_registered_channel_receives_into_inbound_without_keywords(push, workspace):
    received = Received(channel=PUSH, sender=DEVICE, to="app", body="STOP",
                        provider="push", provider_message_id="p-1")

    outcome = inbound_receive(received=received, route=route_to(workspace))

    [row] = outcome.messages
    assert (row.channel, row.direction, row.status, row.sender) == (
        PUSH, Direction.INBOUND, MessageStatus.RECEIVED, DEVICE)
    # Keywords are sms's (its spec names a reply channel): STOP here is just a message.
    assert outcome.keyword is None and outcome.reply is None
    assert not Suppression.objects.exists()
    again = inbound_receive(received=received, route=route_to(workspace))
    assert again.duplicate and [m.pk for m in again.messages] == [row.pk]


def test_a_channel_that_does_not_receive_refuses_inbound(workspace):
    received = Received(channel="webhook", sender="x", to="y", body="hello")
    with pytest.raises(ValueError, match="receives no messages"):
        inbound_receive(received=received, route=route_to(workspace))
    assert not Message.objects.exists()


def test_registering_extends_the_derived_tables_and_unregistering_restores_them():
    before = (channels.CHANNEL_NAMES, dict(channels.SUPPRESSION_LISTS),
              dict(channels.RATE_LIMIT_ENVS), channels.ALL_QUEUES)
    channel_register(spec=SPEC)
    try:
        assert channels.CHANNEL_NAMES[-1] == PUSH
        assert channels.SUPPRESSION_LISTS[PUSH] == "free"
        assert channels.RATE_LIMIT_ENVS[PUSH] == "RATE_LIMIT_PUSH"
        assert channels.ALL_QUEUES == before[3]  # the default queue, once
        with pytest.raises(ValueError, match="already exists"):
            channel_register(spec=SPEC)
    finally:
        channel_unregister(name=PUSH)
    assert (channels.CHANNEL_NAMES, channels.SUPPRESSION_LISTS, channels.RATE_LIMIT_ENVS,
            channels.ALL_QUEUES) == before
    with pytest.raises(ValueError, match="table's own"):
        channel_unregister(name="sms")


def test_a_spec_that_contradicts_the_table_is_refused_and_changes_nothing():
    # The sms list holds phones: a channel of free-form addresses cannot share it.
    on_sms_list = replace(SPEC, name="pager", suppression_list="sms")
    with pytest.raises(ValueError, match="holds phone addresses"):
        channel_register(spec=on_sms_list)
    assert "pager" not in channels.CHANNELS and "pager" not in channels.CHANNEL_NAMES
