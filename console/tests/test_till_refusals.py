"""The till's services (console.till): orders from the till are in the store channel, and
every refusal says why in plain words and changes nothing (docs/till.md)."""

import datetime as dt
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.utils import timezone

from console.till import till_coupon_verify, till_lookup, till_order_record, till_order_refund
from core.errors import LoyaltyError
from loyalty.checkout import order_checkout
from loyalty.models import Account, LedgerEntry, Order, Refund
from loyalty.selectors import ledger_violations
from loyalty.services import points_award
from loyalty.tests.factories import MemberFactory, StoreFactory
from members.member_code import member_code_issue
from members.models import StaffAction, StaffProfile
from members.scoping import STORE_MANAGER
from rewards.models import Coupon
from rewards.tests.factories import CouponFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def ledger_stays_exact():
    yield
    assert ledger_violations() == []


@pytest.fixture
def till(django_user_model):
    call_command("setup_roles")
    store = StoreFactory(code="a", name="Jing'an")
    member = MemberFactory(phone="+8613800138000")
    points_award(member=member, currency="points", amount=1_500, reason="welcome", idempotency_key="welcome")
    manager = django_user_model.objects.create_user("manager", is_staff=True)
    manager.groups.add(Group.objects.get(name=STORE_MANAGER))
    StaffProfile.objects.create(user=manager).stores.set([store])
    return {"store": store, "member": member, "manager": manager}


def state():
    """Everything a till action writes, to show that a refusal wrote none of it."""
    return (
        Order.objects.count(),
        Refund.objects.count(),
        LedgerEntry.objects.count(),
        StaffAction.objects.count(),
        sorted(Account.objects.values_list("currency", "balance", "pending")),
        sorted(Coupon.objects.values_list("code", "status")),
    )


def record(till, **kwargs):
    values = {"number": "S-1", "amount": "100", **kwargs}
    return till_order_record(
        actor=till["manager"], member_number=till["member"].member_number, store=till["store"], **values
    )


def test_an_order_from_the_till_is_in_the_store_channel_with_or_without_points(till):
    plain = record(till, number="S-1")
    paid = record(till, number="S-2", amount="1,280.00", points="500")
    assert plain.order.channel == paid.order.channel == Order.Channel.STORE
    assert paid.order.points_paid_amount == Decimal("5.00")


def test_the_checkout_service_keeps_its_default_channel_and_takes_another(till):
    member, store = till["member"], till["store"]
    default, _value = order_checkout(member=member, store=store, number="API-1", amount="50", points=0)
    online, _value = order_checkout(
        member=member, store=store, number="API-2", amount="50", points=100, channel=Order.Channel.MINI_PROGRAM
    )
    assert default.order.channel == Order.Channel.STORE
    assert online.order.channel == Order.Channel.MINI_PROGRAM


@pytest.mark.parametrize(
    "query, code, words",
    [
        ("ABCDEFGHJKMN", "till_not_found", "Nothing matches"),  # a coupon code nobody has
        ("12345", "till_not_found", "Enter a phone number, a member number or a coupon code"),
        ("", "till_query_invalid", "Enter a phone number"),
    ],
)
def test_a_bad_code_is_refused_with_what_to_type(till, query, code, words):
    before = state()
    with pytest.raises(LoyaltyError) as refused:
        till_lookup(query=query)
    assert refused.value.code == code and words in str(refused.value.message)
    assert state() == before


def test_an_altered_or_stale_member_card_code_is_refused(till):
    now = timezone.now()
    code = member_code_issue(till["member"], now=now).code
    altered = code[:-1] + ("0" if code[-1] != "0" else "1")
    with pytest.raises(LoyaltyError) as bad:
        till_lookup(query=altered, now=now)
    with pytest.raises(LoyaltyError) as stale:
        till_lookup(query=code, now=now + dt.timedelta(hours=1))
    assert bad.value.code in ("member_code_invalid", "member_code_expired")
    assert stale.value.code == "member_code_expired"
    assert till_lookup(query=code, now=now).member == till["member"]


def test_more_points_than_the_member_has_are_refused_with_both_numbers(till):
    before = state()
    with pytest.raises(LoyaltyError) as refused:
        record(till, amount="10,000", points="2,000")
    assert refused.value.code == "points_over_limit"
    assert str(refused.value.message) == "Not enough points: 1,500 available, 2,000 asked for."
    assert state() == before


def test_more_points_than_the_order_allows_are_refused_with_the_limit(till):
    points_award(member=till["member"], currency="points", amount=100_000, reason="gift", idempotency_key="gift")
    before = state()
    with pytest.raises(LoyaltyError) as refused:
        record(till, amount="1,000", points="60,000")  # half of ¥1,000 is 50,000 points
    assert str(refused.value.message) == "At most 50,000 points can pay for this order (¥500.00)."
    assert state() == before


def test_a_refund_over_what_is_left_is_refused_and_nothing_is_refunded(till):
    record(till, number="S-9", amount="1280.50")
    till_order_refund(actor=till["manager"], store=till["store"], order_number="S-9", amount="280.50", submission="f1")
    before = state()
    with pytest.raises(LoyaltyError) as refused:
        till_order_refund(
            actor=till["manager"], store=till["store"], order_number="S-9", amount="1,000.01", submission="f2"
        )
    assert refused.value.code == "refund_too_large"
    assert str(refused.value.message) == "At most ¥1,000.00 is left to refund on order S-9; nothing was refunded."
    assert state() == before
    with pytest.raises(LoyaltyError) as zero:
        till_order_refund(actor=till["manager"], store=till["store"], order_number="S-9", amount="0", submission="f3")
    assert zero.value.code == "invalid_amount" and state() == before


@pytest.mark.parametrize(
    "status, expires, code, words",
    [
        (Coupon.Status.USED, 5, "coupon_used", "already used"),
        (Coupon.Status.ISSUED, -1, "coupon_expired", "expired"),
        (Coupon.Status.VOID, 5, "coupon_void", "void"),
    ],
)
def test_a_used_expired_or_void_coupon_is_refused_and_stays_as_it_was(till, status, expires, code, words):
    now = timezone.now()
    coupon = CouponFactory(
        member=till["member"],
        status=status,
        valid_from=now - dt.timedelta(days=10),
        expires_at=now + dt.timedelta(days=expires),
        used_at=now - dt.timedelta(hours=1) if status == Coupon.Status.USED else None,
        voided_at=now - dt.timedelta(hours=1) if status == Coupon.Status.VOID else None,
        used_store=till["store"] if status == Coupon.Status.USED else None,
    )
    before = state()
    with pytest.raises(LoyaltyError) as refused:
        till_coupon_verify(actor=till["manager"], code=coupon.code, store=till["store"], submission="s1")
    assert refused.value.code == code
    assert words in str(refused.value.message).lower()
    assert state() == before


def test_a_coupon_verified_once_is_refused_on_a_new_form(till):
    coupon = CouponFactory(member=till["member"])
    till_coupon_verify(actor=till["manager"], code=coupon.code, store=till["store"], submission="s1")
    before = state()
    with pytest.raises(LoyaltyError) as refused:
        till_coupon_verify(actor=till["manager"], code=coupon.code, store=till["store"], submission="s2")
    assert refused.value.code == "coupon_used" and "already used" in str(refused.value.message)
    assert state() == before
