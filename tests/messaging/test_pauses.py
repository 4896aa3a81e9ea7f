"""Pausing a channel queue: held messages wait (no attempt, reason shown) and go out in
order, at the rate limit, on resume; the sweeper frees rows whose pause is gone."""
from __future__ import annotations

from datetime import timedelta

import pytest

from core.audit import Actor
from core.models import AuditEntry
from messaging.delivery import creation, pauses, sending, sweeper, timers
from messaging.models import Message, MessageStatus, QueuePause
from tests.factories import WorkspaceFactory

OPERATOR = Actor(name="user:ops", source="dashboard")


def _send(workspace, channel="sms", **content):
    if channel == "email":
        content = content or {"subject": "Hi", "text": "Hello"}
        return creation.message_create(workspace=workspace, channel=channel,
                                       to="a@example.com", content=content)
    return creation.message_create(workspace=workspace, channel=channel, to="+14155552671",
                                   content=content or {"body": "hi"})


def _held(message: Message) -> Message:
    message.refresh_from_db()
    return message


@pytest.mark.django_db
def test_a_workspace_pause_holds_its_sms_without_an_attempt_and_says_why(workspace):
    other = WorkspaceFactory()
    pauses.queue_pause(queue="sms", workspace=workspace, actor=OPERATOR, reason="carrier")
    mine, mms, email, theirs = (_send(workspace), _send(workspace, "mms", media_urls=[
        "https://example.com/a.png"]), _send(workspace, "email"), _send(other))

    outcomes = sending.messages_deliver(message_ids=[str(m.pk) for m in
                                                      (mine, mms, email, theirs)])

    assert outcomes[str(mine.pk)] == outcomes[str(mms.pk)] == "paused"
    assert outcomes[str(email.pk)] == outcomes[str(theirs.pk)] == "sent"
    for message in (_held(mine), _held(mms)):
        assert (message.status, message.due_at, message.attempts) == ("scheduled", None, 0)
        assert message.status_reason == "paused: sms (workspace)"
        assert not message.delivery_attempts.exists()


@pytest.mark.django_db
def test_a_global_pause_holds_every_workspace_and_a_workspace_resume_does_not_free_it(
        workspace):
    pauses.queue_pause(queue="sms", workspace=None, actor=OPERATOR)
    pauses.queue_pause(queue="sms", workspace=workspace, actor=OPERATOR)
    message = _send(workspace)
    sending.messages_deliver(message_ids=[str(message.pk)])
    assert _held(message).status_reason == "paused: sms (global)"

    assert pauses.queue_resume(queue="sms", workspace=workspace, actor=OPERATOR) == 0
    assert _held(message).due_at is None  # the global pause still holds it
    assert pauses.queue_resume(queue="sms", workspace=None, actor=OPERATOR) == 1
    assert _held(message).due_at is not None and message.status_reason == ""


@pytest.mark.django_db
def test_resume_re_times_held_messages_in_creation_order_at_the_rate_limit(workspace):
    workspace.settings = {"rate_limits": {"sms": "4/s"}}
    workspace.save()
    pauses.queue_pause(queue="sms", workspace=workspace, actor=OPERATOR)
    sent = [_send(workspace, body=f"m{i}") for i in range(5)]
    # Claimed newest first, as a broker may deliver them: the order comes from the rows.
    sending.messages_deliver(message_ids=[str(m.pk) for m in reversed(sent)])
    assert all(_held(m).due_at is None for m in sent)

    assert pauses.queue_resume(queue="sms", workspace=workspace, actor=OPERATOR) == 5

    dues = [_held(m).due_at for m in sent]
    gaps = [later - earlier for earlier, later in zip(dues, dues[1:], strict=False)]
    assert all(gap >= timedelta(milliseconds=250) for gap in gaps), gaps
    assert [m.pk for m in Message.objects.filter(pk__in=[m.pk for m in sent])
            .order_by("due_at")] == [m.pk for m in sent]


@pytest.mark.django_db
def test_pausing_twice_changes_nothing_and_both_actions_are_audited(workspace):
    first, created = pauses.queue_pause(queue="email", workspace=workspace, actor=OPERATOR)
    again, created_again = pauses.queue_pause(queue="email", workspace=workspace,
                                              actor=OPERATOR)
    assert created and not created_again and first.pk == again.pk
    assert pauses.queue_resume(queue="email", workspace=workspace, actor=OPERATOR) == 0
    assert pauses.queue_resume(queue="email", workspace=workspace, actor=OPERATOR) is None
    entries = list(AuditEntry.objects.order_by("id").values_list("action", "actor", "source",
                                                                  "target_id"))
    assert entries == [("queue.pause", "user:ops", "dashboard", "email"),
                       ("queue.resume", "user:ops", "dashboard", "email")]
    assert not QueuePause.objects.exists()


@pytest.mark.django_db
def test_an_unknown_queue_is_refused_by_name(workspace):
    with pytest.raises(pauses.UnknownQueue, match="'fax'.*sms, email, ai, webhook"):
        pauses.queue_pause(queue="fax", workspace=workspace, actor=OPERATOR)


@pytest.mark.django_db
def test_the_sweeper_releases_a_message_held_after_its_pause_was_removed(workspace):
    """A resume racing a hold: the pause is gone, the row still held; the sweeper frees it."""
    pauses.queue_pause(queue="sms", workspace=workspace, actor=OPERATOR)
    message = _send(workspace)
    sending.messages_deliver(message_ids=[str(message.pk)])
    QueuePause.objects.all().delete()  # as if the resume committed just before the hold

    assert sweeper.sweep()["released"] == 1
    assert _held(message).due_at is not None
    assert sweeper.sweep()["released"] == 0


@pytest.mark.django_db
def test_the_sweeper_leaves_messages_whose_pause_stands(workspace):
    pauses.queue_pause(queue="sms", workspace=workspace, actor=OPERATOR)
    message = _send(workspace)
    sending.messages_deliver(message_ids=[str(message.pk)])
    assert sweeper.sweep()["released"] == 0
    assert timers.dispatch_due() == 0
    assert _held(message).status == MessageStatus.SCHEDULED and message.due_at is None


@pytest.mark.django_db
def test_a_held_message_can_be_cancelled(workspace):
    pauses.queue_pause(queue="sms", workspace=workspace, actor=OPERATOR)
    message = _send(workspace)
    sending.messages_deliver(message_ids=[str(message.pk)])
    cancelled = creation.message_cancel(message=_held(message), actor=OPERATOR)
    assert (cancelled.status, cancelled.status_reason) == ("cancelled", "")
    assert AuditEntry.objects.filter(action="message.cancel",
                                     target_id=str(message.pk)).exists()
    assert pauses.queue_resume(queue="sms", workspace=workspace, actor=OPERATOR) == 0
