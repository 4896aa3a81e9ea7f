from django.urls import path

from messaging.api import compat
from messaging.api.compat_ai import ScheduleAiResponseView

urlpatterns = [
    path("schedule-sms", compat.ScheduleSmsView.as_view(), name="compat-schedule-sms"),
    path("schedule-email", compat.ScheduleEmailView.as_view(), name="compat-schedule-email"),
    path("schedule-job", compat.ScheduleJobView.as_view(), name="compat-schedule-job"),
    path("schedule-ai-response", ScheduleAiResponseView.as_view(), name="compat-schedule-ai"),
    path("job-status/<str:job_id>", compat.JobStatusView.as_view(), name="compat-job-status"),
]
