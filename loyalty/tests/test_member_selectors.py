"""What a member sees: balances with pending and expiring figures, the expiry calendar,
pending releases and the filtered history, in a bounded number of queries."""

import datetime as dt

import pytest
from django.db import connection
from django.utils import timezone

from core.errors import LoyaltyError
from loyalty import selectors, services
from loyalty.models import Currency, LedgerEntry
from loyalty.selectors import Balance, ExpiryBucket, PendingRelease

from .factories import MemberFactory, StoreFactory

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 6, 15, 4, 0, tzinfo=dt.UTC)  # 12:00 in Shanghai
TODAY = dt.date(2026, 6, 15)


@pytest.fixture
def member():
    return MemberFactory()


@pytest.fixture
def store():
    return StoreFactory()


def award(member, amount: int, *, at: dt.datetime, key: str, currency=Currency.POINTS):
    return services.points_award(
        member=member, currency=currency, amount=amount, reason="gift", idempotency_key=key, now=at
    )


def earn(member, store, number: str, amount: str, *, at: dt.datetime):
    return services.order_earn(member=member, store=store, number=number, amount=amount, occurred_at=at, now=at)


def local(year, month, day, hour=12) -> dt.datetime:
    return timezone.make_aware(dt.datetime(year, month, day, hour))


# --- balances ---------------------------------------------------------------------------------


def test_balances_show_pending_expiring_soon_and_the_next_dates(member, store):
    award(member, 40, at=local(2025, 6, 25), key="soon")  # expires 2026-06-25: within 30 days
    award(member, 60, at=local(2025, 9, 1), key="later")  # expires 2026-09-01
    earn(member, store, "A1", "25", at=local(2026, 6, 12))  # pending until 2026-06-19
    earn(member, store, "A2", "15", at=local(2026, 6, 14))  # pending until 2026-06-21

    balances = selectors.member_balances(member, now=NOW)

    assert balances[Currency.POINTS] == Balance(
        balance=100,
        pending=40,
        expiring_soon=40,
        next_expiry_date=dt.date(2026, 6, 25),
        pending_next_release_date=dt.date(2026, 6, 19),
    )
    growth = balances[Currency.GROWTH]
    assert (growth.balance, growth.pending, growth.expiring_soon, growth.next_expiry_date) == (0, 40, 0, None)
    assert selectors.member_balances(member, now=NOW, soon_days=90)[Currency.POINTS].expiring_soon == 100


def test_balances_of_a_member_without_accounts_are_zero(member):
    balances = selectors.member_balances(member, now=NOW)
    assert set(balances) == {"points", "growth"}
    assert balances["points"] == Balance(0, 0, 0, None, None)


def test_balances_take_one_query_whatever_the_history(member, store, django_assert_num_queries):
    for i in range(30):
        award(member, 10, at=NOW - dt.timedelta(days=i * 7), key=f"k{i}")
        earn(member, store, f"N{i}", "10", at=NOW - dt.timedelta(days=i))
    # PostgreSQL: one statement (accounts and their lots' figures); elsewhere two.
    with django_assert_num_queries(1 if connection.vendor == "postgresql" else 2):
        balances = selectors.member_balances(member, now=NOW)
    assert balances[Currency.POINTS].balance > 0


def test_points_past_their_expiry_but_not_yet_expired_by_the_job_show_as_expiring_today(member):
    award(member, 10, at=local(2025, 6, 10), key="overdue")  # expired on 2026-06-10, job not run
    points = selectors.member_balances(member, now=NOW)[Currency.POINTS]
    assert (points.balance, points.expiring_soon, points.next_expiry_date) == (10, 10, TODAY)


# --- expiry calendar and pending releases -------------------------------------------------------


def test_expiry_calendar_groups_open_lots_by_local_date_soonest_first(member, store):
    award(member, 10, at=local(2025, 7, 1, 9), key="a")
    award(member, 5, at=local(2025, 7, 1, 23), key="b")  # same local day, 15:00 UTC
    award(member, 7, at=local(2025, 8, 3), key="c")
    services.points_spend(member=member, amount=3, idempotency_key="s", reason="r", now=NOW)  # from lot a
    award(member, 99, at=NOW, key="next-year")  # expires 2027-06-15: beyond 6 months
    earn(member, store, "P1", "50", at=NOW - dt.timedelta(days=1))  # pending: not in the calendar

    calendar = selectors.expiry_calendar(member, now=NOW, months=6)

    assert calendar == [ExpiryBucket(dt.date(2026, 7, 1), 12), ExpiryBucket(dt.date(2026, 8, 3), 7)]
    assert selectors.expiry_calendar(member, now=NOW)[-1] == ExpiryBucket(dt.date(2027, 6, 15), 99)


