"""The 18 months of history as a list of dated events: every random draw happens here, before any write.

Events run sorted by time (then by the order they were planned in), so members join, buy,
return, spend, are adjusted and frozen, and the nightly jobs run, in the order they would have.
"""

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings

from core.errors import LoyaltyError
from loyalty import services
from loyalty.models import Currency
from loyalty.tiers import tiers_sweep
from members.models import Member

from . import orders
from .members import (
    DORMANT,
    DORMANT_DAYS_AGO,
    DORMANT_INDEX,
    EXPIRED,
    EXPIRING,
    PENDING,
    MemberPlan,
    member_freeze_action,
    member_join,
    member_plan,
    role_days,
)
from .run import DemoRun
from .stores import store_prefix

# Points spent on rewards over the history (ledger spends with these reasons; the points
# mall of rewards.Reward is demo.rewards).
REWARDS = [
    ("兑换: 咖啡券", 500),
    ("兑换: 香氛小样套装", 800),
    ("兑换: 帆布托特包", 1500),
    ("兑换: 电影票两张", 2000),
    ("兑换: 50 元代金券", 5000),
    ("兑换: 100 元代金券", 10000),
]


@dataclass(order=True)
class Event:
    at: dt.datetime
    seq: int
    action: Callable[[dt.datetime], None] = field(compare=False)


