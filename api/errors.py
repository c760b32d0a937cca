"""One error shape for every error the API returns:

    {"error": {"code": "insufficient_balance", "message": "...", "fields": {...}}}

``code`` is stable and machine-readable; ``message`` is in the request's language
(``Accept-Language: zh-hans`` or ``en``, through LocaleMiddleware); ``fields`` names the
request fields that are wrong, when there are any. Domain refusals
(``core.errors.LoyaltyError``) are mapped to a status here, in one place.
"""

import logging

from django.core.exceptions import ObjectDoesNotExist, PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError, InterfaceError, OperationalError
from django.http import Http404
from django.utils.translation import gettext as _
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response

from core.errors import LoyaltyError

logger = logging.getLogger(__name__)

try:  # psycopg's own errors, for code that talks to it without Django's wrapper (a pool, a raw connection)
    from psycopg import InterfaceError as PgInterfaceError
    from psycopg import OperationalError as PgOperationalError
except ImportError:  # pragma: no cover - SQLite only
    PgInterfaceError = PgOperationalError = OperationalError

# The database cannot be reached, dropped the connection, or gave up on the statement
# (a timeout, a deadlock): nothing the client did, and worth retrying in a moment.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError, PgOperationalError, PgInterfaceError)
RETRY_AFTER_SECONDS = 30

