"""The Celery app: created here, configured from Django settings, tasks autodiscovered."""
from __future__ import annotations

import os

from celery import Celery
from celery.signals import setup_logging

from core.logcontext import celery_logging_setup

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("relay")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Workers and beat log through Django's LOGGING (with the correlation ids), not Celery's.
setup_logging.connect(celery_logging_setup, weak=False)
