"""Dashboard pages under /dashboard/ (staff and workspace members; ?workspace=<id> picks
the workspace)."""
from __future__ import annotations

from django.urls import path

from monitoring.dashboard import views

app_name = "dashboard"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("executions/", views.executions, name="executions"),
    path("executions/<uuid:pk>/", views.execution_detail, name="execution-detail"),
    path("flows/<uuid:pk>/", views.flow_detail, name="flow-detail"),
    path("executions/<uuid:pk>/cancel/", views.execution_cancel, name="execution-cancel"),
    path("executions/<uuid:pk>/pause/", views.execution_pause, name="execution-pause"),
    path("steps/<int:pk>/retry/", views.step_retry, name="step-retry"),
    path("messages/", views.messages, name="messages"),
    path("messages/<uuid:pk>/", views.message_detail, name="message-detail"),
    path("recipient/", views.recipient, name="recipient"),
    path("outbox/", views.outbox, name="outbox"),
    path("dead-letters/", views.dead_letters, name="dead-letters"),
    path("dead-letters/export/", views.dead_letters_export, name="dead-letters-export"),
    path("dead-letters/retry/", views.dead_letters_retry, name="dead-letters-retry"),
    path("dead-letters/<int:pk>/retry/", views.dead_letter_retry, name="dead-letter-retry"),
    path("dead-letters/<int:pk>/discard/", views.dead_letter_discard,
         name="dead-letter-discard"),
    path("queues/", views.queues, name="queues"),
    path("queues/<str:queue>/pause/", views.queue_pause, name="queue-pause"),
    path("queues/<str:queue>/", views.queue_detail, name="queue-detail"),
    path("queues/<str:queue>/action/", views.queue_action, name="queue-action"),
    path("audit-log/", views.audit_log, name="audit-log"),
    path("schedules/", views.schedules, name="schedules"),
    path("schedules/new/", views.schedule_create, name="schedule-create"),
    path("schedules/<str:pk>/edit/", views.schedule_edit, name="schedule-edit"),
    path("schedules/<str:pk>/delete/", views.schedule_delete, name="schedule-delete"),
    path("broadcasts/", views.broadcasts, name="broadcasts"),
    path("schedules/<str:pk>/toggle/", views.schedule_toggle, name="schedule-toggle"),
    path("alerts/", views.alerts, name="alerts"),
    path("endpoints/", views.endpoints, name="endpoints"),
    path("deliveries/<uuid:pk>/replay/", views.delivery_replay, name="delivery-replay"),
    path("alerts/new/", views.alert_rule_create, name="alert-rule-create"),
    path("alerts/<int:pk>/edit/", views.alert_rule_edit, name="alert-rule-edit"),
    path("alerts/<int:pk>/mute/", views.alert_rule_mute, name="alert-rule-mute"),
    path("alerts/<int:pk>/test/", views.alert_rule_test, name="alert-rule-test"),
    path("rate-limits/", views.rate_limits, name="rate-limits"),
    path("providers/", views.providers, name="providers"),
    path("rate-limits/reset/", views.rate_limits_reset, name="rate-limits-reset"),
]
