"""Two-factor sign-in for staff (TOTP through django-otp): who needs it, and the admin form.

A staff user who confirmed an authenticator app must give its code at every admin
sign-in. ``LOYALTY_ADMIN_2FA_REQUIRED_GROUPS`` names the roles (and with them superusers)
that may not use the admin at all until they have set one up.
"""

from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.signals import user_login_failed
from django.utils.translation import gettext_lazy as _
from django_otp.plugins.otp_totp.models import TOTPDevice

# What a staff user still has to do before the admin opens.
READY = "ready"
NEEDS_CODE = "needs_code"  # has an authenticator, this session did not give its code
NEEDS_SETUP = "needs_setup"  # in a role that requires one, has none yet


def confirmed_device(user) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=True).order_by("-pk").first()


def two_factor_required(user) -> bool:
    """True when ``user`` may not use the admin without an authenticator (the setting's roles)."""
    groups = settings.LOYALTY_ADMIN_2FA_REQUIRED_GROUPS
    if not groups:
        return False
    # A superuser can do all a brand admin can, so whatever binds the role binds them.
    return user.is_superuser or user.groups.filter(name__in=groups).exists()


def two_factor_state(request) -> str:
    """READY, NEEDS_CODE or NEEDS_SETUP for the signed-in user, computed once per request."""
    cached = getattr(request, "_two_factor_state", None)
    if cached is not None:
        return cached
    user = request.user
    if getattr(user, "is_verified", lambda: False)():
        state = READY
    elif TOTPDevice.objects.filter(user=user, confirmed=True).exists():
        # Also a session opened elsewhere (the member pages' sign-in) or before the
        # authenticator was added: it has no code, so it does not open the admin.
        state = NEEDS_CODE
    elif two_factor_required(user):
        state = NEEDS_SETUP
    else:
        state = READY
    request._two_factor_state = state
    return state


def clean_code(value: str) -> str:
    return "".join((value or "").split())


class AdminLoginForm(AdminAuthenticationForm):
    """The admin's sign-in: username and password, then the authenticator's code if the user has one."""

    otp_token = forms.CharField(
        label=_("Authenticator code"),
        required=False,
        max_length=12,
        help_text=_("Only if you turned on two-factor sign-in: the 6 digits your authenticator app shows."),
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )

    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "code_required": _("Two-factor sign-in is on for this account: enter the code from your authenticator app."),
        "code_wrong": _("That authenticator code is wrong or has expired. Enter the code the app shows now."),
        "code_throttled": _("Too many wrong codes. Wait a minute, then enter the code the app shows now."),
    }

    def clean(self):
        cleaned = super().clean()  # the password, through the lockout backend; staff only
        user = self.get_user()
        device = confirmed_device(user) if user is not None else None
        if device is None:
            return cleaned
        code = clean_code(cleaned.get("otp_token", ""))
        if not code:
            raise forms.ValidationError(self.error_messages["code_required"], code="code_required")
        allowed, _extra = device.verify_is_allowed()
        if not allowed:
            raise forms.ValidationError(self.error_messages["code_throttled"], code="code_throttled")
        if not device.verify_token(code):
            # A right password with a wrong code counts towards the lockout as well.
            user_login_failed.send(sender=__name__, credentials={"username": user.get_username()}, request=self.request)
            raise forms.ValidationError(self.error_messages["code_wrong"], code="code_wrong")
        # django-otp's user_logged_in receiver marks the new session as verified by it.
        user.otp_device = device
        return cleaned
