"""The till's points payment (积分抵扣) and refunds: the same services as the API's
checkout and refund, the store and role checks of the till."""

from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.contrib.messages import get_messages
from django.core.management import call_command
from django.urls import reverse

from console.till import till_order_record, till_order_refund
from core.errors import LoyaltyError
from loyalty.models import Account, Order, Refund
from loyalty.selectors import ledger_violations
from loyalty.services import points_award
from loyalty.tests.factories import MemberFactory, StoreFactory
from members.models import StaffAction, StaffProfile
from members.scoping import CLERK, STORE_MANAGER

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def ledger_stays_exact():
    yield
    assert ledger_violations() == []


@pytest.fixture
def till(django_user_model):
    call_command("setup_roles")
    store, other = StoreFactory(code="a", name="Jing'an"), StoreFactory(code="b", name="Xuhui")
    member = MemberFactory(phone="+8613800138000", home_store=other)
    points_award(member=member, currency="points", amount=5000, reason="welcome", idempotency_key="welcome")

    def staff(username, role):
        user = django_user_model.objects.create_user(username, is_staff=True)
        user.groups.add(Group.objects.get(name=role))
        StaffProfile.objects.create(user=user).stores.set([store])
        return user

    return {
        "store": store,
        "other": other,
        "member": member,
        "clerk": staff("clerk", CLERK),
        "manager": staff("manager", STORE_MANAGER),
    }


def balance(member) -> int:
    return Account.objects.get(member=member, currency="points").balance


def test_an_order_paid_partly_with_points_spends_them_and_earns_on_the_rest(till):
    member = till["member"]
    result = till_order_record(
        actor=till["clerk"],
        member_number=member.member_number,
        store=till["store"],
        number="S-1",
        amount="100",
        points="2,000",
    )
    order = Order.objects.get(number="S-1")
    assert order.points_paid_amount == Decimal("20.00")  # 2,000 points at ¥0.01
    assert balance(member) == 3000  # spent now; the rest's points are pending
    assert result.entries["points"].pending_amount == 80
    assert StaffAction.objects.get(action=StaffAction.Action.RECORD_ORDER).detail["points_paid"] == 2000


@pytest.mark.parametrize(
    "points, code", [("12.5", "invalid_amount"), ("abc", "invalid_amount"), ("6000", "points_over_limit")]
)
def test_bad_points_are_refused_and_nothing_is_written(till, points, code):
    with pytest.raises(LoyaltyError) as refused:
        till_order_record(
            actor=till["clerk"],
            member_number=till["member"].member_number,
            store=till["store"],
            number="S-2",
            amount="100",
            points=points,
        )
    assert refused.value.code == code
    assert not Order.objects.exists() and balance(till["member"]) == 5000 and not StaffAction.objects.exists()


def test_a_manager_refunds_in_part_then_in_full_and_a_resend_refunds_once(till):
    member = till["member"]
    till_order_record(
        actor=till["manager"], member_number=member.member_number, store=till["store"], number="S-3", amount="200"
    )
    first = till_order_refund(
        actor=till["manager"], store=till["store"], order_number="S-3", amount="50", submission="form1"
    )
    again = till_order_refund(
        actor=till["manager"], store=till["store"], order_number="S-3", amount="50", submission="form1"
    )
    assert not first.replayed and again.replayed and Refund.objects.count() == 1
    rest = till_order_refund(actor=till["manager"], store=till["store"], order_number="S-3", submission="form2")
    assert rest.refund.amount == Decimal("150.00")
    assert Order.objects.get(number="S-3").status == Order.Status.REFUNDED


def test_a_clerk_cannot_refund_and_nobody_refunds_at_another_store(till):
    till_order_record(
        actor=till["manager"],
        member_number=till["member"].member_number,
        store=till["store"],
        number="S-4",
        amount="80",
    )
    with pytest.raises(LoyaltyError) as clerk:
        till_order_refund(actor=till["clerk"], store=till["store"], order_number="S-4", submission="x")
    with pytest.raises(LoyaltyError) as elsewhere:
        till_order_refund(actor=till["manager"], store=till["other"], order_number="S-4", submission="y")
    with pytest.raises(LoyaltyError) as unknown:
        till_order_refund(actor=till["manager"], store=till["store"], order_number="NOPE", submission="z")
    assert (clerk.value.code, elsewhere.value.code, unknown.value.code) == (
        "permission_denied",
        "store_forbidden",
        "order_not_found",
    )
    assert not Refund.objects.exists()


def test_the_till_page_refunds_and_says_the_new_balance_with_growth(client, till):
    member = till["member"]
    till_order_record(
        actor=till["manager"], member_number=member.member_number, store=till["store"], number="S-5", amount="1280"
    )
    client.force_login(till["manager"])
    page = client.get(reverse("loyalty_till"), {"q": member.member_number}).content.decode()
    assert 'id="till-refunds"' in page and "¥1,280.00" in page and 'id="till-points">5,000<' in page
    response = client.post(
        reverse("loyalty_till"),
        {"action": "refund", "order_number": "S-5", "store": till["store"].pk, "submission": "abc", "q": "x"},
    )
    assert response.status_code == 302
    (message,) = [str(m) for m in get_messages(response.wsgi_request)]
    assert (
        "Refunded ¥1,280.00 of order S-5" in message
        and "New balance: 5,000 points available, 0 pending; growth 0." in message
    )
