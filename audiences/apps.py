from __future__ import annotations

from django.apps import AppConfig


class AudiencesConfig(AppConfig):
    name = "audiences"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Let flows' bulk starts take a segment_id (flows sit below audiences)."""
        from audiences.segments import segment_rules_for
        from flows.services import segment_lookup_register

        segment_lookup_register(segment_rules_for)
