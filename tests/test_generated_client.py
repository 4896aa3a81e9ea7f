"""A Python client generated from the live schema (openapi-python-client) drives the API of a
live server and parses every answer into its typed model: the schema is a contract a
generated client can trust. Every answer is also checked against its documented schema
(enums, nullable fields, formats) and for fields the schema does not declare."""
from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import attrs
import httpx
import pytest
from openapi_schema_validator import OAS30ReadValidator, oas30_format_checker
from rest_framework.test import APIClient

from tests.support.stub_server import Reply as StubReply
from tests.support.stub_server import StubServer

PACKAGE = "relay_contract_client"

pytestmark = pytest.mark.timeout(180)


class Contract:
    """The served schema and the generated client built from it."""

    def __init__(self, schema: dict, package: ModuleType) -> None:
        self.schema = schema
        self.package = package
        # Literal paths first: /alerts/events/ is not /alerts/{id}/.
        self._paths = [(re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$"), path)
                       for path in sorted(schema["paths"], key=lambda p: p.count("{"))]

    def module(self, name: str) -> ModuleType:
        """Return a generated module by its dotted name under the package."""
        return importlib.import_module(f"{PACKAGE}.{name}")

    def model(self, name: str) -> type:
        return getattr(self.module("models"), name)

    def check_answer(self, response: httpx.Response) -> None:
        """Validate a JSON answer against the schema of its operation and status."""
        response.read()
        request = response.request
        path = next(p for regex, p in self._paths if regex.match(request.url.path))
        operation = self.schema["paths"][path][request.method.lower()]
        documented = operation["responses"].get(str(response.status_code))
        assert documented is not None, (request.method, path, response.status_code)
        content = documented.get("content", {}).get("application/json")
        if content is None:
            return
        schema = {**content["schema"], "components": self.schema["components"]}
        # Formats asserted too (date-time, uuid, email): a client parses them.
        validator = OAS30ReadValidator(schema, format_checker=oas30_format_checker)
        errors = sorted(validator.iter_errors(response.json()), key=str)
        assert not errors, f"{request.method} {path}: {errors[0]}"


def served_schema() -> dict:
    response = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    return response.json()


@pytest.fixture(scope="module")
def contract(tmp_path_factory: pytest.TempPathFactory,
             django_db_blocker: Any) -> Iterator[Contract]:
    """Generate the client package from the schema the service serves, and import it."""
    with django_db_blocker.unblock():
        schema = served_schema()
    root = tmp_path_factory.mktemp("generated")
    (root / "schema.json").write_text(json.dumps(schema))
    # No post hooks: the generator would run `ruff` from the PATH on its output, which
    # changes only formatting (https://github.com/openapi-generators/openapi-python-client
    # #post-hooks); the generated code imports the same without it.
    (root / "config.yaml").write_text("post_hooks: []\n")
    generated = subprocess.run(
        [sys.executable, "-m", "openapi_python_client", "generate", "--path",
         str(root / "schema.json"), "--output-path", str(root / PACKAGE), "--meta", "none",
         "--config", str(root / "config.yaml"), "--fail-on-warning"],
        capture_output=True, text=True, timeout=120, check=False)
    assert generated.returncode == 0, generated.stdout + generated.stderr
    sys.path.insert(0, str(root))
    try:
        yield Contract(schema, importlib.import_module(PACKAGE))
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


@pytest.fixture
def client(contract: Contract, live_server: Any, api_key: str) -> Any:
    """The generated AuthenticatedClient, strict about statuses, checking every answer."""
    return contract.package.AuthenticatedClient(
        base_url=live_server.url, token=api_key, raise_on_unexpected_status=True,
        httpx_args={"event_hooks": {"response": [contract.check_answer]}})


@pytest.fixture
def stub(allow_local: None) -> Iterator[StubServer]:
    """A local server standing in for webhook receivers (allowed past the SSRF guard)."""
    server = StubServer().start()
    yield server
    server.stop()


def declared_fields(model: Any) -> set[str]:
    return {f.name for f in attrs.fields(type(model))} - {"additional_properties"}


def assert_no_undeclared_fields(value: Any, where: str = "answer") -> None:
    """Fail on a field the schema does not declare: a typed model keeps it apart, in
    additional_properties (free-form objects declare no fields and keep everything there)."""
    if attrs.has(type(value)):
        if declared_fields(value):
            assert not value.additional_properties, (
                f"{where}: {type(value).__name__} got undeclared "
                f"{sorted(value.additional_properties)}")
        for name in declared_fields(value):
            assert_no_undeclared_fields(getattr(value, name), f"{where}.{name}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            assert_no_undeclared_fields(item, f"{where}[{index}]")


def call(contract: Contract, operation: str, model: str, **kwargs: Any) -> Any:
    """Call a generated operation (api.v1.<operation>) and return its typed answer."""
    function = contract.module(f"api.v1.{operation}")
    response = function.sync_detailed(**kwargs)
    expected = contract.model(model)
    assert isinstance(response.parsed, expected), (
        operation, response.status_code, response.content[:500])
    assert_no_undeclared_fields(response.parsed, operation)
    return response.parsed


def deliver(*ids: str) -> dict[str, str]:
    """Run the delivery pipeline in this process, as the worker would (no broker)."""
    from messaging.delivery.sending import messages_deliver

    return messages_deliver(message_ids=list(ids))


# --- the tests ---------------------------------------------------------------------------------

def test_messages_of_every_channel_suppressed_or_not_read_back_typed(
        transactional_db, contract, client, stub):
    models = contract.module("models")
    contact = call(contract, "v1_contacts_create", "Contact", client=client,
                   body=models.ContactRequest(first_name="Ada", phone="+14155552671",
                                              email="ada@example.com"))
    call(contract, "v1_contacts_retrieve", "Contact", client=client, id=contact.id)
    call(contract, "v1_contacts_list", "PaginatedContactList", client=client)
    channel = models.ChannelEnum
    bodies = [
        dict(channel=channel.SMS, contact_id=contact.id, body="Hi {{ contact.first_name }}"),
        dict(channel=channel.MMS, contact_id=contact.id, body="Look",
             media_urls=["https://cdn.example.com/a.png"]),
        dict(channel=channel.EMAIL, contact_id=contact.id, subject="Hello", text="Hi Ada"),
        dict(channel=channel.AI, contact_id=contact.id, prompt="Say hi to Ada"),
        dict(channel=channel.WEBHOOK, url=stub.url + "/hook", payload={"hello": "Ada"}),
    ]
    sent = [call(contract, "v1_messages_create", "Message", client=client,
                 body=models.MessageCreateRequest(**body)) for body in bodies]
    assert [m.channel for m in sent] == [b["channel"] for b in bodies]
    assert all(m.suppressed_reason is None for m in sent)

    call(contract, "v1_suppressions_create", "Suppression", client=client,
         body=models.SuppressionRequest(channel=models.SuppressionChannelEnum.EMAIL,
                                        address="blocked@example.com"))
    refused = call(contract, "v1_messages_create", "Message", client=client,
                   body=models.MessageCreateRequest(channel=channel.EMAIL,
                                                    to="blocked@example.com",
                                                    subject="Hi", text="Hello"))
    outcomes = deliver(*[str(m.id) for m in [*sent, refused]])
    assert outcomes == {**{str(m.id): "sent" for m in sent}, str(refused.id): "suppressed"}

    listed = call(contract, "v1_messages_list", "PaginatedMessageList", client=client,
                  page_size=50)
    assert listed.count == len(sent) + 1
    suppressed = call(contract, "v1_messages_list", "PaginatedMessageList", client=client,
                      suppressed_reason=models.V1MessagesListSuppressedReason.SUPPRESSED_ADDRESS)
    assert [m.id for m in suppressed.results] == [refused.id]
    to_blocked = call(contract, "v1_messages_list", "PaginatedMessageList", client=client,
                      recipient="Blocked@Example.com")
    assert [m.id for m in to_blocked.results] == [refused.id]
    call(contract, "v1_messages_list", "Error", client=client, recipient="nobody")
    by_contact = call(contract, "v1_messages_list", "PaginatedMessageList", client=client,
                      contact_external_id="no-such-contact", provider_message_id="x")
    assert by_contact.count == 0
    for message in [*sent, refused]:
        detail = call(contract, "v1_messages_retrieve", "MessageDetail", client=client,
                      id=message.id)
        assert detail.id == message.id
    detail = call(contract, "v1_messages_retrieve", "MessageDetail", client=client,
                  id=refused.id)
    assert detail.status == models.MessageStatusEnum.SUPPRESSED
    assert detail.suppressed_reason == models.SuppressedReasonEnum.SUPPRESSED_ADDRESS
    checked = call(contract, "v1_messages_validate_create", "Validated", client=client,
                   body=models.MessageCreateRequest(**bodies[0]))
    assert checked.valid and checked.message.created_at is None
    batch = call(contract, "v1_messages_batch_create", "BatchCreated", client=client,
                 body=models.BatchRequest(messages=[
                     models.MessageCreateRequest(**bodies[i]).to_dict() for i in (0, 2)]))
    assert [m.channel for m in batch.messages] == [channel.SMS, channel.EMAIL]
    call(contract, "v1_messages_cancel_create", "Message", client=client, id=call(
        contract, "v1_messages_create", "Message", client=client,
        body=models.MessageCreateRequest(channel=channel.SMS, to="+14155552672", body="x",
                                         delay_seconds=3600)).id)


def test_flows_versions_and_executions_read_back_typed(transactional_db, contract, client):
    models = contract.module("models")
    contact = call(contract, "v1_contacts_create", "Contact", client=client,
                   body=models.ContactRequest(first_name="Ada", phone="+14155552671"))
    nodes = [{"id": "hi", "type": "send_sms", "data": {"body": "Hi"}},
             {"id": "wait", "type": "delay", "data": {"seconds": 3600}}]
    edges = [{"id": "e", "source": "hi", "target": "wait"}]
    flow = call(contract, "v1_flows_create", "Flow", client=client,
                body=models.FlowRequest(name="Welcome", nodes=nodes, edges=edges,
                                        trigger={"type": "manual"}))
    assert flow.version is None
    call(contract, "v1_flows_list", "PaginatedFlowList", client=client)
    call(contract, "v1_flows_publish_create", "FlowVersion", client=client, id=flow.id)
    call(contract, "v1_flows_activate_create", "Flow", client=client, id=flow.id)
    versions = call(contract, "v1_flows_versions_list", "PaginatedFlowVersionList",
                    client=client, id=flow.id, page_size=1)
    assert versions.count == 1
    # Every list refuses a page size of 0 with the documented error, none answers a bare list.
    call(contract, "v1_flows_versions_list", "Error", client=client, id=flow.id, page_size=0)
    execution = call(contract, "v1_flows_executions_create", "ExecutionStart", client=client,
                     id=flow.id, body=models.StartRequest(contact_id=contact.id))
    assert (execution.mode, execution.steps) == ("queued", [])
    immediate = call(contract, "v1_flows_executions_create", "ExecutionStart", client=client,
                     id=flow.id, body=models.StartRequest(
                         contact_id=call(contract, "v1_contacts_create", "Contact",
                                         client=client, body=models.ContactRequest(
                                             first_name="Bo", phone="+14155552672")).id,
                         mode=models.FlowStartModeEnum("immediate")))
    assert (immediate.mode, immediate.outcome) == ("immediate", "waiting")
    assert [step.node_id for step in immediate.steps] == ["hi"]
    executions = call(contract, "v1_executions_list", "PaginatedExecutionList", client=client)
    assert {e.id for e in executions.results} == {execution.id, immediate.id}
    call(contract, "v1_executions_retrieve", "ExecutionDetail", client=client, id=execution.id)
    ingested = call(contract, "v1_events_create", "EventIngested", client=client,
                    body=models.EventRequest(name="signed_up", contact_id=contact.id))
    assert (ingested.started, ingested.woken) == (0, 0)


def test_suppressions_and_webhook_endpoints_with_deliveries_read_back_typed(
        transactional_db, contract, client, stub):
    models = contract.module("models")
    added = call(contract, "v1_suppressions_create", "Suppression", client=client,
                 body=models.SuppressionRequest(channel=models.SuppressionChannelEnum.SMS,
                                                address="+14155552671"))
    call(contract, "v1_suppressions_list", "PaginatedSuppressionList", client=client)
    call(contract, "v1_suppressions_retrieve", "Suppression", client=client, id=added.id)

    endpoint = call(contract, "v1_webhook_endpoints_create", "WebhookEndpointCreated",
                    client=client, body=models.WebhookEndpointRequest(
                        url=stub.url + "/events", events=["*"], description="all"))
    assert endpoint.secret
    call(contract, "v1_webhook_endpoints_list", "PaginatedWebhookEndpointList", client=client)
    call(contract, "v1_webhook_endpoints_retrieve", "WebhookEndpoint", client=client,
         id=endpoint.id)
    message = call(contract, "v1_messages_create", "Message", client=client,
                   body=models.MessageCreateRequest(channel=models.ChannelEnum.SMS,
                                                    to="+14155552672", body="Hi"))
    deliver(str(message.id))
    timeline = call(contract, "v1_messages_timeline_list", "PaginatedTimelineEntryList",
                    client=client, id=message.id)
    kinds = models.TimelineKindEnum
    # The endpoint takes every event: message.queued, then message.sent.
    assert [e.kind for e in timeline.results] == [kinds.ACCEPTED, kinds.EVENT,
                                                  kinds.PROVIDER_CALL, kinds.EVENT]
    assert timeline.results[2].detail.additional_properties["outcome"] == "sent"
    deliveries = call(contract, "v1_webhook_endpoints_deliveries_list",
                      "PaginatedDeliveryList", client=client, id=endpoint.id)
    assert deliveries.count >= 1
    deliver(*[str(d.id) for d in deliveries.results])
    delivered = call(contract, "v1_webhook_endpoints_deliveries_list",
                     "PaginatedDeliveryList", client=client, id=endpoint.id)
    assert any(d.response_code == 200 for d in delivered.results)
    call(contract, "v1_webhook_endpoints_deliveries_replay_create", "Delivery", client=client,
         id=endpoint.id, delivery_id=str(delivered.results[0].id))
    since = delivered.results[0].created_at
    replayed = call(contract, "v1_webhook_endpoints_replay_create", "Replayed", client=client,
                    id=endpoint.id, body=models.ReplayRequest(since=since))
    assert replayed.count == 0  # none failed
    call(contract, "v1_webhook_endpoints_rotate_secret_create", "Secret", client=client,
         id=endpoint.id)



def test_schedules_dead_letters_alerts_and_audit_read_back_typed(
        transactional_db, contract, client, workspace):
    from tests.factories import (
        AlertEventFactory,
        ContactFactory,
        FlowFactory,
        failed_execution,
        failed_message,
    )

    models = contract.module("models")
    assert call(contract, "v1_workspace_retrieve", "Workspace", client=client).id == workspace.id
    call(contract, "v1_workspace_webhook_secret_rotate_create", "Secret", client=client)
    flow = FlowFactory(workspace=workspace, scheduled=True)
    contact = ContactFactory(workspace=workspace)
    schedule = call(contract, "v1_schedules_create", "Schedule", client=client,
                    body=models.ScheduleInputRequest(flow=flow.pk, cron="0 9 * * *",
                                                     audience={"contact_id": str(contact.pk)}))
    call(contract, "v1_schedules_list", "PaginatedScheduleList", client=client)
    call(contract, "v1_schedules_retrieve", "Schedule", client=client, id=schedule.id)
    call(contract, "v1_schedules_runs_list", "PaginatedScheduleRunList", client=client,
         id=schedule.id)

    message, _ = failed_message(workspace)
    execution, _, letter = failed_execution(workspace)
    call(contract, "v1_messages_retrieve", "MessageDetail", client=client, id=message.pk)
    call(contract, "v1_executions_retrieve", "ExecutionDetail", client=client, id=execution.pk)
    letters = call(contract, "v1_dead_letters_list", "PaginatedDeadLetterList", client=client)
    assert letters.count == 2
    call(contract, "v1_dead_letters_retrieve", "DeadLetter", client=client, id=letter.pk)

    rule = call(contract, "v1_alerts_create", "AlertRule", client=client,
                body=models.AlertRuleRequest(
                    name="Failures", type_=models.AlertRuleTypeEnum.FAILURE_RATE,
                    threshold=50.0, channel=models.AlertRuleChannelEnum.EMAIL,
                    recipients=["ops@example.com"]))
    call(contract, "v1_alerts_list", "PaginatedAlertRuleList", client=client)
    event = AlertEventFactory(rule_id=rule.id, workspace=workspace)
    call(contract, "v1_alerts_events_list", "PaginatedAlertEventList", client=client)
    call(contract, "v1_alerts_events_retrieve", "AlertEvent", client=client, id=event.pk)
    call(contract, "v1_audit_log_list", "PaginatedAuditEntryList", client=client)


def test_failover_calls_and_provider_health_read_back_typed(
        transactional_db, contract, client, stub, workspace):
    workspace.settings = {"providers": {"sms": [{"name": "http", "api_url": stub.url},
                                                {"name": "console"}]}}
    workspace.save()
    stub.default = StubReply(503, {"error": "down"})
    models = contract.module("models")
    sent = call(contract, "v1_messages_create", "Message", client=client,
                body=models.MessageCreateRequest(channel=models.ChannelEnum.SMS,
                                                 to="+14155552671", body="code"))
    assert deliver(str(sent.id)) == {str(sent.id): "sent"}
    detail = call(contract, "v1_messages_retrieve", "MessageDetail", client=client, id=sent.id)
    calls = detail.attempts_log[0].provider_calls
    assert [(c.provider, c.outcome) for c in calls] == [
        ("http", models.ProviderCallOutcomeEnum.FAILED),
        ("console", models.ProviderCallOutcomeEnum.SENT)]
    health = call(contract, "v1_providers_health_retrieve", "ProvidersHealth", client=client)
    rows = {(row.channel, row.name): row for row in health.providers}
    assert rows["sms", "http"].failed == 1 and rows["sms", "console"].sent == 1
    assert rows["sms", "http"].state == models.ProviderStateEnum.CLOSED
