"""Pieces every view module uses: error responses for the schema, store and member lookups."""

from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiExample, OpenApiResponse
from rest_framework import status
from rest_framework.response import Response

from core.errors import LoyaltyError
from members.models import Member, Store
from members.services import is_valid_member_number

from ..errors import ErrorSerializer
from ..models import StoreApiKey

_ERROR_TEXT = {
    400: "Bad input (code invalid and others); fields names the wrong fields.",
    401: "No credentials, or invalid or expired ones.",
    403: "The caller may not do this.",
    404: "Absent, or not the caller's to see.",
    409: "The current state refuses it (already used, not enough points, ...).",
    422: "A key (order number, refund number, Idempotency-Key) reused with a different body.",
    429: "Too many requests; see Retry-After.",
    503: "A platform the server depends on did not answer.",
}

_EXAMPLE_CODES = {
    400: ("invalid", "Some fields are not valid.", {"amount": "A valid number is required."}),
    401: ("not_authenticated", "Authentication credentials were not provided.", None),
    403: ("permission_denied", "You do not have permission to perform this action.", None),
    404: ("not_found", "Not found.", None),
    409: ("coupon_used", "This coupon was already used on 2026-11-20 14:03.", None),
    422: ("idempotency_key_reused", "This Idempotency-Key was already used for a different request.", None),
    429: ("throttled", "Request was throttled. Expected available in 42 seconds.", None),
    503: ("miniprogram_unavailable", "The mini-program platform is busy. Try again shortly.", None),
}


def errors(*statuses: int) -> dict:
    """Schema responses for the error statuses an endpoint can return, each with an example."""
    out = {}
    for code_status in statuses:
        code, message, fields = _EXAMPLE_CODES[code_status]
        body = {"code": code, "message": message}
        if fields:
            body["fields"] = fields
        out[code_status] = OpenApiResponse(
            ErrorSerializer,
            description=_ERROR_TEXT[code_status],
            examples=[OpenApiExample(code, value={"error": body}, response_only=True, status_codes=[str(code_status)])],
        )
    return out


def example(name: str, value, *, request: bool = False, status: int = 200) -> OpenApiExample:
    if request:
        return OpenApiExample(name, value=value, request_only=True)
    return OpenApiExample(name, value=value, response_only=True, status_codes=[str(status)])


def written(data, *, replayed: bool) -> Response:
    """201 for what this request wrote; 200 with the first answer for a replay of it."""
    return Response(data, status=status.HTTP_200_OK if replayed else status.HTTP_201_CREATED)


def store_for(request, code: str | None) -> Store:
    """The store the caller acts for: a store key's own, or the one a staff caller names.

    A store key naming another store is refused (``store_forbidden``); staff must name
    an active store (``store_required``, ``store_not_found``).
    """
    key = request.auth if isinstance(request.auth, StoreApiKey) else None
    if key is not None:
        if code and code != key.store.code:
            raise LoyaltyError(
                "store_forbidden", _("This key acts only for store %(store)s.") % {"store": key.store.code}
            )
        return key.store
    if not code:
        raise LoyaltyError(
            "store_required", _("Say which store this is for (store code)."), fields={"store": _("Required.")}
        )
    store = Store.objects.filter(code=code, is_active=True).first()
    if store is None:
        raise LoyaltyError("store_not_found", _("No active store has the code “%(code)s”.") % {"code": code})
    return store


def operator_for(request):
    """The staff user recorded as operator: the caller, or a store key's acting user (may be None)."""
    user = request.user
    return user if user is not None and user.is_authenticated else None


def clean_member_number(raw: str) -> str:
    return "".join(ch for ch in (raw or "") if ch.isdigit())


def member_by_number(raw: str) -> Member:
    """The member with this member number (spaces and dashes ignored), or ``member_not_found``."""
    number = clean_member_number(raw)
    member = Member.objects.filter(member_number=number).first() if is_valid_member_number(number) else None
    if member is None or member.erased_at is not None:
        raise LoyaltyError("member_not_found", _("No member has the number “%(number)s”.") % {"number": raw})
    return member
