"""Seed a realistic demo: three stores, ~200 members and 18 months of ledger history.

Every change goes through the services with ``now=`` set to when it happened, in
chronological order across all members, and the nightly release and expiry jobs run at
03:00 on every day of the history. So entries carry past dates, pending points were
released a week after their order, and lots older than the expiry policy really expired.

A fixed random seed makes the data the same on every run of the same day, shifted by a
day for each day later (member card numbers are drawn by ``member_create`` and differ). The whole run is one
transaction: a failure leaves nothing behind, and the marker that makes a second run a
no-op (the demo stores with members) exists only if the run completed.

The historical job runs are the real, global jobs: on a database that already holds other
members with unsettled lots, those would be settled with a past date too. The demo is
meant for a fresh database (``make run`` seeds right after ``migrate``).
"""

import datetime as dt
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.db.models import Count, Sum
from django.utils import timezone

from core.errors import LoyaltyError
from loyalty import services
from loyalty.models import Account, Benefit, Currency, EarnRule, LedgerEntry, Lot, Order, Refund, Tier
from loyalty.policies import expiry_policy
from loyalty.services import OrderLineInput
from loyalty.tiers import tiers_sweep
from members import services as member_services
from members.models import Member, Store
from operations import actions
from operations.lifecycle import members_refresh_profiles
from rewards.models import Reward
from rewards.selectors import reward_offers
from rewards.services import reward_redeem

SEED = 20240601
HISTORY_DAYS = 548  # 18 months
CENT = Decimal("0.01")
DEMO_STAFF_USERNAME = "demo-ops"
# Points needed to pay one yuan of an order with points (a demo convention, not a setting).
POINTS_PER_YUAN_PAID = 100

STORES = [
    # code, name, city, address, order-number prefix, share of members at home there
    ("sh-jingan", "上海静安店", "上海", "上海市静安区南京西路 1266 号 2 楼", "SHJA", 45),
    ("bj-sanlitun", "北京三里屯店", "北京", "北京市朝阳区三里屯路 19 号院 3 号楼", "BJSL", 30),
    ("gz-tianhe", "广州天河店", "广州", "广州市天河区天河路 208 号 1 楼", "GZTH", 25),
]
DEMO_STORE_CODES = [code for code, *_rest in STORES]

TIERS = [
    # code, name, rank, growth to qualify, growth to keep, default
    ("regular", "普卡会员", 0, 0, 0, True),
    ("silver", "银卡会员", 1, 1000, 800, False),
    ("gold", "金卡会员", 2, 3000, 2400, False),
    ("diamond", "钻石会员", 3, 8000, 6400, False),
]
BENEFITS = [
    ("silver", Benefit.Kind.EARN_MULTIPLIER, Decimal("1.2"), "积分 1.2 倍"),
    ("silver", Benefit.Kind.BIRTHDAY_POINTS, Decimal("100"), "生日礼 100 积分"),
    ("gold", Benefit.Kind.EARN_MULTIPLIER, Decimal("1.5"), "积分 1.5 倍"),
    ("gold", Benefit.Kind.BIRTHDAY_POINTS, Decimal("300"), "生日礼 300 积分"),
    ("gold", Benefit.Kind.DISCOUNT_PERCENT, Decimal("5"), "全场 95 折"),
    ("gold", Benefit.Kind.FREE_SHIPPING, Decimal("0"), "线上订单免运费"),
    ("diamond", Benefit.Kind.EARN_MULTIPLIER, Decimal("2"), "积分 2 倍"),
    ("diamond", Benefit.Kind.BIRTHDAY_POINTS, Decimal("800"), "生日礼 800 积分"),
    ("diamond", Benefit.Kind.DISCOUNT_PERCENT, Decimal("10"), "全场 9 折"),
    ("diamond", Benefit.Kind.FREE_SHIPPING, Decimal("0"), "线上订单免运费"),
    ("diamond", Benefit.Kind.CUSTOM_TEXT, Decimal("0"), "专属顾问与新品优先购"),
]
RULES = [
    ("基础积分：每消费 1 元得 1 积分和 1 成长值",
     {"kind": EarnRule.Kind.BASE, "applies_to": EarnRule.Applies.BOTH, "value": Decimal("1"), "priority": 10}),
    ("周末双倍积分", {"kind": EarnRule.Kind.MULTIPLIER, "applies_to": EarnRule.Applies.POINTS,
                    "value": Decimal("2"), "weekdays": "67", "cap_per_order": 500, "priority": 50}),
    ("生日月三倍积分", {"kind": EarnRule.Kind.MULTIPLIER, "applies_to": EarnRule.Applies.POINTS,
                     "value": Decimal("3"), "birthday_month_only": True, "cap_per_day": 1000, "priority": 60}),
    ("首单奖励 200 积分", {"kind": EarnRule.Kind.BONUS, "applies_to": EarnRule.Applies.POINTS,
                       "value": Decimal("200"), "first_purchase_only": True, "priority": 70}),
    ("注册礼 100 积分", {"kind": EarnRule.Kind.SIGNUP, "applies_to": EarnRule.Applies.POINTS,
                     "value": Decimal("100"), "priority": 80}),
]  # fmt: skip

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高郑梁谢宋唐许韩冯邓曹彭曾肖田董潘袁蔡蒋余于杜叶程魏苏吕丁沈"
FEMALE_GIVEN = [
    "婷", "静", "丽", "娜", "敏", "雪", "芳", "颖", "琳", "悦", "慧", "欣怡", "思琪", "雨涵", "梓涵",
    "佳怡", "晓燕", "诗雨", "可馨", "美玲", "子萱", "若曦", "梦瑶", "晨曦", "嘉欣",
]  # fmt: skip
MALE_GIVEN = [
    "伟", "强", "磊", "军", "洋", "勇", "杰", "涛", "鹏", "晨", "昊", "浩然", "子轩", "宇航", "俊杰",
    "志强", "建华", "文博", "嘉豪", "天佑", "明轩", "思远", "一鸣", "家乐", "博文",
]  # fmt: skip
EMAIL_HANDLES = ["lily", "tony", "xiaoyu", "chenchen", "kevin", "amy", "sunny", "echo", "leo", "mia", "jason", "coco"]
MOBILE_PREFIXES = ["130", "131", "135", "136", "137", "138", "139", "150", "151", "158", "159", "186", "188", "189"]

