from django.urls import path

from core.api import Router
from flows.api.views import EventBatchView, EventView, ExecutionViewSet, FlowViewSet

router = Router()
router.register("flows", FlowViewSet, basename="flow")
router.register("executions", ExecutionViewSet, basename="execution")

urlpatterns = [
    path("events", EventView.as_view(), name="events"),
    path("events/batch", EventBatchView.as_view(), name="events-batch"),
    *router.urls,
]
