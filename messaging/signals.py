"""Signals other apps subscribe to (flows completes a send step when its message is final)."""
from django.dispatch import Signal

# Sent with message_id after a message reaches `sent` or `failed`.
message_finished = Signal()
