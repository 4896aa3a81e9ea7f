"""What providers send us: inbound messages (keywords, auto-replies, message.received) and
email events (bounces and complaints)."""
