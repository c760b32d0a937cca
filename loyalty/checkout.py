"""Paying part of an order with points at checkout (积分抵扣).

``LOYALTY_POINT_VALUE`` is what one point is worth in yuan (default 0.01: 100 points pay
1 yuan) and ``LOYALTY_MAX_DEDUCTION_SHARE`` the largest share of an order points may pay
(default 0.5). :func:`checkout_quote` says how many points a member may use on an order;
:func:`order_checkout` spends them and records the order in one transaction: the part paid
with points earns nothing (``order_earn``'s ``points_paid_amount``).

Member benefits are applied, not only listed (:func:`checkout_benefits`): the best member
price discount among the tier's active ``discount_percent`` benefits and free shipping if
the tier gives it, combined with what apps above add (``programme``: the paid plan's, by
``PROGRAMME_MULTIPLIERS``: the best wins, or the second applies after the first). The
quote takes the discount off the order total first; points may pay their share of the
price after the discount; the order is recorded at that price, with the discount and the
benefits used (``Order.member_discount``, ``Order.benefits``).
"""

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal, InvalidOperation

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from core.cleaners import clean_money
from core.errors import LoyaltyError
from members.models import Member, Store

from .models import Account, Benefit, Currency, Order
from .services import EarnResult, OrderLineInput, order_earn, points_spend

CENT = Decimal("0.01")


@dataclass(frozen=True)
class CheckoutBenefits:
    """The member price benefits a member has now: the discount (percent, 0 for none), free
    shipping, and where each came from (``tier:gold``, ``plan:plus``)."""

    discount_percent: Decimal = Decimal(0)
    free_shipping: bool = False
    sources: tuple[str, ...] = field(default_factory=tuple)

    def as_detail(self) -> dict:
        return {
            "discount_percent": str(self.discount_percent),
            "free_shipping": self.free_shipping,
            "sources": list(self.sources),
        }


# ``adjuster(member=, benefits=, now=) -> CheckoutBenefits``: apps above combine their
# own benefits with the tier's (``programme``: the paid plan's, by PROGRAMME_MULTIPLIERS).
# Registered in their ``ready()``; loyalty knows none of them.
BenefitAdjuster = Callable[..., CheckoutBenefits]
_adjusters: list[BenefitAdjuster] = []


def checkout_benefit_adjuster_register(adjuster: BenefitAdjuster) -> None:
    """Add an adjuster of the checkout benefits; once, whatever the calls."""
    if adjuster not in _adjusters:
        _adjusters.append(adjuster)


def checkout_benefits(member: Member, *, now: dt.datetime | None = None) -> CheckoutBenefits:
    """The discount and free shipping ``member`` gets at checkout now: the best of the
    tier's active ``discount_percent`` benefits (at most 100), free shipping if the tier
    has an active ``free_shipping`` benefit, then every registered adjuster. A frozen or
    closed member gets none. One query plus the adjusters'."""
    if member.status != Member.Status.ACTIVE:
        return CheckoutBenefits()
    now = now or timezone.now()
    rows = list(
        Benefit.objects.filter(
            tier__members__member=member,
            is_active=True,
            kind__in=[Benefit.Kind.DISCOUNT_PERCENT, Benefit.Kind.FREE_SHIPPING],
        ).values_list("kind", "value", "tier__code")
    )
    discounts = [
        min(Decimal(value), Decimal(100)) for kind, value, _code in rows if kind == Benefit.Kind.DISCOUNT_PERCENT
    ]
    free = any(kind == Benefit.Kind.FREE_SHIPPING for kind, _value, _code in rows)
    benefits = CheckoutBenefits(
        discount_percent=max(discounts, default=Decimal(0)),
        free_shipping=free,
        sources=(f"tier:{rows[0][2]}",) if rows else (),
    )
    for adjuster in _adjusters:
        benefits = adjuster(member=member, benefits=benefits, now=now)
    return benefits


def member_discount(total: Decimal, percent: Decimal) -> Decimal:
    """Yuan off ``total`` at ``percent``, rounded down to the fen."""
    return (total * percent / 100).quantize(CENT, rounding=ROUND_DOWN)


