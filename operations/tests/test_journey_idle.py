"""The hourly run with nothing to do: every trigger's candidates leave out, in the database,
the events that already have a run (operations.journeys._not_run; issue 18's idle run)."""

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from engagement.models import Journey, JourneyRun, JourneyStep
from loyalty.models import Account, Currency, LedgerEntry, Lot, Order, Tier, TierChange
from loyalty.tests.factories import MemberFactory, StoreFactory
from members.models import Member, StageChange
from operations import journeys

pytestmark = pytest.mark.django_db

NOW = timezone.make_aware(dt.datetime(2026, 6, 15, 11, 0))
DAY = dt.timedelta(days=1)


@pytest.fixture(autouse=True)
def only_our_journeys():
    Journey.objects.update(is_active=False)


def order(member: Member, at: dt.datetime) -> Order:
    return Order.objects.create(
        member=member,
        store=member.home_store or StoreFactory(),
        number=f"I{Order.objects.count() + 1:05d}",
        amount=Decimal("100.00"),
        occurred_at=at,
        status=Order.Status.COMPLETED,
        request_hash="",
    )


def one_event_per_trigger() -> list[Journey]:
    """A journey per trigger, and a member for whom each fires once at NOW."""
    MemberFactory(joined_at=NOW - DAY)  # joined
    first = MemberFactory(joined_at=NOW - 400 * DAY)
    order(first, NOW - 2 * DAY)
    silent = MemberFactory(joined_at=NOW - 400 * DAY)
    order(silent, NOW - 60 * DAY - 3600 * dt.timedelta(seconds=1))
    dormant = MemberFactory(joined_at=NOW - 400 * DAY)
    StageChange.objects.create(member=dormant, from_stage="growing", to_stage="dormant", changed_at=NOW - DAY)
    bronze = Tier.objects.create(code="b", name="Bronze", rank=0, qualify_threshold=0, retain_threshold=0)
    silver = Tier.objects.create(code="s", name="Silver", rank=1, qualify_threshold=10, retain_threshold=5)
    upgraded = MemberFactory(joined_at=NOW - 400 * DAY)
    TierChange.objects.create(
        member=upgraded, from_tier=bronze, to_tier=silver, reason="upgrade", growth=10, created_at=NOW - DAY
    )
    expiring = MemberFactory(joined_at=NOW - 400 * DAY)
    account = Account.objects.create(member=expiring, currency=Currency.POINTS, balance=40)
    entry = LedgerEntry.objects.create(
        account=account, member=expiring, currency=Currency.POINTS, kind=LedgerEntry.Kind.EARN, amount=40,
        balance_after=40, reason="x", created_at=NOW - 300 * DAY,
    )  # fmt: skip
    Lot.objects.create(
        account=account, member=expiring, currency=Currency.POINTS, entry=entry, amount=40, remaining=40,
        available_at=NOW - 300 * DAY, expires_at=NOW + 3 * DAY, created_at=NOW - 300 * DAY,
    )  # fmt: skip
    made = []
    for trigger, days in (
        (Journey.Trigger.JOINED, None),
        (Journey.Trigger.FIRST_ORDER, None),
        (Journey.Trigger.NO_ORDER, 60),
        (Journey.Trigger.DORMANT, None),
        (Journey.Trigger.TIER_CHANGED, None),
        (Journey.Trigger.POINTS_EXPIRING, 7),
    ):
        j = Journey.objects.create(name=f"idle {trigger}", trigger=trigger, trigger_days=days, is_marketing=False)
        JourneyStep.objects.create(journey=j, position=1, action="notify", message_title="Hi")
        made.append(j)
    return made


def test_a_second_run_finds_no_candidates_and_acts_on_nothing(django_assert_max_num_queries):
    made = one_event_per_trigger()
    first = journeys.journeys_run(now=NOW)
    for j in made:
        assert first[j.name]["done"] >= 1, j.trigger

    later = NOW + dt.timedelta(hours=1)
    since = later - journeys.LOOKBACK
    if connection.vendor == "postgresql":
        # The events that ran are left out by the candidate query itself.
        for j in made:
            assert journeys.TRIGGERS[j.trigger](j, 0, 2**62, later, since) == [], j.trigger
    before = JourneyRun.objects.count()
    # The journeys, then per journey: its steps; the candidates in a transaction of their own
    # (savepoint, JIT off, the query, release); the due positions (savepoint, query, release).
    # Eight, however many events the look-back window holds.
    with django_assert_max_num_queries(len(made) * 8 + 1):
        second = journeys.journeys_run(now=later)
    assert JourneyRun.objects.count() == before
    assert all(r["done"] == r["skipped"] == r["steps"] == 0 for r in second.values())


def test_a_new_event_beside_old_ones_is_still_found():
    made = one_event_per_trigger()
    journeys.journeys_run(now=NOW)
    newcomer = MemberFactory(joined_at=NOW + dt.timedelta(minutes=30))
    joined = next(j for j in made if j.trigger == Journey.Trigger.JOINED)
    later = NOW + dt.timedelta(hours=1)

    events = journeys.TRIGGERS[joined.trigger](joined, 0, 2**62, later, later - journeys.LOOKBACK)

    found = [(e.member_id, e.key) for e in events]
    if connection.vendor == "postgresql":
        assert found == [(newcomer.pk, "joined")]
    else:  # SQLite: the run filters the old ones after the query
        assert (newcomer.pk, "joined") in found
    result = journeys.journey_run(joined, now=later)
    assert result["done"] == 1