# category -> (share of order lines, products as (SKU, name, unit price in yuan))
CATALOGUE = {
    "服饰": (40, [
        ("AP-1001", "纯棉圆领 T 恤", "129.00"),
        ("AP-1002", "修身牛仔裤", "399.00"),
        ("AP-1003", "针织开衫", "459.00"),
        ("AP-1004", "羊毛双面大衣", "1899.00"),
        ("AP-1005", "碎花连衣裙", "599.00"),
        ("AP-1006", "牛津纺衬衫", "299.00"),
        ("AP-1007", "连帽卫衣", "359.00"),
        ("AP-1008", "轻薄羽绒服", "899.00"),
    ]),
    "鞋履": (20, [
        ("SH-2001", "复古跑鞋", "799.00"),
        ("SH-2002", "帆布鞋", "299.00"),
        ("SH-2003", "乐福鞋", "899.00"),
        ("SH-2004", "切尔西短靴", "1199.00"),
        ("SH-2005", "一字带凉鞋", "459.00"),
    ]),
    "配饰": (20, [
        ("AC-3001", "棒球帽", "159.00"),
        ("AC-3002", "羊绒围巾", "499.00"),
        ("AC-3003", "真皮腰带", "329.00"),
        ("AC-3004", "帆布托特包", "259.00"),
        ("AC-3005", "牛皮短款钱包", "529.00"),
        ("AC-3006", "偏光太阳镜", "699.00"),
        ("AC-3007", "棉质袜子三双装", "79.00"),
    ]),
    "美妆": (20, [
        ("BE-4001", "丝绒哑光口红", "320.00"),
        ("BE-4002", "持妆粉底液", "480.00"),
        ("BE-4003", "修护面霜 50ml", "760.00"),
        ("BE-4004", "木质调淡香水 50ml", "980.00"),
        ("BE-4005", "温和卸妆油", "260.00"),
        ("BE-4006", "保湿精华水", "390.00"),
    ]),
}  # fmt: skip
REWARDS = [
    ("兑换: 咖啡券", 500),
    ("兑换: 香氛小样套装", 800),
    ("兑换: 帆布托特包", 1500),
    ("兑换: 电影票两张", 2000),
    ("兑换: 50 元代金券", 5000),
    ("兑换: 100 元代金券", 10000),
]
REFUND_REASONS = ["尺码不合适", "颜色与预期不符", "质量问题: 开线", "重复购买", "七天无理由退货"]
# The points mall (rewards.Reward): code (image file), name, description, points, cash,
# stock (None: unlimited), per-member limit, lowest tier code, days until available
# (a negative window end: ended), coupon kind, coupon value, coupon valid days, colour.
MALL = [
    ("coffee", "咖啡券 Coffee voucher", "门店任意一杯中杯咖啡。Any medium coffee in store.",
     500, "0", None, None, None, 0, "gift", "0", 30, (111, 78, 55)),
    ("sample-set", "香氛小样套装 Fragrance sample set", "五支 2ml 香氛小样。Five 2 ml fragrance samples.",
     800, "0", 200, 2, None, 0, "gift", "0", 30, (200, 150, 170)),
    ("ten-off", "全场 9 折券 10 percent off", "单笔订单 9 折，14 天内有效。10 percent off one order.",
     300, "0", None, None, None, 0, "discount_percent", "10", 14, (220, 90, 60)),
    ("tote", "帆布托特包 Canvas tote bag", "品牌限定帆布包，每人限兑 1 个。One per member.",
     1500, "0", 50, 1, None, 0, "gift", "0", 60, (90, 120, 90)),
    ("voucher-50", "50 元代金券 50 yuan voucher", "满 200 元可用。On orders of 200 yuan or more.",
     5000, "0", None, 3, None, 0, "amount_off", "50", 30, (200, 60, 60)),
    ("voucher-100", "100 元代金券 100 yuan voucher", "金卡及以上会员专享。Gold members and above.",
     10000, "0", None, None, "gold", 0, "amount_off", "100", 30, (190, 150, 40)),
    ("tumbler", "限量联名水杯 Limited tumbler", "积分 + 29 元换购，已兑完。Points plus 29 yuan; sold out.",
     3000, "29.00", 0, 1, None, 0, "gift", "0", 30, (60, 110, 160)),
    ("cinema", "电影票两张 Two cinema tickets", "下周开放兑换。Opens next week.",
     2000, "0", 100, 2, None, 7, "gift", "0", 30, (70, 70, 110)),
]  # fmt: skip
DEMO_REDEMPTIONS = 6  # members who redeemed something recently, so "my coupons" has coupons

