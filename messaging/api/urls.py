from django.urls import path

from config.api import Router
from messaging.api.contacts import ContactViewSet
from messaging.api.workspace import WorkspaceView

router = Router()
router.register("contacts", ContactViewSet, basename="contact")

urlpatterns = [
    path("workspace", WorkspaceView.as_view(), name="workspace"),
    *router.urls,
]
