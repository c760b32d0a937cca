"""Paying part of an order with points at checkout (积分抵扣).

``LOYALTY_POINT_VALUE`` is what one point is worth in yuan (default 0.01: 100 points pay
1 yuan) and ``LOYALTY_MAX_DEDUCTION_SHARE`` the largest share of an order points may pay
(default 0.5). :func:`checkout_quote` says how many points a member may use on an order;
:func:`order_checkout` spends them and records the order in one transaction: the part paid
with points earns nothing (``order_earn``'s ``points_paid_amount``).
"""

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal, InvalidOperation

from django.conf import settings
from django.db import transaction
from django.utils.translation import gettext as _

from core.cleaners import clean_money
from core.errors import LoyaltyError
from members.models import Member, Store

from .models import Account, Currency
from .services import EarnResult, OrderLineInput, order_earn, points_spend

CENT = Decimal("0.01")


@dataclass(frozen=True)
class Quote:
    max_points: int  # the most points this member may use on this order
    value: Decimal  # what max_points pay, in yuan
    point_value: Decimal  # yuan per point
    balance: int  # the member's available points


def _setting(name: str) -> Decimal:
    try:
        value = Decimal(str(getattr(settings, name)))
    except (InvalidOperation, ValueError):
        value = Decimal(-1)
    if not value.is_finite() or value < 0 or (name == "LOYALTY_MAX_DEDUCTION_SHARE" and value > 1):
        raise LoyaltyError("misconfigured", _("The points deduction settings are not valid."))
    return value


def point_value() -> Decimal:
    """Yuan one point pays (``LOYALTY_POINT_VALUE``), checked."""
    return _setting("LOYALTY_POINT_VALUE")


def points_value(points: int) -> Decimal:
    """Yuan that ``points`` pay, rounded down to the fen."""
    return (Decimal(points) * point_value()).quantize(CENT, rounding=ROUND_DOWN)


def checkout_quote(*, member: Member, order_total: Decimal | int | str) -> Quote:
    """How many points ``member`` may use on an order of ``order_total`` yuan, and what they pay.

    The lesser of the available balance and the points worth the maximum share of the
    order. Refuses a bad amount (``invalid_amount``).
    """
    total = clean_money(order_total, field_name=_("Order total"))
    if total < 0:
        raise LoyaltyError("invalid_amount", _("The order total must not be negative."))
    value_of_one = point_value()
    balance = (
        Account.objects.filter(member=member, currency=Currency.POINTS).values_list("balance", flat=True).first() or 0
    )
    by_share = (
        int((total * _setting("LOYALTY_MAX_DEDUCTION_SHARE") / value_of_one).to_integral_value(ROUND_DOWN))
        if value_of_one
        else 0
    )
    max_points = max(0, min(balance, by_share))
    return Quote(max_points=max_points, value=points_value(max_points), point_value=value_of_one, balance=balance)


@transaction.atomic
def order_checkout(
    *,
    member: Member,
    store: Store,
    number: str,
    amount: Decimal | int | str,
    points: int,
    occurred_at: dt.datetime | None = None,
    lines: Sequence[OrderLineInput] = (),
    now: dt.datetime | None = None,
) -> tuple[EarnResult, Decimal]:
    """Pay ``points`` towards order ``number`` at ``store`` and record the order; returns its
    earn result and the yuan the points paid.

    The spend's idempotency key is the order's (``checkout:<store>:<number>``), so a till
    that resends the same checkout gets the first result and is not charged twice.
    Refuses more points than the quote allows (``points_over_limit``), points that pay
    nothing, and everything ``points_spend`` and ``order_earn`` refuse.
    """
    if isinstance(points, bool) or not isinstance(points, int) or points <= 0:
        raise LoyaltyError("invalid_amount", _("The number of points must be a whole number above zero."))
    total = clean_money(amount, field_name=_("Order amount"))
    value = points_value(points)
    if value <= 0:
        raise LoyaltyError("points_too_few", _("These points are worth less than 0.01 yuan."))
    quote = checkout_quote(member=member, order_total=total)
    spend_key = f"checkout:{store.pk}:{number}"
    already = member.entries.filter(account__currency=Currency.POINTS, idempotency_key=spend_key).exists()
    limit = _setting("LOYALTY_MAX_DEDUCTION_SHARE") * total
    if not already and (points > quote.max_points or value > limit):
        raise LoyaltyError(
            "points_over_limit",
            _("At most %(max)s points can be used on this order.") % {"max": quote.max_points},
            max_points=quote.max_points,
        )
    spend = points_spend(
        member=member,
        amount=points,
        idempotency_key=spend_key,
        reason=_("Paid with points for order %(number)s") % {"number": number},
        store=store,
        detail={"order_number": number, "order_amount": str(total), "value": str(value)},
        now=now,
    )
    result = order_earn(
        member=member,
        store=store,
        number=number,
        amount=total,
        points_paid_amount=value,
        occurred_at=occurred_at,
        lines=lines,
        now=now,
    )
    if spend.replayed != result.replayed:
        # One half was recorded before without the other: the order number was used
        # for a plain order, or these points for another order.
        raise LoyaltyError(
            "order_number_taken",
            _("Order %(number)s was already recorded at this store with different details.") % {"number": number},
        )
    return result, value
