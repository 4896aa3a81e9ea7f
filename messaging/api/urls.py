from django.urls import path, re_path

from core.api import Router
from messaging.api.contacts import ContactViewSet
from messaging.api.email_events import EmailEventView
from messaging.api.inbound import InboundView
from messaging.api.messages import MessageViewSet
from messaging.api.provider_callbacks import TwilioInboundView, TwilioStatusView
from messaging.api.providers_health import ProvidersHealthView
from messaging.api.recipients import RecipientView
from messaging.api.suppressions import SuppressionViewSet
from messaging.api.templates import TemplateViewSet
from messaging.api.topics import TopicViewSet
from messaging.api.webhook_endpoints import WebhookEndpointViewSet
from messaging.api.workspace import WebhookSecretRotateView, WorkspaceView

router = Router()
router.register("contacts", ContactViewSet, basename="contact")
router.register("messages", MessageViewSet, basename="message")
router.register("suppressions", SuppressionViewSet, basename="suppression")
router.register("templates", TemplateViewSet, basename="template")
router.register("topics", TopicViewSet, basename="topic")
router.register("webhook-endpoints", WebhookEndpointViewSet, basename="webhook-endpoint")

urlpatterns = [
    path("workspace", WorkspaceView.as_view(), name="workspace"),
    path("workspace/webhook-secret/rotate", WebhookSecretRotateView.as_view(),
         name="workspace-webhook-secret-rotate"),
    # The list route with DELETE by channel and address added to the router's GET and POST.
    re_path(r"^suppressions/?$",
            SuppressionViewSet.as_view({"get": "list", "post": "create", "delete": "remove"}),
            name="suppression-list"),
    path("providers/health", ProvidersHealthView.as_view(), name="providers-health"),
    path("providers/twilio/status", TwilioStatusView.as_view(), name="twilio-status"),
    path("providers/email/events", EmailEventView.as_view(), name="email-events"),
    path("providers/twilio/inbound", TwilioInboundView.as_view(), name="twilio-inbound"),
    path("inbound", InboundView.as_view(), name="inbound"),
    path("recipients/<str:address>", RecipientView.as_view(), name="recipient"),
    *router.urls,
]
