"""A member's first tier comes from one placement rule, whichever path places them."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from loyalty import services
from loyalty.models import MemberTier, Tier, TierChange
from loyalty.tiers import tier_assign_default, tier_upgrade_if_qualified, tiers_assign_default_bulk, tiers_sweep
from members.models import Notification

from .factories import MemberFactory, StoreFactory

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 3, 10, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


@pytest.fixture
def tiers(db) -> dict[str, Tier]:
    return {
        "bronze": Tier.objects.create(code="bronze", name="Bronze", rank=0, is_default=True),
        "silver": Tier.objects.create(code="silver", name="Silver", rank=1, qualify_threshold=1000),
        "gold": Tier.objects.create(code="gold", name="Gold", rank=2, qualify_threshold=3000),
    }


def written(member) -> tuple:
    """What placing ``member`` wrote, without ids: the tier row, the changes, the notices."""
    state = MemberTier.objects.filter(member=member).values("tier_id", "started_at", "review_at", "pinned_until")
    changes = TierChange.objects.filter(member=member).order_by("id")
    notices = Notification.objects.filter(member=member).order_by("id")
    return (
        list(state),
        list(changes.values_list("from_tier_id", "to_tier_id", "reason", "growth", "created_at")),
        list(notices.values_list("kind", "title")),
    )


def test_joining_one_by_one_and_in_bulk_write_the_same_rows(tiers):
    one, many = MemberFactory(), MemberFactory()
    tier_assign_default(member=one, now=T0)
    tiers_assign_default_bulk(member_ids=[many.pk], now=T0)
    assert written(one) == written(many)
    assert written(one)[1] == [(None, tiers["bronze"].pk, TierChange.Reason.JOINED, 0, T0)]


def test_the_earn_hook_and_the_sweep_place_a_rich_member_alike(tiers, settings):
    settings.LOYALTY_GROWTH_PER_YUAN = 1
    by_hook, by_sweep = MemberFactory(), MemberFactory()  # made without member_create: no tier
    store = StoreFactory()
    for n, member in enumerate((by_hook, by_sweep)):
        services.order_earn(member=member, store=store, number=f"A{n}", amount="3500.00", now=T0)
    # The sweep finds the second member untiered, as if the earn had come before the tiers.
    MemberTier.objects.filter(member=by_sweep).delete()
    TierChange.objects.filter(member=by_sweep).delete()
    Notification.objects.filter(member=by_sweep).delete()

    assert tiers_sweep(now=T0)["placed"] == 1

    assert written(by_hook) == written(by_sweep)
    state, changes, notices = written(by_hook)
    assert state[0]["tier_id"] == tiers["gold"].pk
    assert changes == [
        (None, tiers["bronze"].pk, TierChange.Reason.JOINED, 3500, T0),
        (tiers["bronze"].pk, tiers["gold"].pk, TierChange.Reason.UPGRADE, 3500, T0),
    ]
    assert [kind for kind, _title in notices] == [Notification.Kind.TIER_UP]


def test_without_a_default_tier_joining_places_nobody_and_earning_places_straight_up(tiers):
    Tier.objects.filter(is_default=True).update(is_default=False)
    member = MemberFactory()
    assert tier_assign_default(member=member, now=T0) is None
    tiers_assign_default_bulk(member_ids=[member.pk], now=T0)
    assert not MemberTier.objects.filter(member=member).exists()
    change = tier_upgrade_if_qualified(member_id=member.pk, growth=1200, now=T0)
    assert (change.from_tier_id, change.to_tier_id, change.reason) == (None, tiers["silver"].pk, "upgrade")
    assert MemberTier.objects.get(member=member).tier_id == tiers["silver"].pk
