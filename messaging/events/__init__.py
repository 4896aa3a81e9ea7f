"""Events for the customer's systems: what happened, delivered to their endpoints.

An event is written in the transaction of the status change that causes it, as webhook
Messages of the delivery pipeline (one per subscribed endpoint, plus one to a message's own
status_callback_url), and published after commit; so an event inherits the pipeline's
signature, SSRF guard, retries, dead letters and zero loss (README.md, "Events").

- types: the event type names, their payload schema versions and the Event envelope
- payloads: the `data` of message and dead-letter events, built from the rows (not from
  the API's serializers: the payload is a contract of its own, docs/events/*.schema.json)
- outbox: emitting (subscribers, the deliveries written in the caller's transaction)
- endpoints: URL checks, endpoint health, disable/enable, secrets, replay

Import the module you need (`from messaging.events import outbox, types`); this package
re-exports nothing.
"""
