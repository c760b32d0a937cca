import datetime as dt

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings

from loyalty import services
from loyalty.models import Account, Allocation, Currency, LedgerEntry, Lot, Refund
from loyalty.selectors import ledger_violations

from .factories import MemberFactory, StoreFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_members():
    store = StoreFactory()
    members = MemberFactory.create_batch(2)
    for index, member in enumerate(members):
        services.order_earn(
            member=member,
            store=store,
            number=f"A{index}",
            amount="100",
            occurred_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        )
    return members


def test_audit_passes_on_a_consistent_ledger(two_members, capsys):
    call_command("audit_ledger")
    assert "4 accounts checked, all invariants hold" in capsys.readouterr().out


def test_audit_names_an_account_whose_balance_disagrees(two_members, capsys):
    account = Account.objects.get(member=two_members[1], currency="points")
    Account.objects.filter(pk=account.pk).update(balance=101)
    with pytest.raises(CommandError, match="1 of 4 accounts fail"):
        call_command("audit_ledger")
    err = capsys.readouterr().err
    assert f"account {account.pk} (member {two_members[1].pk}, points)" in err
    assert "balance 101 != sum of entries 100" in err


def test_audit_finds_a_lot_that_disagrees_with_its_allocations(two_members, capsys):
    lot = Lot.objects.get(member=two_members[0], currency="growth")
    Lot.objects.filter(pk=lot.pk).update(remaining=90)
    with pytest.raises(CommandError):
        call_command("audit_ledger")
    err = capsys.readouterr().err
    assert f"lot {lot.pk}: remaining 90 != amount 100 - allocated 0" in err
    assert "balance 100 != sum of available lots 90" in err


# --- each figure the audit checks, corrupted once ------------------------------------------

NOW = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)


@pytest.fixture
def ledger(adjuster):
    """A member with every figure in play: available and pending points, a spend, a refund
    that left a shortfall, and a staff credit that paid part of it (owed 70 of 100)."""
    store, member = StoreFactory(), MemberFactory()
    old = services.order_earn(
        member=member, store=store, number="A1", amount="100", occurred_at=NOW - dt.timedelta(days=30), now=NOW
    ).order
    services.order_earn(member=member, store=store, number="A2", amount="40", occurred_at=NOW, now=NOW)
    services.points_spend(member=member, amount=100, idempotency_key="s1", reason="reward", now=NOW)
    refund = services.order_refund(order=old, amount="100", number="R1", now=NOW).refund
    services.points_adjust(
        member=member, currency=Currency.POINTS, amount=30, reason="goodwill", actor=adjuster, now=NOW
    )
    account = Account.objects.get(member=member, currency=Currency.POINTS)
    refund.refresh_from_db()
    assert (account.balance, account.pending, account.owed, refund.points_settled) == (0, 40, 70, 30)
    assert ledger_violations() == []
    return account, refund


def _drop_constraint(model, name: str) -> None:
    # Rolled back with the test: only a figure the database itself refuses needs this.
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no deferred checks pending: ALTER refuses those
        cursor.execute(f'ALTER TABLE {model._meta.db_table} DROP CONSTRAINT "{name}"')


def _entries(account):
    return LedgerEntry.objects.filter(account=account).order_by("pk")


def _lot(account, *, pending: bool) -> Lot:
    return Lot.objects.filter(account=account, pending=pending).order_by("pk").first()