# Domain codes that are not plain bad input (400).
STATUS_BY_CODE = {
    # 401: the caller is not who they claim to be
    "token_invalid": status.HTTP_401_UNAUTHORIZED,
    "invalid_credentials": status.HTTP_401_UNAUTHORIZED,
    "authenticator_code_required": status.HTTP_401_UNAUTHORIZED,
    "authenticator_code_invalid": status.HTTP_401_UNAUTHORIZED,
    # 403: known caller, not allowed
    "two_factor_setup_required": status.HTTP_403_FORBIDDEN,
    "member_closed": status.HTTP_403_FORBIDDEN,
    "member_inactive": status.HTTP_403_FORBIDDEN,
    "store_forbidden": status.HTTP_403_FORBIDDEN,
    "operator_required": status.HTTP_403_FORBIDDEN,
    "permission_denied": status.HTTP_403_FORBIDDEN,
    "out_of_scope": status.HTTP_403_FORBIDDEN,
    # 404: absent, or not the caller's to see
    "not_found": status.HTTP_404_NOT_FOUND,
    "member_not_found": status.HTTP_404_NOT_FOUND,
    "order_not_found": status.HTTP_404_NOT_FOUND,
    "store_not_found": status.HTTP_404_NOT_FOUND,
    "coupon_not_found": status.HTTP_404_NOT_FOUND,
    "reward_not_found": status.HTTP_404_NOT_FOUND,
    "redemption_not_found": status.HTTP_404_NOT_FOUND,
    # (paid membership, transfers, badges)
    "plan_not_found": status.HTTP_404_NOT_FOUND,
    "membership_not_found": status.HTTP_404_NOT_FOUND,
    "plan_order_not_found": status.HTTP_404_NOT_FOUND,
    "receiver_not_found": status.HTTP_404_NOT_FOUND,
    "transfer_not_found": status.HTTP_404_NOT_FOUND,
    "badge_not_found": status.HTTP_404_NOT_FOUND,
    # (partners)
    "partner_not_found": status.HTTP_404_NOT_FOUND,
    "offer_not_found": status.HTTP_404_NOT_FOUND,
    "voucher_not_found": status.HTTP_404_NOT_FOUND,
    # (member merge)
    "merge_not_found": status.HTTP_404_NOT_FOUND,
    # 409: the request is fine but the state of things refuses it
    "already_given_back": status.HTTP_409_CONFLICT,
    "already_checked_in": status.HTTP_409_CONFLICT,
    "coupon_used": status.HTTP_409_CONFLICT,
    "coupon_void": status.HTTP_409_CONFLICT,
    "coupon_expired": status.HTTP_409_CONFLICT,
    "coupon_not_yet_valid": status.HTTP_409_CONFLICT,
    "insufficient_balance": status.HTTP_409_CONFLICT,
    "out_of_stock": status.HTTP_409_CONFLICT,
    "limit_reached": status.HTTP_409_CONFLICT,
    "tier_too_low": status.HTTP_409_CONFLICT,
    "not_available": status.HTTP_409_CONFLICT,
    "redemption_not_cancellable": status.HTTP_409_CONFLICT,
    "reward_unavailable": status.HTTP_409_CONFLICT,
    "already_cancelled": status.HTTP_409_CONFLICT,
    "birthday_locked": status.HTTP_409_CONFLICT,
    "miniprogram_already_bound": status.HTTP_409_CONFLICT,
    "member_erased": status.HTTP_409_CONFLICT,
    "idempotency_in_flight": status.HTTP_409_CONFLICT,
    "refund_too_large": status.HTTP_409_CONFLICT,
    "order_busy": status.HTTP_409_CONFLICT,
    "points_over_limit": status.HTTP_409_CONFLICT,
    # (paid membership, transfers, badges)
    "plan_unavailable": status.HTTP_409_CONFLICT,
    "plan_change_unsupported": status.HTTP_409_CONFLICT,
    "trial_unavailable": status.HTTP_409_CONFLICT,
    "trial_used": status.HTTP_409_CONFLICT,
    "auto_renew_unavailable": status.HTTP_409_CONFLICT,
    "membership_cancelled": status.HTTP_409_CONFLICT,
    "payment_conflict": status.HTTP_409_CONFLICT,
    "plan_order_cancelled": status.HTTP_409_CONFLICT,
    "plan_order_not_paid": status.HTTP_409_CONFLICT,
    "plan_order_refunded": status.HTTP_409_CONFLICT,
    "cool_off_over": status.HTTP_409_CONFLICT,
    "refund_not_latest": status.HTTP_409_CONFLICT,
    "wechat_openid_required": status.HTTP_409_CONFLICT,
    "receiver_inactive": status.HTTP_409_CONFLICT,
    "transfer_limit_reached": status.HTTP_409_CONFLICT,
    "transfer_ping_pong": status.HTTP_409_CONFLICT,
    "transfer_to_self": status.HTTP_409_CONFLICT,
    "refund_shortfall_open": status.HTTP_409_CONFLICT,
    "transfer_not_pending": status.HTTP_409_CONFLICT,
    "transfer_not_received": status.HTTP_409_CONFLICT,
    "transfer_received": status.HTTP_409_CONFLICT,
    "badge_held": status.HTTP_409_CONFLICT,
    "badge_revoked": status.HTTP_409_CONFLICT,
    # (partners)
    "partner_inactive": status.HTTP_409_CONFLICT,
    "offer_unavailable": status.HTTP_409_CONFLICT,
    "out_of_codes": status.HTTP_409_CONFLICT,
    "offer_codes_generated": status.HTTP_409_CONFLICT,
    "voucher_used": status.HTTP_409_CONFLICT,
    "voucher_void": status.HTTP_409_CONFLICT,
    "voucher_expired": status.HTTP_409_CONFLICT,
    # (member merge)
    "member_already_merged": status.HTTP_409_CONFLICT,
    "member_not_mergeable": status.HTTP_409_CONFLICT,
    "merge_points_spent": status.HTTP_409_CONFLICT,
    "merge_undo_expired": status.HTTP_409_CONFLICT,
    # 422: a key (order number, refund number, Idempotency-Key) reused with a different body
    "idempotency_key_reused": status.HTTP_422_UNPROCESSABLE_ENTITY,
    "idempotency_conflict": status.HTTP_422_UNPROCESSABLE_ENTITY,
    "order_number_taken": status.HTTP_422_UNPROCESSABLE_ENTITY,
    "refund_number_taken": status.HTTP_422_UNPROCESSABLE_ENTITY,
    # 429: slow down
    "otp_rate_limited": status.HTTP_429_TOO_MANY_REQUESTS,
    "miniprogram_rate_limited": status.HTTP_429_TOO_MANY_REQUESTS,
    # 503: a platform we depend on is not answering
    "miniprogram_unavailable": status.HTTP_503_SERVICE_UNAVAILABLE,
    "otp_send_failed": status.HTTP_503_SERVICE_UNAVAILABLE,
    "misconfigured": status.HTTP_503_SERVICE_UNAVAILABLE,
    # (paid membership, transfers, badges)
    "payments_not_configured": status.HTTP_503_SERVICE_UNAVAILABLE,
    "payment_unavailable": status.HTTP_503_SERVICE_UNAVAILABLE,
    "payment_refund_failed": status.HTTP_503_SERVICE_UNAVAILABLE,
}