@dataclass(frozen=True)
class Quote:
    max_points: int  # the most points this member may use on this order
    value: Decimal  # what max_points pay, in yuan
    point_value: Decimal  # yuan per point
    balance: int  # the member's available points
    order_total: Decimal = Decimal(0)  # before the member discount
    discount_percent: Decimal = Decimal(0)
    member_discount: Decimal = Decimal(0)  # yuan off
    amount_due: Decimal = Decimal(0)  # order_total - member_discount: what points and money pay
    free_shipping: bool = False
    benefit_sources: tuple[str, ...] = ()


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


def checkout_quote(*, member: Member, order_total: Decimal | int | str, now: dt.datetime | None = None) -> Quote:
    """What ``member`` pays for an order of ``order_total`` yuan: the member discount taken
    off first (:func:`checkout_benefits`), then how many points may pay the rest and what
    they pay: the lesser of the available balance and the points worth the maximum share
    of the price after the discount. Refuses a bad amount (``invalid_amount``).
    """
    full = clean_money(order_total, field_name=_("Order total"))
    if full < 0:
        raise LoyaltyError("invalid_amount", _("The order total must not be negative."))
    benefits = checkout_benefits(member, now=now)
    discount = member_discount(full, benefits.discount_percent)
    total = full - discount
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
    return Quote(
        max_points=max_points,
        value=points_value(max_points),
        point_value=value_of_one,
        balance=balance,
        order_total=full,
        discount_percent=benefits.discount_percent,
        member_discount=discount,
        amount_due=total,
        free_shipping=benefits.free_shipping,
        benefit_sources=benefits.sources,
    )


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
    channel: str = Order.Channel.STORE,
) -> tuple[EarnResult, Decimal]:
    """Take the member discount off order ``number`` at ``store`` (``amount`` is the total
    before it), pay ``points`` towards the rest (none when 0) and record the order at the
    price after the discount, with the discount and the benefits used; returns its earn
    result and the yuan the points paid. ``channel`` is where it was placed
    (``Order.Channel``, passed to ``order_earn``; the store by default).

    The spend's idempotency key is the order's (``checkout:<store>:<number>``), so a till
    that resends the same checkout gets the first result and is not charged twice (the
    discount of the first checkout stays). Refuses more points than the quote allows
    (``points_over_limit``), points that pay nothing, and everything ``points_spend`` and
    ``order_earn`` refuse.
    """
    if isinstance(points, bool) or not isinstance(points, int) or points < 0:
        raise LoyaltyError("invalid_amount", _("The number of points must be a whole number, zero or more."))
    full = clean_money(amount, field_name=_("Order amount"))
    value = points_value(points)
    if points and value <= 0:
        raise LoyaltyError("points_too_few", _("These points are worth less than 0.01 yuan."))
    existing = Order.objects.filter(store=store, number=number, member=member).first()
    if existing is not None:
        # A resend: the discount is the one the first checkout took, whatever the tier is now.
        total = full - existing.member_discount
        quote = None
    else:
        quote = checkout_quote(member=member, order_total=full, now=now)
        total = quote.amount_due
    spend_key = f"checkout:{store.pk}:{number}"
    already = member.entries.filter(account__currency=Currency.POINTS, idempotency_key=spend_key).exists()
    limit = _setting("LOYALTY_MAX_DEDUCTION_SHARE") * total
    if quote is not None and not already and points and (points > quote.max_points or value > limit):
        raise LoyaltyError(
            "points_over_limit",
            _("At most %(max)s points can be used on this order.") % {"max": quote.max_points},
            max_points=quote.max_points,
        )
    spend = None
    if points:
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
        channel=channel,
    )
    if spend is not None and spend.replayed != result.replayed:
        # One half was recorded before without the other: the order number was used
        # for a plain order, or these points for another order.
        raise LoyaltyError(
            "order_number_taken",
            _("Order %(number)s was already recorded at this store with different details.") % {"number": number},
        )
    if not result.replayed and quote is not None and (quote.member_discount or quote.benefit_sources):
        Order.objects.filter(pk=result.order.pk).update(
            member_discount=quote.member_discount,
            benefits={
                "order_total": str(quote.order_total),
                "discount_percent": str(quote.discount_percent),
                "member_discount": str(quote.member_discount),
                "free_shipping": quote.free_shipping,
                "sources": list(quote.benefit_sources),
            },
        )
        result.order.refresh_from_db(fields=["member_discount", "benefits"])
    return result, value
