"""Real threads against PostgreSQL: redemptions racing for stock, for one key, against a till."""

import datetime as dt

import pytest
from django.utils import timezone

from loyalty import services as ledger
from loyalty.models import Account, Currency, LedgerEntry
from loyalty.selectors import ledger_violations
from loyalty.tests.factories import MemberFactory, StoreFactory
from loyalty.tests.test_concurrency import refusals, run_concurrently
from rewards import services
from rewards.models import Coupon, Redemption, Reward

from .factories import RewardFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def invariants_hold_after_each_test():
    yield
    assert ledger_violations() == []


def member_with(points: int):
    member = MemberFactory()
    ledger.points_award(
        member=member,
        currency=Currency.POINTS,
        amount=points,
        reason="gift",
        idempotency_key="gift",
        now=timezone.now() - dt.timedelta(days=1),
    )
    return member


def balance(member) -> int:
    return Account.objects.get(member=member, currency=Currency.POINTS).balance


def test_two_members_redeeming_the_last_item_at_once_get_it_once():
    reward = RewardFactory(stock=1, points_cost=100)
    first, second = member_with(100), member_with(100)

    outcomes = run_concurrently(
        lambda: services.reward_redeem(member=first, reward=reward, idempotency_key="k"),
        lambda: services.reward_redeem(member=second, reward=reward, idempotency_key="k"),
    )

    assert refusals(outcomes) == {"out_of_stock": 1}
    winner = next(o for o in outcomes if isinstance(o, Redemption))
    assert Reward.objects.get(pk=reward.pk).stock == 0
    assert Redemption.objects.count() == 1 and Coupon.objects.count() == 1
    assert sorted([balance(first), balance(second)]) == [0, 100]
    assert balance(winner.member) == 0


def test_ten_members_racing_for_three_items_get_exactly_three():
    reward = RewardFactory(stock=3, points_cost=50)
    members = [member_with(50) for _ in range(10)]

    outcomes = run_concurrently(
        *(lambda m=m: services.reward_redeem(member=m, reward=reward, idempotency_key="k") for m in members)
    )

    assert refusals(outcomes) == {"out_of_stock": 7}
    assert Reward.objects.get(pk=reward.pk).stock == 0
    assert Redemption.objects.count() == 3
    assert LedgerEntry.objects.filter(kind=LedgerEntry.Kind.SPEND).count() == 3


def test_one_member_sending_one_key_five_times_at_once_redeems_once():
    reward = RewardFactory(stock=10, points_cost=100)
    member = member_with(1000)

    outcomes = run_concurrently(
        *(lambda: services.reward_redeem(member=member, reward=reward, idempotency_key="tap-1") for _ in range(5))
    )

    assert refusals(outcomes) == {}
    redemption = Redemption.objects.get()
    assert {o.pk for o in outcomes} == {redemption.pk}
    assert sum(not o.replayed for o in outcomes) == 1
    assert LedgerEntry.objects.filter(kind=LedgerEntry.Kind.SPEND).count() == 1
    assert Reward.objects.get(pk=reward.pk).stock == 9
    assert balance(member) == 900


def test_one_key_for_two_rewards_of_the_same_cost_at_once_redeems_one_of_them():
    member = member_with(1000)
    a, b = RewardFactory(points_cost=100, stock=5), RewardFactory(points_cost=100, stock=5)

    outcomes = run_concurrently(
        lambda: services.reward_redeem(member=member, reward=a, idempotency_key="same"),
        lambda: services.reward_redeem(member=member, reward=b, idempotency_key="same"),
    )

    assert refusals(outcomes) == {"idempotency_conflict": 1}
    assert Redemption.objects.count() == 1 and balance(member) == 900
    assert sorted(Reward.objects.values_list("stock", flat=True)) == [4, 5]


def test_cancelling_while_a_till_verifies_the_coupon_lets_exactly_one_win(staff_user):
    member = member_with(100)
    reward = RewardFactory(points_cost=100, stock=1)
    redemption = services.reward_redeem(member=member, reward=reward, idempotency_key="k")
    store = StoreFactory()

    outcomes = run_concurrently(
        lambda: services.redemption_cancel(redemption=redemption, reason="changed my mind"),
        lambda: services.coupon_verify(code=redemption.coupon.code, store=store, actor=staff_user),
    )

    counts = refusals(outcomes)
    assert counts in ({"coupon_used": 1}, {"coupon_void": 1}), outcomes
    coupon = Coupon.objects.get()
    if coupon.status == Coupon.Status.USED:
        assert balance(member) == 0 and Reward.objects.get().stock == 0
        assert Redemption.objects.get().status == Redemption.Status.COMPLETED
    else:
        assert balance(member) == 100 and Reward.objects.get().stock == 1
        assert Redemption.objects.get().status == Redemption.Status.CANCELLED


def test_cancelling_one_redemption_five_times_at_once_gives_back_once():
    member = member_with(100)
    reward = RewardFactory(points_cost=100, stock=1)
    redemption = services.reward_redeem(member=member, reward=reward, idempotency_key="k")

    outcomes = run_concurrently(*(lambda: services.redemption_cancel(redemption=redemption) for _ in range(5)))

    assert refusals(outcomes) == {"already_cancelled": 4}
    assert balance(member) == 100 and Reward.objects.get().stock == 1
    assert LedgerEntry.objects.filter(kind=LedgerEntry.Kind.REVERSE).count() == 1
