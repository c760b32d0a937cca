import datetime as dt
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, Permission

from loyalty.tests.factories import MemberFactory
from members.scoping import BRAND_ADMIN
from programme.models import Plan
from programme.payments import FakeAdapter
from programme.services import payment_notification_handle, plan_purchase_start


@pytest.fixture
def plan(db):
    return Plan.objects.create(
        code="plus",
        name="PLUS",
        rank=1,
        price=Decimal("99.00"),
        period=Plan.Period.YEAR,
        trial_days=7,
        earn_multiplier=Decimal("2"),
        monthly_coupon_count=2,
        monthly_coupon_value=Decimal("10"),
        free_shipping=True,
        discount_percent=Decimal("5"),
        welcome_points=500,
    )


@pytest.fixture
def member(db):
    return MemberFactory()


@pytest.fixture
def refunder(django_user_model):
    user = django_user_model.objects.create_user("refunder", is_staff=True)  # no password: hashing one is slow
    user.user_permissions.add(Permission.objects.get(codename="refund_planorder"))
    user.groups.add(Group.objects.get_or_create(name=BRAND_ADMIN)[0])
    return user


def pay(order, *, payment_id=None, amount=None, now=None):
    """Send the fake adapter's signed notification for ``order`` through the real handler."""
    signed = FakeAdapter().sign(
        order_number=order.number, payment_id=payment_id or f"pay-{order.number}", amount=amount or order.amount
    )
    return payment_notification_handle(adapter="fake", headers=signed.headers, body=signed.body, now=now)


@pytest.fixture
def paid(member, plan):
    """A member who bought PLUS (with auto-renew) and paid."""
    checkout = plan_purchase_start(member=member, plan=plan, auto_renew=True, consent=True)
    return pay(checkout.order)


DAY = dt.timedelta(days=1)
