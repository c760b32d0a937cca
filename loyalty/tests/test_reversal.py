"""Reversing a spend (a cancelled redemption): exactly the lots it took come back, once."""

import datetime as dt

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.errors import LoyaltyError
from loyalty import services
from loyalty.models import Account, Allocation, Currency, LedgerEntry, Lot
from loyalty.selectors import ledger_violations
from members.models import Member

from .factories import MemberFactory
from .test_concurrency import refusals, run_concurrently

NOW = dt.datetime(2026, 6, 15, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def invariants_hold_after_each_test():
    yield
    assert ledger_violations() == []


@pytest.fixture
def member():
    return MemberFactory()


def award(member, amount: int, *, at: dt.datetime, key: str) -> Lot:
    entry = services.points_award(
        member=member, currency=Currency.POINTS, amount=amount, reason="gift", idempotency_key=key, now=at
    )
    return entry.lot


def spend(member, amount: int, *, at: dt.datetime = NOW, key: str = "spend-1") -> LedgerEntry:
    return services.points_spend(member=member, amount=amount, idempotency_key=key, reason="reward", now=at)


def account(member) -> Account:
    return Account.objects.get(member=member, currency=Currency.POINTS)


def remaining(*lots: Lot) -> list[int]:
    return [Lot.objects.get(pk=lot.pk).remaining for lot in lots]


@pytest.mark.django_db
def test_reverse_restores_exactly_the_lots_the_spend_took_with_their_own_expiry(member):
    old = award(member, 30, at=NOW - dt.timedelta(days=200), key="a")
    new = award(member, 50, at=NOW - dt.timedelta(days=10), key="b")
    untouched_expiry = [lot.expires_at for lot in (old, new)]
    spent = spend(member, 60)  # all 30 of the old lot, 30 of the new one
    award(member, 5, at=NOW + dt.timedelta(minutes=1), key="c")  # a later lot the reversal must not touch
    assert remaining(old, new) == [0, 20]

    reversal = services.points_spend_reverse(
        entry=spent, reason="redemption cancelled", now=NOW + dt.timedelta(hours=1)
    )

    assert reversal.kind == LedgerEntry.Kind.REVERSE and reversal.amount == 60 and reversal.reverses_id == spent.pk
    assert reversal.reason == "redemption cancelled" and not reversal.replayed
    assert remaining(old, new) == [30, 50]
    assert [Lot.objects.get(pk=lot.pk).expires_at for lot in (old, new)] == untouched_expiry
    assert sorted(reversal.allocations.values_list("lot_id", "amount")) == sorted([(old.pk, 30), (new.pk, 30)])
    figures = account(member)
    assert (figures.balance, figures.lifetime_spent, figures.lifetime_earned) == (85, 0, 85)
    assert reversal.balance_after == 85


@pytest.mark.django_db
def test_reverse_twice_returns_the_first_reversal_and_writes_nothing(member):
    award(member, 100, at=NOW - dt.timedelta(days=1), key="a")
    spent = spend(member, 40)
    first = services.points_spend_reverse(entry=spent, reason="cancelled", now=NOW)
    rows = (LedgerEntry.objects.count(), Allocation.objects.count())

    again = services.points_spend_reverse(entry=spent, reason="cancelled again", now=NOW + dt.timedelta(minutes=5))

    assert again.pk == first.pk and again.replayed
    assert (LedgerEntry.objects.count(), Allocation.objects.count()) == rows
    assert account(member).balance == 100


@pytest.mark.django_db
def test_the_database_refuses_a_second_reversal_of_one_spend(member):
    award(member, 100, at=NOW - dt.timedelta(days=1), key="a")
    spent = spend(member, 40)
    first = services.points_spend_reverse(entry=spent, reason="cancelled", now=NOW)
    twin = LedgerEntry.objects.get(pk=first.pk)
    twin.pk = None

    with pytest.raises(IntegrityError), transaction.atomic():
        twin.save()


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["earn", "adjust"])
def test_reverse_refuses_an_entry_that_is_not_a_spend(member, adjuster, kind):
    if kind == "earn":
        entry = award(member, 10, at=NOW, key="a").entry
    else:
        entry = services.points_adjust(
            member=member, currency=Currency.POINTS, amount=10, reason="fix", actor=adjuster, now=NOW
        )
    before = LedgerEntry.objects.count()

    with pytest.raises(LoyaltyError) as refused:
        services.points_spend_reverse(entry=entry, reason="no", now=NOW)

    assert refused.value.code == "not_a_spend"
    assert LedgerEntry.objects.count() == before


