from django.urls import path

from messaging.api import compat

urlpatterns = [
    path("schedule-sms", compat.ScheduleSmsView.as_view(), name="compat-schedule-sms"),
    path("schedule-email", compat.ScheduleEmailView.as_view(), name="compat-schedule-email"),
    path("schedule-job", compat.ScheduleJobView.as_view(), name="compat-schedule-job"),
    path("job-status/<str:job_id>", compat.JobStatusView.as_view(), name="compat-job-status"),
]
