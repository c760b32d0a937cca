"""The programme's part of the demo: a PLUS plan and a paying member, a transfer, badges,
contribution levels and a fan.

Everything goes through the services (the fake adapter's signed notification for the
payment). Run after ``seed_demo`` by ``manage.py seed_programme_demo``; safe to run
twice (it finds what it made by code and skips).
"""

from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from loyalty.models import Account
from members.models import Member

from . import badges, contribution, services, transfers
from .models import Badge, Contribution, FanLevel, Membership, Plan, Transfer


@transaction.atomic
def programme_demo_seed() -> dict:
    """Seed the demo; returns what it did. Needs at least three active members with points."""
    plan, _ = Plan.objects.get_or_create(
        code="plus",
        defaults={
            "name": "PLUS",
            "description": "Double points, two 10-yuan coupons every month, free shipping, 5% off.",
            "rank": 1,
            "price": Decimal("99.00"),
            "period": Plan.Period.YEAR,
            "trial_days": 7,
            "earn_multiplier": Decimal("2"),
            "monthly_coupon_count": 2,
            "monthly_coupon_value": Decimal("10"),
            "free_shipping": True,
            "discount_percent": Decimal("5"),
            "welcome_points": 500,
        },
    )
    for code, name, condition, threshold, points in [
        ("first-order", "First order", Badge.Condition.ORDERS, 1, 20),
        ("ten-orders", "Regular", Badge.Condition.ORDERS, 10, 100),
        ("big-spender", "Big spender", Badge.Condition.SPEND, 2000, 200),
        ("week-streak", "Seven days in a row", Badge.Condition.CHECKIN_STREAK, 7, 50),
    ]:
        Badge.objects.get_or_create(
            code=code,
            defaults={
                "name": name,
                "condition": condition,
                "threshold": threshold,
                "points": points,
                "window_days": 365 if condition == Badge.Condition.SPEND else None,
            },
        )
    rich = list(
        Member.objects.filter(status=Member.Status.ACTIVE, erased_at__isnull=True, accounts__currency="points")
        .filter(accounts__balance__gte=300)
        .order_by("pk")[:3]
    )
    done = {"plan": plan.code, "paying_member": None, "transfer": None, "badges": 0, "fan": None}
    if len(rich) < 3:
        return done
    payer, giver, receiver = rich
    if not Membership.objects.filter(member=payer).exists():
        checkout = services.plan_purchase_start(member=payer, plan=plan, auto_renew=True, consent=True)
        services.fake_payment_complete(order=checkout.order, member=payer)
    done["paying_member"] = payer.member_number
    if not Transfer.objects.filter(giver=giver).exists():
        balance = Account.objects.get(member=giver, currency="points").balance
        transfer = transfers.transfer_create(
            giver=giver, to=receiver.phone, points=min(200, balance), message="Happy birthday"
        )
        done["transfer"] = transfer.pk
    for member in rich:
        done["badges"] += len(badges.badges_evaluate(member=member, now=timezone.now()))
    for code, name, threshold in [
        ("friend", "Friend", 10),
        ("insider", "Insider", 50),
        ("ambassador", "Ambassador", 200),
    ]:
        FanLevel.objects.get_or_create(code=code, defaults={"name": name, "threshold": threshold})
    fan = (
        Member.objects.filter(status=Member.Status.ACTIVE, erased_at__isnull=True, orders__isnull=True)
        .order_by("pk")
        .first()
    )
    if fan is not None:
        contribution.contribution_add(
            member=fan, kind=Contribution.Kind.EVENT, amount=30, key="demo:owners-day", reason="Owners' day"
        )
        done["fan"] = fan.member_number
    return done
