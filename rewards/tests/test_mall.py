"""The rewards mall: redeem (every rule, idempotency), cancel (points and stock back), the offers."""

import datetime as dt
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.db.models import Sum

from core.errors import LoyaltyError
from loyalty import services as ledger
from loyalty.models import Account, Currency, LedgerEntry, Lot, MemberTier, Tier
from loyalty.selectors import ledger_violations
from loyalty.tests.factories import MemberFactory, StoreFactory
from members.models import Member
from rewards import selectors, services
from rewards.models import Coupon, Redemption, Reward

from .factories import RewardFactory

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 6, 15, 4, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def invariants_hold_after_each_test():
    yield
    assert ledger_violations() == []


@pytest.fixture
def member():
    return MemberFactory()


@pytest.fixture
def tiers():
    return {
        "silver": Tier.objects.create(code="silver", name="Silver", rank=1),
        "gold": Tier.objects.create(code="gold", name="Gold", rank=2),
    }


def give(member, amount: int, *, at: dt.datetime = NOW - dt.timedelta(days=1), key: str = "gift") -> Lot:
    entry = ledger.points_award(
        member=member, currency=Currency.POINTS, amount=amount, reason="gift", idempotency_key=key, now=at
    )
    return entry.lot


def place(member, tier: Tier) -> None:
    MemberTier.objects.create(member=member, tier=tier, started_at=NOW, review_at=NOW + dt.timedelta(days=365))


def redeem(member, reward, key: str = "r-1", now: dt.datetime = NOW) -> Redemption:
    return services.reward_redeem(member=member, reward=reward, idempotency_key=key, now=now)


def balance(member) -> int:
    return Account.objects.get(member=member, currency=Currency.POINTS).balance


def rows() -> tuple[int, int, int, list]:
    return (
        Redemption.objects.count(),
        Coupon.objects.count(),
        LedgerEntry.objects.count(),
        list(Reward.objects.order_by("pk").values_list("stock", flat=True)),
    )


# --- redeeming ---------------------------------------------------------------------------------


def test_redeem_spends_takes_stock_and_issues_a_coupon(member):
    give(member, 500)
    reward = RewardFactory(
        name="Coffee voucher",
        points_cost=300,
        cash_cost=Decimal("5.00"),
        stock=10,
        coupon_kind=Coupon.Kind.AMOUNT_OFF,
        coupon_value=Decimal("20"),
        coupon_valid_days=14,
    )

    redemption = redeem(member, reward)

    assert not redemption.replayed and redemption.status == Redemption.Status.COMPLETED
    assert (redemption.points_cost, redemption.cash_cost) == (300, Decimal("5.00"))
    assert redemption.spend_entry.kind == LedgerEntry.Kind.SPEND and redemption.spend_entry.amount == -300
    assert redemption.spend_entry.reason == "Coffee voucher"
    assert balance(member) == 200
    assert Reward.objects.get(pk=reward.pk).stock == 9
    coupon = Coupon.objects.get(pk=redemption.coupon_id)
    assert coupon.source == Coupon.Source.REDEMPTION and coupon.member == member
    assert (coupon.title, coupon.kind, coupon.value) == ("Coffee voucher", "amount_off", Decimal("20.00"))
    assert coupon.expires_at == NOW + dt.timedelta(days=14) and coupon.status == Coupon.Status.ISSUED


def test_unlimited_stock_stays_unlimited(member):
    give(member, 500)
    reward = RewardFactory(stock=None)
    redeem(member, reward, "a")
    redeem(member, reward, "b")
    assert Reward.objects.get(pk=reward.pk).stock is None
    assert balance(member) == 300


def test_the_same_key_for_the_same_reward_returns_the_first_redemption(member):
    give(member, 500)
    reward = RewardFactory(stock=5)
    first = redeem(member, reward)
    before = rows()

    again = redeem(member, reward, now=NOW + dt.timedelta(minutes=3))

    assert again.pk == first.pk and again.replayed and again.coupon.code == first.coupon.code
    assert rows() == before


