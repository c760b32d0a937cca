"""A refund shortfall is a debt: what comes back to the member pays it first (issue 12, section 1).

Each exploit here is buy, spend what the order earned, refund the order (the refund cannot
take back the spent points: a shortfall), then get points back some other way. Before the
debt existed, every one of them left the member ahead by the shortfall.
"""

import datetime as dt

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from loyalty import services
from loyalty.checkout import order_checkout
from loyalty.models import Account, Allocation, Currency, LedgerEntry
from loyalty.selectors import ledger_violations, member_balances
from rewards import services as rewards
from rewards.tests.factories import RewardFactory

from .factories import MemberFactory, StoreFactory

NOW = timezone.now().replace(microsecond=0)
DAYS = dt.timedelta(days=1)


@pytest.fixture
def member(db):
    return MemberFactory()


@pytest.fixture
def store(db):
    return StoreFactory()


@pytest.fixture(autouse=True)
def ledger_stays_exact(db, request):
    yield
    if "corrupted" not in request.fixturenames:
        assert ledger_violations() == []


@pytest.fixture
def corrupted():
    """The test corrupts the ledger on purpose: the after-test audit is skipped."""


def points(member) -> Account:
    return Account.objects.get(member=member, currency=Currency.POINTS)


def buy(member, store, number: str, amount: str, *, now=NOW):
    """An order old enough that its points are available at once (1 point per yuan)."""
    return services.order_earn(
        member=member, store=store, number=number, amount=amount, occurred_at=now - 30 * DAYS, now=now
    ).order


def spend_and_refund(member, store, *, earned: str = "650"):
    """Buy, spend every point it earned, refund the whole order: a shortfall of all of it."""
    order = buy(member, store, "A1", earned)
    spend = services.points_spend(member=member, amount=int(earned), idempotency_key="s1", reason="reward", now=NOW)
    refund = services.order_refund(order=order, amount=earned, number="R1", now=NOW).refund
    assert refund.points_shortfall == int(earned)
    assert points(member).owed == int(earned)
    return order, spend, refund


def settlements(refund) -> list[LedgerEntry]:
    return list(LedgerEntry.objects.filter(refund=refund, kind=LedgerEntry.Kind.SETTLE).order_by("id"))


def assert_settled(refund, amount: int, *, currency: str = Currency.POINTS):
    """``refund``'s shortfall was paid ``amount`` by settle entries with allocations on real lots."""
    entries = [e for e in settlements(refund) if e.currency == currency]
    assert -sum(e.amount for e in entries) == amount
    for entry in entries:
        assert entry.order_id == refund.order_id
        assert sum(Allocation.objects.filter(entry=entry).values_list("amount", flat=True)) == -entry.amount
    refund.refresh_from_db()
    assert getattr(refund, f"{currency}_settled") == amount


def test_cancelling_the_redemption_after_the_shortfall_pays_the_debt(member, store):
    order = buy(member, store, "A1", "650")
    reward = RewardFactory(points_cost=650, stock=5)
    redemption = rewards.reward_redeem(member=member, reward=reward, idempotency_key="k1")
    refund = services.order_refund(order=order, amount="650", number="R1").refund
    assert refund.points_shortfall == 650

    rewards.redemption_cancel(redemption=redemption)

    account = points(member)
    assert (account.balance, account.owed) == (0, 0), "the member kept the refunded order's points"
    assert_settled(refund, 650)
    assert "R1" in settlements(refund)[0].reason and "A1" in settlements(refund)[0].reason


def test_a_reversed_spend_pays_the_debt_first_and_gives_the_rest_back(member, store):
    buy(member, store, "A0", "200")
    order = buy(member, store, "A1", "650")
    spend = services.points_spend(member=member, amount=850, idempotency_key="s1", reason="reward", now=NOW)
    refund = services.order_refund(order=order, amount="650", number="R1", now=NOW).refund
    assert refund.points_shortfall == 650

    services.points_spend_reverse(entry=spend, reason="cancelled", now=NOW)

    assert (points(member).balance, points(member).owed) == (200, 0)
    assert_settled(refund, 650)


def test_the_refund_of_an_order_paid_with_those_points_pays_the_debt(member, store):
    first = buy(member, store, "A1", "650")
    # Pay 650 points (6.50 yuan) towards a 20-yuan order; its 13.50 paid in money earns 13.
    paid, _value = order_checkout(
        member=member, store=store, number="B1", amount="20.00", points=650, occurred_at=NOW - 30 * DAYS, now=NOW
    )
    refund = services.order_refund(order=first, amount="650", number="R1", now=NOW).refund
    assert refund.points_shortfall == 650 - 13  # the 13 points B1 earned were taken

    services.order_refund(order=paid.order, amount="20.00", number="R2", now=NOW)

    account = points(member)
    assert (account.balance, account.owed) == (0, 0)
    assert_settled(refund, 637)