# Members given a role keep a situation the demo must show, whatever the random draw.
EXPIRED, EXPIRING, PENDING = "expired", "expiring", "pending"
ROLES = {0: EXPIRED, 1: EXPIRING, 2: PENDING}  # by member index modulo 20
# One member (this index) stopped coming about this many days ago and consented to WeChat
# marketing: the nightly lifecycle run finds them dormant and the win-back journey gives
# them its coupon (docs/journeys.md).
DORMANT, DORMANT_INDEX, DORMANT_DAYS_AGO = "dormant", 3, 120
STAGE_HISTORY_DAYS = 45


@dataclass
class MemberPlan:
    index: int
    phone: str
    name: str
    gender: str
    birthday: dt.date | None
    email: str
    home_store: str
    joined_at: dt.datetime
    consents: tuple[str, ...]
    role: str = ""
    may_spend: bool = True
    frozen: bool = False
    member: Member | None = None


@dataclass
class OrderPlan:
    plan: MemberPlan
    store: str
    occurred_at: dt.datetime
    lines: list[OrderLineInput]
    pay_with_points: bool = False
    order: Order | None = None
    refunds: list[tuple[dt.datetime, Decimal | None, str]] = field(default_factory=list)  # None: the rest

    @property
    def amount(self) -> Decimal:
        return sum((line.amount for line in self.lines), Decimal("0.00"))


@dataclass(order=True)
class Event:
    at: dt.datetime
    seq: int
    action: Callable[[dt.datetime], None] = field(compare=False)


