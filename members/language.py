"""The member's own language (``Member.language``), which their notices are written in.

Recorded when they sign in (the page's language then) and when they switch language on
the member pages (Django's ``set_language`` view, ``/i18n/setlang/``): one ``UPDATE`` each
time, none on other requests.
"""

from django.conf import settings
from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils import translation

from .models import Member


def member_language_set(*, user_id: int, language: str | None) -> int:
    """Record ``language`` as the language of the member signed in as ``user_id``; refuses
    (writes nothing, returns 0) a language the site does not offer or a user without a member."""
    language = _supported(language) or ""
    if language not in {code for code, _name in settings.LANGUAGES}:
        return 0
    return Member.objects.filter(user_id=user_id).exclude(language=language).update(language=language)


def _supported(language: str | None) -> str | None:
    try:
        return translation.get_supported_language_variant(language) if language else None
    except LookupError:
        return None


@receiver(user_logged_in, dispatch_uid="members.language.on_sign_in")
def _on_sign_in(sender, request: HttpRequest | None, user, **kwargs) -> None:
    # The language the sign-in page was shown in (LocaleMiddleware's); none for a sign-in
    # outside a request through the middleware (a test's force_login, a script).
    language = _supported(getattr(request, "LANGUAGE_CODE", None)) if request is not None else None
    if language:
        member_language_set(user_id=user.pk, language=language)


class MemberLanguageMiddleware:
    """After LocaleMiddleware and AuthenticationMiddleware: a signed-in member's language
    switch (a POST to ``set_language``) is recorded on the member too."""

    def __init__(self, get_response):
        self.get_response = get_response
        try:
            self.path = reverse("set_language")
        except NoReverseMatch:
            self.path = None

    def __call__(self, request: HttpRequest):
        response = self.get_response(request)
        if (
            self.path is not None
            and request.method == "POST"
            and request.path == self.path
            and request.user.is_authenticated
        ):
            language = _supported(request.POST.get("language"))
            if language:
                member_language_set(user_id=request.user.pk, language=language)
        return response
