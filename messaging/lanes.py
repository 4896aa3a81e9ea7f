"""Delivery lanes: which work a delivery task claims, and in what order (README.md, "Lanes").

Every outgoing message belongs to one lane of its channel's queue: `priority` (transactional
messages and `priority: high`) or `bulk` (marketing, and `priority: low`). A message's lane
is written on its row when it is built (Message.lane, "sms:priority"), and each delivery
task claims from one lane: the next rows in it, the workspaces taking turns, not the ids it
was published with (messaging.delivery.sending). Priority-lane tasks go out at the
broker's top priority (or to a queue of their own: settings.PRIORITY_LANE_QUEUE), so a
worker's next task is a priority one whenever one waits.

Plain data over the channel table: it reads no rows.
"""
from __future__ import annotations

from typing import Any

from messaging.channels import queue_for

PRIORITY = "priority"
BULK = "bulk"
LANES = (PRIORITY, BULK)
# The broker priority (kombu's priority steps, settings) a lane's tasks are published at.
BROKER_PRIORITY = {PRIORITY: 0, BULK: 6}


def lane_for(*, channel: str, category: str, priority: str) -> str:
    """Return the lane of a message: "<its channel's queue>:priority" for transactional
    messages and high priority ones (unless low), "<queue>:bulk" for the rest."""
    urgent = priority == "high" or (category == "transactional" and priority != "low")
    return f"{queue_for(channel)}:{PRIORITY if urgent else BULK}"


def lane_of(message: Any) -> str:
    """Return a message's lane: the one on its row, or the one its fields give (a row
    written before lanes existed)."""
    return message.lane or lane_for(channel=message.channel, category=message.category,
                                    priority=message.priority)


def kind_of(lane: str) -> str:
    """Return whether a lane is the priority or the bulk lane of its queue."""
    return lane.rpartition(":")[2]


def queue_of(lane: str) -> str:
    """Return the queue of the channel whose lane it is."""
    return lane.rpartition(":")[0]
