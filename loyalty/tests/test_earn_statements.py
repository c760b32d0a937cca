"""The hot paths' statement counts (issue 18), so they cannot creep back; the earn's one-statement
write against its ORM twin; the programme configuration cached per process and seen to change."""

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models.signals import post_save
from django.test.utils import CaptureQueriesContext

from core.errors import LoyaltyError
from loyalty import configuration as programme_module
from loyalty import services
from loyalty.models import Account, Benefit, Currency, EarnRule, LedgerEntry, Lot, Order, OrderLine, Tier
from loyalty.selectors import ledger_violations
from loyalty.services import OrderLineInput
from loyalty.services import entries as entries_module
from operations.actions import member_create

from .factories import StoreFactory

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def invariants_hold_after_each_test():
    yield
    assert ledger_violations() == []


@pytest.fixture(autouse=True)
def rates(settings):
    settings.LOYALTY_POINTS_PER_YUAN = 1
    settings.LOYALTY_GROWTH_PER_YUAN = 1
    settings.LOYALTY_PENDING_DAYS = 7


@pytest.fixture
def tiers(db):
    bronze = Tier.objects.create(code="bronze", name="Bronze", rank=0, is_default=True)
    Tier.objects.create(code="silver", name="Silver", rank=1, qualify_threshold=100_000, retain_threshold=1)
    Benefit.objects.create(tier=bronze, kind=Benefit.Kind.EARN_MULTIPLIER, value=Decimal("1.5"), title="x1.5")
    return bronze


@pytest.fixture
def store():
    return StoreFactory()


def earn(member, store, number: str, amount: str = "120.00", *, now=NOW):
    lines = [
        OrderLineInput(sku="TEA", category="drinks", amount=Decimal(amount) - 20),
        OrderLineInput(sku="CAKE", category="food", amount=Decimal(20)),
    ]
    return services.order_earn(member=member, store=store, number=number, amount=amount, lines=lines, now=now)


def test_an_earn_with_lines_and_nothing_due_takes_at_most_4_statements(tiers, store, django_assert_max_num_queries):
    member = member_create(phone="13800138000", joined_at=NOW - dt.timedelta(days=30))
    earn(member, store, "W0")  # opens the accounts and loads the programme
    # Counted: the transaction's two ends (here a savepoint and its release), the account
    # lock (which reads the member, their tier row and the programme version too) and the
    # order with its lines, entries, lots and accounts (one statement). No paid membership
    # read (no plan multiplies points: programme's fact in the cached configuration), no
    # tier row lock (the tier row read with the accounts already holds what 120 growth
    # qualifies for), no badge check after the commit (no badge is active, same).
    # The SQLite first run takes the ORM path (no one-statement write, no cached programme).
    with django_assert_max_num_queries(4 if connection.vendor == "postgresql" else 13):
        result = earn(member, store, "W1", now=NOW + dt.timedelta(minutes=1))
    assert result.entries[Currency.POINTS].pending_amount == 180  # base 120 x the bronze multiplier 1.5
    assert result.entries[Currency.GROWTH].pending_amount == 120


def test_a_members_first_earn_opens_both_accounts_in_one_statement(tiers, store, django_assert_max_num_queries):
    earn(member_create(phone="13800138001"), store, "W0")  # loads the programme
    member = member_create(phone="13800138000", joined_at=NOW - dt.timedelta(days=30))
    # The four of the common path, one INSERT ... ON CONFLICT DO NOTHING for both accounts
    # and the account lock again (it found none the first time).
    limit = 6 if connection.vendor == "postgresql" else 17
    with CaptureQueriesContext(connection) as queries, django_assert_max_num_queries(limit):
        earn(member, store, "W1", now=NOW + dt.timedelta(minutes=1))
    inserts = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith("INSERT") and 'INTO "loyalty_account"' in q["sql"]
    ]
    assert len(inserts) == 1
    assert sorted(Account.objects.filter(member=member).values_list("currency", flat=True)) == sorted(
        [Currency.GROWTH, Currency.POINTS]
    )


def test_a_replay_still_returns_the_first_result(tiers, store):
    member = member_create(phone="13800138000", joined_at=NOW - dt.timedelta(days=30))
    first = earn(member, store, "W0")
    again = earn(member, store, "W0")
    assert again.replayed and again.order.pk == first.order.pk
    assert LedgerEntry.objects.filter(member=member).count() == 2


def test_an_earn_with_lots_due_settles_them_first(tiers, store):
    member = member_create(phone="13800138000", joined_at=NOW - dt.timedelta(days=30))
    earn(member, store, "W0")
    later = NOW + dt.timedelta(days=30)  # past the return window: W0's lots are due for release
    earn(member, store, "W1", now=later)
    kinds = list(LedgerEntry.objects.filter(member=member).order_by("id").values_list("kind", flat=True))
    assert kinds == ["earn", "earn", "release", "release", "earn", "earn"]
    assert Account.objects.get(member=member, currency=Currency.POINTS).balance == 180


