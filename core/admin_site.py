"""The admin site: django-unfold's theme, plus the two-factor step and the authenticator setup page.

Installed as the default site (``core.apps.LoyaltyAdminConfig``), so ``admin.site``,
every ``@admin.register`` and every admin URL stay as they were. Every admin registered
through the normal API (ours, django-celery-beat's, axes', django-otp's, a new app's) is
given unfold's model-admin and inline classes (``themed``), so it looks and behaves like
the rest without importing unfold itself. The sidebar's task groups are in the
``UNFOLD`` setting (``console.navigation``).
"""

from base64 import b32encode

import segno
from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import logout
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import path, reverse
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import never_cache
from django_otp import login as otp_login
from django_otp.plugins.otp_totp.models import TOTPDevice
from unfold import admin as unfold_admin
from unfold import widgets as unfold_widgets
from unfold.sites import UnfoldAdminSite

from . import two_factor
from .two_factor import NEEDS_CODE, NEEDS_SETUP, READY, AdminLoginForm

PENDING_DEVICE_NAME = "authenticator (not confirmed)"


class CodeForm(forms.Form):
    code = forms.CharField(
        label=gettext_lazy("Code from the app"),
        max_length=12,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}),
    )


_THEMED_INLINES = (
    (admin.TabularInline, unfold_admin.TabularInline),
    (admin.StackedInline, unfold_admin.StackedInline),
)


def themed(admin_class: type[admin.ModelAdmin]) -> type[admin.ModelAdmin]:
    """``admin_class`` with unfold's ModelAdmin (and its inlines with unfold's) mixed in.

    The app's class stays first in the method order, so its own attributes and overrides
    win; unfold's class only adds the widgets, templates' context and changelist it expects.
    """
    if not issubclass(admin_class, unfold_admin.ModelAdmin):
        admin_class = type(
            admin_class.__name__, (admin_class, unfold_admin.ModelAdmin), {"__module__": admin_class.__module__}
        )
    inlines = []
    for inline in admin_class.inlines:
        for plain, fancy in _THEMED_INLINES:
            if issubclass(inline, plain) and not issubclass(inline, fancy):
                inline = type(inline.__name__, (inline, fancy), {"__module__": inline.__module__})
                break
        inlines.append(inline)
    admin_class.inlines = inlines
    return admin_class


class ThemedLoginForm(AdminLoginForm):
    """The two-factor sign-in form with unfold's input style."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["username"].widget.attrs["autofocus"] = ""
        for name in ("username", "password", "otp_token"):
            self.fields[name].widget.attrs["class"] = " ".join(unfold_widgets.BASE_INPUT_CLASSES)


class LoyaltyAdminSite(UnfoldAdminSite):
    login_form = ThemedLoginForm

    def register(self, model_or_iterable, admin_class=None, **options):
        return super().register(model_or_iterable, themed(admin_class or admin.ModelAdmin), **options)

    def has_permission(self, request: HttpRequest) -> bool:
        return super().has_permission(request) and two_factor.two_factor_state(request) == READY

    def login(self, request: HttpRequest, extra_context=None):
        user = request.user
        needs_setup = user.is_active and user.is_staff and two_factor.two_factor_state(request) == NEEDS_SETUP
        if request.method == "GET" and needs_setup:
            return HttpResponseRedirect(self._setup_url(request.GET.get("next", "")))
        context = {**(extra_context or {}), "needs_code": user.is_authenticated and self._needs_code(request)}
        response = super().login(request, extra_context=context)
        return self._to_landing(request, response)

    def _to_landing(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        """After a sign-in that was headed for the index, go where the user's role works.

        ``LOYALTY_ADMIN_LANDING`` names a function ``(user) -> url or None`` (the till for a
        clerk, the dashboard for a store manager); None keeps the index.
        """
        index = reverse("admin:index", current_app=self.name)
        landing = getattr(settings, "LOYALTY_ADMIN_LANDING", "")
        if not (
            request.method == "POST"
            and landing
            and isinstance(response, HttpResponseRedirect)
            and response.url == index
            and self.has_permission(request)
        ):
            return response
        target = import_string(landing)(request.user)
        return HttpResponseRedirect(target) if target else response

    def get_urls(self):
        return [
            path("two-factor/", never_cache(self.two_factor_setup), name="two_factor_setup"),
            *super().get_urls(),
        ]

    def _needs_code(self, request: HttpRequest) -> bool:
        return request.user.is_staff and two_factor.two_factor_state(request) == NEEDS_CODE

    def _setup_url(self, next_url: str) -> str:
        url = reverse("admin:two_factor_setup", current_app=self.name)
        return f"{url}?{urlencode({'next': next_url})}" if next_url else url

    def two_factor_setup(self, request: HttpRequest) -> HttpResponse:
        """Turn on (or move to a new phone) two-factor sign-in for the signed-in staff user.

        Shows a new secret as a QR code; it replaces the user's authenticator only once a
        code from it is entered. A session that has not given the current authenticator's
        code cannot get here, or a stolen password would be enough to replace it.
        """
        user = request.user
        login_url = reverse("admin:login", current_app=self.name)
        if not (user.is_active and user.is_staff):
            return redirect_to_login(request.get_full_path(), login_url)
        if request.method == "POST" and "sign_out" in request.POST:
            logout(request)
            return HttpResponseRedirect(login_url)
        state = two_factor.two_factor_state(request)
        if state == NEEDS_CODE:
            return redirect_to_login(request.get_full_path(), login_url)
        pending = TOTPDevice.objects.filter(user=user, confirmed=False).order_by(
            "-pk"
        ).first() or TOTPDevice.objects.create(user=user, name=PENDING_DEVICE_NAME, confirmed=False)
        form = CodeForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            if not pending.verify_is_allowed()[0]:
                form.add_error("code", _("Too many wrong codes. Wait a minute, then enter the code the app shows now."))
            elif pending.verify_token(two_factor.clean_code(form.cleaned_data["code"])):
                # The new authenticator works: it replaces every other one of this user.
                TOTPDevice.objects.filter(user=user).exclude(pk=pending.pk).delete()
                pending.confirmed = True
                pending.name = "authenticator"
                pending.save(update_fields=["confirmed", "name"])
                otp_login(request, pending)
                messages.success(request, _("Two-factor sign-in is on. From now on the admin asks for a code."))
                return HttpResponseRedirect(self._next(request))
            else:
                form.add_error(
                    "code", _("That code does not match. Check the phone's clock and enter the current code.")
                )
        context = {
            **self.each_context(request),
            "title": _("Two-factor sign-in"),
            "form": form,
            "qr_svg": segno.make(pending.config_url, error="m").svg_inline(scale=4),
            "secret": b32encode(pending.bin_key).decode(),
            "has_device": two_factor.confirmed_device(user) is not None,
            "required": two_factor.two_factor_required(user),
            "next": request.GET.get("next", ""),
        }
        return render(request, "admin/two_factor_setup.html", context)

    def _next(self, request: HttpRequest) -> str:
        target = request.GET.get("next", "")
        if target and url_has_allowed_host_and_scheme(
            target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            return target
        return reverse("admin:index", current_app=self.name)
