"""The demo brand's loyalty programme: tiers, their benefits and the earning rules."""

import datetime as dt
from decimal import Decimal

from loyalty.models import Benefit, EarnRule, Tier
from programme.demo import both

from .run import DemoRun

# Texts are (Chinese, English): the demo fills both languages (loyalty/translation.py).
TIERS = [
    # code, name, rank, growth to qualify, growth to keep, default
    ("regular", ("普卡会员", "Classic"), 0, 0, 0, True),
    ("silver", ("银卡会员", "Silver"), 1, 1000, 800, False),
    ("gold", ("金卡会员", "Gold"), 2, 3000, 2400, False),
    ("diamond", ("钻石会员", "Diamond"), 3, 8000, 6400, False),
]
BENEFITS = [
    ("silver", Benefit.Kind.EARN_MULTIPLIER, Decimal("1.2"), ("积分 1.2 倍", "1.2x points")),
    ("silver", Benefit.Kind.BIRTHDAY_POINTS, Decimal("100"), ("生日礼 100 积分", "100 birthday points")),
    ("gold", Benefit.Kind.EARN_MULTIPLIER, Decimal("1.5"), ("积分 1.5 倍", "1.5x points")),
    ("gold", Benefit.Kind.BIRTHDAY_POINTS, Decimal("300"), ("生日礼 300 积分", "300 birthday points")),
    ("gold", Benefit.Kind.DISCOUNT_PERCENT, Decimal("5"), ("全场 95 折", "5% off everything")),
    ("gold", Benefit.Kind.FREE_SHIPPING, Decimal("0"), ("线上订单免运费", "Free shipping on online orders")),
    ("diamond", Benefit.Kind.EARN_MULTIPLIER, Decimal("2"), ("积分 2 倍", "Double points")),
    ("diamond", Benefit.Kind.BIRTHDAY_POINTS, Decimal("800"), ("生日礼 800 积分", "800 birthday points")),
    ("diamond", Benefit.Kind.DISCOUNT_PERCENT, Decimal("10"), ("全场 9 折", "10% off everything")),
    ("diamond", Benefit.Kind.FREE_SHIPPING, Decimal("0"), ("线上订单免运费", "Free shipping on online orders")),
    (
        "diamond",
        Benefit.Kind.CUSTOM_TEXT,
        Decimal("0"),
        ("专属顾问与新品优先购", "A personal adviser and early access to new lines"),
    ),
]
RULES = [
    (("基础积分：每消费 1 元得 1 积分和 1 成长值", "Base rate: 1 point and 1 growth per yuan"),
     {"kind": EarnRule.Kind.BASE, "applies_to": EarnRule.Applies.BOTH, "value": Decimal("1"), "priority": 10}),
    (("周末双倍积分", "Double points at weekends"),
     {"kind": EarnRule.Kind.MULTIPLIER, "applies_to": EarnRule.Applies.POINTS,
      "value": Decimal("2"), "weekdays": "67", "cap_per_order": 500, "priority": 50}),
    (("生日月三倍积分", "Triple points in your birthday month"),
     {"kind": EarnRule.Kind.MULTIPLIER, "applies_to": EarnRule.Applies.POINTS,
      "value": Decimal("3"), "birthday_month_only": True, "cap_per_day": 1000, "priority": 60}),
    (("首单奖励 200 积分", "First order bonus: 200 points"),
     {"kind": EarnRule.Kind.BONUS, "applies_to": EarnRule.Applies.POINTS,
      "value": Decimal("200"), "first_purchase_only": True, "priority": 70}),
    (("注册礼 100 积分", "Welcome gift: 100 points"),
     {"kind": EarnRule.Kind.SIGNUP, "applies_to": EarnRule.Applies.POINTS, "value": Decimal("100"), "priority": 80}),
]  # fmt: skip


def programme_seed(run: DemoRun) -> None:
    """The demo brand's tiers, benefits and earning rules (configuration the admin edits)."""
    tiers = {}
    for code, name, rank, qualify, retain, default in TIERS:
        tiers[code], _created = Tier.objects.get_or_create(
            code=code,
            defaults={
                **both("name", name),
                "rank": rank,
                "qualify_threshold": qualify,
                "retain_threshold": retain,
                "is_default": default,
            },
        )
    for code, kind, value, title in BENEFITS:
        Benefit.objects.get_or_create(tier=tiers[code], kind=kind, defaults={"value": value, **both("title", title)})
    since = run.start - dt.timedelta(days=1)
    for name, fields in RULES:
        EarnRule.objects.get_or_create(
            name_zh_hans=name[0], defaults={"valid_from": since, **both("name", name), **fields}
        )
