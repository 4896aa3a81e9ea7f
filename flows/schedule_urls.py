"""Routes of the schedules API (included under /api/v1/ after flows.api.urls)."""
from django.urls import re_path

from core.api import Router
from flows.schedule_api import FlowScheduleView, ScheduleViewSet, ValidateCronView

router = Router()
router.register("schedules", ScheduleViewSet, basename="schedule")

UUID = r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"

urlpatterns = [
    # flows.api's router matches only flows/{pk} and flows/{pk}/<action>: this path is free.
    re_path(rf"^flows/(?P<flow_id>{UUID})/schedule/?$", FlowScheduleView.as_view(),
            name="flow-schedule"),
    re_path(r"^utils/validate-cron/?$", ValidateCronView.as_view(), name="validate-cron"),
    *router.urls,
]