@pytest.mark.django_db
def test_reverse_refuses_a_client_key_already_used_for_another_reversal(member):
    award(member, 100, at=NOW - dt.timedelta(days=1), key="a")
    first, second = spend(member, 10, key="s1"), spend(member, 20, key="s2")
    services.points_spend_reverse(entry=first, reason="x", idempotency_key="cancel-7", now=NOW)

    with pytest.raises(LoyaltyError) as refused:
        services.points_spend_reverse(entry=second, reason="x", idempotency_key="cancel-7", now=NOW)

    assert refused.value.code == "idempotency_key_reused"
    assert account(member).balance == 80
    # The same key for the same spend is a replay, not a conflict.
    assert services.points_spend_reverse(entry=first, reason="x", idempotency_key="cancel-7", now=NOW).replayed


@pytest.mark.django_db
def test_restored_points_past_their_expiry_expire_at_once(member):
    earned_at = NOW - dt.timedelta(days=360)  # the default policy: expires 12 months after earning
    lot = award(member, 50, at=earned_at, key="a")
    fresh = award(member, 20, at=NOW, key="b")
    spent = spend(member, 45, at=NOW)
    later = lot.expires_at + dt.timedelta(days=1)

    reversal = services.points_spend_reverse(entry=spent, reason="cancelled late", now=later)

    assert reversal.amount == 45
    expiries = LedgerEntry.objects.filter(member=member, kind=LedgerEntry.Kind.EXPIRE).order_by("pk")
    # Settling first expires the 5 the spend left in the old lot; the 45 given back to it
    # expire right after the reversal, in the same transaction.
    assert [(e.amount, e.pk > reversal.pk) for e in expiries] == [(-5, False), (-45, True)]
    assert remaining(lot, fresh) == [0, 20]
    assert account(member).balance == 20
    assert account(member).lifetime_spent == 0


@pytest.mark.django_db
def test_reverse_works_for_a_frozen_member(member):
    award(member, 30, at=NOW - dt.timedelta(days=1), key="a")
    spent = spend(member, 30)
    Member.objects.filter(pk=member.pk).update(status=Member.Status.FROZEN)

    services.points_spend_reverse(entry=spent, reason="cancelled", now=NOW)

    assert account(member).balance == 30


# --- concurrency on PostgreSQL --------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_same_spend_reversed_five_times_at_once_is_reversed_once(member):
    award(member, 100, at=timezone.now() - dt.timedelta(days=1), key="a")
    spent = spend(member, 70, at=timezone.now())

    outcomes = run_concurrently(
        *(lambda: services.points_spend_reverse(entry=spent, reason="cancelled") for _ in range(5))
    )

    assert refusals(outcomes) == {}
    reversals = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.REVERSE)
    assert reversals.count() == 1
    assert {outcome.pk for outcome in outcomes} == {reversals.get().pk}
    assert sum(not outcome.replayed for outcome in outcomes) == 1
    assert account(member).balance == 100


@pytest.mark.django_db(transaction=True)
def test_reversals_racing_spends_of_the_same_account_keep_the_ledger_exact(member):
    now = timezone.now()
    award(member, 100, at=now - dt.timedelta(days=3), key="a")
    award(member, 100, at=now - dt.timedelta(days=2), key="b")
    spends = [spend(member, 30, at=now, key=f"old-{i}") for i in range(5)]  # 150 spent, 50 left

    calls = [lambda s=s: services.points_spend_reverse(entry=s, reason="cancelled") for s in spends]
    calls += [
        lambda i=i: services.points_spend(member=member, amount=40, idempotency_key=f"new-{i}", reason="r")
        for i in range(5)
    ]
    outcomes = run_concurrently(*calls)

    counts = refusals(outcomes)
    assert set(counts) <= {"insufficient_balance"}
    new_spends = 5 - counts["insufficient_balance"]
    assert account(member).balance == 200 - 40 * new_spends
    assert LedgerEntry.objects.filter(kind=LedgerEntry.Kind.REVERSE).count() == 5
    assert new_spends >= 1  # 50 were left before any reversal, so the first spend always fits