def test_new_earns_pay_the_debt_as_they_become_available(member, store):
    _order, _spend, refund = spend_and_refund(member, store)
    # Pending for the return window: nothing to pay with yet.
    services.order_earn(member=member, store=store, number="C1", amount="400", now=NOW)
    assert (points(member).balance, points(member).pending, points(member).owed) == (0, 400, 650)
    # Releases of points and growth, and the settlement.
    assert services.lots_release_matured(now=NOW + 8 * DAYS) == 3
    assert (points(member).balance, points(member).owed) == (0, 250)
    buy(member, store, "C2", "300", now=NOW + 9 * DAYS)  # available at once
    assert (points(member).balance, points(member).owed) == (50, 0)
    assert_settled(refund, 650)


def test_awards_and_staff_credits_pay_the_debt(member, store, adjuster):
    _order, _spend, refund = spend_and_refund(member, store)
    services.points_award(
        member=member, currency=Currency.POINTS, amount=500, reason="birthday", idempotency_key="bday", now=NOW
    )
    assert (points(member).balance, points(member).owed) == (0, 150)
    services.points_adjust(
        member=member, currency=Currency.POINTS, amount=200, reason="goodwill", actor=adjuster, now=NOW
    )
    assert (points(member).balance, points(member).owed) == (50, 0)
    assert_settled(refund, 650)


def test_oldest_debt_is_paid_first(member, store):
    for n in (1, 2):
        buy(member, store, f"A{n}", "100")
    services.points_spend(member=member, amount=200, idempotency_key="s1", reason="reward", now=NOW)
    first = services.order_refund(order=member.orders.get(number="A1"), amount="100", number="R1", now=NOW).refund
    second = services.order_refund(
        order=member.orders.get(number="A2"), amount="100", number="R2", now=NOW + DAYS
    ).refund
    buy(member, store, "C1", "150", now=NOW + 2 * DAYS)
    assert_settled(first, 100)
    assert_settled(second, 50)
    assert points(member).owed == 50


def test_with_settling_from_earns_off_new_earns_stay_but_points_given_back_still_pay(member, store, settings):
    settings.LOYALTY_SHORTFALL_SETTLE_FROM_EARNS = False
    _order, spend, refund = spend_and_refund(member, store)
    buy(member, store, "C1", "300")
    assert (points(member).balance, points(member).owed) == (300, 650)
    services.points_spend_reverse(entry=spend, reason="cancelled", now=NOW)
    assert (points(member).balance, points(member).owed) == (300, 0)
    assert_settled(refund, 650)


def test_growth_shortfalls_are_debts_too(member, store, adjuster):
    order = buy(member, store, "A1", "100")
    services.points_adjust(
        member=member, currency=Currency.GROWTH, amount=-100, reason="correction", actor=adjuster, now=NOW
    )
    refund = services.order_refund(order=order, amount="100", number="R1", now=NOW).refund
    assert refund.growth_shortfall == 100
    buy(member, store, "C1", "60")
    growth = Account.objects.get(member=member, currency=Currency.GROWTH)
    assert (growth.balance, growth.owed) == (0, 40)
    assert_settled(refund, 60, currency=Currency.GROWTH)


def test_the_balance_shows_what_is_owed_and_from_which_refund(member, store):
    spend_and_refund(member, store)
    balance = member_balances(member)[Currency.POINTS]
    assert balance.owed == 650
    assert [(d.amount, d.order_number, d.refund_number) for d in balance.owed_from] == [(650, "A1", "R1")]


def test_audit_reports_a_member_ahead_of_their_purchases(member, store, monkeypatch, corrupted):
    """The ledger as it was before the debt: consistent with itself, but the member is ahead."""
    monkeypatch.setattr(services.spending, "_debt_collect", lambda account, **kw: [])
    _order, spend, _refund = spend_and_refund(member, store)
    services.points_spend_reverse(entry=spend, reason="cancelled", now=NOW)
    assert points(member).balance == 650
    (violation,) = ledger_violations()
    assert "value: 650 owed while 650 are available (a debt is paid first)" in str(violation)
    with pytest.raises(CommandError, match="fail the ledger invariants"):
        call_command("audit_ledger")


def test_audit_reports_an_owed_figure_that_disagrees_with_the_refunds(member, store, corrupted):
    spend_and_refund(member, store)
    Account.objects.filter(member=member, currency=Currency.POINTS).update(owed=100)
    (violation,) = ledger_violations()
    assert "owed 100 != open refund shortfalls 650" in str(violation)