def test_the_programme_is_read_once_and_again_after_any_change(tiers, store, django_assert_max_num_queries):
    member = member_create(phone="13800138000", joined_at=NOW - dt.timedelta(days=30))
    earn(member, store, "W0")
    loaded = programme_module._cached
    earn(member, store, "W1")
    assert programme_module._cached is loaded  # not read again
    # A change by a bare UPDATE (no signal) is seen by the next earn.
    Benefit.objects.filter(tier=tiers).update(value=Decimal("2"))
    assert earn(member, store, "W2").entries[Currency.POINTS].pending_amount == 240
    EarnRule.objects.create(
        name="double tea", kind=EarnRule.Kind.MULTIPLIER, value=Decimal("2"), valid_from=NOW, include_skus=["TEA"]
    )
    # 120 base, x2 tier on the base (+120), the tea campaign x2 on the tea line's base (+100).
    assert earn(member, store, "W3").entries[Currency.POINTS].pending_amount == 340


def test_the_earn_write_statement_and_its_orm_twin_write_the_same_rows(tiers, store, monkeypatch):
    one = member_create(phone="13800138000", joined_at=NOW - dt.timedelta(days=30))
    other = member_create(phone="13800138001", joined_at=NOW - dt.timedelta(days=30))
    earn(one, store, "A1")
    with CaptureQueriesContext(connection) as sql_path:
        earn(one, store, "A2")
    monkeypatch.setattr(entries_module, "is_postgresql", lambda: False)
    earn(other, store, "B1")
    with CaptureQueriesContext(connection) as orm_path:
        earn(other, store, "B2")
    if connection.vendor == "postgresql":
        # The order, its lines, entries, lots, accounts: five statements, not one.
        assert len(orm_path) == len(sql_path) + 4

    def rows(member):
        entries = LedgerEntry.objects.filter(member=member).order_by("id")
        lots = Lot.objects.filter(member=member).order_by("id")
        accounts = Account.objects.filter(member=member).order_by("currency")
        skip = {"id", "account_id", "member_id", "order_id", "entry_id", "request_hash"}
        return (
            [{k: v for k, v in e.items() if k not in skip} for e in entries.values()],
            [{k: v for k, v in lot.items() if k not in skip} for lot in lots.values()],
            [{k: v for k, v in a.items() if k not in skip} for a in accounts.values()],
            [lot.entry.order.number[1:] for lot in lots],
            [(o.amount, o.points_paid_amount, o.status, o.occurred_at, o.created_at) for o in member.orders.all()],
            [
                (line.order.number[1:], line.sku, line.name, line.category, line.quantity, line.amount)
                for line in OrderLine.objects.filter(order__member=member).order_by("id")
            ],
        )

    assert rows(one) == rows(other)
    assert len(rows(one)[1]) == 4


def test_a_member_frozen_since_gets_the_replay_but_no_new_order(tiers, store):
    # The common path writes the order in the entries' statement; a member not active has
    # it written first, so a replay still finds the first result before the status refuses.
    member = member_create(phone="13800138000", joined_at=NOW - dt.timedelta(days=30))
    first = earn(member, store, "F1")
    member.status = member.Status.FROZEN
    member.save(update_fields=["status"])
    again = earn(member, store, "F1")
    assert again.replayed and again.order.pk == first.order.pk
    with pytest.raises(LoyaltyError) as refused:
        earn(member, store, "F2")
    assert refused.value.code == "member_inactive"
    assert list(member.orders.values_list("number", flat=True)) == ["F1"]
    assert LedgerEntry.objects.filter(member=member).count() == 2


def test_every_new_order_is_announced_once_and_a_replay_not_at_all(tiers, store):
    seen = []

    def listener(sender, instance, created, **kwargs):
        seen.append((instance.pk, instance.number, created))

    post_save.connect(listener, sender=Order, dispatch_uid="test-earn-order-signal")
    try:
        member = member_create(phone="13800138000", joined_at=NOW - dt.timedelta(days=30))
        result = earn(member, store, "S1")
        earn(member, store, "S1")
    finally:
        post_save.disconnect(dispatch_uid="test-earn-order-signal", sender=Order)
    assert seen == [(result.order.pk, "S1", True)]


def test_every_table_the_programme_is_read_from_bumps_its_version(tiers, store):
    if connection.vendor != "postgresql":
        pytest.skip("the version is kept on PostgreSQL only (elsewhere the programme is read every time)")
    # What loyalty.configuration._load reads: tiers, benefits, earning rules and their stores.
    tables = {Tier._meta.db_table, Benefit._meta.db_table, EarnRule._meta.db_table}
    tables.add(EarnRule.stores.through._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT event_object_table FROM information_schema.triggers WHERE action_statement LIKE %s",
            ["%loyalty_programme_bump%"],
        )
        triggered = {table for (table,) in cursor.fetchall()}
    assert tables <= triggered
    rule = EarnRule.objects.create(name="tea", kind=EarnRule.Kind.MULTIPLIER, value=Decimal("2"), valid_from=NOW)
    for change in (
        lambda: rule.stores.add(store),
        lambda: Tier.objects.filter(pk=tiers.pk).update(name="Bronze 2"),
        lambda: Benefit.objects.filter(tier=tiers).update(is_active=False),
        lambda: rule.stores.clear(),
        lambda: EarnRule.objects.filter(pk=rule.pk).delete(),
    ):
        before = programme_module.programme_version()
        change()
        assert programme_module.programme_version() > before