def _corrupt(case: str, account: Account, refund: Refund) -> list[str]:
    """Corrupt one figure; return the problems the audit must report, in its order."""
    entries, lot = _entries(account), _lot(account, pending=True)
    if case == "entries":
        spend = entries.get(kind=LedgerEntry.Kind.SPEND)
        LedgerEntry.objects.filter(pk=spend.pk).update(amount=-90)
        return ["balance 0 != sum of entries 10"]
    if case == "available lots":
        adjust_lot = Lot.objects.get(entry__kind=LedgerEntry.Kind.ADJUST, account=account)
        Lot.objects.filter(pk=adjust_lot.pk).update(remaining=5)
        return ["balance 0 != sum of available lots 5", f"lot {adjust_lot.pk}: remaining 5 != amount 30 - allocated 30"]
    if case == "last balance":
        LedgerEntry.objects.filter(pk=entries.last().pk).update(balance_after=3)
        return ["balance 0 != last entry's balance_after 3"]
    if case == "pending entries":
        earn = entries.get(kind=LedgerEntry.Kind.EARN, pending_amount__gt=0)
        LedgerEntry.objects.filter(pk=earn.pk).update(pending_amount=45)
        return ["pending 40 != sum of pending entries 45"]
    if case == "pending lots":
        Lot.objects.filter(pk=lot.pk).update(remaining=35)
        return ["pending 40 != sum of pending lots 35", f"lot {lot.pk}: remaining 35 != amount 40 - allocated 0"]
    if case == "last pending":
        LedgerEntry.objects.filter(pk=entries.last().pk).update(pending_after=41)
        return ["pending 40 != last entry's pending_after 41"]
    if case == "negative":
        _drop_constraint(Account, "account_balance_not_negative")
        Account.objects.filter(pk=account.pk).update(balance=-1)
        return [
            "balance -1 != sum of entries 0",
            "balance -1 != sum of available lots 0",
            "balance -1 != last entry's balance_after 0",
            "negative figure",
        ]
    if case == "owed":
        Account.objects.filter(pk=account.pk).update(owed=60)
        return ["owed 60 != open refund shortfalls 70"]
    if case == "value":
        # Consistent with itself, but a credit skipped the open debt: the member could spend
        # points they owe (the issue 12 exploit).
        actor = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.ADJUST).first().operator
        with override_settings(LOYALTY_SHORTFALL_SETTLE_FROM_EARNS=False):
            services.points_adjust(
                member=account.member,
                currency=Currency.POINTS,
                amount=10,
                reason="skips the debt",
                actor=actor,
                now=NOW,
            )
        return ["value: 70 owed while 10 are available (a debt is paid first)"]
    if case == "allocations":
        allocation = Allocation.objects.filter(lot=_lot(account, pending=False)).order_by("pk").first()
        Allocation.objects.filter(pk=allocation.pk).update(amount=allocation.amount - 1)
        return [
            f"lot {allocation.lot_id}: remaining 0 != amount {allocation.lot.amount} - allocated "
            f"{allocation.lot.amount - 1}"
        ]
    if case == "settled":
        Refund.objects.filter(pk=refund.pk).update(points_settled=20)
        return [
            "owed 70 != open refund shortfalls 80",
            f"refund {refund.pk}: settled 20 != settle entries 30 (shortfall 100)",
        ]
    if case == "settled over shortfall":
        _drop_constraint(Refund, "refund_points_settled_within_shortfall")
        settle = entries.get(kind=LedgerEntry.Kind.SETTLE)
        Refund.objects.filter(pk=refund.pk).update(points_shortfall=20)
        Account.objects.filter(pk=account.pk).update(owed=0)
        assert settle.amount == -30
        return [
            "owed 0 != open refund shortfalls -10",
            f"refund {refund.pk}: settled 30 != settle entries 30 (shortfall 20)",
        ]
    raise AssertionError(case)


CASES = [
    "entries",
    "available lots",
    "last balance",
    "pending entries",
    "pending lots",
    "last pending",
    "negative",
    "owed",
    "value",
    "allocations",
    "settled",
    "settled over shortfall",
]


@pytest.mark.parametrize("case", CASES)
def test_audit_reports_each_corrupted_figure(ledger, case):
    account, refund = ledger
    expected = _corrupt(case, account, refund)
    (violation,) = ledger_violations()
    assert (violation.account_id, violation.problems) == (account.pk, expected)
    # The same when only that account is audited, and however the accounts are chunked.
    assert ledger_violations([account.pk]) == [violation]
    assert ledger_violations(chunk=1) == [violation]


def test_audit_chunks_report_the_same_as_one_pass(ledger, django_assert_max_num_queries):
    account, refund = ledger
    store = StoreFactory()
    for index in range(5):
        services.order_earn(
            member=MemberFactory(), store=store, number=f"B{index}", amount="10", occurred_at=NOW, now=NOW
        )
    _corrupt("settled", account, refund)
    Account.objects.filter(currency=Currency.GROWTH).update(balance=7)
    whole = ledger_violations()
    assert len(whole) == 7  # the six growth accounts and the corrupted points account
    assert ledger_violations(chunk=2) == ledger_violations(chunk=1) == whole
    # Set-based: a bounded number of queries per chunk, whatever the number of accounts.
    with django_assert_max_num_queries(12):
        ledger_violations()


def test_audit_command_reads_in_chunks_of_the_size_asked(two_members, capsys):
    Account.objects.filter(member=two_members[1], currency="points").update(balance=101)
    with pytest.raises(CommandError, match="1 of 4 accounts fail"):
        call_command("audit_ledger", "--chunk", "1")
    assert "balance 101 != sum of entries 100" in capsys.readouterr().err
    with pytest.raises(CommandError, match="--chunk must be at least 1"):
        call_command("audit_ledger", "--chunk", "0")
