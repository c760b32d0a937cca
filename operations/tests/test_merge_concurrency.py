"""Real threads against PostgreSQL: a merge racing earns, spends and another merge (docs/merge.md).

Whatever wins, no point is lost or made: the points of both members together are what
they had plus what was earned less what was spent, and the audit finds nothing.
"""

from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db import connection

from core.errors import LoyaltyError
from loyalty import services
from loyalty.models import Account, Currency, Order
from loyalty.selectors import ledger_violations
from loyalty.tests.factories import MemberFactory, StoreFactory
from loyalty.tests.test_concurrency import refusals, run_concurrently
from members.models import Member, MemberMerge
from members.scoping import BRAND_ADMIN
from operations.merge import member_merge

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("the concurrency tests need PostgreSQL and its row locks")


@pytest.fixture
def brand(django_user_model):
    call_command("setup_roles", stdout=open("/dev/null", "w"))  # noqa: SIM115
    user = django_user_model.objects.create_user("brand-race", password="pw-race-1", is_staff=True)
    user.groups.add(Group.objects.get(name=BRAND_ADMIN))
    return user


def held(*members, currency=Currency.POINTS) -> int:
    return sum(a.balance + a.pending for a in Account.objects.filter(member__in=members, currency=currency))


@pytest.mark.parametrize("rounds", range(3))
def test_merge_while_the_merged_member_spends_and_the_kept_one_earns(brand, rounds):
    store = StoreFactory()
    keep, merged = MemberFactory(home_store=store), MemberFactory(home_store=store)
    services.points_award(member=merged, currency="points", amount=1000, reason="gift", idempotency_key="g")
    services.points_award(member=keep, currency="points", amount=100, reason="gift", idempotency_key="g")

    outcomes = run_concurrently(
        lambda: member_merge(keep=keep, merged=merged, reason="race", actor=brand),
        lambda: services.points_spend(member=merged, amount=300, idempotency_key="s", reason="reward"),
        lambda: services.order_earn(member=keep, store=store, number=f"K-{rounds}", amount=Decimal("50.00")),
        lambda: services.points_spend(member=keep, amount=80, idempotency_key="s", reason="reward"),
    )

    refused = refusals(outcomes)
    assert not isinstance(outcomes[0], Exception), outcomes[0]
    assert not isinstance(outcomes[2], Exception), outcomes[2]
    spent = 0 if isinstance(outcomes[1], Exception) else 300
    spent += 0 if isinstance(outcomes[3], Exception) else 80
    assert set(refused) <= {"member_inactive", "insufficient_balance"}
    assert held(keep, merged) == 1000 + 100 + 50 - spent
    assert held(merged) == 0
    assert Member.objects.get(pk=merged.pk).merged_into_id == keep.pk
    assert ledger_violations() == []


def test_merge_while_the_merged_member_earns_moves_the_order_either_way(brand):
    store = StoreFactory()
    keep, merged = MemberFactory(home_store=store), MemberFactory(home_store=store)
    outcomes = run_concurrently(
        lambda: member_merge(keep=keep, merged=merged, reason="race", actor=brand),
        lambda: services.order_earn(member=merged, store=store, number="M-1", amount=Decimal("40.00")),
    )
    refused = refusals(outcomes)
    assert set(refused) <= {"member_inactive"}
    if not refused:  # the earn came first: its order and pending points went with the merge
        assert Order.objects.get(number="M-1").member_id == keep.pk
        assert held(keep) == 40
    assert held(merged) == 0
    assert ledger_violations() == []


def test_two_merges_of_the_same_pair_either_way_do_not_deadlock(brand):
    store = StoreFactory()
    a, b = MemberFactory(home_store=store), MemberFactory(home_store=store)
    services.points_award(member=a, currency="points", amount=10, reason="gift", idempotency_key="g")
    services.points_award(member=b, currency="points", amount=20, reason="gift", idempotency_key="g")
    outcomes = run_concurrently(
        lambda: member_merge(keep=a, merged=b, reason="race", actor=brand),
        lambda: member_merge(keep=b, merged=a, reason="race", actor=brand),
    )
    assert sum(isinstance(o, MemberMerge) for o in outcomes) == 1
    assert refusals(outcomes) == {"member_already_merged": 1} or refusals(outcomes) == {"member_not_mergeable": 1}
    assert held(a, b) == 30
    assert MemberMerge.objects.count() == 1
    assert ledger_violations() == []


def test_a_refund_of_a_moved_order_racing_the_merge_undo_does_not_deadlock(brand, monkeypatch):
    """The refund gives the checkout's points back into the merged record's account and
    takes the earned points back from the kept member's: it locks both members' accounts,
    in id order, before anything else, as the undo does. A pause after the refund's first
    locks lets the undo start in between; a refund that locked the kept member's accounts
    alone, then the merged record's, deadlocked with it (the merged record's id is lower)."""
    import time

    from loyalty.checkout import order_checkout
    from loyalty.services import refunds
    from operations.merge import member_merge_undo

    store = StoreFactory()
    merged, keep = MemberFactory(home_store=store), MemberFactory(home_store=store)  # merged.pk < keep.pk
    services.points_award(member=merged, currency="points", amount=1000, reason="gift", idempotency_key="g")
    order_checkout(member=merged, store=store, number="C-1", amount=Decimal("100.00"), points=500)
    merge = member_merge(keep=keep, merged=merged, reason="two phones", actor=brand)
    assert Order.objects.get(number="C-1").member_id == keep.pk

    give_back = refunds._return_points_paid

    def slow_give_back(*args, **kwargs):
        time.sleep(0.5)  # the undo has started and waits for a lock the refund holds
        return give_back(*args, **kwargs)

    monkeypatch.setattr(refunds, "_return_points_paid", slow_give_back)
    order = Order.objects.get(number="C-1")
    outcomes = run_concurrently(
        lambda: services.order_refund(order=order, number="R-1", amount=Decimal("100.00")),
        lambda: (time.sleep(0.1), member_merge_undo(merge=merge, reason="wrong person", actor=brand))[1],
    )

    unexpected = [o for o in outcomes if isinstance(o, Exception) and not isinstance(o, LoyaltyError)]
    assert unexpected == []
    assert not isinstance(outcomes[0], Exception), outcomes[0]  # the refund went through
    # Whichever wrote first, the full refund gave back the 500 points paid and cancelled
    # what the order earned (still pending): the two records hold the gift, no more.
    assert held(keep, merged) == 1000
    assert held(keep, merged, currency=Currency.GROWTH) == 0
    assert ledger_violations() == []
