"""The programme's part of the demo: a PLUS plan and a paying member, a transfer, badges,
contribution levels and a fan, and two partners (a car wash with a batch of codes, a
coffee chain with generated ones) with last month's and this month's settlement.

Everything goes through the services (the fake adapter's signed notification for the
payment). ``seed_demo`` runs it at its end (and ``manage.py seed_programme_demo`` on its own);
safe to run twice (it finds what it made by code and skips).
"""

import datetime as dt
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from loyalty.models import Account, Tier
from members.models import Member

from . import badges, contribution, partners, services, transfers
from .models import (
    Badge,
    Contribution,
    FanLevel,
    Membership,
    Partner,
    PartnerBenefit,
    PartnerEarn,
    PartnerOffer,
    PartnerVoucher,
    Plan,
    Transfer,
)


def both(field: str, texts: tuple[str, str]) -> dict[str, str]:
    """``field`` in both languages (modeltranslation's ``<field>_zh_hans`` and ``<field>_en``)."""
    chinese, english = texts
    return {field: chinese, f"{field}_zh_hans": chinese, f"{field}_en": english}


@transaction.atomic
def programme_demo_seed() -> dict:
    """Seed the demo; returns what it did. Needs at least three active members with points."""
    plan, _ = Plan.objects.get_or_create(
        code="plus",
        defaults={
            **both("name", ("PLUS", "PLUS")),
            **both(
                "description",
                (
                    "双倍积分，每月两张 10 元券，包邮，95 折。",
                    "Double points, two 10-yuan coupons every month, free shipping, 5% off.",
                ),
            ),
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
        ("first-order", ("首单", "First order"), Badge.Condition.ORDERS, 1, 20),
        ("ten-orders", ("常客", "Regular"), Badge.Condition.ORDERS, 10, 100),
        ("big-spender", ("消费达人", "Big spender"), Badge.Condition.SPEND, 2000, 200),
        ("week-streak", ("连续签到七天", "Seven days in a row"), Badge.Condition.CHECKIN_STREAK, 7, 50),
    ]:
        Badge.objects.get_or_create(
            code=code,
            defaults={
                **both("name", name),
                "condition": condition,
                "threshold": threshold,
                "points": points,
                "window_days": 365 if condition == Badge.Condition.SPEND else None,
            },
        )
    # One filter() for both account conditions: one join, the points account only (two
    # filter() calls joined the accounts twice and listed a member once per account).
    rich = list(
        Member.objects.filter(
            status=Member.Status.ACTIVE, erased_at__isnull=True, accounts__currency="points", accounts__balance__gte=300
        ).order_by("pk")[:3]
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
    # The nightly sweep's part, as if it had been running: everyone else's badges too.
    last = Member.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    done["badges"] += badges.badges_award_range(0, last + 1, now=timezone.now())
    for code, name, threshold in [
        ("friend", ("好友", "Friend"), 10),
        ("insider", ("知音", "Insider"), 50),
        ("ambassador", ("大使", "Ambassador"), 200),
    ]:
        FanLevel.objects.get_or_create(code=code, defaults={**both("name", name), "threshold": threshold})
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
    done["partner"] = _partners_seed(plan, rich)
    return done


def _partners_seed(plan: Plan, members: list[Member]) -> str:
    """A car wash (batch codes) and a coffee chain (generated codes); partner orders over
    last month and this one, vouchers redeemed today, benefits for Gold and for PLUS."""
    now = timezone.now()
    carwash, _ = Partner.objects.get_or_create(
        code="sparkle-wash",
        defaults={
            **both("name", ("闪亮洗车", "Sparkle Car Wash")),
            **both("description", ("为车主提供洗车和美容服务。", "Car wash and detailing for owners.")),
            "points_per_yuan": Decimal("1"),
            "issue_price": Decimal("0.006"),
            "redeem_price": Decimal("0.008"),
        },
    )
    coffee, _ = Partner.objects.get_or_create(
        code="daily-brew",
        defaults={
            **both("name", ("每日咖啡", "Daily Brew")),
            **both("description", ("现磨咖啡，车主专享价。", "Fresh coffee at an owners' price.")),
            "points_per_yuan": Decimal("0.5"),
            "issue_price": Decimal("0.005"),
            "redeem_price": Decimal("0.007"),
        },
    )
    wash, created = PartnerOffer.objects.get_or_create(
        partner=carwash,
        code_source=PartnerOffer.CodeSource.BATCH,
        defaults={
            **both("name", ("精洗一次", "One full wash")),
            **both("description", ("到店出示券码，精洗一次。", "Show the code at the car wash for one full wash.")),
            "points_cost": 800,
            "valid_days": 60,
        },
    )
    if created:
        partners.partner_codes_upload(offer=wash, codes=[f"SPK-{n:04d}" for n in range(1, 51)])
    latte, _ = PartnerOffer.objects.get_or_create(
        partner=coffee,
        defaults={
            **both("name", ("拿铁一杯", "One latte")),
            **both("description", ("任意门店兑换一杯中杯拿铁。", "One medium latte at any Daily Brew.")),
            "points_cost": 300,
            "valid_days": 30,
        },
    )
    gold = Tier.objects.filter(code="gold").first()
    if not PartnerBenefit.objects.filter(partner=carwash).exists():
        free_wash = PartnerBenefit.objects.create(
            partner=carwash,
            **both("title", ("每月免费洗车一次", "A free wash every month")),
            **both("description", ("出示会员码即可。", "Show your member code.")),
        )
        free_wash.plans.add(plan)
        if gold is not None:
            free_wash.tiers.add(gold)
        half_price = both("title", ("第二杯半价", "Second cup half price"))
        half_price = PartnerBenefit.objects.create(partner=coffee, **half_price)
        half_price.plans.add(plan)
    if PartnerEarn.objects.filter(partner=carwash).exists():
        return carwash.code
    last_month = (timezone.localtime(now).replace(day=1) - dt.timedelta(days=1)).replace(day=10, hour=11)
    this_month = timezone.localtime(now).replace(day=1, hour=9, minute=0)
    for n, member in enumerate(members):
        for k, (partner, when, amount) in enumerate(
            [
                (carwash, last_month, "88.00"),
                (carwash, last_month + dt.timedelta(days=7), "128.00"),
                (coffee, last_month + dt.timedelta(days=3), "36.00"),
                (carwash, this_month, "68.00"),
            ]
        ):
            partners.partner_earn(
                partner=partner,
                member=member,
                order_number=f"DEMO-{n}-{k}",
                amount=amount,
                occurred_at=min(when + dt.timedelta(hours=n), now),
                now=now,
            )
    for n, member in enumerate(members[:2]):
        for offer in (wash, latte):
            balance = Account.objects.get(member=member, currency="points").balance
            if balance >= offer.points_cost and not PartnerVoucher.objects.filter(member=member, offer=offer).exists():
                partners.partner_voucher_redeem(member=member, offer=offer, idempotency_key=f"demo-{offer.pk}-{n}")
    used = PartnerVoucher.objects.filter(partner=carwash, status=PartnerVoucher.Status.ISSUED).first()
    if used is not None:
        partners.partner_voucher_use(partner=carwash, code=used.code)
    return carwash.code
