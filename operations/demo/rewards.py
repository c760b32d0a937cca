"""The demo's points mall (rewards.Reward) and the few members who redeemed from it today."""

import datetime as dt
from decimal import Decimal
from io import BytesIO

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image, ImageDraw

from loyalty.models import Tier
from members.models import Member
from rewards.models import Reward
from rewards.selectors import reward_offers
from rewards.services import reward_redeem

from .programme import both
from .run import DemoRun
from .stores import DEMO_STORE_CODES

# The points mall (rewards.Reward): code (image file), name and description (Chinese,
# English), points, cash,
# stock (None: unlimited), per-member limit, lowest tier code, days until available
# (a negative window end: ended), coupon kind, coupon value, coupon valid days, colour.
MALL = [
    ("coffee", ("咖啡券", "Coffee voucher"), ("门店任意一杯中杯咖啡。", "Any medium coffee in store."),
     500, "0", None, None, None, 0, "gift", "0", 30, (111, 78, 55)),
    ("sample-set", ("香氛小样套装", "Fragrance sample set"), ("五支 2ml 香氛小样。", "Five 2 ml fragrance samples."),
     800, "0", 200, 2, None, 0, "gift", "0", 30, (200, 150, 170)),
    ("ten-off", ("全场 9 折券", "10% off coupon"), ("单笔订单 9 折，14 天内有效。", "10% off one order, for 14 days."),
     300, "0", None, None, None, 0, "discount_percent", "10", 14, (220, 90, 60)),
    ("tote", ("帆布托特包", "Canvas tote bag"), ("品牌限定帆布包，每人限兑 1 个。", "Our canvas tote, one per member."),
     1500, "0", 50, 1, None, 0, "gift", "0", 60, (90, 120, 90)),
    ("voucher-50", ("50 元代金券", "¥50 voucher"), ("满 200 元可用。", "On orders of ¥200 or more."),
     5000, "0", None, 3, None, 0, "amount_off", "50", 30, (200, 60, 60)),
    ("voucher-100", ("100 元代金券", "¥100 voucher"), ("金卡及以上会员专享。", "For Gold members and above."),
     10000, "0", None, None, "gold", 0, "amount_off", "100", 30, (190, 150, 40)),
    ("tumbler", ("限量联名水杯", "Limited-edition tumbler"), ("积分 + 29 元换购，已兑完。", "Points + ¥29; sold out."),
     3000, "29.00", 0, 1, None, 0, "gift", "0", 30, (60, 110, 160)),
    ("cinema", ("电影票两张", "Two cinema tickets"), ("下周开放兑换。", "Opens next week."),
     2000, "0", 100, 2, None, 7, "gift", "0", 30, (70, 70, 110)),
]  # fmt: skip
DEMO_REDEMPTIONS = 6  # members who redeemed something recently, so "my coupons" has coupons


def rewards_mall_seed(run: DemoRun) -> None:
    """The demo's points mall: rewards with generated pictures, one sold out, one not open yet,
    one for gold members and above."""
    tiers = {tier.code: tier for tier in Tier.objects.all()}
    for position, row in enumerate(MALL, start=1):
        code, name, description, points, cash, stock, limit, tier, opens_in, kind, value, days, colour = row
        opens = run.end + dt.timedelta(days=opens_in) if opens_in > 0 else None
        Reward.objects.get_or_create(
            name_zh_hans=name[0],
            defaults={
                **both("name", name),
                **both("description", description),
                "image": _reward_image(code, colour),
                "points_cost": points,
                "cash_cost": Decimal(cash),
                "stock": stock,
                "per_member_limit": limit,
                "min_tier": tiers.get(tier) if tier else None,
                "available_from": opens,
                "sort_order": position * 10,
                "coupon_kind": kind,
                "coupon_value": Decimal(value),
                "coupon_valid_days": days,
            },
        )


def rewards_redeem_today(run: DemoRun, now: dt.datetime) -> None:
    """A few members redeem the best reward they may have, through the service, today."""
    run.counts["redemptions"] = 0
    members = Member.objects.filter(home_store__code__in=DEMO_STORE_CODES, status=Member.Status.ACTIVE)
    for member in members.order_by("id"):
        if run.counts["redemptions"] >= DEMO_REDEMPTIONS:
            return
        offers = [offer for offer in reward_offers(member=member, now=now) if offer.eligible]
        if not offers:
            continue
        best = max(offers, key=lambda offer: offer.reward.points_cost)
        reward_redeem(member=member, reward=best.reward, idempotency_key="demo-redeem", now=now)
        run.counts["redemptions"] += 1


def _reward_image(code: str, colour: tuple[int, int, int]) -> str:
    """A plain picture for a demo reward, drawn with Pillow into MEDIA_ROOT once; returns its name.

    Generated rather than committed: a coloured square with a lighter circle, the look of a
    product shot placeholder.
    """
    name = f"rewards/demo-{code}.png"
    if not default_storage.exists(name):
        image = Image.new("RGB", (480, 480), colour)
        light = tuple(min(255, c + 70) for c in colour)
        ImageDraw.Draw(image).ellipse((110, 110, 370, 370), fill=light)
        buffer = BytesIO()
        image.save(buffer, format="PNG")
        default_storage.save(name, ContentFile(buffer.getvalue()))
    return name
