"""Customer value figures against a small data set worked out by hand (docs/segments.md)."""

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from loyalty import services
from loyalty.tests.factories import MemberFactory, StoreFactory
from members.models import Member
from operations.metrics import member_metrics
from operations.segments import segment_members

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 6, 15, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


def ago(days: int) -> dt.datetime:
    return NOW - dt.timedelta(days=days)


@pytest.fixture
def shop():
    """Four members:

    - a: 100 (150 days ago), 50 (30 days ago), 30 (10 days ago): bought in both 90-day windows;
    - b: 200 (120 days ago): bought in the previous window only;
    - c: 80 (400 days ago) and 40 (5 days ago) refunded 10: two purchases, one in 12 months;
    - d: 40 (20 days ago) refunded in full: no purchase at all.
    """
    store = StoreFactory()
    people = {name: MemberFactory(joined_at=ago(500), home_store=store, stage="new") for name in "abcd"}
    people["a"].stage = "mature"
    people["a"].save(update_fields=["stage"])

    def order(name, number, days, amount):
        when = ago(days)
        return services.order_earn(
            member=people[name], store=store, number=number, amount=amount, occurred_at=when, now=when
        ).order

    order("a", "A1", 150, 100)
    order("a", "A2", 30, 50)
    order("a", "A3", 10, 30)
    order("b", "B1", 120, 200)
    order("c", "C1", 400, 80)
    c2 = order("c", "C2", 5, 40)
    services.order_refund(order=c2, amount=10, number="C2-R", now=ago(4))
    d1 = order("d", "D1", 20, 40)
    services.order_refund(order=d1, amount=40, number="D1-R", now=ago(19))
    return people


def test_every_figure_matches_the_hand_computed_answer(shop):
    m = member_metrics(now=NOW)
    assert (m.members, m.buyers, m.repeat_buyers, m.orders) == (4, 3, 2, 6)
    assert m.revenue == Decimal("490.00")  # 180 + 200 + (80 + 30)
    assert m.historical_clv == Decimal("122.50")  # 490 / 4 members
    assert m.historical_clv_per_buyer == Decimal("163.33")  # 490 / 3 buyers
    # Last 365 days: a 3 purchases (180), b 1 (200), c 1 (30).
    assert (m.buyers_12m, m.orders_12m, m.revenue_12m) == (3, 5, Decimal("410.00"))
    assert m.average_order_value == Decimal("82.00")  # 410 / 5
    assert m.purchase_frequency == Decimal("1.67")  # 5 / 3
    assert m.repurchase_rate == pytest.approx(2 / 3)
    # Bought 180-90 days ago: a and b; of them a bought again in the last 90 days.
    assert (m.previous_window_buyers, m.retained_buyers) == (2, 1)
    assert m.retention == pytest.approx(0.5)
    assert m.expected_lifetime_years == Decimal("0.50")  # 1 / (1 - 0.5) quarters = 2 quarters
    assert m.predicted_clv == Decimal("68.33")  # 410 / 3 a year x 0.5 years


def test_a_segment_or_any_member_queryset_narrows_the_figures(shop):
    m = member_metrics(segment_members({"stages": ["mature"]}), now=NOW)
    assert (m.members, m.buyers, m.orders, m.revenue) == (1, 1, 3, Decimal("180.00"))
    assert m.retention == 1.0 and m.expected_lifetime_years == Decimal(5)  # capped at five years
    assert m.predicted_clv == Decimal("900.00")  # 180 a year x 5
    only_d = member_metrics(Member.objects.filter(pk=shop["d"].pk), now=NOW)
    assert (only_d.members, only_d.buyers, only_d.historical_clv) == (1, 0, Decimal("0.00"))
    assert only_d.repurchase_rate is None and only_d.retention is None and only_d.predicted_clv is None


def test_an_empty_set_has_no_rates_rather_than_a_division_by_zero():
    m = member_metrics(Member.objects.none(), now=NOW)
    assert m.members == 0 and m.revenue == 0
    assert m.historical_clv is None and m.average_order_value is None and m.purchase_frequency is None
    assert m.as_dict()["predicted_clv"] is None


def test_retention_near_one_is_capped_at_five_years(shop):
    # 9 of 10 previous-window buyers retained: 1 / (4 x 0.1) = 2.5 years; 0.96 would be 6.25 -> 5.
    from operations.metrics import Metrics

    def lifetime(kept, of):
        return Metrics(NOW, 1, 1, 0, 1, Decimal(1), 1, 1, Decimal(1), of, kept).expected_lifetime_years

    assert lifetime(9, 10) == Decimal("2.50")
    assert lifetime(24, 25) == Decimal("5")


def test_the_api_shape_keeps_amounts_exact(shop):
    figures = member_metrics(now=NOW).as_dict()
    assert figures["historical_clv"] == "122.50" and figures["predicted_clv"] == "68.33"
    assert figures["repurchase_rate"] == 0.6667 and figures["retention"] == 0.5


def test_the_query_count_does_not_grow_with_the_data(shop):
    with CaptureQueriesContext(connection) as small:
        member_metrics(now=NOW)
    store = StoreFactory()
    for n in range(20):
        member = MemberFactory(joined_at=ago(50))
        services.order_earn(member=member, store=store, number=f"X{n}", amount=10, occurred_at=ago(40), now=ago(40))
    with CaptureQueriesContext(connection) as large:
        assert member_metrics(now=NOW).members == 24
    assert len(small) == len(large) == 2


def test_the_orders_that_count_are_the_same_in_sql_and_in_the_orm(shop):
    from loyalty.models import ORDERS_COUNTING_SQL, Order

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT o.number FROM loyalty_order o WHERE {ORDERS_COUNTING_SQL}")
        by_sql = sorted(number for (number,) in cursor.fetchall())
    assert by_sql == sorted(Order.objects.counting().values_list("number", flat=True))
    # The partly refunded order counts, the fully refunded one does not.
    assert by_sql == ["A1", "A2", "A3", "B1", "C1", "C2"]
