from __future__ import annotations

from typing import Any

from django.apps import AppConfig


class FlowsConfig(AppConfig):
    name = "flows"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Connect to message_finished, so a step waiting for a message completes, and to
        message_received, so an inbound reply starts and wakes flows."""
        from messaging.signals import message_finished, message_received

        message_finished.connect(_message_finished, dispatch_uid="flows.message_finished")
        message_received.connect(_message_received, dispatch_uid="flows.message_received")


def _message_finished(sender: Any, message_id: Any, source: str = "", **kwargs: Any) -> None:
    """Let the flow step waiting for this message move on."""
    if source != "flow":
        return  # only flow steps wait for messages; skip the lookup for the rest
    # Imported here: apps.py loads before the models the engine needs are ready.
    from core.publishing import hold
    from flows.engine import on_messages_finished

    # Inside a delivery task's grouped() block, the batch's finished messages resume their
    # steps together when the block ends.
    if not hold(_resume_held, [message_id]):
        on_messages_finished(message_ids=[message_id])


def _resume_held(message_ids: list[Any]) -> None:
    from flows.engine import on_messages_finished

    on_messages_finished(message_ids=message_ids)


def _message_received(sender: Any, workspace: Any, contact: Any, name: str,
                      properties: dict, **kwargs: Any) -> None:
    """Turn an inbound message into the contact's event: start the flows it triggers and
    wake the executions waiting for it (inside the caller's transaction)."""
    from flows.services import event_ingest

    event_ingest(workspace=workspace, contact=contact, name=name, properties=properties)