def test_expiry_at_midnight_belongs_to_the_day_before(member, settings):
    settings.LOYALTY_POINTS_EXPIRY = "calendar:0"  # expires at 2027-01-01 00:00 local
    award(member, 20, at=NOW, key="a")

    assert selectors.expiry_calendar(member, now=NOW) == [ExpiryBucket(dt.date(2026, 12, 31), 20)]
    assert selectors.member_balances(member, now=NOW)["points"].next_expiry_date == dt.date(2026, 12, 31)


def test_expiry_calendar_of_growth_and_refusing_an_unknown_currency(member):
    award(member, 30, at=local(2025, 12, 24), key="g", currency=Currency.GROWTH)
    assert selectors.expiry_calendar(member, currency="growth", now=NOW) == [ExpiryBucket(dt.date(2026, 12, 24), 30)]
    assert selectors.expiry_calendar(member, now=NOW) == []
    with pytest.raises(LoyaltyError) as refused:
        selectors.expiry_calendar(member, currency="stars", now=NOW)
    assert refused.value.code == "invalid_filter"


def test_pending_releases_by_local_date(member, store):
    earn(member, store, "A1", "25", at=local(2026, 6, 12, 10))
    earn(member, store, "A2", "15", at=local(2026, 6, 12, 22))
    earn(member, store, "A3", "8", at=local(2026, 6, 14))
    services.order_refund(
        order=earn(member, store, "A4", "9", at=local(2026, 6, 14)).order, amount="9", number="R", now=NOW
    )

    assert selectors.pending_releases(member, now=NOW) == [
        PendingRelease(dt.date(2026, 6, 19), 40),
        PendingRelease(dt.date(2026, 6, 21), 8),
    ]
    assert selectors.pending_releases(member, now=NOW, currency="growth")[0] == PendingRelease(dt.date(2026, 6, 19), 40)


# --- history ------------------------------------------------------------------------------------


def test_entries_newest_first_filtered_by_kind_currency_and_dates(member, store):
    award(member, 10, at=local(2026, 6, 1), key="a")
    earn(member, store, "A1", "20", at=local(2026, 6, 3))
    services.points_spend(member=member, amount=5, idempotency_key="s", reason="r", now=local(2026, 6, 5))
    other = MemberFactory()
    award(other, 10, at=local(2026, 6, 2), key="a")

    everything = list(selectors.entries_for_member(member))
    assert [(e.kind, e.currency) for e in everything] == [
        ("spend", "points"),
        ("earn", "growth"),
        ("earn", "points"),
        ("earn", "points"),
    ]
    assert [e.kind for e in selectors.entries_for_member(member, kind="spend")] == ["spend"]
    assert selectors.entries_for_member(member, kind=["earn", "spend"], currency="points").count() == 3
    assert selectors.entries_for_member(member, currency="growth").count() == 1
    # Dates are whole local days, both ends included.
    assert selectors.entries_for_member(member, since=dt.date(2026, 6, 3), until=dt.date(2026, 6, 3)).count() == 2
    assert selectors.entries_for_member(member, until=dt.date(2026, 6, 1)).count() == 1
    assert selectors.entries_for_member(member, since=local(2026, 6, 5)).count() == 1


@pytest.mark.parametrize(
    "filters",
    [
        {"kind": "bonus"},
        {"kind": []},
        {"currency": "stars"},
        {"since": "2026-06-01"},
        {"until": dt.datetime(2026, 6, 1)},
    ],
)
def test_entries_refuse_unknown_filters(member, filters):
    with pytest.raises(LoyaltyError) as refused:
        selectors.entries_for_member(member, **filters)
    assert refused.value.code == "invalid_filter"


def test_a_page_of_entries_with_store_and_order_is_one_query(member, store, django_assert_num_queries):
    for i in range(30):
        earn(member, store, f"N{i}", "10", at=NOW - dt.timedelta(days=i))
    with django_assert_num_queries(1):
        page = list(selectors.entries_for_member(member, kind=LedgerEntry.Kind.EARN)[:20])
        labels = [(e.store.name, e.order.number, e.refund) for e in page]
    assert len(labels) == 20 and labels[0][1] == "N0"
