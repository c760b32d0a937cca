"""The paid membership dashboard against figures worked out by hand."""

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from loyalty.tests.factories import MemberFactory
from programme.models import Membership, PlanGrant, PlanOrder
from programme.selectors import dashboard
from rewards.models import Coupon

pytestmark = pytest.mark.django_db

TZ = timezone.get_current_timezone()
NOW = dt.datetime(2026, 11, 20, 12, tzinfo=TZ)
YEAR = dt.timedelta(days=365)


def at(month: int, day: int, hour: int = 10) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, tzinfo=TZ)


def order(member, plan, kind, paid_at, amount="99.00", status="paid", refunded_at=None):
    return PlanOrder.objects.create(
        number=f"P{PlanOrder.objects.count() + 1}",
        member=member,
        plan=plan,
        kind=kind,
        amount=Decimal(amount),
        status=status,
        adapter="fake",
        payment_id=None if status == "pending" else f"pay-{PlanOrder.objects.count() + 1}",
        paid_at=paid_at,
        created_at=paid_at or NOW,
        refunded_at=refunded_at,
    )


def membership(member, plan, status, started_at, ends_at, on_trial=False, ended_at=None):
    return Membership.objects.create(
        member=member,
        plan=plan,
        status=status,
        started_at=started_at,
        ends_at=ends_at,
        on_trial=on_trial,
        ended_at=ended_at,
    )


def gifts(plan_order, when, *, welcome=0, coupons=0):
    if welcome:
        PlanGrant.objects.create(
            order=plan_order,
            member=plan_order.member,
            kind=PlanGrant.Kind.WELCOME_POINTS,
            period=f"{when:%Y-%m}",
            points=welcome,
            created_at=when,
        )
    for seq in range(coupons):
        coupon = Coupon.objects.create(
            member=plan_order.member,
            title="10 off",
            kind="amount_off",
            value=Decimal("10"),
            source="programme",
            issued_at=when,
            valid_from=when,
            expires_at=when + dt.timedelta(days=30),
        )
        PlanGrant.objects.create(
            order=plan_order,
            member=plan_order.member,
            kind=PlanGrant.Kind.MONTHLY_COUPON,
            period=f"{when:%Y-%m}",
            seq=seq,
            coupon=coupon,
            created_at=when,
        )


@pytest.fixture
def figures(plan, settings):
    settings.LOYALTY_POINT_VALUE = "0.01"
    a, b, c, d, e = (MemberFactory() for _ in range(5))
    # A: bought in September, renewed in October, active; welcome 500 and 2 coupons a month
    first = order(a, plan, "purchase", at(9, 10))
    gifts(first, at(9, 10), welcome=500, coupons=2)
    renewal = order(a, plan, "renewal", at(10, 10))
    gifts(renewal, at(10, 10), coupons=2)
    membership(a, plan, "active", at(9, 10), NOW + YEAR)
    # B: bought in October, refunded three days later (cool-off)
    bought = order(b, plan, "purchase", at(10, 5), status="refunded", refunded_at=at(10, 8))
    gifts(bought, at(10, 5), welcome=500)
    membership(b, plan, "refunded", at(10, 5), at(10, 8), ended_at=at(10, 8))
    # C: a 30-yuan month in September, ended on 1 November
    order(c, plan, "purchase", at(9, 1), amount="30.00")
    membership(c, plan, "ended", at(9, 1), at(11, 1, 0), ended_at=at(11, 1, 1))
    # D: on a free trial: not a paying member; its order waits
    order(d, plan, "purchase", None, status="pending")
    membership(d, plan, "active", at(11, 15), at(11, 22), on_trial=True)
    # E: bought in November
    order(e, plan, "purchase", at(11, 3))
    membership(e, plan, "active", at(11, 3), at(11, 3) + YEAR)
    return dashboard(now=NOW, months=3)


def test_paying_members_exclude_trials_ended_and_refunded(figures):
    assert figures["paying_members"] == 2  # A and E


def test_months_by_hand(figures):
    nov, oct_, sep = figures["months"]
    assert nov == {
        "month": "2026-11",
        "new": 1,
        "renewed": 0,
        "churned": 1,
        "renewal_rate": 0.0,
        "revenue": Decimal("99.00"),
        "refunded": Decimal("0.00"),
        "welcome_points": 0,
        "coupons": 0,
        "benefit_cost": Decimal("0.00"),
    }
    assert oct_ == {
        "month": "2026-10",
        "new": 1,
        "renewed": 1,
        "churned": 1,
        "renewal_rate": 0.5,
        "revenue": Decimal("198.00"),
        "refunded": Decimal("99.00"),
        "welcome_points": 500,
        "coupons": 2,
        "benefit_cost": Decimal("25.00"),  # 500 points × 0.01 + 2 × 10 yuan
    }
    assert sep == {
        "month": "2026-09",
        "new": 2,
        "renewed": 0,
        "churned": 0,
        "renewal_rate": None,
        "revenue": Decimal("129.00"),
        "refunded": Decimal("0.00"),
        "welcome_points": 500,
        "coupons": 2,
        "benefit_cost": Decimal("25.00"),
    }


def test_a_month_boundary_is_local_time(plan):
    member = MemberFactory()
    # 00:30 on 1 November in Shanghai is still 31 October in UTC: it counts in November
    order(member, plan, "purchase", dt.datetime(2026, 11, 1, 0, 30, tzinfo=TZ))
    nov, oct_ = dashboard(now=NOW, months=2)["months"]
    assert (nov["new"], oct_["new"]) == (1, 0)


def test_the_dashboard_query_count_does_not_grow_with_members(plan, django_assert_max_num_queries):
    for _ in range(5):
        member = MemberFactory()
        order(member, plan, "purchase", at(11, 2))
    with django_assert_max_num_queries(5):
        dashboard(now=NOW)


def test_api_dashboard_needs_the_dashboard_permission(figures, staff_user, django_user_model):
    client = APIClient()
    client.force_authenticate(staff_user)
    assert client.get("/api/v1/programme/dashboard/").status_code == 403
    boss = django_user_model.objects.create_superuser("boss", "b@example.com", None)
    client.force_authenticate(boss)
    body = client.get("/api/v1/programme/dashboard/").json()
    assert "benefit_cost" in body["months"][0]
