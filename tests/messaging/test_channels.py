"""The channel table is the one list of channels everything else reads."""
from __future__ import annotations

from django.conf import settings

from messaging import channels
from messaging.models import Channel
from messaging.providers.registry import PROVIDERS


def test_model_choices_and_providers_follow_the_table() -> None:
    assert list(Channel.values) == list(channels.CHANNELS)
    assert set(PROVIDERS) == set(channels.CHANNELS)


def test_settings_build_queues_attempts_and_rate_limits_from_the_table() -> None:
    assert [queue.name for queue in settings.CELERY_TASK_QUEUES] == list(channels.ALL_QUEUES)
    assert set(settings.MAX_ATTEMPTS) == set(channels.CHANNELS)
    assert set(settings.RATE_LIMITS) == set(channels.QUEUE_CHANNELS)
    assert {f"heartbeat-{queue}" for queue in channels.ALL_QUEUES} <= set(
        settings.CELERY_BEAT_SCHEDULE)


def test_mms_shares_the_sms_queue_rate_limit_and_provider_settings() -> None:
    sms, mms = channels.CHANNELS["sms"], channels.CHANNELS["mms"]
    assert (mms.queue, mms.rate_key, mms.provider_settings_key) == ("sms", "sms", "sms")
    assert mms.max_attempts_env == sms.max_attempts_env == "MAX_ATTEMPTS_SMS"
    assert channels.QUEUE_CHANNELS["sms"] == ("sms", "mms")
