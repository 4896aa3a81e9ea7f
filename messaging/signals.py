"""Signals other apps subscribe to: messaging sits below flows and never imports it, so it
says what happened and flows listens (connected in flows/apps.py)."""
from django.dispatch import Signal

# Sent with message_id after a message reaches `sent` or `failed`.
message_finished = Signal()

# Sent with workspace, contact, name ("message.received"), properties and message (the
# inbound row) for each contact an inbound message that is not a keyword came from. It is
# sent inside the transaction that stores the row, so the row and what the event starts or
# wakes commit together or not at all (messaging.incoming.inbound).
message_received = Signal()
