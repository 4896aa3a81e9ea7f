"""Two real `celery beat` processes and a real worker on the test database: a schedule
`* * * * *` starts exactly one run per minute, never two."""
from __future__ import annotations

import re
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from config.celery import app
from flows.models import Execution, ScheduleRun
from tests.factories import ContactFactory, FlowScheduleFactory
from tests.support import processes
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

# Minute boundaries to cross with both beats up: two keep the test near two minutes.
BOUNDARIES = 2


def start_beat(log: Path) -> subprocess.Popen:
    """Start `celery beat` (DatabaseScheduler, from settings) logging what it sends."""
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "beat", "-l", "info"],
        cwd=processes.ROOT, env=processes.child_env(), start_new_session=True,
        stdout=log.open("w"), stderr=subprocess.STDOUT)


def floor_minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def test_two_beats_start_one_run_per_minute(workspace, tmp_path):
    contact = ContactFactory(workspace=workspace)
    schedule = FlowScheduleFactory(workspace=workspace, cron="* * * * *",
                                   audience={"contact_id": str(contact.pk)})
    app.control.purge()  # nothing left over from earlier tests on this broker
    logs = [tmp_path / "beat-1.log", tmp_path / "beat-2.log"]
    worker = processes.start_worker(concurrency=2)
    beats = [start_beat(log) for log in logs]
    try:
        wait_until(lambda: all("beat: Starting" in log.read_text() for log in logs), 30)
        last = floor_minute(timezone.now()) + timedelta(minutes=BOUNDARIES)
        time.sleep(max(0.0, (last - timezone.now()).total_seconds()) + 15)
        wait_until(lambda: ScheduleRun.objects.filter(occurrence_at=last).exists()
                   and not ScheduleRun.objects.filter(status="running").exists(), 30)
    finally:
        for process in (*beats, worker):
            processes.kill(process)

    minutes = int((last - floor_minute(schedule.active_since)) / timedelta(minutes=1))
    expected = [last - timedelta(minutes=i) for i in reversed(range(minutes))]
    runs = list(ScheduleRun.objects.filter(schedule=schedule, occurrence_at__lte=last)
                .order_by("occurrence_at"))
    assert [r.occurrence_at for r in runs] == expected
    assert {r.status for r in runs} == {"succeeded"}
    assert all(r.started == 1 for r in runs)
    wait_until(lambda: Execution.objects.filter(status="completed").count()
               >= len(expected), timeout=10)
    # Both beats really woke the schedule at every boundary they were up for.
    sent = re.compile(rf"Sending due task flow-schedule:{schedule.pk}")
    for log in logs:
        text = log.read_text()
        assert "sync_schedules: 1 schedule(s) checked" in text, text[-3000:]
        assert len(sent.findall(text)) >= BOUNDARIES, text[-3000:]
