"""Tier and paid plan benefits applied at checkout: quote, order, POS lookup, till card."""

from decimal import Decimal

import pytest
from django.utils import timezone

from api.tests.conftest import client_for_key, client_for_member
from console.till import till_card
from core.errors import LoyaltyError
from loyalty import services as ledger
from loyalty.checkout import checkout_benefits, checkout_quote, order_checkout
from loyalty.models import Benefit, MemberTier, Order, Tier
from loyalty.selectors import ledger_violations
from loyalty.tests.factories import MemberFactory, StoreFactory
from members.models import Member

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def ledger_stays_exact():
    yield
    assert ledger_violations() == []


@pytest.fixture
def gold(db):
    tier = Tier.objects.create(code="gold", name="Gold", rank=2)
    Benefit.objects.create(tier=tier, kind=Benefit.Kind.DISCOUNT_PERCENT, value=Decimal("10"), title="10% off")
    Benefit.objects.create(tier=tier, kind=Benefit.Kind.DISCOUNT_PERCENT, value=Decimal("8"), title="older offer")
    Benefit.objects.create(tier=tier, kind=Benefit.Kind.FREE_SHIPPING, value=0, title="Free shipping")
    Benefit.objects.create(
        tier=tier, kind=Benefit.Kind.DISCOUNT_PERCENT, value=Decimal("50"), title="retired", is_active=False
    )
    return tier


def in_tier(member, tier):
    now = timezone.now()
    MemberTier.objects.update_or_create(member=member, defaults={"tier": tier, "started_at": now, "review_at": now})
    return member


@pytest.fixture
def member(db, gold):
    member = in_tier(MemberFactory(), gold)
    ledger.points_award(member=member, currency="points", amount=20_000, reason="seed", idempotency_key="seed")
    return member


def test_quote_takes_the_discount_off_first_then_caps_points_on_the_rest(member):
    benefits = checkout_benefits(member)
    assert (benefits.discount_percent, benefits.free_shipping, benefits.sources) == (
        Decimal("10"),
        True,
        ("tier:gold",),
    )
    quote = checkout_quote(member=member, order_total="199.99")
    # 10% of 199.99 = 19.999 -> 19.99 off (rounded down); 180.00 due; half of it in points
    assert (quote.member_discount, quote.amount_due, quote.max_points) == (Decimal("19.99"), Decimal("180.00"), 9000)
    assert quote.free_shipping is True


def test_checkout_records_the_order_after_the_discount_with_the_benefits_used(member):
    store = StoreFactory()
    result, value = order_checkout(member=member, store=store, number="C1", amount="200.00", points=9000)
    order = Order.objects.get(pk=result.order.pk)
    assert (order.amount, order.member_discount, order.points_paid_amount) == (
        Decimal("180.00"),
        Decimal("20.00"),
        Decimal("90.00"),
    )
    assert order.benefits["sources"] == ["tier:gold"] and order.benefits["free_shipping"] is True
    assert result.entries["points"].pending_amount == 90  # earned on the 90 yuan paid with money
    # a resend is a replay, even after the tier lost its discount
    Benefit.objects.filter(kind=Benefit.Kind.DISCOUNT_PERCENT).update(is_active=False)
    again, _value = order_checkout(member=member, store=store, number="C1", amount="200.00", points=9000)
    assert again.replayed and Order.objects.count() == 1


def test_points_over_the_share_of_the_discounted_price_are_refused(member):
    with pytest.raises(LoyaltyError) as error:
        order_checkout(member=member, store=StoreFactory(), number="C1", amount="200.00", points=9001)
    assert error.value.code == "points_over_limit" and error.value.extra["max_points"] == 9000
    assert not Order.objects.exists()


def test_a_checkout_without_points_still_applies_and_records_the_discount(member):
    result, value = order_checkout(member=member, store=StoreFactory(), number="C1", amount="50.00", points=0)
    order = Order.objects.get(pk=result.order.pk)
    assert (value, order.amount, order.member_discount) == (Decimal("0.00"), Decimal("45.00"), Decimal("5.00"))
    with pytest.raises(LoyaltyError) as error:
        order_checkout(member=member, store=StoreFactory(), number="C2", amount="50.00", points=-1)
    assert error.value.code == "invalid_amount"


def test_no_benefit_for_a_member_without_one_or_frozen(member):
    plain = MemberFactory()
    assert checkout_quote(member=plain, order_total="100").member_discount == 0
    Member.objects.filter(pk=member.pk).update(status=Member.Status.FROZEN)
    member.refresh_from_db()
    assert checkout_benefits(member).discount_percent == 0


def test_the_paid_plan_joins_by_the_setting(paid, gold, settings):
    # conftest's PLUS plan: 5% off and free shipping; Gold: 10% off
    owner = in_tier(paid.member, gold)
    settings.PROGRAMME_MULTIPLIERS = "best"
    best = checkout_benefits(owner)
    assert (best.discount_percent, best.sources) == (Decimal("10"), ("tier:gold", "plan:plus"))
    settings.PROGRAMME_MULTIPLIERS = "multiply"
    assert checkout_benefits(owner).discount_percent == Decimal("14.50")  # 100 - 90% × 95%
    plus_only = paid.member
    MemberTier.objects.filter(member=plus_only).delete()
    alone = checkout_benefits(plus_only)
    assert (alone.discount_percent, alone.free_shipping, alone.sources) == (Decimal("5"), True, ("plan:plus",))


def test_pos_lookup_quote_and_checkout_carry_the_benefits(member):
    store = StoreFactory()
    client = client_for_key(store)
    card = client.get("/api/v1/pos/members/lookup/", {"member_number": member.member_number}).json()
    assert card["benefits"] == {"discount_percent": "10.00", "free_shipping": True, "sources": ["tier:gold"]}
    quote = client.post(
        "/api/v1/pos/checkout/quote/", {"member_number": member.member_number, "order_total": "100.00"}, format="json"
    ).json()
    assert (quote["amount_due"], quote["member_discount"], quote["max_points"]) == ("90.00", "10.00", 4500)
    assert client_for_member(member).get("/api/v1/me/checkout-quote/", {"order_total": "100.00"}).json() == quote
    body = {"member_number": member.member_number, "number": "P-1", "amount": "100.00", "points": 1000}
    paid = client.post("/api/v1/pos/checkout/", body, format="json").json()
    assert (paid["amount"], paid["member_discount"]) == ("90.00", "10.00")
    assert paid["benefits"]["sources"] == ["tier:gold"]


def test_the_till_card_shows_the_member_price(member, admin_client):
    card = till_card(member)
    assert card.benefits.discount_percent == Decimal("10") and card.benefits.free_shipping
    page = admin_client.get("/admin/till/", {"q": member.member_number})
    assert 'id="till-benefits"' in page.content.decode()
