"""The password change page, guarded like the sign-in forms.

Django's PasswordChangeForm checks the old password with `check_password()`, not
`authenticate()`, so django-axes never sees it: a stolen session could guess the password
there without limit. This form asks the same lockout first and reports a wrong old password
as a failed sign-in (core.signin).
"""
from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.forms import PasswordChangeForm
from django.contrib.auth.views import PasswordChangeView
from django.http import HttpRequest

from core import signin


class GuardedPasswordChangeForm(PasswordChangeForm):
    """PasswordChangeForm whose old-password check counts toward the sign-in lockout."""

    def __init__(self, user: Any, *args: Any, request: HttpRequest, **kwargs: Any) -> None:
        super().__init__(user, *args, **kwargs)
        self.request = request

    def clean_old_password(self) -> str:
        """Refuse while locked out (the right password too); count a wrong one."""
        username = self.user.get_username()
        if not signin.password_check_allowed(self.request, username):
            raise forms.ValidationError("Too many failed attempts; try again later.",
                                        code="locked_out")
        try:
            return super().clean_old_password()
        except forms.ValidationError:
            signin.password_check_failed(self.request, username)
            raise


class GuardedPasswordChangeView(PasswordChangeView):
    """Django's password change view with the guarded form."""

    form_class = GuardedPasswordChangeForm

    def get_form_kwargs(self) -> dict[str, Any]:
        """Return the form's arguments plus the request the lockout counts by."""
        return {**super().get_form_kwargs(), "request": self.request}