class Command(BaseCommand):
    help = (
        "Seed demo stores, members and 18 months of orders, refunds, spends and adjustments through the "
        "services, dated in the past. Does nothing when the demo is already there. Development only."
    )

    def add_arguments(self, parser):
        parser.add_argument("--members", type=int, default=200, help="How many members to seed (at least 3).")
        parser.add_argument("--seed", type=int, default=SEED, help="Random seed (the default is fixed).")

    def handle(self, *args, members: int, seed: int, **options):
        if settings.PRODUCTION:
            raise CommandError(
                "seed_demo writes made-up members and orders; it refuses to run when DJANGO_ENV=production."
            )
        if members < 3:
            raise CommandError("--members must be at least 3 to show pending, expiring and expired points.")
        if Member.objects.filter(home_store__code__in=DEMO_STORE_CODES).exists():
            self.stdout.write("demo data already present; nothing to do.")
            return

        started = time.monotonic()
        self.rng = random.Random(seed)
        # The history ends at midnight: the plan, drawn relative to it, is the same all day.
        self.end = timezone.localtime(timezone.now()).replace(hour=0, minute=0, second=0, microsecond=0)
        self.start = self.end - dt.timedelta(days=HISTORY_DAYS)
        self.counts = {"members": 0, "orders": 0, "spends": 0, "adjustments": 0}
        self.order_numbers: dict[str, int] = {}
        self.dormant_plan: MemberPlan | None = None
        with transaction.atomic():
            self.stores = self._stores()
            self.staff = self._staff_user()
            self._programme()
            self._rewards_mall()
            events = self._plan(members)
            for event in sorted(events):
                event.action(event.at)
            final = timezone.now()
            services.lots_release_matured(now=final)
            services.lots_expire_due(now=final)
            self._demo_redemptions(final)
        # Lifecycle stages as they stood STAGE_HISTORY_DAYS ago: the next nightly refresh
        # then records who moved since (the dormant member among them), as in a running
        # programme, instead of a first refresh where every stage is new.
        members_refresh_profiles(now=self.end - dt.timedelta(days=STAGE_HISTORY_DAYS))
        self._summary(time.monotonic() - started, final)

    # --- fixed rows ----------------------------------------------------------------------

    def _stores(self) -> dict[str, Store]:
        # There is no store service yet: stores are reference data the admin edits directly.
        stores = {}
        for code, name, city, address, _prefix, _share in STORES:
            stores[code], _created = Store.objects.get_or_create(
                code=code, defaults={"name": name, "city": city, "address": address, "created_at": self.start}
            )
        return stores

    def _programme(self) -> None:
        """The demo brand's tiers, benefits and earning rules (configuration the admin edits)."""
        tiers = {}
        for code, name, rank, qualify, retain, default in TIERS:
            tiers[code], _created = Tier.objects.get_or_create(
                code=code,
                defaults={
                    "name": name,
                    "rank": rank,
                    "qualify_threshold": qualify,
                    "retain_threshold": retain,
                    "is_default": default,
                },
            )
        for code, kind, value, title in BENEFITS:
            Benefit.objects.get_or_create(tier=tiers[code], kind=kind, defaults={"value": value, "title": title})
        since = self.start - dt.timedelta(days=1)
        for name, fields in RULES:
            EarnRule.objects.get_or_create(name=name, defaults={"valid_from": since, **fields})

    def _staff_user(self):
        user, created = get_user_model().objects.get_or_create(
            username=DEMO_STAFF_USERNAME,
            defaults={"first_name": "演示", "last_name": "运营", "is_staff": True, "email": "demo-ops@example.com"},
        )
        if created:
            # Attributes the demo's adjustments; nobody signs in as this user.
            user.set_unusable_password()
            user.save(update_fields=["password"])
            user.user_permissions.add(
                Permission.objects.get(codename="adjust_points", content_type__app_label="loyalty")
            )
        return user

    # --- the rewards mall ------------------------------------------------------------------

    def _rewards_mall(self) -> None:
        """The demo's points mall: rewards with generated pictures, one sold out, one not open yet,
        one for gold members and above."""
        tiers = {tier.code: tier for tier in Tier.objects.all()}
        for position, row in enumerate(MALL, start=1):
            code, name, description, points, cash, stock, limit, tier, opens_in, kind, value, days, colour = row
            opens = self.end + dt.timedelta(days=opens_in) if opens_in > 0 else None
            Reward.objects.get_or_create(
                name=name,
                defaults={
                    "description": description,
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

    def _demo_redemptions(self, now: dt.datetime) -> None:
        """A few members redeem the best reward they may have, through the service, today."""
        self.counts["redemptions"] = 0
        members = Member.objects.filter(home_store__code__in=DEMO_STORE_CODES, status=Member.Status.ACTIVE)
        for member in members.order_by("id"):
            if self.counts["redemptions"] >= DEMO_REDEMPTIONS:
                return
            offers = [offer for offer in reward_offers(member=member, now=now) if offer.eligible]
            if not offers:
                continue
            best = max(offers, key=lambda offer: offer.reward.points_cost)
            reward_redeem(member=member, reward=best.reward, idempotency_key="demo-redeem", now=now)
            self.counts["redemptions"] += 1

    # --- planning: everything random is drawn here, before any write ---------------------

    def _plan(self, n_members: int) -> list[Event]:
        rng = self.rng
        events: list[Event] = []

        def add(at: dt.datetime, action: Callable[[dt.datetime], None]) -> None:
            events.append(Event(at, len(events), action))

        expired_days, expiring_days = self._role_days()
        taken_phones = set(Member.objects.values_list("phone", flat=True))
        plans = [self._member_plan(i, taken_phones) for i in range(n_members)]
        if len(plans) > DORMANT_INDEX:
            dormant = plans[DORMANT_INDEX]
            dormant.role = DORMANT
            self.dormant_plan = dormant
            dormant.consents = tuple(sorted({*dormant.consents, "wechat"}))
        regular = [p for p in plans if not p.role]
        long_standing = [p for p in regular if p.joined_at < self.end - dt.timedelta(days=150)]
        for plan in rng.sample(long_standing, k=min(len(long_standing), max(1, n_members * 3 // 100))):
            plan.frozen = True

        for plan in plans:
            hi = self.end - dt.timedelta(hours=1)  # the latest any order of this member may happen
            anchor = None  # the order that puts the member in their role's situation
            if plan.frozen:
                hi = self.end - dt.timedelta(days=90)  # went quiet, then was frozen
            elif plan.role == EXPIRED and expired_days:
                # A customer who stopped coming: everything they earned has run out.
                hi = expired_days[0] + dt.timedelta(hours=10)
                plan.joined_at = self._shop_time(self.start, min(hi, self.start + dt.timedelta(days=60)))
                anchor = self._shop_time(plan.joined_at + dt.timedelta(hours=1), hi)
            elif plan.role == EXPIRING and len(expiring_days) >= 2:
                plan.joined_at = self._shop_time(self.start, expiring_days[-1] - dt.timedelta(days=10))
                anchor = self._shop_time(*sorted(rng.sample(expiring_days, 2)))
            elif plan.role == DORMANT:
                # Their last order was about DORMANT_DAYS_AGO days ago, nothing since.
                hi = self.end - dt.timedelta(days=DORMANT_DAYS_AGO)
                if plan.joined_at > hi - dt.timedelta(days=60):
                    plan.joined_at = self._shop_time(self.start, hi - dt.timedelta(days=60))
                anchor = self._shop_time(hi - dt.timedelta(days=1), hi)
            elif plan.role == PENDING and settings.LOYALTY_PENDING_DAYS > 1:
                # Still pending tomorrow, so still pending whenever today the seed runs.
                lo = self.end - dt.timedelta(days=settings.LOYALTY_PENDING_DAYS - 1)
                anchor = self._shop_time(max(plan.joined_at, lo), hi)
            if plan.role in (EXPIRED, EXPIRING):
                plan.may_spend = False  # spending would eat the very lots they must keep
            add(plan.joined_at, lambda at, plan=plan: self._join(plan))

            orders = self._order_plans(plan, hi)
            for order_plan in orders:
                self._maybe_refund(order_plan, hi)
            if anchor is not None:
                orders.append(self._order_plan(plan, anchor))  # never refunded
            for order_plan in orders:
                add(order_plan.occurred_at, lambda at, o=order_plan: self._earn(o, at))
                for refund_at, amount, reason in order_plan.refunds:
                    add(refund_at, lambda at, o=order_plan, a=amount, r=reason: self._refund(o, a, r, at))

            if plan.may_spend and plan.joined_at + dt.timedelta(days=30) < hi:
                for k in range(self._redemption_count(len(orders))):
                    add(self._between(plan.joined_at + dt.timedelta(days=30), hi), self._redeem_action(plan, k))
            if plan.frozen:
                frozen_at = self._between(hi + dt.timedelta(days=35), self.end - dt.timedelta(days=1))
                add(frozen_at, self._freeze_action(plan))

        self._plan_adjustments([p for p in regular if not p.frozen], add)
        day = self.start.replace(hour=3, minute=0, second=0) + dt.timedelta(days=1)
        while day < self.end:
            add(day, self._nightly_jobs)
            day += dt.timedelta(days=1)
        return events

    def _role_days(self) -> tuple[list[dt.datetime], list[dt.datetime]]:
        """Noons, newest first, on which earned points are long expired / expire in 3 to 28 days.

        Asked of the expiry policy in the settings, so the roles hold whatever it is (and are
        left out when it never expires).
        """
        policy = expiry_policy(Currency.POINTS)
        expired, expiring = [], []
        for days_back in range(1, HISTORY_DAYS - 2):
            noon = (self.end - dt.timedelta(days=days_back)).replace(hour=12, minute=0, second=0)
            expires = policy.expires_at(noon)
            if expires is None:
                continue
            if expires < self.end - dt.timedelta(days=30):
                expired.append(noon)
            elif self.end + dt.timedelta(days=3) < expires < self.end + dt.timedelta(days=28):
                expiring.append(noon)
        return expired, expiring

    def _member_plan(self, index: int, taken_phones: set[str]) -> MemberPlan:
        rng = self.rng
        phone = ""
        while not phone or phone in taken_phones:
            phone = "+86" + rng.choice(MOBILE_PREFIXES) + f"{rng.randrange(10**8):08d}"
        taken_phones.add(phone)
        gender = rng.choices([Member.Gender.FEMALE, Member.Gender.MALE, Member.Gender.UNKNOWN], [60, 35, 5])[0]
        given = {Member.Gender.FEMALE: FEMALE_GIVEN, Member.Gender.MALE: MALE_GIVEN}.get(gender)
        given = given or rng.choice([MALE_GIVEN, FEMALE_GIVEN])
        birthday = None
        if rng.random() < 0.85:
            birthday = dt.date(rng.randint(1968, 2004), 1, 1) + dt.timedelta(days=rng.randrange(365))
        email = f"{rng.choice(EMAIL_HANDLES)}{rng.randint(1, 999)}@example.com" if rng.random() < 0.4 else ""
        consents = tuple(
            channel
            for channel, chance in (("sms", 0.35), ("wechat", 0.45), ("email", 0.5 if email else 0))
            if rng.random() < chance
        )
        home = rng.choices(DEMO_STORE_CODES, [share for *_rest, share in STORES])[0]
        # More members joined early on: the programme was busiest at launch.
        span = (self.end - dt.timedelta(days=3)) - self.start
        return MemberPlan(
            index=index,
            phone=phone,
            name=rng.choice(SURNAMES) + rng.choice(given),
            gender=gender,
            birthday=birthday,
            email=email,
            home_store=home,
            joined_at=self._shop_time(self.start + span * rng.random() ** 1.4),
            consents=consents,
            role=ROLES.get(index % 20, ""),
        )

    def _order_plans(self, plan: MemberPlan, hi: dt.datetime) -> list[OrderPlan]:
        rng = self.rng
        if plan.joined_at >= hi:
            return []
        # Orders a year: one-off buyers, occasional, regular and VIP customers.
        per_year = rng.choices([0, 3, 8, 20], [30, 40, 22, 8])[0]
        years = (hi - plan.joined_at) / dt.timedelta(days=365)
        count = max(1, round(per_year * years * rng.uniform(0.6, 1.4)))
        orders = []
        if rng.random() < 0.7:  # signed up at the till while paying
            orders.append(self._order_plan(plan, plan.joined_at + dt.timedelta(minutes=rng.randint(2, 15))))
            count -= 1
        orders += [self._order_plan(plan, self._shop_time(plan.joined_at, hi)) for _k in range(count)]
        orders.sort(key=lambda o: o.occurred_at)
        if plan.may_spend:
            for order_plan in orders[1:]:
                order_plan.pay_with_points = rng.random() < 0.12
        return orders

    def _order_plan(self, plan: MemberPlan, at: dt.datetime) -> OrderPlan:
        rng = self.rng
        store = plan.home_store if rng.random() < 0.85 else rng.choice(DEMO_STORE_CODES)
        categories = list(CATALOGUE)
        weights = [CATALOGUE[c][0] for c in categories]
        lines = []
        for _k in range(rng.choices([1, 2, 3, 4], [55, 28, 12, 5])[0]):
            category = rng.choices(categories, weights)[0]
            sku, name, price = rng.choice(CATALOGUE[category][1])
            price = Decimal(price)
            quantity = rng.choices([1, 2, 3], [85, 12, 3])[0] if price < 300 else 1
            discount = rng.choice([Decimal("1")] * 6 + [Decimal("0.8"), Decimal("0.7")])  # promotions
            amount = (price * quantity * discount).quantize(CENT, rounding=ROUND_HALF_UP)
            lines.append(OrderLineInput(sku=sku, name=name, category=category, quantity=quantity, amount=amount))
        return OrderPlan(plan=plan, store=store, occurred_at=at, lines=lines)

    def _maybe_refund(self, order_plan: OrderPlan, hi: dt.datetime) -> None:
        """About 7% of orders come back: mostly inside the return window, some later as a goodwill return."""
        rng = self.rng
        if order_plan.pay_with_points or rng.random() >= 0.07:
            return
        window = settings.LOYALTY_PENDING_DAYS
        if window >= 1 and rng.random() < 0.6:
            after = dt.timedelta(days=rng.uniform(0.2, window - 0.2))
        else:
            after = dt.timedelta(days=rng.uniform(window + 1, window + 30))
        at = self._shop_time(order_plan.occurred_at + after)
        if at >= min(hi, self.end - dt.timedelta(minutes=10)):
            return
        reason = rng.choice(REFUND_REASONS)
        if len(order_plan.lines) > 1 and rng.random() < 0.7:
            order_plan.refunds.append((at, order_plan.lines[-1].amount, reason))  # one item back
            if rng.random() < 0.3 and at + dt.timedelta(days=2) < min(hi, self.end):
                # and the rest of the order two days later
                order_plan.refunds.append((at + dt.timedelta(days=2), None, rng.choice(REFUND_REASONS)))
        else:
            order_plan.refunds.append((at, None, reason))

    def _redemption_count(self, orders: int) -> int:
        if orders >= 13:
            return self.rng.randint(2, 4)
        if orders >= 6:
            return self.rng.randint(1, 2)
        return 1 if orders >= 2 and self.rng.random() < 0.3 else 0

    def _plan_adjustments(self, candidates: list[MemberPlan], add) -> None:
        rng = self.rng
        candidates = [p for p in candidates if p.joined_at < self.end - dt.timedelta(days=40)]
        if len(candidates) < 3:
            return
        first, second, third = rng.sample(candidates, 3)

        def some_time(plan: MemberPlan) -> dt.datetime:
            return self._shop_time(plan.joined_at + dt.timedelta(days=30), self.end - dt.timedelta(days=3))

        # A till receipt keyed in twice by mistake, corrected the next day.
        at = some_time(first)
        receipt = f"{self._prefix(first.home_store)}-{at:%y%m%d}-Z{rng.randint(100, 999)}"
        reason = f"补录积分: 线下小票 {receipt} 未积分"
        add(at, self._adjust_action(first, Currency.POINTS, 150, reason, "0"))
        add(at + dt.timedelta(minutes=4), self._adjust_action(first, Currency.POINTS, 150, reason, "1"))
        correction = f"更正: 小票 {receipt} 重复补录"
        add(at + dt.timedelta(days=1), self._adjust_action(first, Currency.POINTS, -150, correction, "2"))
        add(some_time(second), self._adjust_action(second, Currency.POINTS, 500, "客诉补偿: 商品延迟到店", "0"))
        add(some_time(third), self._adjust_action(third, Currency.GROWTH, 300, "活动补发: 会员日双倍成长值", "0"))

    # --- time helpers ----------------------------------------------------------------------

    def _between(self, lo: dt.datetime, hi: dt.datetime) -> dt.datetime:
        return (lo + (hi - lo) * self.rng.random()).replace(microsecond=0)

    def _shop_time(self, lo: dt.datetime, hi: dt.datetime | None = None) -> dt.datetime:
        """A time between ``lo`` and ``hi`` (default: a day later) when the stores are open, 10:00-22:00."""
        hi = hi or lo + dt.timedelta(days=1)
        for _attempt in range(20):
            day = timezone.localtime(self._between(lo, hi))
            hour, minute, second = self.rng.randint(10, 21), self.rng.randrange(60), self.rng.randrange(60)
            at = day.replace(hour=hour, minute=minute, second=second)
            if lo <= at <= hi:
                return at
        return self._between(lo, hi)

    @staticmethod
    def _prefix(store_code: str) -> str:
        return next(prefix for code, _name, _city, _address, prefix, _share in STORES if code == store_code)

    # --- actions, run in chronological order; each gets the time it happens ----------------

    def _join(self, plan: MemberPlan) -> None:
        plan.member = actions.member_create(
            phone=plan.phone,
            name=plan.name,
            gender=plan.gender,
            birthday=plan.birthday,
            email=plan.email,
            home_store=self.stores[plan.home_store],
            joined_at=plan.joined_at,
            consents=plan.consents,
            source="api",
        )
        self.counts["members"] += 1
        if self.counts["members"] % 50 == 0:
            self.stdout.write(
                f"  {self.counts['members']} members, {self.counts['orders']} orders "
                f"(history at {timezone.localtime(plan.joined_at):%Y-%m-%d})"
            )

    def _earn(self, order_plan: OrderPlan, at: dt.datetime) -> None:
        store = self.stores[order_plan.store]
        serial = self.order_numbers[store.code] = self.order_numbers.get(store.code, 0) + 1
        number = f"{self._prefix(store.code)}-{timezone.localtime(at):%y%m%d}-{serial:05d}"
        member = order_plan.plan.member
        paid_with_points = Decimal("0.00")
        if order_plan.pay_with_points:
            paid_with_points = self._pay_with_points(member, store, number, order_plan.amount, at)
        order_plan.order = services.order_earn(
            member=member,
            store=store,
            number=number,
            amount=order_plan.amount,
            points_paid_amount=paid_with_points,
            occurred_at=at,
            lines=order_plan.lines,
            now=at + dt.timedelta(seconds=self.rng.randint(3, 90)),  # the till posts a moment later
        ).order
        self.counts["orders"] += 1

    def _pay_with_points(self, member: Member, store: Store, number: str, amount: Decimal, at) -> Decimal:
        """Spend points for up to 30% of the order (whole yuan, at most 100) when the member has enough."""
        yuan = min(self._balance(member) // POINTS_PER_YUAN_PAID, int(amount * Decimal("0.3")), 100)
        if yuan < 10:
            return Decimal("0.00")
        spent = self._spend(
            member,
            amount=yuan * POINTS_PER_YUAN_PAID,
            idempotency_key=f"order-pay:{store.pk}:{number}",
            reason=f"积分抵现: 订单 {number}",
            store=store,
            detail={"order": number, "yuan": yuan},
            now=at,
        )
        return Decimal(yuan).quantize(CENT) if spent else Decimal("0.00")

    def _refund(self, order_plan: OrderPlan, amount: Decimal | None, reason: str, at: dt.datetime) -> None:
        order = order_plan.order
        if order is None:
            return
        order.refresh_from_db(fields=["refunded_amount"])
        rest = order.amount - order.refunded_amount
        if rest <= 0:
            return
        services.order_refund(
            order=order,
            amount=rest if amount is None else min(amount, rest),
            number=f"{order.number}-R{order.refunds.count() + 1}",
            reason=reason,
            now=at,
        )

    def _redeem_action(self, plan: MemberPlan, k: int) -> Callable[[dt.datetime], None]:
        def run(at: dt.datetime) -> None:
            balance = self._balance(plan.member)
            affordable = [reward for reward in REWARDS if reward[1] <= balance]
            if not affordable:
                return
            reason, cost = self.rng.choice(affordable[-3:])  # the better rewards they can afford
            self._spend(
                plan.member,
                amount=cost,
                idempotency_key=f"demo-redeem:{plan.index}:{k}",
                reason=reason,
                store=self.stores[plan.home_store],
                detail={"reward": reason.removeprefix("兑换: ")},
                now=at,
            )

        return run

    def _adjust_action(self, plan: MemberPlan, currency: str, amount: int, reason: str, key: str):
        def run(at: dt.datetime) -> None:
            try:
                services.points_adjust(
                    member=plan.member,
                    currency=currency,
                    amount=amount,
                    reason=reason,
                    actor=self.staff,
                    idempotency_key=f"demo-adjust:{plan.index}:{key}",
                    now=at,
                )
            except LoyaltyError as exc:
                if exc.code != "insufficient_balance":  # a correction the member had already spent
                    raise
                return
            self.counts["adjustments"] += 1

        return run

    def _freeze_action(self, plan: MemberPlan) -> Callable[[dt.datetime], None]:
        def run(at: dt.datetime) -> None:
            member_services.member_set_status(member=plan.member, status=Member.Status.FROZEN)

        return run

    def _nightly_jobs(self, at: dt.datetime) -> None:
        services.lots_release_matured(now=at)
        services.lots_expire_due(now=at + dt.timedelta(minutes=30))
        tiers_sweep(now=at + dt.timedelta(hours=1))

    def _balance(self, member: Member) -> int:
        balance = Account.objects.filter(member=member, currency=Currency.POINTS).values_list("balance", flat=True)
        return balance.first() or 0

    def _spend(self, member: Member, **kwargs) -> bool:
        """Spend if the member still has the points: the figure read before may include points that
        expired since the last nightly job, which the service settles first."""
        try:
            services.points_spend(member=member, **kwargs)
        except LoyaltyError as exc:
            if exc.code != "insufficient_balance":
                raise
            return False
        self.counts["spends"] += 1
        return True

    # --- summary -----------------------------------------------------------------------------

    def _summary(self, seconds: float, now: dt.datetime) -> None:
        members = Member.objects.filter(home_store__code__in=DEMO_STORE_CODES)
        points = Account.objects.filter(member__in=members, currency=Currency.POINTS)
        pending = points.filter(pending__gt=0).aggregate(total=Sum("pending"), members=Count("id"))
        expiring = (
            Lot.objects.filter(
                member__in=members,
                currency=Currency.POINTS,
                pending=False,
                remaining__gt=0,
                expires_at__gt=now,
                expires_at__lte=now + dt.timedelta(days=30),
            )
            .order_by()
            .aggregate(total=Sum("remaining"), members=Count("member", distinct=True))
        )
        expired = LedgerEntry.objects.filter(
            member__in=members, currency=Currency.POINTS, kind=LedgerEntry.Kind.EXPIRE
        ).aggregate(total=Sum("amount"), members=Count("member", distinct=True))
        self.stdout.write(
            self.style.SUCCESS(f"Demo seeded in {seconds:.1f} s.")
            + f"\n  stores: {len(self.stores)}, members: {members.count()}"
            f" ({members.filter(status=Member.Status.FROZEN).count()} frozen)"
            f"\n  orders: {Order.objects.filter(member__in=members).count()},"
            f" refunds: {Refund.objects.filter(order__member__in=members).count()},"
            f" spends: {self.counts['spends']}, staff adjustments: {self.counts['adjustments']}"
            f"\n  rewards in the mall: {len(MALL)}, redeemed today: {self.counts.get('redemptions', 0)}"
            f"\n  ledger entries: {LedgerEntry.objects.filter(member__in=members).count()}"
            f"\n  points pending: {pending['total'] or 0} ({pending['members']} members)"
            f"\n  points expiring within 30 days: {expiring['total'] or 0} ({expiring['members']} members)"
            f"\n  points expired so far: {-(expired['total'] or 0)} ({expired['members']} members)"
            f"\n  adjustments are by staff user {DEMO_STAFF_USERNAME!r} (cannot sign in)"
        )
        if self.dormant_plan is not None:
            self.stdout.write(
                "  dormant demo member (the nightly run gives them the win-back coupon): "
                f"{self.dormant_plan.member.phone}"
            )


def _reward_image(code: str, colour: tuple[int, int, int]) -> str:
    """A plain picture for a demo reward, drawn with Pillow into MEDIA_ROOT once; returns its name.

    Generated rather than committed: a coloured square with a lighter circle, the look of a
    product shot placeholder.
    """
    from io import BytesIO

    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage
    from PIL import Image, ImageDraw

    name = f"rewards/demo-{code}.png"
    if not default_storage.exists(name):
        image = Image.new("RGB", (480, 480), colour)
        light = tuple(min(255, c + 70) for c in colour)
        ImageDraw.Draw(image).ellipse((110, 110, 370, 370), fill=light)
        buffer = BytesIO()
        image.save(buffer, format="PNG")
        default_storage.save(name, ContentFile(buffer.getvalue()))
    return name
