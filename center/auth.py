"""Who the member is: the ``member_required`` decorator, sign-in and its rate limits."""

from functools import wraps

from django.contrib.auth import login, logout
from django.contrib.auth.views import redirect_to_login
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from core.client_ip import client_rate_key
from members.models import Member

from .services import member_user_for_sign_in

# Password sign-in: failed attempts allowed per phone number and per client address in
# one window. One-time codes have their own limits in members.otp.
PASSWORD_FAILURES_PER_PHONE = 5
PASSWORD_FAILURES_PER_IP = 20
PASSWORD_WINDOW_SECONDS = 15 * 60
# The code pages, per client address in the same window: texts sent (each POST of the
# phone form sends one, whatever the number) and codes checked. Generous enough for a
# store's guest Wi-Fi on a busy day, far below what SMS pumping or guessing needs.
CODE_SENDS_PER_IP = 30
CODE_CHECKS_PER_IP = 60


def current_member(request: HttpRequest) -> Member | None:
    """The member linked to the signed-in user, or None (anonymous, staff without a member, closed)."""
    user = request.user
    if not user.is_authenticated:
        return None
    member = Member.objects.select_related("home_store").filter(user_id=user.pk).first()
    if member is None or member.status == Member.Status.CLOSED:
        return None
    return member


def member_required(view):
    """Run ``view`` only for a signed-in member, with ``request.member`` loaded.

    Anyone else (anonymous, a staff user not linked to a member, a closed member) goes
    to the sign-in page and comes back afterwards.
    """

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        member = current_member(request)
        if member is None:
            return redirect_to_login(request.get_full_path(), reverse("center:sign_in"))
        request.member = member
        return view(request, *args, **kwargs)

    return wrapper


def sign_in(request: HttpRequest, member: Member) -> None:
    """Sign ``member`` in as their linked user (created on first sign-in), in a new session."""
    user = member_user_for_sign_in(member=member)
    # login() gives the session a new key (or a new session for another user), so a
    # session id planted before sign-in is worthless afterwards.
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")


def sign_out(request: HttpRequest) -> None:
    logout(request)


def _failure_keys(request: HttpRequest, phone: str) -> list[tuple[str, int]]:
    return [
        (f"center:password-failures:phone:{phone}", PASSWORD_FAILURES_PER_PHONE),
        (f"center:password-failures:ip:{client_rate_key(request)}", PASSWORD_FAILURES_PER_IP),
    ]


def _count(key: str) -> None:
    # add() starts the window; incr() keeps its expiry.
    if not cache.add(key, 1, PASSWORD_WINDOW_SECONDS):
        try:
            cache.incr(key)
        except ValueError:  # expired between add() and incr()
            cache.add(key, 1, PASSWORD_WINDOW_SECONDS)


def posts_limited_per_address(scope: str, limit: int):
    """Let a client address POST to the view at most ``limit`` times a window; then 429.

    The address is ``core.client_ip``'s, so a forged X-Forwarded-For buys nothing.
    """

    def decorate(view):
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if request.method == "POST":
                key = f"center:{scope}:ip:{client_rate_key(request)}"
                if (cache.get(key) or 0) >= limit:
                    response = render(request, "center/rate_limited.html", status=429)
                    response["Retry-After"] = str(PASSWORD_WINDOW_SECONDS)
                    return response
                _count(key)
            return view(request, *args, **kwargs)

        return wrapper

    return decorate


def password_attempts_exhausted(request: HttpRequest, phone: str) -> bool:
    """True when this phone number or this client has failed too often in the window."""
    return any((cache.get(key) or 0) >= limit for key, limit in _failure_keys(request, phone))


def password_failure_record(request: HttpRequest, phone: str) -> None:
    for key, _limit in _failure_keys(request, phone):
        _count(key)


def password_failures_clear(request: HttpRequest, phone: str) -> None:
    cache.delete(f"center:password-failures:phone:{phone}")
