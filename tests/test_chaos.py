"""The short chaos run CI does: kill workers, flush/restart Redis, lose every publish.

Each scenario runs the real processes (gunicorn, two prefork workers, the dispatcher, a
private Redis, the recording provider) against its own PostgreSQL database.
"""
from __future__ import annotations

import os

import pytest

from bench.chaos import run_isolated

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.timeout(600),
    pytest.mark.skipif(not os.environ.get("DATABASE_URL", "").startswith("postgres"),
                       reason="the chaos harness creates PostgreSQL databases"),
]


@pytest.mark.parametrize("scenario", ["kill", "redis", "publish"])
def test_no_accepted_message_is_lost(scenario):
    report = run_isolated(scenario, 300)
    assert report["accepted"] == report["attempted"] == 300, report
    assert report["accepted_not_persisted"] == 0, report
    assert report["lost"] == 0, report
    assert report["sent"] == 300, report
