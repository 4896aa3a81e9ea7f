"""The test factories, one per model, and a few helpers that build whole failure scenes.

Every test module imports its factories from here; this module holds no tests.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from core.models import Contact, DeadLetter, Membership, Workspace
from flows import schedules, services
from flows.models import Execution, Flow, FlowSchedule, FlowVersion, Step
from messaging.models import DeliveryAttempt, Message, MessageStatus
from monitoring.models import AlertEvent, AlertRule

PASSWORD = "dashboard-test-password"

# One light node: an execution completes inline, so scheduled runs need no provider.
MARK_NODES = [{"id": "mark", "type": "update_contact",
               "data": {"attributes": {"scheduled": True}}}]


class Backdated(factory.django.DjangoModelFactory):
    """Let tests set auto_now / auto_now_add timestamps, which Django overwrites on save."""

    class Meta:
        abstract = True

    _stamped: tuple[str, ...] = ("created_at", "updated_at")

    @classmethod
    def _create(cls, model_class: type, *args: Any, **kwargs: Any) -> Any:
        stamps = {name: kwargs.pop(name) for name in cls._stamped if name in kwargs}
        obj = super()._create(model_class, *args, **kwargs)
        if stamps:
            model_class.objects.filter(pk=obj.pk).update(**stamps)
            for name, value in stamps.items():
                setattr(obj, name, value)
        return obj


# --- workspaces, contacts, users ---------------------------------------------------------------

class WorkspaceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Workspace

    name = factory.Sequence(lambda n: f"Workspace {n}")
    slug = factory.Sequence(lambda n: f"workspace-{n}")
    timezone = "UTC"


class ContactFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Contact

    workspace = factory.SubFactory(WorkspaceFactory)
    external_id = factory.Sequence(lambda n: f"ext-{n}")
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    phone = factory.Sequence(lambda n: f"+1415555{n % 10000:04d}")
    email = factory.Sequence(lambda n: f"person{n}@example.com")


class StaffUserFactory(factory.django.DjangoModelFactory):
    """A staff superuser who can log in with PASSWORD (admin, dashboard and staff APIs)."""

    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"operator{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.com")
    is_staff = True
    is_superuser = True
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def saved(obj, create: bool, extracted: Any, **kwargs: Any) -> None:  # noqa: N805
        if create:
            obj.save()


class MembershipFactory(factory.django.DjangoModelFactory):
    """A workspace member (not staff) who can log in with PASSWORD; viewer by default."""

    class Meta:
        model = Membership

    user = factory.SubFactory(StaffUserFactory, username=factory.Sequence(
        lambda n: f"member{n}"), is_staff=False, is_superuser=False)
    workspace = factory.SubFactory(WorkspaceFactory)
    role = Membership.Role.VIEWER


# --- messages ----------------------------------------------------------------------------------

class MessageFactory(Backdated):
    class Meta:
        model = Message

    workspace = factory.SubFactory(WorkspaceFactory)
    contact = factory.SubFactory(ContactFactory, workspace=factory.SelfAttribute("..workspace"))
    channel = "sms"
    to = factory.Sequence(lambda n: f"+1415777{n % 10000:04d}")
    status = MessageStatus.QUEUED
    content = factory.LazyFunction(lambda: {"body": "Hello"})
    enqueued_at = factory.LazyFunction(timezone.now)


class DeliveryAttemptFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DeliveryAttempt

    message = factory.SubFactory(MessageFactory)
    number = 1
    provider = "http"
    started_at = factory.LazyFunction(timezone.now)
    finished_at = factory.LazyFunction(timezone.now)
    outcome = "sent"


# --- flows -------------------------------------------------------------------------------------

class FlowFactory(factory.django.DjangoModelFactory):
    """An active flow with one SMS node; `scheduled=True` makes it fit for schedules instead:
    one light node, re-entry allowed, and published (pass `publish=False` to skip that)."""

    class Meta:
        model = Flow
        skip_postgeneration_save = True

    class Params:
        publish = False  # freeze a first version once created
        scheduled = factory.Trait(
            name=factory.Sequence(lambda n: f"Scheduled flow {n}"),
            trigger=factory.LazyFunction(lambda: {"type": "schedule"}),
            nodes=factory.LazyFunction(lambda: [dict(node) for node in MARK_NODES]),
            settings=factory.LazyFunction(lambda: {"allow_reentry": True,
                                                   "max_concurrent_per_contact": 1000}),
            publish=True,
        )

    workspace = factory.SubFactory(WorkspaceFactory)
    name = factory.Sequence(lambda n: f"Flow {n}")
    status = Flow.Status.ACTIVE
    trigger = factory.LazyFunction(lambda: {"type": "manual"})
    nodes = factory.LazyFunction(lambda: [{"id": "n1", "type": "send_sms",
                                           "data": {"body": "Hi"}}])
    edges = factory.LazyFunction(list)
    published = factory.Maybe("publish", factory.PostGeneration(
        lambda flow, create, extracted, **kwargs: services.flow_publish(flow=flow)
        if create else None))


class FlowVersionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = FlowVersion

    flow = factory.SubFactory(FlowFactory)
    number = factory.Sequence(lambda n: n + 1)
    nodes = factory.SelfAttribute("flow.nodes")
    edges = factory.SelfAttribute("flow.edges")


class ExecutionFactory(Backdated):
    class Meta:
        model = Execution

    _stamped = ("started_at", "updated_at")

    workspace = factory.SubFactory(WorkspaceFactory)
    flow = factory.SubFactory(FlowFactory, workspace=factory.SelfAttribute("..workspace"))
    version = factory.SubFactory(FlowVersionFactory, flow=factory.SelfAttribute("..flow"))
    contact = factory.SubFactory(ContactFactory, workspace=factory.SelfAttribute("..workspace"))
    status = Execution.Status.COMPLETED


class StepFactory(Backdated):
    class Meta:
        model = Step

    _stamped = ("started_at",)

    execution = factory.SubFactory(ExecutionFactory)
    node_id = factory.Sequence(lambda n: f"n{n}")
    node_type = "send_sms"
    status = Step.Status.COMPLETED


class FlowScheduleFactory(factory.django.DjangoModelFactory):
    """A schedule made through schedule_create, so its beat task exists too."""

    class Meta:
        model = FlowSchedule

    workspace = factory.SubFactory(WorkspaceFactory)
    flow = factory.SubFactory(FlowFactory, workspace=factory.SelfAttribute("..workspace"),
                              scheduled=True)
    cron = "0 9 * * *"
    timezone = "UTC"
    audience = factory.LazyAttribute(
        lambda o: {"contact_id": str(ContactFactory(workspace=o.workspace).pk)})
    data = factory.LazyFunction(dict)

    @classmethod
    def _create(cls, model_class: type, *args: Any, **kwargs: Any) -> FlowSchedule:
        return schedules.schedule_create(**kwargs)


# --- monitoring --------------------------------------------------------------------------------

class DeadLetterFactory(Backdated):
    class Meta:
        model = DeadLetter

    workspace = factory.SubFactory(WorkspaceFactory)
    kind = DeadLetter.Kind.MESSAGE
    source_id = factory.Sequence(lambda n: f"source-{n}")
    channel = "sms"
    error = "400: bad number"
    error_code = "400"
    attempts = 1


class AlertRuleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AlertRule

    workspace = factory.SubFactory(WorkspaceFactory)
    name = factory.Sequence(lambda n: f"Rule {n}")
    type = AlertRule.Type.FAILURE_RATE
    threshold = 50.0
    window_seconds = 300
    channel = AlertRule.Channel.EMAIL
    recipients = factory.LazyFunction(lambda: ["ops@example.com"])
    cooldown_seconds = 3600


class AlertEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AlertEvent

    rule = factory.SubFactory(AlertRuleFactory)
    workspace = factory.SelfAttribute("rule.workspace")
    value = 42.0
    threshold = factory.SelfAttribute("rule.threshold")
    summary = "failure rate 42% over 5 min"
    triggered_at = factory.LazyFunction(timezone.now)
    notified = True


# --- scenes ------------------------------------------------------------------------------------

def sent_message(workspace: Workspace, *, created: datetime, latency: float = 2.0,
                 status: str = MessageStatus.SENT, **fields: Any) -> Message:
    """Create a message the provider accepted `latency` seconds after it was due."""
    start = fields.get("scheduled_for") or created
    return MessageFactory(workspace=workspace, status=status, created_at=created,
                          sent_at=start + timedelta(seconds=latency), attempts=1, **fields)


def failed_message(workspace: Workspace, *, created: datetime | None = None,
                   error: str = "HTTP 500 from provider") -> tuple[Message, DeadLetter]:
    """Create a message that failed for good, with its dead letter, as the pipeline files it."""
    created = created or timezone.now()
    message = MessageFactory(workspace=workspace, status=MessageStatus.FAILED,
                             created_at=created, failed_at=created + timedelta(seconds=5),
                             attempts=3, last_error=error, error_code="http_500")
    for number in (1, 2, 3):
        DeliveryAttemptFactory(message=message, number=number, outcome="failed"
                               if number == 3 else "retry", status_code=500, error=error,
                               started_at=created + timedelta(seconds=number - 0.5),
                               finished_at=created + timedelta(seconds=number))
    letter = DeadLetterFactory(
        workspace=workspace, kind=DeadLetter.Kind.MESSAGE, source_id=str(message.pk),
        channel=message.channel, error=error, error_code="http_500", attempts=3,
        created_at=created + timedelta(seconds=5),
        payload={"message_id": str(message.pk), "channel": message.channel, "to": message.to,
                 "content": message.content, "metadata": {}})
    return message, letter


def failed_execution(workspace: Workspace, *, started: datetime | None = None,
                     error: str = "webhook answered 502") -> tuple[Execution, Step, DeadLetter]:
    """Create an execution that failed at its second step, with the step's dead letter."""
    started = started or timezone.now()
    flow = FlowFactory(workspace=workspace, name="Welcome series", nodes=[
        {"id": "n1", "type": "send_sms", "data": {"body": "Hi"}},
        {"id": "n2", "type": "send_webhook", "data": {"url": "https://example.com/hook"}},
    ], edges=[{"id": "e1", "source": "n1", "target": "n2"}])
    execution = ExecutionFactory(workspace=workspace, flow=flow, status=Execution.Status.FAILED,
                                 started_at=started, completed_at=started + timedelta(seconds=9),
                                 current_node="n2", error=f"n2: {error}",
                                 data={"signup": "web"})
    StepFactory(execution=execution, node_id="n1", node_type="send_sms",
                input={"body": "Hi"}, output={"message_id": "m-1"}, started_at=started,
                completed_at=started + timedelta(seconds=2))
    step = StepFactory(execution=execution, node_id="n2", node_type="send_webhook",
                       status=Step.Status.FAILED, input={"url": "https://example.com/hook"},
                       error=error, started_at=started + timedelta(seconds=3),
                       completed_at=started + timedelta(seconds=9))
    letter = DeadLetterFactory(
        workspace=workspace, kind=DeadLetter.Kind.STEP, source_id=str(step.pk), channel="webhook",
        flow_id=str(flow.pk), error=error, error_code="", attempts=1,
        payload={"execution_id": str(execution.pk), "step_id": step.pk, "node_id": "n2",
                 "node_type": "send_webhook", "visit": 1, "flow_id": str(flow.pk)})
    return execution, step, letter