def status_for(code: str) -> int:
    return STATUS_BY_CODE.get(code, status.HTTP_400_BAD_REQUEST)


def error_body(code: str, message, fields: dict | None = None) -> dict:
    body = {"code": code, "message": str(message)}
    if fields:
        body["fields"] = fields
    return {"error": body}


def service_unavailable_body() -> dict:
    return error_body(
        "service_unavailable",
        _("The service is briefly unavailable. Please try again in a moment."),
    )


def loyalty_error_response(error: LoyaltyError) -> Response:
    code = error.code
    response = Response(error_body(code, error.message, error.extra.get("fields")), status=status_for(code))
    if "retry_after" in error.extra:
        response["Retry-After"] = str(int(error.extra["retry_after"]))
    return response


def _flatten(detail) -> dict:
    """DRF's nested validation detail as ``{"field": "message", "lines[0].sku": "..."}``."""
    out: dict[str, str] = {}

    def walk(value, prefix: str) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(inner, f"{prefix}.{key}" if prefix else str(key))
        elif isinstance(value, list):
            if value and all(not isinstance(v, dict | list) for v in value):
                out[prefix or "non_field_errors"] = " ".join(str(v) for v in value)
            else:
                for index, inner in enumerate(value):
                    if inner:
                        walk(inner, f"{prefix}[{index}]")
        else:
            out[prefix or "non_field_errors"] = str(value)

    walk(detail, "")
    return out


_DRF_CODES = {
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.ParseError: "parse_error",
    exceptions.Throttled: "throttled",
}


def exception_handler(exc, context):
    """DRF's exception handler, replaced: every error in the one shape, never a 500 for bad input."""
    if isinstance(exc, LoyaltyError):
        return loyalty_error_response(exc)
    if isinstance(exc, Http404 | ObjectDoesNotExist):
        return Response(error_body("not_found", _("Not found.")), status=status.HTTP_404_NOT_FOUND)
    if isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, DjangoValidationError):
        fields = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        return Response(
            error_body("invalid", _("Some fields are not valid."), _flatten(fields)), status=status.HTTP_400_BAD_REQUEST
        )
    if isinstance(exc, DATABASE_UNAVAILABLE):
        logger.warning("database unavailable, answered 503: %s", exc)
        response = Response(service_unavailable_body(), status=status.HTTP_503_SERVICE_UNAVAILABLE)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    if isinstance(exc, DataError):
        # A value the database cannot hold (too long, out of range) that validation let through.
        logger.warning("data error answered as 400: %s", exc)
        return Response(
            error_body("invalid", _("A value in the request is too long or out of range.")),
            status=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, exceptions.ValidationError):
        return Response(
            error_body("invalid", _("Some fields are not valid."), _flatten(exc.detail)),
            status=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, exceptions.APIException):
        code = next((c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), None)
        detail_code = exc.get_codes() if isinstance(exc.get_codes(), str) else None
        if isinstance(exc, exceptions.AuthenticationFailed) and detail_code not in (None, "authentication_failed"):
            code = detail_code
        response = Response(error_body(code or "error", exc.detail), status=exc.status_code)
        auth_header = getattr(exc, "auth_header", None)
        if auth_header:
            response["WWW-Authenticate"] = auth_header
        wait = getattr(exc, "wait", None)
        if wait is not None:
            response["Retry-After"] = str(int(wait) + 1)
        return response
    return None  # a bug on our side: Django's 500, logged with its traceback


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable machine-readable code, e.g. insufficient_balance.")
    message = serializers.CharField(help_text="For people, in the request's language.")
    fields = serializers.DictField(
        child=serializers.CharField(), required=False, help_text="Message per request field that is wrong."
    )


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()
