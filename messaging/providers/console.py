"""The console provider: logs what would be sent, so the service runs without credentials."""
from __future__ import annotations

import logging

from messaging.providers.base import Outbound, Receipt

logger = logging.getLogger("messaging.console")


class ConsoleProvider:
    """Accept every message and log it instead of sending it (any channel)."""

    name = "console"

    def send(self, outbound: Outbound) -> Receipt:
        """Log the outbound message and return a receipt with a console id."""
        logger.info(
            "console %s to %s: %s",
            outbound.channel,
            outbound.to,
            outbound.content,
            extra={"message_id": outbound.message_id, "workspace_id": outbound.workspace_id,
                   "channel": outbound.channel},
        )
        return Receipt(provider_message_id=f"console-{outbound.message_id}")
