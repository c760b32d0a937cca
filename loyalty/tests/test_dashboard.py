"""The dashboard's figures against a small data set whose answers are worked out by hand."""

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Permission
from django.core.cache import cache

from loyalty import dashboard, services
from loyalty.models import MemberTier, Tier
from loyalty.tests.factories import MemberFactory, StoreFactory

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = dt.datetime(2026, 6, 15, 12, 0, tzinfo=SHANGHAI)


def at(month: int, day: int, year: int = 2026) -> dt.datetime:
    return dt.datetime(year, month, day, 10, 0, tzinfo=SHANGHAI)


@pytest.fixture(autouse=True)
def empty_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def programme(settings):
    """Five members; points at 1 per yuan (no rules), pending 7 days, expiring after 12 months."""
    settings.LOYALTY_POINT_VALUE = "0.01"
    store = StoreFactory()
    a = MemberFactory(joined_at=at(4, 10))
    b = MemberFactory(joined_at=at(6, 1))
    c = MemberFactory(joined_at=at(1, 5, 2025))
    d = MemberFactory(joined_at=at(6, 5))
    e = MemberFactory(joined_at=at(3, 1))

    def order(member, number, when, amount):
        return services.order_earn(member=member, store=store, number=number, amount=amount, occurred_at=when, now=when)

    order(e, "E1", at(3, 20), 20)
    order(a, "A1", at(4, 12), 100)
    order(a, "A2", at(5, 20), 50)
    order(a, "A3", at(6, 10), 30)
    order(b, "B1", at(6, 2), 200)
    order(c, "C1", at(6, 1, 2025), 80)  # its 80 points expire on 2026-06-01
    refunded = order(d, "D1", at(6, 6), 40).order
    services.order_refund(order=refunded, amount=40, number="R1", now=at(6, 7))  # inside the window: cancelled
    services.lots_release_matured(now=at(6, 14))
    services.points_spend(member=b, amount=50, idempotency_key="b-spend", reason="reward", now=at(6, 14))
    services.lots_expire_due(now=NOW)

    bronze = Tier.objects.create(code="bronze", name="Bronze", rank=0, qualify_threshold=0, retain_threshold=0)
    gold = Tier.objects.create(code="gold", name="Gold", rank=1, qualify_threshold=100, retain_threshold=50)
    Tier.objects.create(code="black", name="Black", rank=2, qualify_threshold=10_000, retain_threshold=5_000)
    MemberTier.objects.create(member=a, tier=gold, started_at=NOW, review_at=NOW + dt.timedelta(days=365))
    MemberTier.objects.create(member=b, tier=bronze, started_at=NOW, review_at=NOW + dt.timedelta(days=365))
    return {"a": a, "b": b, "c": c, "d": d, "e": e}


