"""Delivery: from a message row to a provider call and its recorded outcome.

- creation: message_build / message_create_many / message_cancel (the one insert path)
- timers: dispatch_due (durable timers whose time has come)
- sending: messages_deliver (claim, pause, recipients' rules, rate limit, provider calls)
- recording: outcomes (sent, retrying, failed + dead letter), fenced on the claim
- sweeper: sweep (expired leases, lost tasks, orphaned holds)
- pauses, templating, ai_callbacks, sql: what those use
"""
