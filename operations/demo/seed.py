"""One demo run, start to end, and the summary it prints."""

import datetime as dt
import time

from django.core.management.base import OutputWrapper
from django.core.management.color import Style
from django.db import transaction
from django.db.models import Count, Sum
from django.utils import timezone

from loyalty import services
from loyalty.models import Account, Currency, LedgerEntry, Lot, Order, Refund
from members.models import Member
from operations import actions
from operations.lifecycle import members_refresh_profiles
from programme.demo import programme_demo_seed

from .history import history_plan
from .images import demo_reward_images
from .journeys import journeys_demo_seed
from .programme import programme_seed
from .rewards import MALL, rewards_mall_seed, rewards_redeem_today
from .run import DemoRun
from .stores import DEMO_STAFF_USERNAME, DEMO_STORE_CODES, staff_user_seed, stores_seed

STAGE_HISTORY_DAYS = 45


def demo_present() -> bool:
    """Whether a completed demo is in the database (its stores have members)."""
    return Member.objects.filter(home_store__code__in=DEMO_STORE_CODES).exists()


def demo_seed(*, members: int, seed: int, out: OutputWrapper, style: Style) -> None:
    """Seed the demo with ``members`` members, drawing from ``seed``; report progress to ``out``."""
    started = time.monotonic()
    run = DemoRun.starting_today(seed=seed, out=out, style=style)
    with transaction.atomic():
        run.stores = stores_seed(run)
        run.staff = staff_user_seed()
        programme_seed(run)
        rewards_mall_seed(run)
        demo_reward_images()
        events = history_plan(run, members)
        for event in sorted(events):
            event.action(event.at)
        final = timezone.now()
        services.lots_release_matured(now=final)
        services.lots_expire_due(now=final)
        rewards_redeem_today(run, final)
        journeys_demo_seed(run, final)
    # Lifecycle stages as they stood STAGE_HISTORY_DAYS ago: the next nightly refresh
    # then records who moved since (the dormant member among them), as in a running
    # programme, instead of a first refresh where every stage is new.
    members_refresh_profiles(now=run.end - dt.timedelta(days=STAGE_HISTORY_DAYS))
    # The programme's part: a paying member, a transfer, badges, a fan, partners (programme.demo).
    _fan_seed(run, final)
    programme_done = programme_demo_seed()
    _summary(run, time.monotonic() - started, final)
    run.out.write(f"  programme: {programme_done}")


# A prospect who joined three weeks ago and has not bought yet: programme.demo gives them
# contribution (贡献值) as the dual membership's fan.
FAN_PHONE, FAN_NAME = "+8613700137000", "林小雨"


def _fan_seed(run: DemoRun, now: dt.datetime) -> None:
    if Member.objects.filter(phone=FAN_PHONE).exists():
        return
    actions.member_create(
        phone=FAN_PHONE,
        name=FAN_NAME,
        home_store=next(iter(run.stores.values())),
        joined_at=now - dt.timedelta(days=21),
        consents=("sms",),
        source="demo",
    )


def _summary(run: DemoRun, seconds: float, now: dt.datetime) -> None:
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
    run.out.write(
        run.style.SUCCESS(f"Demo seeded in {seconds:.1f} s.")
        + f"\n  stores: {len(run.stores)}, members: {members.count()}"
        f" ({members.filter(status=Member.Status.FROZEN).count()} frozen)"
        f"\n  orders: {Order.objects.filter(member__in=members).count()},"
        f" refunds: {Refund.objects.filter(order__member__in=members).count()},"
        f" spends: {run.counts['spends']}, staff adjustments: {run.counts['adjustments']}"
        f"\n  rewards in the mall: {len(MALL)}, redeemed today: {run.counts.get('redemptions', 0)}"
        f"\n  ledger entries: {LedgerEntry.objects.filter(member__in=members).count()}"
        f"\n  points pending: {pending['total'] or 0} ({pending['members']} members)"
        f"\n  points expiring within 30 days: {expiring['total'] or 0} ({expiring['members']} members)"
        f"\n  points expired so far: {-(expired['total'] or 0)} ({expired['members']} members)"
        f"\n  adjustments are by staff user {DEMO_STAFF_USERNAME!r} (cannot sign in)"
    )
    if run.dormant_plan is not None:
        run.out.write(
            f"  dormant demo member (the nightly run gives them the win-back coupon): {run.dormant_plan.member.phone}"
        )
