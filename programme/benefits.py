"""What a paid membership gives while it is active, and how it combines with the tier's.

The free tiers (``loyalty``) and the paid plans are two ladders: a member holds one of
each. Where both give the same kind of benefit, ``PROGRAMME_MULTIPLIERS`` decides:
``best`` (default) the better one wins, ``multiply`` they multiply (a discount: the
second applies to the price after the first).
"""

import datetime as dt
from dataclasses import replace
from decimal import Decimal

from django.conf import settings

from members.models import Member

from .models import Badge, Membership, Plan

MULTIPLY = "multiply"
BEST = "best"


def membership_active(member_id: int, at: dt.datetime) -> Membership | None:
    """The member's membership if it is active at ``at``, with its plan (one query)."""
    return (
        Membership.objects.select_related("plan")
        .filter(member_id=member_id, status=Membership.Status.ACTIVE, started_at__lte=at, ends_at__gt=at)
        .first()
    )


def combine_multipliers(tier: tuple[Decimal, str] | None, paid: tuple[Decimal, str] | None):
    """The tier's and the plan's multipliers as one ``(value, title)``, by the setting."""
    if paid is None or paid[0] <= 1:
        return tier
    if tier is None or tier[0] <= 1:
        return paid
    if settings.PROGRAMME_MULTIPLIERS == MULTIPLY:
        return tier[0] * paid[0], f"{tier[1]} × {paid[1]}"
    return paid if paid[0] > tier[0] else tier


def combine_discounts(tier_percent: Decimal, paid_percent: Decimal) -> Decimal:
    """Percent off the price from the tier's and the plan's discounts, by the setting."""
    tier_percent, paid_percent = Decimal(tier_percent), Decimal(paid_percent)
    if settings.PROGRAMME_MULTIPLIERS == MULTIPLY:
        return (100 - (100 - tier_percent) * (100 - paid_percent) / 100).quantize(Decimal("0.01"))
    return max(tier_percent, paid_percent)


# Facts kept with loyalty's cached configuration (loyalty.configuration.Programme.extra).
PLANS_MULTIPLY = "programme.plans_multiply"
BADGES_ACTIVE = "programme.badges_active"


def plans_multiply() -> bool:
    """Whether any plan, on sale or not (memberships outlive a plan's sale), multiplies points."""
    return Plan.objects.filter(earn_multiplier__gt=1).exists()


def badges_active() -> bool:
    return Badge.objects.filter(is_active=True).exists()


def paid_earn_multiplier(*, member: Member, tier, now: dt.datetime, config=None):
    """The adjuster ``loyalty.multipliers`` calls for each order: the plan's multiplier, if
    the member's membership was active when the order happened, combined with the tier's.
    No query when the order's configuration says no plan multiplies points."""
    if config is not None and config.extra.get(PLANS_MULTIPLY) is False:
        return tier
    membership = membership_active(member.pk, now)
    if membership is None:
        return tier
    return combine_multipliers(tier, (membership.plan.earn_multiplier, membership.plan.name))


def paid_checkout_benefits(*, member: Member, benefits, now: dt.datetime):
    """The adjuster ``loyalty.checkout`` calls: the active plan's member price discount and
    free shipping joined with the tier's (discounts by :func:`combine_discounts`)."""
    membership = membership_active(member.pk, now)
    if membership is None:
        return benefits
    plan = membership.plan
    if not plan.discount_percent and not plan.free_shipping:
        return benefits
    source = f"plan:{plan.code}"
    percent = combine_discounts(benefits.discount_percent, plan.discount_percent or 0)
    return replace(
        benefits,
        discount_percent=min(percent, Decimal(100)),
        free_shipping=benefits.free_shipping or plan.free_shipping,
        sources=(*benefits.sources, source),
    )
