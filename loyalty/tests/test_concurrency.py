"""Real threads against PostgreSQL: the services' locks hold when calls race.

Each test starts its calls together (``threading.Barrier``, every thread connected first),
collects what each call returned or raised, and checks the ledger afterwards. A thread that
does not finish in time fails the test (a deadlock PostgreSQL did not break).
"""

import datetime as dt
import threading
from collections import Counter
from collections.abc import Callable
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from core.errors import LoyaltyError
from loyalty import services
from loyalty.models import Account, Currency, LedgerEntry, Lot, Order, Refund
from loyalty.selectors import ledger_violations

from .factories import MemberFactory, StoreFactory

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 60  # seconds for a whole race; a healthy one takes well under a second


@pytest.fixture(autouse=True)
def postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("the concurrency tests need PostgreSQL and its row locks")


@pytest.fixture(autouse=True)
def invariants_hold_after_each_test():
    yield
    assert ledger_violations() == []


def run_concurrently(*calls: Callable[[], object]) -> list[object]:
    """Run each call in its own thread, all at once; return each one's result or exception."""
    barrier = threading.Barrier(len(calls))
    outcomes: list[object] = [None] * len(calls)

    def worker(index: int, call: Callable[[], object]) -> None:
        try:
            connection.ensure_connection()  # connect first, so the calls themselves start together
            barrier.wait(timeout=TIMEOUT)
            outcomes[index] = call()
        except Exception as error:  # noqa: BLE001 - every outcome is checked by the test
            outcomes[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(index, call), daemon=True) for index, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "a call did not finish: deadlock?"
    return outcomes


def refusals(outcomes: list[object]) -> Counter:
    """How many calls were refused, by code; fails on anything else that was raised."""
    unexpected = [o for o in outcomes if isinstance(o, Exception) and not isinstance(o, LoyaltyError)]
    assert unexpected == [], f"calls failed with more than a refusal: {unexpected!r}"
    return Counter(o.code for o in outcomes if isinstance(o, LoyaltyError))


def points(member) -> tuple[int, int]:
    account = Account.objects.get(member=member, currency=Currency.POINTS)
    return account.balance, account.pending


@pytest.fixture
def store():
    return StoreFactory()


def give_points(member, amount: int, operator) -> None:
    services.points_adjust(member=member, currency=Currency.POINTS, amount=amount, reason="setup", actor=operator)


def earn_long_ago(member, store, number: str, amount: str, *, days: int = 30) -> Order:
    """An order older than the return window (and, past 12 months, already due to expire)."""
    occurred_at = timezone.now() - dt.timedelta(days=days)
    return services.order_earn(member=member, store=store, number=number, amount=amount, occurred_at=occurred_at).order


# --- spending ----------------------------------------------------------------------------


def test_concurrent_spends_never_overdraw_the_balance(adjuster):
    member = MemberFactory()
    give_points(member, 70, adjuster)

    outcomes = run_concurrently(
        *(
            lambda i=i: services.points_spend(member=member, amount=10, idempotency_key=f"spend-{i}", reason="reward")
            for i in range(20)
        )
    )

    assert refusals(outcomes) == {"insufficient_balance": 13}
    assert sum(isinstance(o, LedgerEntry) for o in outcomes) == 7
    assert points(member) == (0, 0)
    assert LedgerEntry.objects.filter(member=member, kind=LedgerEntry.Kind.SPEND).count() == 7


def test_concurrent_spends_with_one_idempotency_key_spend_once(adjuster):
    member = MemberFactory()
    give_points(member, 100, adjuster)

    outcomes = run_concurrently(
        *(
            lambda: services.points_spend(member=member, amount=10, idempotency_key="basket-1", reason="reward")
            for _ in range(10)
        )
    )

    assert refusals(outcomes) == {}
    spends = LedgerEntry.objects.filter(member=member, kind=LedgerEntry.Kind.SPEND)
    assert spends.count() == 1
    assert {o.pk for o in outcomes} == {spends.get().pk}
    assert points(member) == (90, 0)


# --- earning -----------------------------------------------------------------------------


@pytest.mark.parametrize("new_member", [True, False], ids=["new member", "member with accounts"])
def test_one_order_sent_ten_times_at_once_earns_once(store, adjuster, new_member):
    member = MemberFactory()
    if not new_member:
        give_points(member, 5, adjuster)
    occurred_at = timezone.now() - dt.timedelta(days=30)

    outcomes = run_concurrently(
        *(
            lambda: services.order_earn(
                member=member, store=store, number="POS-1", amount="88.80", occurred_at=occurred_at
            )
            for _ in range(10)
        )
    )

    assert refusals(outcomes) == {}
    order = Order.objects.get(store=store, number="POS-1")
    assert {o.order.pk for o in outcomes} == {order.pk}
    assert sum(not o.replayed for o in outcomes) == 1
    earns = LedgerEntry.objects.filter(order=order, kind=LedgerEntry.Kind.EARN)
    assert sorted(earns.values_list("currency", flat=True)) == [Currency.GROWTH, Currency.POINTS]
    assert {currency: e.pk for o in outcomes for currency, e in o.entries.items()} == {e.currency: e.pk for e in earns}
    assert Account.objects.filter(member=member).count() == 2
    assert points(member) == (88 + (0 if new_member else 5), 0)