def test_the_same_key_for_another_reward_is_a_conflict(member):
    give(member, 500)
    first, other = RewardFactory(), RewardFactory()
    redeem(member, first)
    before = rows()

    with pytest.raises(LoyaltyError) as refused:
        redeem(member, other)

    assert refused.value.code == "idempotency_conflict"
    assert rows() == before


@pytest.mark.parametrize("key", ["", None, "k" * 129])
def test_redeem_needs_a_sensible_key(member, key):
    give(member, 500)
    with pytest.raises(LoyaltyError) as refused:
        redeem(member, RewardFactory(), key=key)
    assert refused.value.code in {"idempotency_key_required", "invalid_idempotency_key"}
    assert Redemption.objects.count() == 0


@pytest.mark.parametrize("length", [121, 122, 128])
def test_redeem_takes_keys_of_up_to_128_characters_and_replays_them(member, length):
    give(member, 500)
    reward = RewardFactory(points_cost=100)
    key = "k" * (length - 1) + "1"
    first = redeem(member, reward, key=key)
    again = redeem(member, reward, key=key)
    # Another key that shares the first 121 characters is another redemption, not a replay.
    other = redeem(member, reward, key="k" * (length - 1) + "2")
    assert again.pk == first.pk and again.replayed
    assert other.pk != first.pk
    assert first.idempotency_key == key and first.spend_entry.detail["redemption_key"] == key
    assert len(first.spend_entry.idempotency_key) <= 128
    assert Redemption.objects.count() == 2
    assert Account.objects.get(member=member, currency=Currency.POINTS).balance == 300


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"is_active": False}, "reward_unavailable"),
        ({"available_from": NOW + dt.timedelta(hours=1)}, "reward_unavailable"),
        ({"available_until": NOW}, "reward_unavailable"),
        ({"stock": 0}, "out_of_stock"),
        ({"points_cost": 501}, "insufficient_balance"),
    ],
)
def test_redeem_refuses_and_writes_nothing(member, fields, code):
    give(member, 500)
    reward = RewardFactory(**fields)
    before = rows()

    with pytest.raises(LoyaltyError) as refused:
        redeem(member, reward)

    assert refused.value.code == code
    assert rows() == before and balance(member) == 500


def test_a_reward_inside_its_window_can_be_redeemed(member):
    give(member, 500)
    reward = RewardFactory(available_from=NOW - dt.timedelta(days=1), available_until=NOW + dt.timedelta(seconds=1))
    assert redeem(member, reward).status == Redemption.Status.COMPLETED


def test_redeem_refuses_a_frozen_member(member):
    give(member, 500)
    Member.objects.filter(pk=member.pk).update(status=Member.Status.FROZEN)
    with pytest.raises(LoyaltyError) as refused:
        redeem(member, RewardFactory())
    assert refused.value.code == "member_inactive"
    assert Redemption.objects.count() == 0


def test_min_tier_admits_that_tier_and_higher_ones_only(tiers):
    reward = RewardFactory(min_tier=tiers["gold"], points_cost=10)
    untiered, silver, gold = MemberFactory(), MemberFactory(), MemberFactory()
    place(silver, tiers["silver"])
    place(gold, tiers["gold"])
    for someone in (untiered, silver, gold):
        give(someone, 100)

    for refused_member in (untiered, silver):
        with pytest.raises(LoyaltyError) as refused:
            redeem(refused_member, reward)
        assert refused.value.code == "tier_too_low" and "Gold" in refused.value.message
    assert redeem(gold, reward).status == Redemption.Status.COMPLETED


def test_per_member_limit_counts_completed_redemptions_only(member):
    give(member, 1000)
    reward = RewardFactory(per_member_limit=2, points_cost=10)
    first = redeem(member, reward, "a")
    redeem(member, reward, "b")
    with pytest.raises(LoyaltyError) as refused:
        redeem(member, reward, "c")
    assert refused.value.code == "limit_reached"

    services.redemption_cancel(redemption=first, now=NOW)

    assert redeem(member, reward, "c").status == Redemption.Status.COMPLETED
    other = give(MemberFactory(), 10).member  # the limit is per member
    assert redeem(other, reward, "a").member == other


