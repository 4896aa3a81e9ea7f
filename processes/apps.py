from django.apps import AppConfig


class ProcessesConfig(AppConfig):
    """The top layer: long-running processes that tie the apps together (the dispatcher)."""

    name = "processes"
    verbose_name = "Processes"
