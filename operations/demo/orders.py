"""The demo's orders at the till, their refunds, and points paid towards them."""

import datetime as dt
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.utils import timezone

from core.errors import LoyaltyError
from loyalty import services
from loyalty.models import Account, Currency, Order
from loyalty.services import OrderLineInput
from members.models import Member, Store

from .members import MemberPlan
from .run import CENT, DemoRun
from .stores import DEMO_STORE_CODES, store_prefix

# Points needed to pay one yuan of an order with points (a demo convention, not a setting).
POINTS_PER_YUAN_PAID = 100

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
REFUND_REASONS = ["尺码不合适", "颜色与预期不符", "质量问题: 开线", "重复购买", "七天无理由退货"]


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


# --- planning: drawn before any write --------------------------------------------------


def order_plans(run: DemoRun, plan: MemberPlan, hi: dt.datetime) -> list[OrderPlan]:
    rng = run.rng
    if plan.joined_at >= hi:
        return []
    # Orders a year: one-off buyers, occasional, regular and VIP customers.
    per_year = rng.choices([0, 3, 8, 20], [30, 40, 22, 8])[0]
    years = (hi - plan.joined_at) / dt.timedelta(days=365)
    count = max(1, round(per_year * years * rng.uniform(0.6, 1.4)))
    orders = []
    if rng.random() < 0.7:  # signed up at the till while paying
        orders.append(order_plan(run, plan, plan.joined_at + dt.timedelta(minutes=rng.randint(2, 15))))
        count -= 1
    orders += [order_plan(run, plan, run.shop_time(plan.joined_at, hi)) for _k in range(count)]
    orders.sort(key=lambda o: o.occurred_at)
    if plan.may_spend:
        for each in orders[1:]:
            each.pay_with_points = rng.random() < 0.12
    return orders


def order_plan(run: DemoRun, plan: MemberPlan, at: dt.datetime) -> OrderPlan:
    rng = run.rng
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


def refund_maybe(run: DemoRun, plan: OrderPlan, hi: dt.datetime) -> None:
    """About 7% of orders come back: mostly inside the return window, some later as a goodwill return."""
    rng = run.rng
    if plan.pay_with_points or rng.random() >= 0.07:
        return
    window = settings.LOYALTY_PENDING_DAYS
    if window >= 1 and rng.random() < 0.6:
        after = dt.timedelta(days=rng.uniform(0.2, window - 0.2))
    else:
        after = dt.timedelta(days=rng.uniform(window + 1, window + 30))
    at = run.shop_time(plan.occurred_at + after)
    if at >= min(hi, run.end - dt.timedelta(minutes=10)):
        return
    reason = rng.choice(REFUND_REASONS)
    if len(plan.lines) > 1 and rng.random() < 0.7:
        plan.refunds.append((at, plan.lines[-1].amount, reason))  # one item back
        if rng.random() < 0.3 and at + dt.timedelta(days=2) < min(hi, run.end):
            # and the rest of the order two days later
            plan.refunds.append((at + dt.timedelta(days=2), None, rng.choice(REFUND_REASONS)))
    else:
        plan.refunds.append((at, None, reason))


# --- actions, run in chronological order; each gets the time it happens ----------------


def order_earn(run: DemoRun, plan: OrderPlan, at: dt.datetime) -> None:
    store = run.stores[plan.store]
    serial = run.order_numbers[store.code] = run.order_numbers.get(store.code, 0) + 1
    number = f"{store_prefix(store.code)}-{timezone.localtime(at):%y%m%d}-{serial:05d}"
    member = plan.plan.member
    paid_with_points = Decimal("0.00")
    if plan.pay_with_points:
        paid_with_points = _pay_with_points(run, member, store, number, plan.amount, at)
    plan.order = services.order_earn(
        member=member,
        store=store,
        number=number,
        amount=plan.amount,
        points_paid_amount=paid_with_points,
        occurred_at=at,
        lines=plan.lines,
        now=at + dt.timedelta(seconds=run.rng.randint(3, 90)),  # the till posts a moment later
    ).order
    run.counts["orders"] += 1


def _pay_with_points(run: DemoRun, member: Member, store: Store, number: str, amount: Decimal, at) -> Decimal:
    """Spend points for up to 30% of the order (whole yuan, at most 100) when the member has enough."""
    yuan = min(points_balance(member) // POINTS_PER_YUAN_PAID, int(amount * Decimal("0.3")), 100)
    if yuan < 10:
        return Decimal("0.00")
    spent = points_spend_if_enough(
        run,
        member,
        amount=yuan * POINTS_PER_YUAN_PAID,
        idempotency_key=f"order-pay:{store.pk}:{number}",
        reason=f"积分抵现: 订单 {number}",
        store=store,
        detail={"order": number, "yuan": yuan},
        now=at,
    )
    return Decimal(yuan).quantize(CENT) if spent else Decimal("0.00")


def order_refund(plan: OrderPlan, amount: Decimal | None, reason: str, at: dt.datetime) -> None:
    order = plan.order
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


def points_balance(member: Member) -> int:
    balance = Account.objects.filter(member=member, currency=Currency.POINTS).values_list("balance", flat=True)
    return balance.first() or 0


def points_spend_if_enough(run: DemoRun, member: Member, **kwargs) -> bool:
    """Spend if the member still has the points: the figure read before may include points that
    expired since the last nightly job, which the service settles first."""
    try:
        services.points_spend(member=member, **kwargs)
    except LoyaltyError as exc:
        if exc.code != "insufficient_balance":
            raise
        return False
    run.counts["spends"] += 1
    return True
