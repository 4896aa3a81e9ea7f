from __future__ import annotations

from django.apps import AppConfig


class AudiencesConfig(AppConfig):
    name = "audiences"
    default_auto_field = "django.db.models.BigAutoField"
