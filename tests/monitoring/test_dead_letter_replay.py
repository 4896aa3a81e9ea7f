"""Dead letters replayed end to end: a real failure, a replay through the API, the command or
the admin action, a live worker, and a local stand-in provider that counts every request."""
from __future__ import annotations

import time
from collections.abc import Callable
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client

from core.models import DeadLetter
from flows.models import Execution, Step
from flows.services import execution_start, flow_set_status
from messaging.models import Message
from tests.factories import ContactFactory, FlowFactory, StaffUserFactory
from tests.support.stub_server import Reply, StubServer
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

SMS_PATH = "/send-sms"
Replayer = Callable[[DeadLetter], str]


@pytest.fixture
def sms_stub(workspace, stub_server: StubServer) -> StubServer:
    """Point the workspace's SMS at the stand-in server."""
    workspace.settings = {"providers": {"sms": {"name": "http", "api_url": stub_server.url}}}
    workspace.save()
    return stub_server


@pytest.fixture
def staff() -> Client:
    client = Client()
    client.force_login(StaffUserFactory())
    return client


@pytest.fixture
def replay(api, staff) -> Callable[[str], Replayer]:
    """Return a function that replays one entry through the named path and returns its
    answer (the refusal reason or a success marker)."""
    def via_api(letter: DeadLetter) -> str:
        response = api.post(f"/api/v1/dead-letters/{letter.pk}/retry")
        return "ok" if response.status_code == 200 else response.json()["error"]["message"]

    def via_command(letter: DeadLetter) -> str:
        out = StringIO()
        call_command("replay_dead_letters", "--id", str(letter.pk), stdout=out)
        return "ok" if "replayed 1," in out.getvalue() else out.getvalue()

    def via_admin(letter: DeadLetter) -> str:
        response = staff.post("/admin/core/deadletter/",
                              {"action": "retry", "_selected_action": [letter.pk]}, follow=True)
        notes = [str(note) for note in response.context["messages"]]
        return "ok" if "Replayed 1 of 1." in notes else " ".join(notes)

    paths = {"api": via_api, "command": via_command, "admin": via_admin}
    return paths.__getitem__


def sms_requests(stub: StubServer) -> list:
    return [r for r in stub.requests if r.path == SMS_PATH]


def failed_sms(api, stub: StubServer) -> tuple[str, DeadLetter]:
    stub.script(SMS_PATH, Reply(400, {"error": "bad number"}))
    response = api.post("/api/v1/messages", {"channel": "sms", "to": "+14155552671",
                                             "body": "hello"}, format="json")
    assert response.status_code == 201, response.json()
    message_id = response.json()["id"]
    letter = wait_until(lambda: DeadLetter.objects.filter(source_id=message_id).first())
    return message_id, letter


@pytest.mark.parametrize("path", ["api", "command", "admin"])
def test_a_failed_message_is_replayed_once_with_its_own_id_and_a_second_replay_is_refused(
        path, api, sms_stub, live_worker, replay):
    message_id, letter = failed_sms(api, sms_stub)
    assert Message.objects.get(pk=message_id).status == "failed"

    assert replay(path)(letter) == "ok"
    wait_until(lambda: Message.objects.get(pk=message_id).status == "sent")
    time.sleep(0.5)  # room for a duplicate delivery to show up, were there one
    requests = sms_requests(sms_stub)
    assert len(requests) == 2  # the failed attempt and the replay, nothing more
    assert {r.header("Idempotency-Key") for r in requests} == {message_id}
    letter.refresh_from_db()
    assert (letter.status, letter.replay_count) == ("replayed", 1)
    assert letter.replayed_by.startswith({"api": "api:", "command": "command",
                                          "admin": "admin:"}[path])

    refusal = replay(path)(letter)
    assert "Already replayed" in refusal
    time.sleep(0.3)
    assert len(sms_requests(sms_stub)) == 2
    letter.refresh_from_db()
    assert letter.replay_count == 1


def failed_flow(workspace, stub: StubServer) -> tuple[Execution, DeadLetter, DeadLetter]:
    """Run a one-send flow whose SMS is refused; return it and its two dead letters."""
    flow = FlowFactory(workspace=workspace, status="draft", nodes=[
        {"id": "s", "type": "send_sms", "data": {"body": "x"}},
        {"id": "e", "type": "end", "data": {}}],
        edges=[{"id": "a", "source": "s", "target": "e"}])
    flow_set_status(flow=flow, status="active")
    stub.script(SMS_PATH, Reply(400, {"error": "bad number"}))
    execution = execution_start(flow=flow, contact=ContactFactory(workspace=workspace))
    wait_until(lambda: Execution.objects.get(pk=execution.pk).status == "failed")
    step = Step.objects.get(execution=execution, node_id="s")
    step_letter = wait_until(lambda: DeadLetter.objects.filter(
        kind="step", source_id=str(step.pk)).first())
    message_letter = DeadLetter.objects.get(kind="message", source_id=str(step.message_id))
    return execution, step_letter, message_letter


@pytest.mark.parametrize("path", ["api", "command", "admin"])
def test_a_failed_step_is_retried_once_and_its_message_entry_cannot_send_again(
        path, workspace, sms_stub, live_worker, replay):
    execution, step_letter, message_letter = failed_flow(workspace, sms_stub)
    assert "flow step" in replay(path)(message_letter)  # replaying it would not resume the flow

    assert replay(path)(step_letter) == "ok"
    wait_until(lambda: Execution.objects.get(pk=execution.pk).status == "completed")
    assert len(sms_requests(sms_stub)) == 2
    message_letter.refresh_from_db()
    assert message_letter.status == "replayed"
    assert message_letter.replay_result.startswith("superseded")

    assert "Already replayed" in replay(path)(step_letter)
    assert "Already replayed" in replay(path)(message_letter)
    time.sleep(0.3)
    assert len(sms_requests(sms_stub)) == 2
    assert Execution.objects.get(pk=execution.pk).status == "completed"