# --- cancelling ----------------------------------------------------------------------------------


def test_cancel_gives_back_the_lots_spent_the_stock_and_voids_the_coupon(member, staff_user):
    old = give(member, 100, at=NOW - dt.timedelta(days=300), key="old")
    new = give(member, 400, at=NOW - dt.timedelta(days=2), key="new")
    reward = RewardFactory(points_cost=250, stock=3)
    redemption = redeem(member, reward)
    assert [Lot.objects.get(pk=lot.pk).remaining for lot in (old, new)] == [0, 250]

    cancelled = services.redemption_cancel(
        redemption=redemption, actor=staff_user, reason="changed my mind", now=NOW + dt.timedelta(hours=1)
    )

    assert cancelled.status == Redemption.Status.CANCELLED and cancelled.cancelled_by == staff_user
    assert cancelled.cancel_reason == "changed my mind"
    assert cancelled.reversal_entry.kind == LedgerEntry.Kind.REVERSE
    assert cancelled.reversal_entry.reverses_id == redemption.spend_entry_id
    assert [Lot.objects.get(pk=lot.pk).remaining for lot in (old, new)] == [100, 400]
    assert balance(member) == 500
    assert Reward.objects.get(pk=reward.pk).stock == 3
    coupon = Coupon.objects.get(pk=redemption.coupon_id)
    assert coupon.status == Coupon.Status.VOID and coupon.voided_by == staff_user
    assert cancelled.coupon.status == Coupon.Status.VOID


def test_cancel_twice_is_refused_cleanly(member):
    give(member, 500)
    redemption = redeem(member, RewardFactory(stock=1))
    services.redemption_cancel(redemption=redemption, now=NOW)
    before = rows()

    with pytest.raises(LoyaltyError) as refused:
        services.redemption_cancel(redemption=redemption, now=NOW)

    assert refused.value.code == "already_cancelled"
    assert rows() == before and balance(member) == 500


def test_cancel_is_refused_once_the_coupon_was_used_or_expired(member, staff_user):
    give(member, 500)
    reward = RewardFactory(stock=5, points_cost=100)
    used, expired = redeem(member, reward, "a"), redeem(member, reward, "b")
    services.coupon_verify(code=used.coupon.code, store=StoreFactory(), actor=staff_user, now=NOW)
    before = rows()

    with pytest.raises(LoyaltyError) as refused_used:
        services.redemption_cancel(redemption=used, now=NOW + dt.timedelta(minutes=1))
    with pytest.raises(LoyaltyError) as refused_expired:
        services.redemption_cancel(redemption=expired, now=NOW + dt.timedelta(days=31))

    assert (refused_used.value.code, refused_expired.value.code) == ("coupon_used", "coupon_expired")
    assert rows() == before and balance(member) == 300


def test_cancel_after_staff_voided_the_coupon_still_gives_the_points_back(member, staff_user):
    give(member, 500)
    redemption = redeem(member, RewardFactory())
    services.coupon_void(coupon=redemption.coupon, actor=staff_user, reason="wrong item", now=NOW)

    services.redemption_cancel(redemption=redemption, now=NOW)

    assert balance(member) == 500
    assert Coupon.objects.get(pk=redemption.coupon_id).void_reason == "wrong item"


def test_cancel_after_the_spent_points_expired_gives_them_back_expired(member):
    lot = give(member, 100, at=NOW - dt.timedelta(days=360), key="old")  # expires in about 5 days
    reward = RewardFactory(points_cost=100, coupon_valid_days=60)
    redemption = redeem(member, reward)

    services.redemption_cancel(redemption=redemption, now=lot.expires_at + dt.timedelta(hours=1))

    assert balance(member) == 0
    assert Redemption.objects.get(pk=redemption.pk).status == Redemption.Status.CANCELLED
    assert LedgerEntry.objects.filter(kind=LedgerEntry.Kind.EXPIRE).aggregate(t=Sum("amount"))["t"] == -100