@pytest.mark.django_db
def test_every_figure_matches_the_hand_computed_answer(programme):
    board = dashboard.compute(NOW)

    assert (board.members_total, board.members_new_this_month) == (5, 2)  # b and d joined in June
    # Since 16 May: a and b (d's only order was refunded in full); since 17 March: e too.
    assert (board.active_30, board.active_90) == (2, 3)
    # Buyers since 15 June 2025: a (3 orders), b, e; c's order is older. One repeat buyer.
    assert (board.buyers_12m, board.repeat_buyers_12m) == (3, 1)
    assert board.repurchase_rate == pytest.approx(1 / 3)

    months = {m.month: m for m in board.points_by_month}
    assert len(months) == 12 and min(months) == dt.date(2025, 7, 1) and max(months) == dt.date(2026, 6, 1)
    assert months[dt.date(2026, 3, 1)].issued == 20
    assert months[dt.date(2026, 4, 1)].issued == 100
    assert months[dt.date(2026, 5, 1)].issued == 50
    june = months[dt.date(2026, 6, 1)]
    assert (june.issued, june.redeemed, june.expired, june.taken_back) == (270, 50, 80, 40)
    assert months[dt.date(2025, 7, 1)].issued == 0  # c's 2025 earn is before the window
    assert board.redemption_rate == pytest.approx(50 / 440)
    assert board.breakage_rate == pytest.approx(80 / 130)

    # a: 150 available + 30 pending (A3 is inside its window); b: 200 - 50; e: 20; c's expired.
    assert (board.outstanding_points, board.pending_points) == (320, 30)
    assert board.liability == Decimal("3.50")

    cohorts = {cohort.month: cohort for cohort in board.cohorts}
    assert sorted(cohorts) == [dt.date(2026, 3, 1), dt.date(2026, 4, 1), dt.date(2026, 6, 1)]  # c joined in 2025
    assert cohorts[dt.date(2026, 3, 1)].retention == [1.0, 0.0, 0.0, 0.0, None, None]
    assert cohorts[dt.date(2026, 4, 1)].retention == [1.0, 1.0, 1.0, None, None, None]
    june_cohort = cohorts[dt.date(2026, 6, 1)]
    assert (june_cohort.size, june_cohort.retention) == (2, [0.5, None, None, None, None, None])

    assert [(t.name, t.members) for t in board.tiers] == [("Bronze", 1), ("Gold", 1), ("Black", 0)]
    assert board.without_tier == 3


@pytest.mark.django_db
def test_an_empty_programme_has_no_rates_rather_than_a_division_by_zero():
    board = dashboard.compute(NOW)
    assert board.members_total == 0
    assert board.repurchase_rate is None and board.redemption_rate is None and board.breakage_rate is None
    assert board.cohorts == [] and board.liability == 0


@pytest.mark.django_db
def test_the_figures_are_computed_once_and_then_read_from_the_cache(programme, django_assert_num_queries):
    first = dashboard.dashboard(now=NOW)
    with django_assert_num_queries(0):
        assert dashboard.dashboard() == first
    MemberFactory()
    assert dashboard.dashboard().members_total == 5  # still the cached figures
    assert dashboard.dashboard(refresh=True).members_total == 6


@pytest.mark.django_db
def test_the_query_count_does_not_grow_with_the_data(programme):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as small:
        dashboard.compute(NOW)
    store = StoreFactory()
    for n in range(30):
        member = MemberFactory(joined_at=at(5, 1))
        services.order_earn(member=member, store=store, number=f"X{n}", amount=10, occurred_at=at(5, 2), now=at(5, 2))
    with CaptureQueriesContext(connection) as large:
        assert dashboard.compute(NOW).members_total == 35
    assert len(small) == len(large) == 9


@pytest.mark.django_db
def test_the_page_needs_the_dashboard_permission(client, staff_user, programme):
    client.force_login(staff_user)
    assert client.get("/admin/dashboard/").status_code == 403
    staff_user.user_permissions.add(Permission.objects.get(codename="view_dashboard"))
    response = client.get("/admin/dashboard/")
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="members-total">5<' in page and "33.3%" in page and "vendor/chartjs/chart.umd.min.js" in page
    assert "Retention by monthly cohort" in page


@pytest.mark.django_db
def test_compute_again_recomputes_and_returns_to_the_page(client, staff_user, programme):
    staff_user.user_permissions.add(Permission.objects.get(codename="view_dashboard"))
    client.force_login(staff_user)
    client.get("/admin/dashboard/")
    MemberFactory()
    response = client.post("/admin/dashboard/")
    assert response.status_code == 302 and response.url == "/admin/dashboard/"
    assert 'id="members-total">6<' in client.get("/admin/dashboard/").content.decode()


@pytest.mark.django_db
def test_the_page_reads_in_chinese(client, staff_user, programme):
    staff_user.user_permissions.add(Permission.objects.get(codename="view_dashboard"))
    client.force_login(staff_user)
    page = client.get("/admin/dashboard/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "运营看板" in page and "复购率" in page
