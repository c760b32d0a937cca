"""Refunding an order paid partly with points gives the points back, proportionally.

A refund of R of an order of amount A that a member paid partly with p points returns
``floor(p × R / A)`` in all (less what earlier refunds of the order returned), to the lots
the checkout spend took, latest-expiring first, each keeping its own expiry.
"""

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from core.errors import LoyaltyError
from loyalty import services
from loyalty.checkout import order_checkout
from loyalty.models import Account, Allocation, Currency, LedgerEntry, Lot, Order
from loyalty.selectors import ledger_violations

from .factories import MemberFactory, StoreFactory
from .test_concurrency import refusals, run_concurrently

NOW = dt.datetime(2026, 6, 15, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def invariants_hold_after_each_test():
    yield
    assert ledger_violations() == []


@pytest.fixture
def member():
    return MemberFactory()


@pytest.fixture
def store():
    return StoreFactory()


def award(member, amount: int, *, at: dt.datetime, key: str) -> Lot:
    entry = services.points_award(
        member=member, currency=Currency.POINTS, amount=amount, reason="gift", idempotency_key=key, now=at
    )
    return entry.lot


def checkout(member, store, *, points: int, amount: str = "100.00", number: str = "C1", at=NOW) -> Order:
    result, _value = order_checkout(member=member, store=store, number=number, amount=amount, points=points, now=at)
    return result.order


def refund(order: Order, amount: str, number: str, *, at=NOW + dt.timedelta(hours=1)) -> services.RefundResult:
    result = services.order_refund(order=order, amount=amount, number=number, reason="returned", now=at)
    assert ledger_violations() == []
    return result


def account(member) -> Account:
    return Account.objects.get(member=member, currency=Currency.POINTS)


def spend_of(order: Order) -> LedgerEntry:
    return LedgerEntry.objects.get(idempotency_key=f"checkout:{order.store_id}:{order.number}")


def returned_total(order: Order) -> int:
    return sum(
        LedgerEntry.objects.filter(reverses=spend_of(order), kind=LedgerEntry.Kind.REVERSE).values_list(
            "amount", flat=True
        )
    )


def remaining(*lots: Lot) -> list[int]:
    return [Lot.objects.get(pk=lot.pk).remaining for lot in lots]


# --- the amounts -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_full_refund_returns_all_the_points_paid(member, store):
    award(member, 10_000, at=NOW - dt.timedelta(days=1), key="seed")
    order = checkout(member, store, points=3000)
    assert account(member).balance == 7000

    result = refund(order, "100.00", "R1")

    returned = result.returned
    assert returned is not None and not result.replayed
    assert (returned.kind, returned.amount) == (LedgerEntry.Kind.REVERSE, 3000)
    assert (returned.reverses_id, returned.refund_id, returned.order_id) == (
        spend_of(order).pk,
        result.refund.pk,
        order.pk,
    )
    assert returned.reason == f"Points paid for order {order.number} given back for refund R1"
    # What the refund took back stays apart: the earn was still pending, so it is cancelled.
    assert {c: e.kind for c, e in result.entries.items()} == {"points": "cancel", "growth": "cancel"}
    figures = account(member)
    assert (figures.balance, figures.pending, figures.lifetime_spent) == (10_000, 0, 0)


@pytest.mark.django_db
def test_two_partial_refunds_return_their_proportional_parts_and_add_up_to_the_whole(member, store):
    award(member, 10_000, at=NOW - dt.timedelta(days=1), key="seed")
    order = checkout(member, store, points=3333)

    first = refund(order, "40.00", "R1")
    assert first.returned.amount == 1333  # floor(3333 × 40 / 100)
    assert account(member).balance == 10_000 - 3333 + 1333

    second = refund(order, "60.00", "R2")
    assert second.returned.amount == 2000  # floor(3333 × 100 / 100) − 1333
    assert returned_total(order) == 3333
    figures = account(member)
    assert (figures.balance, figures.lifetime_spent) == (10_000, 0)


@pytest.mark.django_db
def test_three_thirds_round_down_and_still_return_exactly_the_points_paid(member, store):
    award(member, 10_000, at=NOW - dt.timedelta(days=1), key="seed")
    order = checkout(member, store, points=1001)

    parts = [refund(order, amount, f"R{i}").returned.amount for i, amount in enumerate(["33.33", "33.33", "33.34"])]

    assert parts == [333, 334, 334]  # floor(1001 × 33.33%) = 333, floor(1001 × 66.66%) = 667, then the rest
    assert sum(parts) == returned_total(order) == 1001
    assert account(member).balance == 10_000


@pytest.mark.django_db
def test_a_refund_too_small_to_return_a_whole_point_returns_nothing_yet(member, store):
    award(member, 10_000, at=NOW - dt.timedelta(days=1), key="seed")
    order = checkout(member, store, points=50)

    tiny = refund(order, "1.00", "R1")  # floor(50 × 1 / 100) = 0
    rest = refund(order, "99.00", "R2")

    assert tiny.returned is None
    assert rest.returned.amount == 50
    assert account(member).balance == 10_000


@pytest.mark.django_db
def test_an_order_without_points_paid_returns_nothing(member, store):
    award(member, 1000, at=NOW - dt.timedelta(days=1), key="seed")
    order = services.order_earn(member=member, store=store, number="O1", amount="100.00", now=NOW).order
    # Paid partly with points by some other system: no checkout spend of ours to give back.
    other = services.order_earn(
        member=member, store=store, number="O2", amount="100.00", points_paid_amount="30.00", now=NOW
    ).order

    assert refund(order, "100.00", "R1").returned is None
    assert refund(other, "100.00", "R1").returned is None
    assert not LedgerEntry.objects.filter(kind=LedgerEntry.Kind.REVERSE).exists()
    assert account(member).balance == 1000


# --- idempotency --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_replayed_refund_writes_nothing_and_returns_the_first_result(member, store):
    award(member, 10_000, at=NOW - dt.timedelta(days=1), key="seed")
    order = checkout(member, store, points=3000)
    first = refund(order, "50.00", "R1")
    rows = (LedgerEntry.objects.count(), Allocation.objects.count())

    again = refund(order, "50.00", "R1", at=NOW + dt.timedelta(hours=2))

    assert again.replayed
    assert again.returned.pk == first.returned.pk
    assert {c: e.pk for c, e in again.entries.items()} == {c: e.pk for c, e in first.entries.items()}
    assert (LedgerEntry.objects.count(), Allocation.objects.count()) == rows
    assert account(member).balance == 7000 + 1500


# --- lots and expiry ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_restored_lots_keep_their_expiry_and_an_expired_one_expires_at_once(member, store):
    old = award(member, 2000, at=NOW - dt.timedelta(days=300), key="old")  # expires in about 65 days
    new = award(member, 2000, at=NOW - dt.timedelta(days=10), key="new")
    expiries = [old.expires_at, new.expires_at]
    order = checkout(member, store, points=3000)  # FIFO: all 2000 of the old lot, 1000 of the new one
    assert remaining(old, new) == [0, 1000]

    half = refund(order, "50.00", "R1")

    # 1500 back, latest-expiring first: the new lot gets its 1000, the old one 500.
    assert sorted(half.returned.allocations.values_list("lot_id", "amount")) == sorted([(old.pk, 500), (new.pk, 1000)])
    assert remaining(old, new) == [500, 2000]
    assert [Lot.objects.get(pk=lot.pk).expires_at for lot in (old, new)] == expiries

    later = old.expires_at + dt.timedelta(days=1)
    rest = refund(order, "50.00", "R2", at=later)

    # The other 1500 can only go to the old lot, now past its expiry: they expire at once.
    assert rest.returned.amount == 1500
    assert list(rest.returned.allocations.values_list("lot_id", "amount")) == [(old.pk, 1500)]
    expired_after = LedgerEntry.objects.filter(member=member, kind=LedgerEntry.Kind.EXPIRE, pk__gt=rest.returned.pk)
    assert list(expired_after.values_list("currency", "amount")) == [("points", -1500)]
    assert remaining(old, new) == [0, 2000]
    assert [Lot.objects.get(pk=lot.pk).expires_at for lot in (old, new)] == expiries
    figures = account(member)
    # The new lot is all that is left: the old lot expired, the order's 70 points were taken back.
    assert (figures.balance, figures.pending, figures.lifetime_spent) == (2000, 0, 0)


# --- refunds and a full reversal of the same spend ------------------------------------------------


@pytest.mark.django_db
def test_a_full_reversal_after_a_partial_refund_gives_back_only_the_rest(member, store):
    award(member, 10_000, at=NOW - dt.timedelta(days=1), key="seed")
    order = checkout(member, store, points=3000)
    refund(order, "40.00", "R1")  # 1200 back

    reversal = services.points_spend_reverse(entry=spend_of(order), reason="checkout voided", now=NOW)

    assert reversal.amount == 1800
    assert returned_total(order) == 3000
    # The rest of the order refunded: nothing is left of the spend to give back.
    assert refund(order, "60.00", "R2").returned is None
    assert account(member).balance == 10_000
    assert services.points_spend_reverse(entry=spend_of(order), reason="again", now=NOW).replayed


@pytest.mark.django_db
def test_a_refund_after_a_full_reversal_returns_nothing_more(member, store):
    award(member, 10_000, at=NOW - dt.timedelta(days=1), key="seed")
    order = checkout(member, store, points=3000)
    services.points_spend_reverse(entry=spend_of(order), reason="checkout voided", now=NOW)

    result = refund(order, "100.00", "R1")

    assert result.returned is None
    assert returned_total(order) == 3000
    assert account(member).balance == 10_000


@pytest.mark.django_db
def test_a_full_reversal_of_a_spend_refunds_gave_back_in_full_is_refused(member, store):
    award(member, 10_000, at=NOW - dt.timedelta(days=1), key="seed")
    order = checkout(member, store, points=3000)
    refund(order, "100.00", "R1")
    rows = LedgerEntry.objects.count()

    with pytest.raises(LoyaltyError) as refused:
        services.points_spend_reverse(entry=spend_of(order), reason="again", now=NOW + dt.timedelta(hours=2))

    assert refused.value.code == "already_given_back"
    assert LedgerEntry.objects.count() == rows
    assert account(member).balance == 10_000


# --- concurrency on PostgreSQL ----------------------------------------------------------------------


def _postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("the concurrency tests need PostgreSQL and its row locks")


@pytest.mark.django_db(transaction=True)
def test_two_partial_refunds_racing_give_back_exactly_the_points_paid(member, store):
    _postgresql_only()
    award(member, 10_000, at=timezone.now() - dt.timedelta(days=1), key="seed")
    result, _value = order_checkout(member=member, store=store, number="C1", amount="100.00", points=3333)
    order = result.order

    outcomes = run_concurrently(
        lambda: services.order_refund(order=order, amount="40.00", number="R1"),
        lambda: services.order_refund(order=order, amount="60.00", number="R2"),
    )

    assert refusals(outcomes) == {}
    parts = sorted(outcome.returned.amount for outcome in outcomes)
    # 1333 then 2000 when R1 goes first; 1999 then 1334 when R2 does.
    assert parts in ([1333, 2000], [1334, 1999])
    assert returned_total(order) == 3333
    assert LedgerEntry.objects.filter(kind=LedgerEntry.Kind.REVERSE).count() == 2
    assert Order.objects.get(pk=order.pk).refunded_amount == Decimal("100.00")
    assert account(member).balance == 10_000


@pytest.mark.django_db(transaction=True)
def test_refunds_racing_a_full_reversal_never_give_back_more_than_the_spend_took(member, store):
    _postgresql_only()
    award(member, 10_000, at=timezone.now() - dt.timedelta(days=1), key="seed")
    result, _value = order_checkout(member=member, store=store, number="C1", amount="100.00", points=3000)
    order = result.order
    spend = spend_of(order)

    outcomes = run_concurrently(
        lambda: services.order_refund(order=order, amount="30.00", number="R1"),
        lambda: services.order_refund(order=order, amount="30.00", number="R2"),
        lambda: services.points_spend_reverse(entry=spend, reason="checkout voided"),
    )

    # The reversal is refused only when both refunds already gave everything back (never: 60%).
    assert refusals(outcomes) == {}
    assert returned_total(order) == 3000
    assert account(member).balance == 10_000


@pytest.mark.django_db
def test_the_paid_points_come_back_before_the_earned_ones_are_taken_so_nothing_is_short(member, store):
    """Paid 5000 points (50 yuan) on a 100-yuan order that earned 50; after the return window
    the member spent every point; a full refund gives back 5000 and takes back the 50 from them."""
    award(member, 5000, at=NOW - dt.timedelta(days=30), key="gift")
    order = checkout(member, store, points=5000)
    earned = order.entries.get(kind=LedgerEntry.Kind.EARN, currency=Currency.POINTS).lot.amount
    later = NOW + dt.timedelta(days=30)  # past the return window: the earned points are available
    services.lots_release_matured(now=later)
    services.points_spend(member=member, amount=account(member).balance, idempotency_key="all", reason="x", now=later)
    assert account(member).balance == 0

    result = refund(order, "100.00", "R1", at=later + dt.timedelta(hours=1))
    assert result.returned.amount == 5000
    assert result.refund.points_shortfall == 0
    assert account(member).balance == 5000 - earned
