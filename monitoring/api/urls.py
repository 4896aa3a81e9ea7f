"""Monitoring URLs; included at the root, so each path is given in full."""
from django.urls import path

from core.api import Router
from monitoring.api.alerts import AlertEventViewSet, AlertRuleViewSet
from monitoring.api.audit import AuditLogViewSet
from monitoring.api.dead_letters import DeadLetterViewSet
from monitoring.api.queues import (
    QueueCleanView,
    QueueDetailView,
    QueueHealthView,
    QueueMetricsView,
    QueuePauseView,
    QueueResumeView,
    QueueRetryFailedView,
    QueueStatisticsView,
    RateLimitResetView,
    RateLimitView,
)
from monitoring.metrics import metrics_view

router = Router()
router.register("api/v1/dead-letters", DeadLetterViewSet, basename="dead-letter")
# Events first: "alerts/events" must not be read as an alert rule's id.
router.register("api/v1/alerts/events", AlertEventViewSet, basename="alert-event")
router.register("api/v1/alerts", AlertRuleViewSet, basename="alert-rule")
router.register("api/v1/audit-log", AuditLogViewSet, basename="audit-log")

urlpatterns = [
    path("metrics", metrics_view, name="metrics"),
    path("api/v1/queues/health", QueueHealthView.as_view(), name="queues-health"),
    path("api/v1/queues/metrics", QueueMetricsView.as_view(), name="queues-metrics"),
    path("api/v1/queues/statistics", QueueStatisticsView.as_view(), name="queues-statistics"),
    path("api/v1/queues/<str:queue>/pause", QueuePauseView.as_view(), name="queues-pause"),
    path("api/v1/queues/<str:queue>/resume", QueueResumeView.as_view(), name="queues-resume"),
    path("api/v1/queues/<str:queue>/retry-failed", QueueRetryFailedView.as_view(),
         name="queues-retry-failed"),
    path("api/v1/queues/<str:queue>/clean", QueueCleanView.as_view(), name="queues-clean"),
    # After health, metrics and statistics, which are not queues.
    path("api/v1/queues/<str:queue>", QueueDetailView.as_view(), name="queues-detail"),
    path("api/v1/rate-limits", RateLimitView.as_view(), name="rate-limits"),
    path("api/v1/rate-limits/reset", RateLimitResetView.as_view(), name="rate-limits-reset"),
    *router.urls,
]
