from audiences.api.broadcasts import BroadcastViewSet
from audiences.api.imports import ContactImportViewSet
from audiences.api.segments import SegmentViewSet
from core.api import Router

router = Router()
# Before messaging's contacts/{id} route, which would take "imports" for an id.
router.register("contacts/imports", ContactImportViewSet, basename="contact-import")
router.register("broadcasts", BroadcastViewSet, basename="broadcast")
router.register("segments", SegmentViewSet, basename="segment")

urlpatterns = [*router.urls]
