"""Cleaners for what services take from outside: amounts, points, text, times, keys, reasons.

Each returns the cleaned value or raises ``core.errors.LoyaltyError`` with a stable code
and a message naming the field, so every service refuses bad input the same way, whoever
calls it (the API, the admin, the till, an import, a job).

The limits are documented once, here: an idempotency key is 1 to ``KEY_MAX_LENGTH`` (128)
characters, a reason at most ``REASON_MAX_LENGTH`` (200). A reason over the limit is
refused (``reason_too_long``), never cut: what staff wrote is what the audit shows. A
caller that builds a reason itself (from an order number, a reward name) keeps it within
the limit.
"""

import datetime as dt
from decimal import Decimal, InvalidOperation

from django.utils import timezone
from django.utils.translation import gettext as _

from .errors import LoyaltyError

CENT = Decimal("0.01")
KEY_MAX_LENGTH = 128
REASON_MAX_LENGTH = 200
POINTS_MAX = 10**12


def clean_money(value: Decimal | int | str, *, field_name: str) -> Decimal:
    """An amount in yuan with at most two decimals, under 10 billion; refuses anything else
    (``invalid_amount``). The sign is the caller's to check."""
    try:
        amount = Decimal(str(value))
        exact = amount.is_finite() and abs(amount) < 10**10 and amount == amount.quantize(CENT)
    except (InvalidOperation, ValueError):
        exact = False
    if not exact:
        raise LoyaltyError(
            "invalid_amount",
            _("%(field)s must be an amount in yuan with at most two decimals, not “%(value)s”.")
            % {"field": field_name, "value": value},
        )
    return amount.quantize(CENT)


def clean_points(value: int, *, allow_negative: bool = False) -> int:
    """A whole number of points other than zero (positive unless ``allow_negative``), at
    most ``POINTS_MAX`` either way; refuses anything else (``invalid_amount``)."""
    if isinstance(value, bool) or not isinstance(value, int) or value == 0 or (value < 0 and not allow_negative):
        raise LoyaltyError(
            "invalid_amount",
            _("The number of points must be a whole number other than zero, not “%(value)s”.") % {"value": value},
        )
    if abs(value) > POINTS_MAX:
        raise LoyaltyError(
            "invalid_amount", _("%(value)s points is more than any account can hold.") % {"value": value}
        )
    return value


def clean_text(value, *, field_name: str, max_length: int, required: bool = True) -> str:
    """Strip a client's text field, refusing what is not text, empty (when required) or too long
    (``invalid_text``). None is empty."""
    text = value.strip() if isinstance(value, str) else None if value is not None else ""
    if text is None or (required and not text) or len(text) > max_length:
        raise LoyaltyError(
            "invalid_text",
            _("%(field)s must be text of 1 to %(max)s characters.") % {"field": field_name, "max": max_length},
        )
    return text


def clean_moment(value, *, field_name: str) -> dt.datetime:
    """A date and time with its time zone; refuses a naive one or anything else (``invalid_time``)."""
    if not isinstance(value, dt.datetime) or timezone.is_naive(value):
        raise LoyaltyError(
            "invalid_time", _("%(field)s must be a date and time with its time zone.") % {"field": field_name}
        )
    return value


def clean_key(value: str | None, *, required: bool) -> str | None:
    """An idempotency key: text of 1 to ``KEY_MAX_LENGTH`` characters, kept as sent.

    None or empty is no key: refused when ``required`` (``idempotency_key_required``),
    else None. Refuses what is not text or is longer (``invalid_idempotency_key``).
    """
    if value is None or value == "":
        if required:
            raise LoyaltyError("idempotency_key_required", _("An idempotency key is required for this change."))
        return None
    if not isinstance(value, str) or len(value) > KEY_MAX_LENGTH:
        raise LoyaltyError(
            "invalid_idempotency_key",
            _("The idempotency key must be text of at most %(max)s characters.") % {"max": KEY_MAX_LENGTH},
        )
    return value


def clean_reason(value, *, required: bool = True, missing: str | None = None) -> str:
    """Why something was done, stripped; None is no reason.

    Refuses: no reason when ``required`` (``reason_required``, with ``missing`` as the
    message when the caller has a more telling one), what is not text (``invalid_text``),
    more than ``REASON_MAX_LENGTH`` characters (``reason_too_long``; never cut).
    """
    if value is not None and not isinstance(value, str):
        raise LoyaltyError(
            "invalid_text", _("The reason must be text of at most %(max)d characters.") % {"max": REASON_MAX_LENGTH}
        )
    reason = (value or "").strip()
    if required and not reason:
        raise LoyaltyError("reason_required", missing or _("Say why: a reason is required."))
    if len(reason) > REASON_MAX_LENGTH:
        raise LoyaltyError("reason_too_long", _("Keep the reason to %(max)d characters.") % {"max": REASON_MAX_LENGTH})
    return reason
