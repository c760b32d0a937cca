"""Admin sign-in lockout (django-axes), keyed on ``core.client_ip`` like every other limit.

Lockout counts failed passwords per username and per client address separately, on the
admin site only: the member pages and the API have their own limits, and a member's
wrong password must not lock the staff who share the shop's network out of the admin.
"""

from axes.backends import AxesStandaloneBackend
from axes.handlers.database import AxesDatabaseHandler

from .client_ip import UNKNOWN, client_rate_key


def lockout_address(request) -> str | None:
    """The address axes records (``AXES_CLIENT_IP_CALLABLE``): an IP, or None when there is none."""
    key = client_rate_key(request)
    return None if key == UNKNOWN else key


class AdminLockoutBackend(AxesStandaloneBackend):
    """Refuses a locked-out username or address before the password is checked.

    Callers without a request (the test client's ``login()``, the staff-token service,
    which has its own per-address and per-username throttles in ``api.throttles``) are
    passed on to the next backend: axes cannot tell whose attempt they are.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


class AdminOnlyHandler(AxesDatabaseHandler):
    """axes' database handler that counts failures made on the admin site only.

    axes' own ``AXES_ONLY_ADMIN_SITE`` stops lockouts elsewhere but still records every
    failed ``authenticate()``, so member sign-ins would raise the staff's address count.
    """

    def user_login_failed(self, sender, credentials, request=None, **kwargs):
        if request is None or not self.is_admin_request(request):
            return None
        return super().user_login_failed(sender, credentials, request, **kwargs)


def lockout_response(request, original_response=None, credentials=None):
    """The lockout page (``AXES_LOCKOUT_CALLABLE``), 429: what happened and what to do next."""
    from django.conf import settings
    from django.contrib import admin
    from django.shortcuts import render

    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60) if settings.AXES_COOLOFF_TIME else None
    context = {
        **admin.site.each_context(request),
        "failure_limit": settings.AXES_FAILURE_LIMIT,
        "cooloff_minutes": minutes,
    }
    response = render(request, "admin/lockout.html", context, status=429)
    if minutes:
        response["Retry-After"] = str(minutes * 60)
    return response
