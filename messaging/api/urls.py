from django.urls import path

from core.api import Router
from messaging.api.contacts import ContactViewSet
from messaging.api.messages import MessageViewSet
from messaging.api.provider_callbacks import TwilioStatusView
from messaging.api.workspace import WorkspaceView

router = Router()
router.register("contacts", ContactViewSet, basename="contact")
router.register("messages", MessageViewSet, basename="message")

urlpatterns = [
    path("workspace", WorkspaceView.as_view(), name="workspace"),
    path("providers/twilio/status", TwilioStatusView.as_view(), name="twilio-status"),
    *router.urls,
]
