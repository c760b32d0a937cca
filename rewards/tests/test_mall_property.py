"""Random runs of redemptions and cancellations: stock, points and the ledger always add up.

After every step: each limited reward's stock plus its completed redemptions equals its
starting stock; each member's balance is what they started with minus the points of
their completed redemptions; nobody exceeds a per-member limit; the ledger invariants
hold. A refused step changes nothing. Each run works inside its own savepoint.
"""

import datetime as dt

import pytest
from django.db import transaction
from django.db.models import Sum
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from core.errors import LoyaltyError
from loyalty import services as ledger
from loyalty.models import Account, Currency
from loyalty.selectors import ledger_violations
from loyalty.tests.factories import MemberFactory
from rewards import services
from rewards.models import Redemption, Reward

from .factories import RewardFactory

START = dt.datetime(2026, 3, 1, 2, 0, tzinfo=dt.UTC)
STARTING_POINTS = 300
EXPECTED_REFUSALS = {
    "out_of_stock",
    "limit_reached",
    "insufficient_balance",
    "already_cancelled",
    "idempotency_conflict",
}

steps = st.lists(
    st.tuples(
        st.sampled_from(["redeem", "redeem", "cancel"]),
        st.integers(0, 2),  # member
        st.integers(0, 2),  # reward (redeem) or which of the member's redemptions (cancel)
        st.integers(0, 4),  # idempotency key: few, so replays and conflicts happen
    ),
    max_size=20,
)


def check(members, rewards, starting_stock):
    for reward in rewards:
        completed = Redemption.objects.filter(reward=reward, status=Redemption.Status.COMPLETED)
        stock = Reward.objects.get(pk=reward.pk).stock
        if starting_stock[reward.pk] is None:
            assert stock is None
        else:
            assert stock + completed.count() == starting_stock[reward.pk], "stock was not conserved"
            assert stock >= 0
        if reward.per_member_limit is not None:
            for member in members:
                assert completed.filter(member=member).count() <= reward.per_member_limit
    for member in members:
        spent = Redemption.objects.filter(member=member, status=Redemption.Status.COMPLETED).aggregate(
            t=Sum("points_cost")
        )["t"]
        account = Account.objects.get(member=member, currency=Currency.POINTS)
        assert account.balance == STARTING_POINTS - (spent or 0)
        assert account.lifetime_spent == (spent or 0)
    assert ledger_violations([a.pk for m in members for a in m.accounts.all()]) == []


@pytest.mark.django_db
@hypothesis_settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(run=steps)
def test_random_redeems_and_cancels_keep_stock_points_and_ledger_exact(run):
    with transaction.atomic():
        members = [MemberFactory() for _ in range(3)]
        for member in members:
            ledger.points_award(
                member=member,
                currency=Currency.POINTS,
                amount=STARTING_POINTS,
                reason="start",
                idempotency_key="start",
                now=START - dt.timedelta(days=1),
            )
        rewards = [
            RewardFactory(points_cost=100, stock=2),
            RewardFactory(points_cost=70, stock=None, per_member_limit=2),
            RewardFactory(points_cost=150, stock=4, per_member_limit=1),
        ]
        starting_stock = {reward.pk: reward.stock for reward in rewards}
        now = START
        for action, who, which, key in run:
            now += dt.timedelta(minutes=7)
            member = members[who]
            try:
                if action == "redeem":
                    services.reward_redeem(member=member, reward=rewards[which], idempotency_key=f"k{key}", now=now)
                else:
                    mine = list(Redemption.objects.filter(member=member).order_by("pk"))
                    if not mine:
                        continue
                    services.redemption_cancel(redemption=mine[which % len(mine)], now=now)
            except LoyaltyError as error:
                assert error.code in EXPECTED_REFUSALS, error
            check(members, rewards, starting_stock)
        transaction.set_rollback(True)
