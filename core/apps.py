from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Workspaces and records"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from celery.signals import before_task_publish, task_postrun, task_prerun

        from core import (
            logcontext,
            lookups,  # noqa: F401  (registers field__any)
            schema,  # noqa: F401  (registers the OpenAPI auth extension)
            signin,  # noqa: F401  (audits and counts failed sign-ins, lockouts)
            tracing,
        )

        # Correlation ids (core.logcontext): published with the task, bound while it runs.
        before_task_publish.connect(logcontext.task_headers_add, weak=False,
                                    dispatch_uid="core.logcontext.publish")
        task_prerun.connect(logcontext.task_context_bind, weak=False,
                            dispatch_uid="core.logcontext.prerun")
        task_postrun.connect(logcontext.task_context_clear, weak=False,
                             dispatch_uid="core.logcontext.postrun")
        # OpenTelemetry, when OTEL_* variables ask for it (off by default).
        tracing.start_from_environment()
