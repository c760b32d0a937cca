"""The set-based staff award (``points_award_bulk``) against ``points_adjust``, row for row."""

import datetime as dt

import pytest
from django.db import connection
from django.utils import timezone

from core.errors import LoyaltyError
from loyalty import services
from loyalty.models import Account, Allocation, Currency, LedgerEntry, Lot, Refund
from loyalty.selectors import ledger_violations
from members.models import Member

from .factories import MemberFactory, StoreFactory
from .test_concurrency import run_concurrently

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("the set-based award is PostgreSQL's; elsewhere it is points_adjust itself")


def earn(member, store, number, amount, *, days_ago, recorded_late=True):
    occurred_at = timezone.now() - dt.timedelta(days=days_ago)
    services.order_earn(
        member=member,
        store=store,
        number=number,
        amount=amount,
        occurred_at=occurred_at,
        now=None if recorded_late else occurred_at + dt.timedelta(minutes=1),
    )


def ledger_rows(after_entry: int, after_lot: int) -> dict:
    """Everything written after the given ids, keyed by content, not by generated ids
    (a new account's id differs between the two runs: sequences do not roll back)."""

    def entry_key(entry):
        return (entry.member_id, entry.currency, entry.kind, entry.amount, entry.pending_amount)

    entries = {
        entry.pk: entry_key(entry)
        + (entry.balance_after, entry.pending_after, entry.idempotency_key, entry.request_hash, entry.reason)
        + (entry.created_at, entry.detail, entry.order_id, entry.refund_id, entry.store_id, entry.operator_id)
        for entry in LedgerEntry.objects.filter(pk__gt=after_entry)
    }
    lot_of = {
        lot.pk: (entries.get(lot.entry_id, lot.entry_id), lot.member_id, lot.currency, lot.amount)
        + (lot.pending, lot.available_at, lot.expires_at, lot.created_at)
        for lot in Lot.objects.all()
    }
    return {
        "entries": sorted(entries.values(), key=repr),
        "lots": sorted(
            ((lot_of[pk], remaining) for pk, remaining in Lot.objects.values_list("pk", "remaining")), key=repr
        ),
        "allocations": sorted(
            (entries[e], lot_of[lot], amount)
            for e, lot, amount in Allocation.objects.filter(entry_id__gt=after_entry).values_list(
                "entry_id", "lot_id", "amount"
            )
        ),
        "accounts": sorted(
            Account.objects.values_list(
                "member_id", "currency", "balance", "pending", "lifetime_earned", "lifetime_spent", "owed", "updated_at"
            )
        ),
        "refunds": sorted(Refund.objects.values_list("pk", "points_settled", "growth_settled")),
    }


@pytest.fixture
def members(adjuster):
    """Members in every state the award meets; returns them by name."""
    store = StoreFactory()
    m = {name: MemberFactory() for name in ("new", "holder", "pending", "debtor", "expiring", "releasing", "again")}
    services.points_adjust(member=m["holder"], currency="points", amount=30, reason="earlier", actor=adjuster)
    earn(m["pending"], store, "P-1", "50", days_ago=1, recorded_late=False)  # pending, not yet due
    earn(m["debtor"], store, "D-1", "80", days_ago=10)  # available now: spent, then refunded
    services.points_spend(member=m["debtor"], amount=80, idempotency_key="spend", reason="gift")
    services.order_refund(order=m["debtor"].orders.get(), amount="80", number="RF-D")
    services.points_adjust(  # a lot that expired a month ago
        member=m["expiring"],
        currency="points",
        amount=9,
        reason="old",
        actor=adjuster,
        now=timezone.now() - dt.timedelta(days=400),
    )
    earn(m["releasing"], store, "R-1", "20", days_ago=9, recorded_late=False)  # pending, due
    services.points_adjust(
        member=m["again"], currency="points", amount=25, reason="Anniversary", actor=adjuster, idempotency_key="bulk:1"
    )
    assert Account.objects.get(member=m["debtor"], currency="points").owed > 0
    return m


def test_the_set_based_award_writes_exactly_what_points_adjust_writes(members, adjuster):
    now = timezone.now()
    awards = [(member.pk, "bulk:1", 25) for member in members.values()]
    last_entry, last_lot = LedgerEntry.objects.latest("pk").pk, Lot.objects.latest("pk").pk

    with connection.cursor() as cursor:
        cursor.execute("SAVEPOINT before_award")
    by_adjust = {}
    for member in members.values():
        entry = services.points_adjust(
            member=member, currency="points", amount=25, reason="Anniversary", actor=adjuster,
            idempotency_key="bulk:1", now=now,
        )  # fmt: skip
        by_adjust[member.pk] = (entry.balance_after, entry.replayed)
    adjusted = ledger_rows(last_entry, last_lot)
    with connection.cursor() as cursor:
        cursor.execute("ROLLBACK TO SAVEPOINT before_award")
    assert not LedgerEntry.objects.filter(pk__gt=last_entry).exists()

    results = services.points_award_bulk(awards, reason="Anniversary", actor=adjuster, now=now)
    assert ledger_rows(last_entry, last_lot) == adjusted
    assert {pk: (r.balance_after, r.replayed) for pk, r in results.items()} == by_adjust
    assert all(r.error is None and r.entry_id for r in results.values())
    assert results[members["again"].pk].replayed
    assert ledger_violations() == []
    # The debt was paid first, the settling happened: those went through points_adjust.
    assert Account.objects.get(member=members["debtor"], currency="points").owed == 80 - 25
    assert LedgerEntry.objects.filter(kind="settle", member=members["debtor"]).exists()
    assert LedgerEntry.objects.filter(kind="expire", member=members["expiring"]).exists()
    assert LedgerEntry.objects.filter(kind="release", member=members["releasing"]).exists()


