"""A flow send node may name a template (its contact's locale of the current version) and
a topic instead of content (README.md, "Templates")."""
from __future__ import annotations

import uuid

import pytest

from flows import services
from flows.nodes import REGISTRY
from flows.tasks import advance_executions
from messaging.models import Message, Topic
from tests.factories import ContactFactory, FlowFactory, WorkspaceFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]


def template(api) -> dict:
    answer = api.post("/api/v1/templates", {
        "name": "welcome", "channel": "sms", "default_locale": "en",
        "variants": {"en": {"body": "Hi {{ contact.first_name }}"},
                     "de": {"body": "Hallo {{ contact.first_name }}"}}}, format="json")
    assert answer.status_code == 201, answer.json()
    return answer.json()


def flow_message(workspace, contact, data: dict) -> Message:
    """Start a one-send flow for the contact and walk it to its send; return the message."""
    flow = FlowFactory(workspace=workspace, publish=True, nodes=[
        {"id": "s", "type": "send_sms", "data": data}], edges=[])
    [execution], _ = services.executions_start_many(flow=flow, contacts=[contact], data={},
                                                    source="api")
    assert advance_executions([str(execution.pk)]) == {str(execution.pk): "waiting"}
    return Message.objects.get(workspace=workspace, source="flow")


def test_a_flow_send_by_template_takes_the_contacts_locale_and_the_nodes_topic(api,
                                                                              workspace):
    Topic.objects.create(workspace=workspace, key="reminders", name="Reminders")
    made = template(api)
    contact = ContactFactory(workspace=workspace, first_name="Ada", locale="de-DE")
    message = flow_message(workspace, contact, {"template": made["id"], "topic": "reminders"})
    assert message.content == {"body": "Hallo {{ contact.first_name }}"}
    assert (message.template_version.template_id, message.template_version.number) == (
        uuid.UUID(made["id"]), 1)
    assert message.topic.key == "reminders"
    detail = api.get(f"/api/v1/messages/{message.pk}").json()
    assert (detail["template_id"], detail["template_version"], detail["topic"]) == (
        made["id"], 1, "reminders")


@pytest.mark.parametrize(("data", "problem"), [
    ({"template": "8c3f1d7e-2a4b-4c5d-9e6f-0a1b2c3d4e5f", "body": "Hi"}, "give one"),
    ({"template": "welcome"}, "must be a template id"),
    ({"body": "Hi", "topic": "no spaces"}, "data.topic must be a topic's key"),
])
def test_a_send_nodes_template_and_topic_are_checked(data, problem):
    problems = REGISTRY["send_sms"].check(data)
    assert any(problem in text for text in problems), problems


def test_a_send_node_naming_a_template_needs_no_content():
    assert REGISTRY["send_sms"].check(
        {"template": "8c3f1d7e-2a4b-4c5d-9e6f-0a1b2c3d4e5f"}) == []
    assert REGISTRY["send_email"].check(
        {"template": "8c3f1d7e-2a4b-4c5d-9e6f-0a1b2c3d4e5f", "to": "a@example.com"}) == []


def test_a_dry_run_shows_the_variant_of_the_sample_contacts_locale(api):
    made = template(api)
    flow = api.post("/api/v1/flows", {
        "name": "hello", "trigger": {"type": "manual"},
        "nodes": [{"id": "s", "type": "send_sms", "data": {"template": made["id"]}}],
        "edges": []}, format="json")
    assert flow.status_code == 201, flow.json()
    answer = api.post(f"/api/v1/flows/{flow.json()['id']}/test", {"contact": {
        "first_name": "Ada", "phone": "+14155550100", "locale": "de-AT"}}, format="json")
    assert answer.status_code == 200, answer.json()
    (message,) = answer.json()["messages"]
    assert message["content"]["body"] == "Hallo Ada"
    assert message["policy"]["outcome"] == "allowed"


def test_a_flow_naming_a_template_or_topic_the_workspace_lacks_does_not_publish(
        api, other_api):
    Topic.objects.create(workspace=WorkspaceFactory(), key="elsewhere", name="Elsewhere")
    stranger = template(other_api)
    email = api.post("/api/v1/templates", {
        "name": "mail", "channel": "email", "default_locale": "en",
        "variants": {"en": {"subject": "Hi", "text": "Hi"}}}, format="json").json()
    answer = api.post("/api/v1/flows", {
        "name": "refs", "trigger": {"type": "manual"}, "edges": [
            {"id": "e1", "source": "a", "target": "b"},
            {"id": "e2", "source": "b", "target": "c"}],
        "nodes": [{"id": "a", "type": "send_sms", "data": {"template": stranger["id"]}},
                  {"id": "b", "type": "send_sms", "data": {"template": email["id"]}},
                  {"id": "c", "type": "send_sms", "data": {"body": "Hi",
                                                          "topic": "elsewhere"}}]},
        format="json")
    assert answer.status_code == 201, answer.json()
    flow = answer.json()
    assert [(w["node"], w["message"]) for w in flow["warnings"]] == [
        ("a", "send_sms data.template is no template of this workspace"),
        ("b", "send_sms data.template is for the email channel"),
        ("c", "send_sms data.topic is no topic of this workspace")]
    refused = api.post(f"/api/v1/flows/{flow['id']}/publish")
    assert refused.status_code == 400
    assert refused.json()["error"]["fields"]["graph"] == flow["warnings"]
