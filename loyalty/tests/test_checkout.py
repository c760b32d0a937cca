from decimal import Decimal

import pytest

from core.errors import LoyaltyError
from loyalty.checkout import checkout_quote, order_checkout
from loyalty.models import Account, LedgerEntry, Order
from loyalty.selectors import ledger_violations
from loyalty.services import order_earn, points_award

from .factories import MemberFactory, StoreFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def ledger_stays_exact():
    yield
    assert ledger_violations() == []


@pytest.fixture
def member():
    member = MemberFactory()
    points_award(member=member, currency="points", amount=10_000, reason="seed", idempotency_key="seed")
    return member


def balance(member) -> int:
    return Account.objects.get(member=member, currency="points").balance


def test_quote_is_capped_by_the_share_of_the_order(member):
    quote = checkout_quote(member=member, order_total="100.00")
    # half of 100 yuan at 0.01 yuan a point
    assert (quote.max_points, quote.value, quote.point_value) == (5000, Decimal("50.00"), Decimal("0.01"))


def test_quote_is_capped_by_the_balance(member):
    quote = checkout_quote(member=member, order_total="1000.00")
    assert (quote.max_points, quote.value) == (10_000, Decimal("100.00"))


def test_quote_follows_the_settings(member, settings):
    settings.LOYALTY_POINT_VALUE = "0.1"
    settings.LOYALTY_MAX_DEDUCTION_SHARE = "0.2"
    quote = checkout_quote(member=member, order_total="100.00")
    assert (quote.max_points, quote.value) == (200, Decimal("20.00"))


def test_quote_refuses_a_bad_total(member):
    with pytest.raises(LoyaltyError):
        checkout_quote(member=member, order_total="-1")


def test_checkout_spends_points_and_the_points_paid_part_earns_nothing(member):
    store = StoreFactory()
    result, value = order_checkout(member=member, store=store, number="C1", amount="100.00", points=3000)
    assert value == Decimal("30.00")
    assert result.order.points_paid_amount == Decimal("30.00")
    assert result.entries["points"].pending_amount == 70  # earned on the 70 yuan paid with money
    assert balance(member) == 7000
    spend = LedgerEntry.objects.get(kind="spend")
    assert spend.store == store and spend.detail["order_number"] == "C1"


def test_checkout_replay_charges_once(member):
    store = StoreFactory()
    order_checkout(member=member, store=store, number="C1", amount="100.00", points=3000)
    result, _value = order_checkout(member=member, store=store, number="C1", amount="100.00", points=3000)
    assert result.replayed is True
    assert balance(member) == 7000
    assert Order.objects.count() == 1


def test_checkout_refuses_more_than_the_quote(member):
    with pytest.raises(LoyaltyError) as error:
        order_checkout(member=member, store=StoreFactory(), number="C1", amount="100.00", points=5001)
    assert error.value.code == "points_over_limit"
    assert balance(member) == 10_000 and not Order.objects.exists()


def test_checkout_on_a_number_used_by_a_plain_order_changes_nothing(member):
    store = StoreFactory()
    order_earn(member=member, store=store, number="C1", amount="100.00")
    with pytest.raises(LoyaltyError) as error:
        order_checkout(member=member, store=store, number="C1", amount="100.00", points=100)
    assert error.value.code == "order_number_taken"
    assert balance(member) == 10_000
