"""Statement counts of the hot paths (issue 18): a redemption, a coupon verification, a balance
read; the spend's one-statement write against its ORM twin."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from loyalty import services as ledger
from loyalty.models import Account, Allocation, Currency, LedgerEntry, Lot
from loyalty.selectors import ledger_violations, member_balances
from loyalty.services import entries as entries_module
from loyalty.tests.factories import MemberFactory, StoreFactory
from rewards import services
from rewards.models import Coupon, Redemption

from .factories import CouponFactory, RewardFactory

pytestmark = pytest.mark.django_db


def test_a_redemption_takes_at_most_10_statements(django_assert_max_num_queries):
    member = MemberFactory()
    ledger.points_award(
        member=member, currency=Currency.POINTS, amount=1000, reason="opening", idempotency_key="opening"
    )
    reward = RewardFactory(stock=5, per_member_limit=3)
    services.reward_redeem(member=member, reward=reward, idempotency_key="first")
    with django_assert_max_num_queries(10):
        redemption = services.reward_redeem(member=member, reward=reward, idempotency_key="second")
    assert redemption.coupon.status == Coupon.Status.ISSUED
    assert Redemption.objects.filter(member=member).count() == 2
    assert ledger_violations() == []


def test_a_coupon_verification_takes_at_most_6_statements(staff_user, django_assert_max_num_queries):
    coupon, store = CouponFactory(), StoreFactory()
    with django_assert_max_num_queries(6):
        services.coupon_verify(code=coupon.code, store=store, actor=staff_user)
    coupon.refresh_from_db()
    assert coupon.status == Coupon.Status.USED


def test_a_balance_read_takes_at_most_2_statements(django_assert_max_num_queries):
    member = MemberFactory()
    ledger.points_award(member=member, currency=Currency.POINTS, amount=100, reason="opening", idempotency_key="o")
    # PostgreSQL: one statement (the accounts with their lots' figures); elsewhere two.
    with django_assert_max_num_queries(1 if connection.vendor == "postgresql" else 2):
        balances = member_balances(member)
    assert balances[Currency.POINTS].balance == 100


def test_the_balance_statement_and_its_orm_twin_read_the_same_figures(monkeypatch):
    """Open lots expiring soon and later, a lot spent to nothing, pending lots, growth: the
    one-statement read (PostgreSQL) and the ORM's two give the same balances."""
    import datetime as dt

    from loyalty import selectors

    now = timezone.now()
    member, store = MemberFactory(), StoreFactory()
    for n, (amount, days_ago) in enumerate([("100.00", 400), ("50.00", 10), ("80.00", 0)]):
        ledger.order_earn(
            member=member, store=store, number=f"B{n}", amount=amount, occurred_at=now - dt.timedelta(days=days_ago)
        )
    ledger.points_award(member=member, currency=Currency.POINTS, amount=70, reason="gift", idempotency_key="g")
    ledger.points_spend(member=member, amount=20, reason="use", idempotency_key="s")
    read = {}
    for postgresql in (True, False):
        if postgresql and connection.vendor != "postgresql":
            continue
        monkeypatch.setattr(selectors, "is_postgresql", lambda flag=postgresql: flag)
        read[postgresql] = selectors.member_balances(member, now=now + dt.timedelta(days=300), soon_days=90)
    assert read[False][Currency.POINTS].balance > 0 and read[False][Currency.POINTS].pending >= 0
    if connection.vendor == "postgresql":
        assert read[True] == read[False]


def test_the_spend_statement_and_its_orm_twin_write_the_same_rows(monkeypatch):
    one, other, now = MemberFactory(), MemberFactory(), timezone.now()
    for member in (one, other):
        for n in range(3):  # three lots: the spend takes the first two whole and part of the third
            ledger.points_award(
                member=member, currency=Currency.POINTS, amount=40, reason="gift", idempotency_key=f"g{n}", now=now
            )
    with CaptureQueriesContext(connection) as sql_path:
        ledger.points_spend(member=one, amount=100, idempotency_key="s", reason="a spend", now=now)
    monkeypatch.setattr(entries_module, "is_postgresql", lambda: False)
    with CaptureQueriesContext(connection) as orm_path:
        ledger.points_spend(member=other, amount=100, idempotency_key="s", reason="a spend", now=now)
    if connection.vendor == "postgresql":
        assert len(orm_path) == len(sql_path) + 3  # entry, account, lots, allocations: four statements, not one

    def rows(member):
        skip = {"id", "account_id", "member_id", "entry_id", "lot_id"}
        entries = LedgerEntry.objects.filter(member=member).order_by("id").values()
        lots = Lot.objects.filter(member=member).order_by("id").values()
        accounts = Account.objects.filter(member=member).values()
        allocations = Allocation.objects.filter(entry__member=member).order_by("id").values("amount", "lot__amount")
        return [
            [{k: v for k, v in row.items() if k not in skip} for row in table] for table in (entries, lots, accounts)
        ] + [list(allocations)]

    assert rows(one) == rows(other)
    assert [a["amount"] for a in rows(one)[3]] == [40, 40, 20]
    assert ledger_violations() == []