def history_plan(run: DemoRun, n_members: int) -> list[Event]:
    rng = run.rng
    events: list[Event] = []

    def add(at: dt.datetime, action: Callable[[dt.datetime], None]) -> None:
        events.append(Event(at, len(events), action))

    expired_days, expiring_days = role_days(run)
    taken_phones = set(Member.objects.values_list("phone", flat=True))
    plans = [member_plan(run, i, taken_phones) for i in range(n_members)]
    if len(plans) > DORMANT_INDEX:
        dormant = plans[DORMANT_INDEX]
        dormant.role = DORMANT
        run.dormant_plan = dormant
        dormant.consents = tuple(sorted({*dormant.consents, "wechat"}))
    regular = [p for p in plans if not p.role]
    long_standing = [p for p in regular if p.joined_at < run.end - dt.timedelta(days=150)]
    for plan in rng.sample(long_standing, k=min(len(long_standing), max(1, n_members * 3 // 100))):
        plan.frozen = True

    for plan in plans:
        hi = run.end - dt.timedelta(hours=1)  # the latest any order of this member may happen
        anchor = None  # the order that puts the member in their role's situation
        if plan.frozen:
            hi = run.end - dt.timedelta(days=90)  # went quiet, then was frozen
        elif plan.role == EXPIRED and expired_days:
            # A customer who stopped coming: everything they earned has run out.
            hi = expired_days[0] + dt.timedelta(hours=10)
            plan.joined_at = run.shop_time(run.start, min(hi, run.start + dt.timedelta(days=60)))
            anchor = run.shop_time(plan.joined_at + dt.timedelta(hours=1), hi)
        elif plan.role == EXPIRING and len(expiring_days) >= 2:
            plan.joined_at = run.shop_time(run.start, expiring_days[-1] - dt.timedelta(days=10))
            anchor = run.shop_time(*sorted(rng.sample(expiring_days, 2)))
        elif plan.role == DORMANT:
            # Their last order was about DORMANT_DAYS_AGO days ago, nothing since.
            hi = run.end - dt.timedelta(days=DORMANT_DAYS_AGO)
            if plan.joined_at > hi - dt.timedelta(days=60):
                plan.joined_at = run.shop_time(run.start, hi - dt.timedelta(days=60))
            anchor = run.shop_time(hi - dt.timedelta(days=1), hi)
        elif plan.role == PENDING and settings.LOYALTY_PENDING_DAYS > 1:
            # Still pending tomorrow, so still pending whenever today the seed runs.
            lo = run.end - dt.timedelta(days=settings.LOYALTY_PENDING_DAYS - 1)
            anchor = run.shop_time(max(plan.joined_at, lo), hi)
        if plan.role in (EXPIRED, EXPIRING):
            plan.may_spend = False  # spending would eat the very lots they must keep
        add(plan.joined_at, lambda at, plan=plan: member_join(run, plan))

        member_orders = orders.order_plans(run, plan, hi)
        for order_plan in member_orders:
            orders.refund_maybe(run, order_plan, hi)
        if anchor is not None:
            member_orders.append(orders.order_plan(run, plan, anchor))  # never refunded
        for order_plan in member_orders:
            add(order_plan.occurred_at, lambda at, o=order_plan: orders.order_earn(run, o, at))
            for refund_at, amount, reason in order_plan.refunds:
                add(refund_at, lambda at, o=order_plan, a=amount, r=reason: orders.order_refund(o, a, r, at))

        if plan.may_spend and plan.joined_at + dt.timedelta(days=30) < hi:
            for k in range(_redemption_count(run, len(member_orders))):
                add(run.between(plan.joined_at + dt.timedelta(days=30), hi), _redeem_action(run, plan, k))
        if plan.frozen:
            frozen_at = run.between(hi + dt.timedelta(days=35), run.end - dt.timedelta(days=1))
            add(frozen_at, member_freeze_action(plan))

    _plan_adjustments(run, [p for p in regular if not p.frozen], add)
    day = run.start.replace(hour=3, minute=0, second=0) + dt.timedelta(days=1)
    while day < run.end:
        add(day, nightly_jobs)
        day += dt.timedelta(days=1)
    return events


def _redemption_count(run: DemoRun, order_count: int) -> int:
    if order_count >= 13:
        return run.rng.randint(2, 4)
    if order_count >= 6:
        return run.rng.randint(1, 2)
    return 1 if order_count >= 2 and run.rng.random() < 0.3 else 0


def _redeem_action(run: DemoRun, plan: MemberPlan, k: int) -> Callable[[dt.datetime], None]:
    def act(at: dt.datetime) -> None:
        balance = orders.points_balance(plan.member)
        affordable = [reward for reward in REWARDS if reward[1] <= balance]
        if not affordable:
            return
        reason, cost = run.rng.choice(affordable[-3:])  # the better rewards they can afford
        orders.points_spend_if_enough(
            run,
            plan.member,
            amount=cost,
            idempotency_key=f"demo-redeem:{plan.index}:{k}",
            reason=reason,
            store=run.stores[plan.home_store],
            detail={"reward": reason.removeprefix("兑换: ")},
            now=at,
        )

    return act


def _plan_adjustments(run: DemoRun, candidates: list[MemberPlan], add) -> None:
    rng = run.rng
    candidates = [p for p in candidates if p.joined_at < run.end - dt.timedelta(days=40)]
    if len(candidates) < 3:
        return
    first, second, third = rng.sample(candidates, 3)

    def some_time(plan: MemberPlan) -> dt.datetime:
        return run.shop_time(plan.joined_at + dt.timedelta(days=30), run.end - dt.timedelta(days=3))

    # A till receipt keyed in twice by mistake, corrected the next day.
    at = some_time(first)
    receipt = f"{store_prefix(first.home_store)}-{at:%y%m%d}-Z{rng.randint(100, 999)}"
    reason = f"补录积分: 线下小票 {receipt} 未积分"
    add(at, _adjust_action(run, first, Currency.POINTS, 150, reason, "0"))
    add(at + dt.timedelta(minutes=4), _adjust_action(run, first, Currency.POINTS, 150, reason, "1"))
    correction = f"更正: 小票 {receipt} 重复补录"
    add(at + dt.timedelta(days=1), _adjust_action(run, first, Currency.POINTS, -150, correction, "2"))
    add(some_time(second), _adjust_action(run, second, Currency.POINTS, 500, "客诉补偿: 商品延迟到店", "0"))
    add(some_time(third), _adjust_action(run, third, Currency.GROWTH, 300, "活动补发: 会员日双倍成长值", "0"))


def _adjust_action(run: DemoRun, plan: MemberPlan, currency: str, amount: int, reason: str, key: str):
    def act(at: dt.datetime) -> None:
        try:
            services.points_adjust(
                member=plan.member,
                currency=currency,
                amount=amount,
                reason=reason,
                actor=run.staff,
                idempotency_key=f"demo-adjust:{plan.index}:{key}",
                now=at,
            )
        except LoyaltyError as exc:
            if exc.code != "insufficient_balance":  # a correction the member had already spent
                raise
            return
        run.counts["adjustments"] += 1

    return act


def nightly_jobs(at: dt.datetime) -> None:
    services.lots_release_matured(now=at)
    services.lots_expire_due(now=at + dt.timedelta(minutes=30))
    tiers_sweep(now=at + dt.timedelta(hours=1))
