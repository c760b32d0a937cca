"""Pieces every view module uses: error responses for the schema, store and member lookups,
idempotent requests."""

import hashlib
import json
from collections.abc import Callable

from django.db import transaction
from django.http import HttpResponse
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse
from rest_framework import status
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from core.db import prepared_first
from core.errors import LoyaltyError
from members.member_code import looks_like_member_code, member_code_verify
from members.models import Member, Store
from members.services import is_valid_member_number

from ..errors import ErrorSerializer, loyalty_error_response
from ..models import ApiToken, StoreApiKey
from ..services import idempotency_claim, idempotency_complete, idempotency_key_clean

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
    """The member number in what was typed or scanned; the member card's rotating code is
    checked and read as its member number (``member_code_expired`` / ``member_code_invalid``)."""
    number = "".join(ch for ch in (raw or "") if ch.isdigit())
    return member_code_verify(number) if looks_like_member_code(number) else number


def member_by_number(raw: str) -> Member:
    """The member with this member number (spaces and dashes ignored), or ``member_not_found``;
    a record merged into another one answers with the one it was merged into (``merge_followed``)."""
    number = clean_member_number(raw)
    member = prepared_first(Member, member_number=number) if is_valid_member_number(number) else None
    if member is None or member.erased_at is not None:
        raise LoyaltyError("member_not_found", _("No member has the number “%(number)s”.") % {"number": raw})
    return follow_merge(member)


# A chain of merges longer than this is not followed further (each hop is a query).
MERGE_HOPS = 5


def follow_merge(member: Member, *, related: tuple[str, ...] = ()) -> Member:
    """``member``, or the record it was merged into (docs/merge.md), following a chain of
    merges; ``related`` is ``select_related`` for the record read. ``merge_followed`` on the
    answer is the merged record's number when a pointer was followed."""
    number = member.member_number
    for _hop in range(MERGE_HOPS):
        if member.merged_into_id is None:
            break
        member = Member.objects.select_related(*related).get(pk=member.merged_into_id)
    if member.member_number != number:
        member.merge_followed = number
    return member


# --- idempotent requests -----------------------------------------------------------------


def idempotency_key_parameter(*, required: bool) -> OpenApiParameter:
    return OpenApiParameter(
        "Idempotency-Key",
        str,
        OpenApiParameter.HEADER,
        required=required,
        description=(
            "1 to 128 characters naming this request of yours: a retry with the same key and body gets the "
            "first answer (header Idempotent-Replayed: true); the same key with anything else is 422 "
            "idempotency_key_reused; while the first is still running, 409 idempotency_in_flight."
        ),
    )


def idempotency_client(request) -> tuple[str, Member | None]:
    """Whose key it is: the store key, the member, or the staff user (whatever token or
    session they use, so a retry after signing in again is still a retry)."""
    auth = request.auth
    if isinstance(auth, StoreApiKey):
        return f"store_key:{auth.pk}", None
    if isinstance(auth, ApiToken) and auth.member_id is not None:
        return f"member:{auth.member_id}", auth.member
    return f"staff:{request.user.pk}", None


def request_fingerprint(request, scope: str) -> str:
    """The whole request a key stands for: the endpoint, the path's arguments and the body."""
    data = request.data
    if hasattr(data, "lists"):  # a form body (QueryDict)
        data = dict(data.lists())
    payload = {"scope": scope, "args": (request.parser_context or {}).get("kwargs", {}), "body": data}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _json(status_code: int, body: str, *, replayed: bool = False, headers: dict | None = None) -> HttpResponse:
    response = HttpResponse(body, status=status_code, content_type="application/json", headers=headers)
    if replayed:
        response["Idempotent-Replayed"] = "true"
    return response


def idempotent(
    request, *, scope: str, run: Callable[[], Response], required: bool = False, replay_as_200: bool = False
) -> HttpResponse:
    """Run a retryable write once per ``Idempotency-Key`` of its client and replay its answer.

    Without a key, ``run`` simply runs (refused with 400 where ``required``). With one,
    the claim, ``run`` and the kept answer share one transaction: a domain refusal is
    an answer too (kept and replayed), while bad input (400 from the serializers),
    permission errors and 5xx roll back and leave the key free. ``replay_as_200``: the
    POS writes' convention, a replay of a 201 answers 200 with ``replayed: true``.
    """
    raw_key = request.headers.get("Idempotency-Key")
    if not required and not (raw_key or "").strip():
        return run()
    key = idempotency_key_clean(raw_key)
    client, member = idempotency_client(request)
    request_hash = request_fingerprint(request, scope)
    with transaction.atomic():
        claim = idempotency_claim(client=client, key=key, scope=scope, request_hash=request_hash, member=member)
        if claim.replay is not None:
            return _json(claim.replay.response_status, claim.replay.response_body, replayed=True)
        try:
            with transaction.atomic():
                response = run()
        except LoyaltyError as error:
            response = loyalty_error_response(error)
        body = JSONRenderer().render(response.data).decode()
        if response.status_code >= 500:
            # Not an answer to keep (a platform down, a setting broken): the key stays free.
            return _json(response.status_code, body)
        kept_status, kept_body = response.status_code, body
        if replay_as_200 and kept_status == 201 and isinstance(response.data, dict) and "replayed" in response.data:
            kept_status = 200
            kept_body = JSONRenderer().render({**response.data, "replayed": True}).decode()
        idempotency_complete(claim=claim, status=kept_status, body=kept_body)
    # Sent as kept, so a replay is byte for byte the same.
    headers = {k: v for k, v in response.items() if k == "Retry-After"}
    return _json(response.status_code, body, headers=headers)