def test_different_orders_of_a_new_member_at_once_open_one_account_per_currency(store):
    member = MemberFactory()
    occurred_at = timezone.now() - dt.timedelta(days=30)

    outcomes = run_concurrently(
        *(
            lambda i=i: services.order_earn(
                member=member, store=store, number=f"POS-{i}", amount="10", occurred_at=occurred_at
            )
            for i in range(10)
        )
    )

    assert refusals(outcomes) == {}
    assert Account.objects.filter(member=member).count() == 2
    assert points(member) == (100, 0)
    assert LedgerEntry.objects.filter(member=member, kind=LedgerEntry.Kind.EARN).count() == 20


@pytest.mark.parametrize("calls_per_member", [1, 4])
def test_one_order_number_sent_for_two_members_at_once_goes_to_one(store, calls_per_member):
    members = MemberFactory.create_batch(2)

    def earn(member):
        return lambda: services.order_earn(member=member, store=store, number="POS-7", amount="50")

    outcomes = run_concurrently(*(earn(member) for member in members for _ in range(calls_per_member)))

    assert refusals(outcomes) == {"order_number_taken": calls_per_member}
    order = Order.objects.get(store=store, number="POS-7")
    winners = [o for o in outcomes if not isinstance(o, Exception)]
    assert {o.order.pk for o in winners} == {order.pk}
    assert len(winners) == calls_per_member
    assert LedgerEntry.objects.filter(kind=LedgerEntry.Kind.EARN).count() == 2
    loser = members[1] if order.member_id == members[0].pk else members[0]
    assert not LedgerEntry.objects.filter(member=loser).exists()


# --- refunds racing spends ---------------------------------------------------------------


def test_refunds_and_spends_at_once_keep_the_ledger_exact(store, adjuster):
    member = MemberFactory()
    order = earn_long_ago(member, store, "POS-9", "100")  # 100 points, available
    give_points(member, 100, adjuster)

    refunds = [
        lambda i=i: services.order_refund(order=order, amount="25", number=f"RF-{i}", reason="returned")
        for i in range(4)
    ]
    spends = [
        lambda i=i: services.points_spend(member=member, amount=30, idempotency_key=f"spend-{i}", reason="reward")
        for i in range(6)
    ]
    outcomes = run_concurrently(*refunds, *spends)

    codes = refusals(outcomes)
    assert set(codes) <= {"insufficient_balance"}
    spent = 30 * sum(isinstance(o, LedgerEntry) for o in outcomes)
    order.refresh_from_db()
    assert (order.refunded_amount, order.status) == (Decimal("100.00"), Order.Status.REFUNDED)
    refund_entries = LedgerEntry.objects.filter(order=order, currency=Currency.POINTS, kind=LedgerEntry.Kind.REFUND)
    taken = -sum(refund_entries.values_list("amount", flat=True))
    shortfall = sum(Refund.objects.filter(order=order).values_list("points_shortfall", flat=True))
    # The full refund owes the order's 100 points: taken back, or recorded as a shortfall.
    assert taken + shortfall == 100
    assert points(member) == (200 - spent - taken, 0)
    # A shortfall only when the spends had left too little to take back.
    assert shortfall == 0 or points(member)[0] == 0


# --- the scheduled jobs ------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [1, 1000])
def test_jobs_running_twice_at_once_do_the_work_once(store, adjuster, chunk_size):
    members = MemberFactory.create_batch(3)
    give_points(members[0], 50, adjuster)
    for index, member in enumerate(members):
        services.order_earn(
            member=member,
            store=store,
            number=f"NEW-{index}",
            amount="30",
            occurred_at=timezone.now() - dt.timedelta(days=1),
        )  # pending for 6 more days
        # Last: every service settles the member's accounts first, which would expire it.
        earn_long_ago(member, store, f"OLD-{index}", "40", days=300)  # expires in about 65 days
    assert not LedgerEntry.objects.filter(kind__in=[LedgerEntry.Kind.EXPIRE, LedgerEntry.Kind.RELEASE]).exists()
    later = timezone.now() + dt.timedelta(days=70)

    outcomes = run_concurrently(
        lambda: services.lots_expire_due(now=later, chunk_size=chunk_size),
        lambda: services.lots_release_matured(now=later, chunk_size=chunk_size),
        lambda: services.lots_expire_due(now=later, chunk_size=chunk_size),
        lambda: services.lots_release_matured(now=later, chunk_size=chunk_size),
        # A member's own spend settles their account too, racing the jobs.
        lambda: services.points_spend(
            member=members[0], amount=60, idempotency_key="spend", reason="reward", now=later
        ),
    )

    assert refusals(outcomes) == {}
    accounts = Account.objects.filter(member__in=members)
    for kind in (LedgerEntry.Kind.EXPIRE, LedgerEntry.Kind.RELEASE):
        per_account = Counter(LedgerEntry.objects.filter(kind=kind).values_list("account_id", flat=True))
        assert per_account == {account.pk: 1 for account in accounts}, kind
    # 12 entries in all; the spend may have written member 0's points release and expiry itself.
    assert 10 <= sum(outcomes[:4]) <= 12
    assert not Lot.objects.filter(pending=True).exists()
    assert not Lot.objects.filter(remaining__gt=0, expires_at__lte=later).exists()
    assert points(members[0]) == (30 + 50 - 60, 0)
    for member in members[1:]:
        assert points(member) == (30, 0)
