"""Who is calling: a member or staff bearer token, or a store API key.

- ``Authorization: Bearer at_...`` a member's access token (``request.auth`` is the
  ``ApiToken``, ``request.user`` the member's sign-in user or anonymous);
- ``Authorization: Bearer st_...`` a staff user's token (``request.user`` is the staff user);
- ``Authorization: Api-Key sk_...`` a store key (``request.auth`` is the ``StoreApiKey``,
  ``request.user`` its acting staff user or anonymous).
"""

import datetime as dt

from django.contrib.auth.models import AnonymousUser
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.authentication import SessionScheme
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from core.db import prepared_first
from core.two_factor import READY, two_factor_state
from members.models import Member

from .models import ApiToken, StoreApiKey, secret_hash

# last_used_at is written at most this often per key, not on every till request.
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


def _credentials(request, scheme: str) -> str | None:
    header = authentication.get_authorization_header(request).decode(errors="replace").split()
    if not header or header[0].lower() != scheme.lower():
        return None
    if len(header) != 2:
        raise exceptions.AuthenticationFailed(_("Invalid Authorization header: give the scheme and one credential."))
    return header[1]


def _bearer_token(key_hash: str) -> ApiToken | None:
    """The access or staff token of ``key_hash`` with its member and user (every API request
    by a member or staff token asks this first), by one prepared statement on PostgreSQL."""
    kinds = [ApiToken.Kind.ACCESS, ApiToken.Kind.STAFF]
    return prepared_first(ApiToken, related=("member", "user"), key_hash=key_hash, kind__in=kinds)


def _store_key(key_hash: str) -> StoreApiKey | None:
    """The store key of ``key_hash`` with its store and acting user (every till request), as
    :func:`_bearer_token` reads a token."""
    return prepared_first(StoreApiKey, related=("store", "acting_user"), key_hash=key_hash)


class BearerTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        raw = _credentials(request, self.keyword)
        if raw is None:
            return None
        token = _bearer_token(secret_hash(raw))
        now = timezone.now()
        if token is None or token.revoked_at is not None or token.expires_at <= now:
            raise exceptions.AuthenticationFailed(_("The token is invalid or has expired."), code="token_invalid")
        if token.kind == ApiToken.Kind.STAFF:
            if not token.user.is_active or not token.user.is_staff:
                raise exceptions.AuthenticationFailed(_("The token is invalid or has expired."), code="token_invalid")
            return token.user, token
        if token.member.status == Member.Status.CLOSED:
            raise exceptions.AuthenticationFailed(_("This membership is closed."), code="member_closed")
        return (token.member.user if token.member.user_id else AnonymousUser()), token

    def authenticate_header(self, request):
        return self.keyword


class StoreKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Api-Key"

    def authenticate(self, request):
        raw = _credentials(request, self.keyword)
        if raw is None:
            return None
        key = _store_key(secret_hash(raw))
        if key is None or not key.is_active or not key.store.is_active:
            raise exceptions.AuthenticationFailed(_("The store API key is invalid or disabled."), code="key_invalid")
        now = timezone.now()
        if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
            StoreApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        return (key.acting_user or AnonymousUser()), key

    def authenticate_header(self, request):
        return self.keyword


class BearerScheme(OpenApiAuthenticationExtension):
    target_class = "api.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A member's access token (at_...) or a staff token (st_...).",
        }


class StoreKeyScheme(OpenApiAuthenticationExtension):
    target_class = "api.authentication.StoreKeyAuthentication"
    name = "storeKeyAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "A store API key: `Authorization: Api-Key sk_...`.",
        }


class TwoFactorSessionAuthentication(authentication.SessionAuthentication):
    """A staff user's admin session, only once it is as good as the admin's: a session that
    still owes its authenticator code (or whose role requires one not set up yet) does not
    open the API either, so the API is no way around two-factor sign-in."""

    def authenticate(self, request):
        result = super().authenticate(request)
        if result is None or two_factor_state(request._request) != READY:
            return None
        return result


class TwoFactorSessionScheme(SessionScheme):
    """In the schema it is the admin's session cookie, like DRF's session authentication."""

    target_class = "api.authentication.TwoFactorSessionAuthentication"
