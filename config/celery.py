"""The Celery app: created here, configured from Django settings, tasks autodiscovered."""
from __future__ import annotations

import os

from celery import Celery
from celery.signals import before_task_publish, setup_logging

from core.logcontext import celery_logging_setup
from core.tasklimits import time_limit_header

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("relay")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Workers and beat log through Django's LOGGING (with the correlation ids), not Celery's.
setup_logging.connect(celery_logging_setup, weak=False)
# Every task published carries its queue's time limit (TASK_TIME_LIMIT_<QUEUE>).
before_task_publish.connect(time_limit_header, weak=False)