# --- the database backs the rules up -------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"points_cost": 0},
        {"stock": -1},
        {"cash_cost": Decimal("-1")},
        {"per_member_limit": 0},
        {"coupon_kind": "discount_percent", "coupon_value": Decimal("101")},
        {"coupon_valid_days": 0},
        {"available_from": NOW, "available_until": NOW},
    ],
)
def test_the_database_refuses_an_impossible_reward(fields):
    with pytest.raises(IntegrityError), transaction.atomic():
        Reward.objects.create(name="x", **{"points_cost": 10, **fields})


# --- what the member sees ------------------------------------------------------------------------


def test_offers_say_why_a_reward_cannot_be_redeemed(member, tiers):
    give(member, 150)
    place(member, tiers["silver"])
    ok = RewardFactory(name="ok", points_cost=100, sort_order=1)
    pricey = RewardFactory(name="pricey", points_cost=400, sort_order=2)
    gold = RewardFactory(name="gold", points_cost=10, min_tier=tiers["gold"], sort_order=3)
    empty = RewardFactory(name="empty", points_cost=10, stock=0, sort_order=4)
    soon = RewardFactory(name="soon", points_cost=10, available_from=NOW + dt.timedelta(days=2), sort_order=5)
    over = RewardFactory(name="over", points_cost=10, available_until=NOW - dt.timedelta(days=2), sort_order=6)
    limited = RewardFactory(name="limited", points_cost=10, per_member_limit=1, sort_order=7)
    RewardFactory(name="hidden", is_active=False)
    redeem(member, limited)

    offers = selectors.reward_offers(member=member, now=NOW)

    assert [o.reward for o in offers] == [ok, pricey, gold, empty, soon, over, limited]
    assert [(o.eligible, o.code) for o in offers] == [
        (True, ""),
        (False, "insufficient_balance"),
        (False, "tier_too_low"),
        (False, "out_of_stock"),
        (False, "reward_unavailable"),
        (False, "reward_unavailable"),
        (False, "limit_reached"),
    ]
    assert offers[0].reason == ""
    assert offers[1].reason == "You need 260 more points." and offers[1].points_missing == 260
    assert offers[2].reason == "For Gold members and above."
    assert "2026-06-17" in offers[4].reason


def test_offers_take_the_same_few_queries_whatever_the_catalogue_and_history(
    member, tiers, django_assert_max_num_queries
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    give(member, 100_000)
    place(member, tiers["silver"])
    RewardFactory(points_cost=10, per_member_limit=5, min_tier=tiers["gold"])
    with CaptureQueriesContext(connection) as small:
        selectors.reward_offers(member=member, now=NOW)

    for i in range(40):
        reward = RewardFactory(points_cost=10, per_member_limit=50, min_tier=tiers["silver"] if i % 2 else None)
        redeem(member, reward, f"k{i}")
    with django_assert_max_num_queries(4), CaptureQueriesContext(connection) as large:
        offers = selectors.reward_offers(member=member, now=NOW)
        [(o.reward.min_tier.name if o.reward.min_tier else "") for o in offers]
    assert len(offers) == 41
    assert len(large) == len(small) == 4


def test_redemptions_newest_first_with_reward_and_coupon_in_one_query(member, django_assert_num_queries):
    give(member, 1000)
    first = redeem(member, RewardFactory(), "a", now=NOW)
    second = redeem(member, RewardFactory(), "b", now=NOW + dt.timedelta(minutes=1))
    redeem(give(MemberFactory(), 100).member, RewardFactory(), "a")

    with django_assert_num_queries(1):
        listed = [(r.pk, r.reward.name, r.coupon.code) for r in selectors.redemptions_for_member(member=member)]

    assert [pk for pk, *_rest in listed] == [second.pk, first.pk]