def test_clean_members_cost_a_few_statements_for_all(adjuster, django_assert_max_num_queries):
    people = MemberFactory.create_batch(40)
    for member in people[:20]:  # half have accounts already
        services.points_adjust(member=member, currency="points", amount=5, reason="earlier", actor=adjuster)
    adjuster = type(adjuster).objects.get(pk=adjuster.pk)
    with django_assert_max_num_queries(12):
        results = services.points_award_bulk(
            [(member.pk, "bulk:7", 10) for member in people], reason="Gift", actor=adjuster
        )
    assert sorted(r.balance_after for r in results.values()) == [10] * 20 + [15] * 20
    assert ledger_violations() == []


def test_refusals_per_member_and_a_second_run_awards_nothing(adjuster):
    active, frozen, closed, erased = MemberFactory.create_batch(4)
    Member.objects.filter(pk=frozen.pk).update(status=Member.Status.FROZEN)
    Member.objects.filter(pk=closed.pk).update(status=Member.Status.CLOSED)
    Member.objects.filter(pk=erased.pk).update(status=Member.Status.CLOSED, erased_at=timezone.now())
    other = MemberFactory()
    services.points_adjust(
        member=other, currency="points", amount=3, reason="something else", actor=adjuster, idempotency_key="bulk:9"
    )
    extra = MemberFactory()
    awards = [(m.pk, "bulk:9", 10) for m in (active, frozen, closed, erased, other)] + [(extra.pk, "bulk:9", 0)]
    results = services.points_award_bulk(awards, reason="Gift", actor=adjuster)
    codes = {pk: r.error.code if r.error else None for pk, r in results.items()}
    assert codes == {
        active.pk: None,
        frozen.pk: "member_inactive",
        closed.pk: "member_inactive",
        erased.pk: "member_inactive",
        other.pk: "idempotency_key_reused",
        extra.pk: "invalid_amount",
    }
    assert not LedgerEntry.objects.filter(member__in=[frozen, closed, erased, extra]).exists()
    again = services.points_award_bulk(awards, reason="Gift", actor=adjuster)
    assert again[active.pk].replayed and again[active.pk].entry_id == results[active.pk].entry_id
    assert Account.objects.get(member=active, currency="points").balance == 10
    assert ledger_violations() == []


def test_the_whole_call_is_refused_without_the_permission_or_a_reason(staff_user, adjuster):
    member = MemberFactory()
    with pytest.raises(LoyaltyError) as refused:
        services.points_award_bulk([(member.pk, "k", 10)], reason="Gift", actor=staff_user)
    assert refused.value.code == "operator_required"
    with pytest.raises(LoyaltyError) as refused:
        services.points_award_bulk([(member.pk, "k", 10)], reason=" ", actor=adjuster)
    assert refused.value.code == "reason_required"
    assert not LedgerEntry.objects.exists() and not Account.objects.filter(currency=Currency.POINTS).exists()


@pytest.mark.django_db(transaction=True)
def test_two_runs_at_once_award_each_member_once(adjuster):
    people = MemberFactory.create_batch(6)
    for member in people[:3]:  # the others' accounts are opened by the award, by both runs at once
        services.points_adjust(member=member, currency="points", amount=5, reason="earlier", actor=adjuster)
    awards = [(member.pk, "bulk:3", 10) for member in people]

    def award():
        return services.points_award_bulk(awards, reason="Gift", actor=adjuster)

    def spend():
        return services.points_spend(member=people[0], amount=5, idempotency_key="s", reason="gift")

    first, second, spent = run_concurrently(award, award, spend)
    assert isinstance(first, dict) and isinstance(second, dict) and isinstance(spent, LedgerEntry)
    for member in people:
        one, other = first[member.pk], second[member.pk]
        assert one.entry_id == other.entry_id and {one.replayed, other.replayed} == {True, False}
    assert LedgerEntry.objects.filter(idempotency_key="bulk:3").count() == 6
    assert sorted(Account.objects.filter(currency="points").values_list("balance", flat=True)) == [10] * 4 + [15] * 2
    assert ledger_violations() == []
