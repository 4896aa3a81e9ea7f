"""URL map: API v1, compatible endpoints, health, unsubscribe links, docs, admin; `/` opens
the dashboard."""
from csp.constants import SELF, UNSAFE_INLINE
from csp.decorators import csp_replace
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from core import twofactor_views
from core.accounts import GuardedPasswordChangeView
from messaging.views import PreferencesView, UnsubscribeView
from monitoring import health, health_views

# Admin's "View site" link and `/` lead to the operator dashboard (the service has no
# public site of its own).
admin.site.site_url = "/dashboard/"

# The service's own sign-in pages for workspace members (staff may use them too); the admin
# keeps its own login, which lets in staff only. Template names of our own, so the admin's
# password pages (registration/password_change_form.html) keep their look.
accounts = [
    path("login/", auth_views.LoginView.as_view(template_name="registration/login.html",
                                                redirect_authenticated_user=True),
         name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    # The old password counts toward the sign-in lockout (core/accounts.py).
    path("password/", GuardedPasswordChangeView.as_view(
        template_name="registration/password_change.html"), name="password_change"),
    # Two-factor sign-in (core/twofactor.py): setup, the second step, codes, off.
    path("2fa/", twofactor_views.setup, name="two_factor"),
    path("2fa/verify/", twofactor_views.verify, name="two_factor_verify"),
    path("2fa/recovery-codes/", twofactor_views.recovery_codes,
         name="two_factor_recovery_codes"),
    path("2fa/off/", twofactor_views.turn_off, name="two_factor_off"),
    path("password/done/", auth_views.PasswordChangeDoneView.as_view(
        template_name="registration/password_changed.html"), name="password_change_done"),
]

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="dashboard:overview"), name="home"),
    path("accounts/", include(accounts)),
    # One password change page, the guarded one: the admin's own form would let a stolen
    # session guess the old password without the lockout.
    path("admin/password_change/", RedirectView.as_view(pattern_name="password_change"),
         name="admin-password-change"),
    path("admin/", admin.site.urls),
    path("health", health_views.health, name="health"),
    # Email unsubscribe links (List-Unsubscribe, {{ unsubscribe_url }}): short, no login.
    path("u/<str:token>", UnsubscribeView.as_view(), name="unsubscribe"),
    # A contact's subscription topics ({{ preferences_url }}): signed link, no login.
    path("p/<str:token>", PreferencesView.as_view(), name="preferences"),
    path("health/live", health.live, name="health-live"),
    path("health/ready", health.ready, name="health-ready"),
    path("api/schema/", SpectacularAPIView.as_view(permission_classes=[],
                                                   authentication_classes=[]), name="schema"),
    # The split view loads its setup script from this URL instead of inline, so the page
    # needs no script nonce; Swagger UI (React) sets style="" attributes, so styles are
    # relaxed here only (scripts stay 'self'; a nonce would make browsers ignore
    # 'unsafe-inline', hence replace, not update).
    path("api/docs/", csp_replace({"style-src": [SELF, UNSAFE_INLINE]})(
        SpectacularSwaggerSplitView.as_view(url_name="schema", permission_classes=[],
                                            authentication_classes=[])), name="docs"),
    # Audiences first: its contacts/imports routes would otherwise match contacts/{id}.
    path("api/v1/", include("audiences.api.urls")),
    path("api/v1/", include("messaging.api.urls")),
    path("api/v1/", include("flows.api.urls")),
    path("api/v1/", include("flows.schedule_urls")),
    path("", include("monitoring.api.urls")),
    path("dashboard/", include("monitoring.dashboard.urls")),
    path("api/", include("messaging.api.compat_urls")),
]

handler400 = "core.api.json_400"
handler404 = "core.api.json_404"
handler500 = "core.api.json_500"
