from django.apps import AppConfig


class FlowsConfig(AppConfig):
    name = "flows"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from messaging.signals import message_finished

        message_finished.connect(_message_finished, dispatch_uid="flows.message_finished")


def _message_finished(sender, message_id, source: str = "", **kwargs) -> None:
    if source != "flow":
        return  # only flow steps wait for messages; skip the lookup for the rest
    from flows.engine import on_message_finished

    on_message_finished(message_id=message_id)
