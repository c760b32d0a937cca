"""The dashboard's figures against a small data set whose answers are worked out by hand."""

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.cache import cache

from loyalty import services
from loyalty.models import MemberTier, Tier
from loyalty.tests.factories import MemberFactory, StoreFactory
from members.models import Member, StaffProfile, StageChange, Store
from members.scoping import BRAND_ADMIN
from operations import dashboard

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = dt.datetime(2026, 6, 15, 12, 0, tzinfo=SHANGHAI)
# Twelve calendar months to today: per-month points, a year of cohorts.
YEAR = dashboard.Period(start=dt.date(2025, 7, 1), end=dt.date(2026, 6, 15))


def at(month: int, day: int, year: int = 2026) -> dt.datetime:
    return dt.datetime(year, month, day, 10, 0, tzinfo=SHANGHAI)


@pytest.fixture(autouse=True)
def empty_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def dashboard_admin(staff_user):
    """A brand admin with the dashboard permission: every store's figures."""
    staff_user.user_permissions.add(Permission.objects.get(codename="view_dashboard"))
    staff_user.groups.add(Group.objects.get_or_create(name=BRAND_ADMIN)[0])
    return staff_user


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
    board = dashboard.compute(NOW, period=YEAR)

    assert (board.members_total, board.members_new) == (5, 4)  # a, b, d, e joined since July 2025; c before
    # Buyers since 1 July 2025: a (3 orders), b, e; c's order is older, d's refunded in full. One repeat buyer.
    assert (board.buyers, board.repeat_buyers) == (3, 1)
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
def test_the_default_period_is_the_last_30_days_counted_per_day(programme):
    board = dashboard.compute(NOW)
    assert (board.period.start, board.period.end, board.period.bucket) == (dt.date(2026, 5, 17), NOW.date(), "day")
    assert (board.members_total, board.members_new) == (5, 2)  # b and d joined in June
    # 17 May to 15 June: a (A2, A3) and b (B1); d's order was refunded in full, e's is older.
    assert (board.buyers, board.repeat_buyers) == (2, 1)
    days = {m.month: m for m in board.points_by_month}
    assert len(days) == 30 and min(days) == dt.date(2026, 5, 17)
    assert days[dt.date(2026, 5, 20)].issued == 50 and days[dt.date(2026, 6, 2)].issued == 200
    assert (days[dt.date(2026, 6, 6)].issued, days[dt.date(2026, 6, 7)].taken_back) == (40, 40)
    assert days[dt.date(2026, 6, 14)].redeemed == 50 and days[dt.date(2026, 6, 15)].expired == 80
    assert board.redemption_rate == pytest.approx(50 / 320)  # 50 + 30 + 200 + 40 issued
    # Cohorts of the members who joined in the period: June (b, d); b bought in June.
    assert [(c.month, c.size, c.buyers[:2]) for c in board.cohorts] == [(dt.date(2026, 6, 1), 2, [1, None])]
    assert (board.cohorts[0].joined_from, board.cohorts[0].joined_to) == (dt.date(2026, 6, 1), NOW.date())


@pytest.mark.django_db
def test_presets_cover_the_days_they_name():
    today = dt.date(2026, 3, 10)
    assert dashboard.period_preset("7d", today) == dashboard.Period(dt.date(2026, 3, 4), today, "7d")
    assert dashboard.period_preset("90d", today).days == 90
    assert dashboard.period_preset("this_month", today) == dashboard.Period(dt.date(2026, 3, 1), today, "this_month")
    last = dashboard.period_preset("last_month", today)
    assert (last.start, last.end, last.days) == (dt.date(2026, 2, 1), dt.date(2026, 2, 28), 28)
    assert dashboard.period_preset("90d", today).bucket == "day"
    assert dashboard.Period(dt.date(2025, 1, 1), today).bucket == "month"


@pytest.fixture
def lifecycle(programme):
    """Stages, RFM scores and stage moves on the five members, and two more buyers for retention."""
    p = programme
    for name, stage in (("a", "mature"), ("b", "new"), ("c", "churned"), ("d", "new"), ("e", "dormant")):
        Member.objects.filter(pk=p[name].pk).update(stage=stage)
    for name, scores, segment in (
        ("a", (5, 4, 4), "champions"),
        ("b", (5, 1, 5), "new_customers"),
        ("e", (2, 1, 1), "hibernating"),
    ):
        r, f, m = scores
        Member.objects.filter(pk=p[name].pk).update(rfm_recency=r, rfm_frequency=f, rfm_monetary=m, rfm_segment=segment)
    for name, before, after, days in (
        ("a", "", "new", 20),
        ("a", "new", "growing", 10),
        ("a", "growing", "mature", 1),
        ("e", "mature", "dormant", 1),
        ("c", "dormant", "churned", 40),  # before the 30 days shown
    ):
        StageChange.objects.create(
            member=p[name], from_stage=before, to_stage=after, changed_at=NOW - dt.timedelta(days=days)
        )
    store = StoreFactory()
    f = MemberFactory(joined_at=at(12, 1, 2025))
    g = MemberFactory(joined_at=at(12, 1, 2025))
    for member, number, days, amount in ((f, "F1", 120, 100), (f, "F2", 10, 100), (g, "G1", 100, 60)):
        when = NOW - dt.timedelta(days=days)
        services.order_earn(member=member, store=store, number=number, amount=amount, occurred_at=when, now=when)
    return {**p, "f": f, "g": g}


@pytest.mark.django_db
def test_lifecycle_funnel_rfm_grid_and_stage_moves_match_the_hand_computed_answer(lifecycle):
    board = dashboard.compute(NOW)
    assert board.stages == [("new", 2), ("growing", 0), ("mature", 1), ("dormant", 1), ("churned", 1)]
    assert board.stage_not_computed == 2  # f and g
    grid = board.rfm_grid
    assert (grid[4][3], grid[4][0], grid[1][0]) == (1, 1, 1)  # a R5F4, b R5F1, e R2F1
    assert sum(map(sum, grid)) == 3 and board.rfm_not_scored == 4
    segments = dict(board.rfm_segments)
    assert (segments["champions"], segments["new_customers"], segments["hibernating"], segments["lost"]) == (1, 1, 1, 0)
    assert list(segments)[0] == "champions" and len(segments) == 11
    assert board.stage_move_pairs == {
        ("", "new"): 1,
        ("new", "growing"): 1,
        ("growing", "mature"): 1,
        ("mature", "dormant"): 1,
    }
    days = {d.day: d.into for d in board.stage_moves}
    assert len(days) == 30 and min(days) == dt.date(2026, 5, 17) and max(days) == dt.date(2026, 6, 15)
    assert days[dt.date(2026, 6, 14)] == {"mature": 1, "dormant": 1}
    assert days[dt.date(2026, 5, 26)] == {"new": 1} and days[dt.date(2026, 6, 5)] == {"growing": 1}
    assert board.stage_moves_total == 4


@pytest.mark.django_db
def test_customer_value_matches_the_hand_computed_answer(lifecycle):
    value = dashboard.compute(NOW).value
    # Purchases: e 20, a 100+50+30, b 200, c 80 (2025), f 100+100, g 60; d's was refunded in full.
    assert (value.members, value.buyers, value.repeat_buyers, value.orders) == (7, 6, 2, 9)
    assert value.revenue == Decimal("740")
    assert value.historical_clv == Decimal("105.71")  # 740 / 7
    assert value.historical_clv_per_buyer == Decimal("123.33")  # 740 / 6
    # Last 365 days: everybody but c: 8 purchases, 660 yuan, 5 buyers.
    assert value.average_order_value == Decimal("82.50") and value.purchase_frequency == Decimal("1.60")
    assert value.repurchase_rate == pytest.approx(2 / 6)
    # 180-90 days ago: f (120 days) and g (100 days); f bought again 10 days ago.
    assert value.retention == pytest.approx(0.5) and value.expected_lifetime_years == Decimal("0.50")
    assert value.predicted_clv == Decimal("66.00")  # 660 / 5 a year x half a year


@pytest.mark.django_db
def test_the_page_shows_the_funnel_grid_moves_and_value(client, dashboard_admin, lifecycle):
    client.force_login(dashboard_admin)
    dashboard.dashboard(refresh=True, now=NOW)  # the page shows the cached figures of that moment
    page = client.get("/admin/dashboard/?period=custom&from=2026-05-17&to=2026-06-15").content.decode()
    # Each stage drills down to the member list filtered to it (segment rules, operations.segments).
    assert "Lifecycle funnel" in page
    assert (
        'data-stage="mature"><td><a class="drill" href="/admin/members/member/?rules=%7B%22stages%22%3A%5B%22mature'
        in page
    )
    assert '>Mature</a></td><td class="n">1<' in page
    assert 'id="rfm-grid"' in page and "Champions" in page and "Can&#x27;t lose them" in page
    assert "Stage moves in the period" in page and "No stage yet" in page
    assert 'id="value-clv">¥105.71<' in page and 'id="value-predicted">¥66.00<' in page
    assert 'id="value-retention">50.0%<' in page and 'id="value-repurchase">33.3%<' in page
    assert 'id="lifecycle-data"' in page


@pytest.mark.django_db
def test_an_empty_programme_has_no_rates_rather_than_a_division_by_zero():
    board = dashboard.compute(NOW)
    assert board.members_total == 0
    assert board.repurchase_rate is None and board.redemption_rate is None and board.breakage_rate is None
    assert board.cohorts == [] and board.liability == 0
    assert board.stages[0] == ("new", 0) and board.stage_moves_total == 0 and board.value.predicted_clv is None


@pytest.mark.django_db
def test_the_figures_are_computed_once_and_then_read_from_the_cache(programme, django_assert_num_queries):
    first = dashboard.dashboard(now=NOW, period=YEAR)
    with django_assert_num_queries(0):
        assert dashboard.dashboard(period=YEAR) == first
    MemberFactory()
    assert dashboard.dashboard(period=YEAR).members_total == 5  # still the cached figures
    assert dashboard.dashboard(period=YEAR, refresh=True).members_total == 6


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
    assert len(small) == len(large) == 14  # 14: the deliveries by channel (outreach)


@pytest.mark.django_db
def test_the_page_needs_the_dashboard_permission(client, staff_user, programme):
    staff_user.groups.add(Group.objects.get_or_create(name=BRAND_ADMIN)[0])
    client.force_login(staff_user)
    assert client.get("/admin/dashboard/").status_code == 403
    staff_user.user_permissions.add(Permission.objects.get(codename="view_dashboard"))
    response = client.get("/admin/dashboard/", {"period": "custom", "from": "2025-07-01", "to": "2026-06-15"})
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="members-total">5<' in page and "33.3%" in page and "vendor/chartjs/chart.umd.min.js" in page
    assert "Retention by monthly cohort" in page and "Figures for: All stores" in page


@pytest.mark.django_db
def test_compute_again_recomputes_and_returns_to_the_page(client, dashboard_admin, programme):
    client.force_login(dashboard_admin)
    client.get("/admin/dashboard/")
    MemberFactory()
    response = client.post("/admin/dashboard/")
    assert response.status_code == 302 and response.url == "/admin/dashboard/?period=30d"
    assert 'id="members-total">6<' in client.get("/admin/dashboard/").content.decode()


@pytest.mark.django_db
def test_the_page_reads_in_chinese(client, dashboard_admin, programme):
    client.force_login(dashboard_admin)
    page = client.get("/admin/dashboard/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "运营看板" in page and "复购率" in page


# Store scoping: store managers see their stores' figures (docs/dashboard.md, "Scope").


@pytest.fixture
def two_stores(settings):
    """Jing'an (j1, j2) and Xuhui (x1, x2); x1 also bought once at Jing'an."""
    settings.LOYALTY_POINT_VALUE = "0.01"
    jingan = StoreFactory(code="jingan", name="Jing'an store")
    xuhui = StoreFactory(code="xuhui", name="Xuhui store")
    j1 = MemberFactory(home_store=jingan, joined_at=at(4, 10))
    j2 = MemberFactory(home_store=jingan, joined_at=at(6, 1))
    x1 = MemberFactory(home_store=xuhui, joined_at=at(5, 3))
    x2 = MemberFactory(home_store=xuhui, joined_at=at(6, 2))
    for member, store, number, when, amount in (
        (j1, jingan, "J1-1", at(4, 12), 100),
        (j1, jingan, "J1-2", at(5, 20), 50),
        (j2, jingan, "J2-1", at(6, 3), 30),
        (x1, xuhui, "X1-1", at(5, 5), 200),
        (x1, jingan, "X1-2", at(6, 5), 40),  # a Xuhui member buying at Jing'an
    ):
        services.order_earn(member=member, store=store, number=number, amount=amount, occurred_at=when, now=when)
    services.lots_release_matured(now=at(6, 14))  # every window (7 days) has ended
    services.points_spend(member=j1, amount=20, idempotency_key="j1-spend", reason="reward", now=at(6, 14))

    bronze = Tier.objects.create(code="bronze", name="Bronze", rank=0, qualify_threshold=0, retain_threshold=0)
    gold = Tier.objects.create(code="gold", name="Gold", rank=1, qualify_threshold=100, retain_threshold=50)
    for member, tier in ((j1, gold), (x1, gold), (x2, bronze)):
        MemberTier.objects.create(member=member, tier=tier, started_at=NOW, review_at=NOW + dt.timedelta(days=365))
    for member, stage in ((j1, "mature"), (j2, "new"), (x1, "growing"), (x2, "new")):
        Member.objects.filter(pk=member.pk).update(stage=stage)
    Member.objects.filter(pk=j1.pk).update(rfm_recency=5, rfm_frequency=4, rfm_monetary=4, rfm_segment="champions")
    Member.objects.filter(pk=x1.pk).update(rfm_recency=4, rfm_frequency=1, rfm_monetary=5, rfm_segment="promising")
    StageChange.objects.create(
        member=j1, from_stage="growing", to_stage="mature", changed_at=NOW - dt.timedelta(days=2)
    )
    StageChange.objects.create(member=x1, from_stage="new", to_stage="growing", changed_at=NOW - dt.timedelta(days=3))
    return {"jingan": jingan, "xuhui": xuhui}


def _store_manager(django_user_model, username: str, stores: list[Store]):
    user = django_user_model.objects.create_user(username, password="not-a-real-password-42", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_dashboard"))
    StaffProfile.objects.create(user=user).stores.set(stores)
    return user


@pytest.mark.django_db
def test_a_store_sees_its_members_orders_and_ledger_only(two_stores):
    board = dashboard.compute(NOW, stores=[two_stores["jingan"].pk], period=YEAR)

    assert (board.members_total, board.members_new) == (2, 2)  # j1, j2
    # Jing'an's members with a purchase (at any store): j1 twice, j2 once; x1 is Xuhui's.
    assert (board.buyers, board.repeat_buyers) == (2, 1)
    # Ledger of Jing'an's members (x1's 40 points from X1-2 are Xuhui's: his home store).
    months = {m.month: m for m in board.points_by_month}
    assert months[dt.date(2026, 4, 1)].issued == 100 and months[dt.date(2026, 5, 1)].issued == 50
    june = months[dt.date(2026, 6, 1)]
    assert (june.issued, june.redeemed, june.expired, june.taken_back) == (30, 20, 0, 0)
    assert (board.outstanding_points, board.pending_points) == (160, 0)  # j1 150 - 20, j2 30
    assert board.liability == Decimal("1.60")
    cohorts = {c.month: (c.size, c.retention) for c in board.cohorts}
    assert cohorts == {
        dt.date(2026, 4, 1): (1, [1.0, 1.0, 0.0, None, None, None]),
        dt.date(2026, 6, 1): (1, [1.0, None, None, None, None, None]),
    }
    assert [(t.name, t.members) for t in board.tiers] == [("Bronze", 0), ("Gold", 1)] and board.without_tier == 1
    assert board.stages == [("new", 1), ("growing", 0), ("mature", 1), ("dormant", 0), ("churned", 0)]
    assert board.rfm_grid[4][3] == 1 and sum(map(sum, board.rfm_grid)) == 1 and board.rfm_not_scored == 1
    assert dict(board.rfm_segments)["champions"] == 1 and dict(board.rfm_segments)["promising"] == 0
    assert board.stage_move_pairs == {("growing", "mature"): 1}
    # Customer value of j1 and j2: three purchases, 180 yuan.
    value = board.value
    assert (value.members, value.buyers, value.repeat_buyers, value.orders, value.revenue) == (2, 2, 1, 3, 180)
    assert board.stores == (two_stores["jingan"].pk,)


@pytest.mark.django_db
def test_the_other_store_and_the_brand_add_up(two_stores):
    xuhui = dashboard.compute(NOW, stores=[two_stores["xuhui"].pk], period=YEAR)
    # x1 bought at Xuhui and at Jing'an: a member figure, so both purchases count for Xuhui.
    assert (xuhui.members_total, xuhui.buyers, xuhui.repeat_buyers) == (2, 1, 1)
    assert (xuhui.outstanding_points, xuhui.stage_move_pairs) == (240, {("new", "growing"): 1})
    # x1 joined in May and bought in May (at Xuhui) and June (at Jing'an): a member figure.
    assert {c.month: c.retention[:2] for c in xuhui.cohorts} == {
        dt.date(2026, 5, 1): [1.0, 1.0],
        dt.date(2026, 6, 1): [0.0, None],
    }
    assert (xuhui.value.orders, xuhui.value.revenue) == (2, 240)

    brand = dashboard.compute(NOW, period=YEAR)
    assert brand.stores is None
    assert (brand.members_total, brand.buyers, brand.repeat_buyers) == (4, 3, 2)
    assert brand.outstanding_points == 160 + 240
    assert [(t.name, t.members) for t in brand.tiers] == [("Bronze", 1), ("Gold", 2)] and brand.without_tier == 1
    assert (brand.value.orders, brand.value.revenue) == (5, 420)
    both = dashboard.compute(NOW, stores=[two_stores["jingan"].pk, two_stores["xuhui"].pk])
    assert (both.members_total, both.outstanding_points, both.value.revenue) == (4, 400, 420)


@pytest.mark.django_db
def test_no_stores_means_every_figure_is_zero(two_stores, django_assert_num_queries):
    with django_assert_num_queries(1):  # the tier list; Django skips a query filtered on "in no store"
        board = dashboard.compute(NOW, stores=[])
    assert (board.members_total, board.members_new, board.buyers, board.outstanding_points) == (0, 0, 0, 0)
    assert sum(m.issued + m.redeemed for m in board.points_by_month) == 0 and board.cohorts == []
    assert [t.members for t in board.tiers] == [0, 0] and board.without_tier == 0
    assert sum(n for _code, n in board.stages) == 0 and board.stage_moves_total == 0
    assert (board.value.members, board.value.revenue) == (0, 0) and board.redemption_rate is None


@pytest.mark.django_db
def test_a_scoped_dashboard_runs_as_many_queries_as_the_brand_wide_one(two_stores):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as brand:
        dashboard.compute(NOW)
    with CaptureQueriesContext(connection) as one:
        dashboard.compute(NOW, stores=[two_stores["jingan"].pk])
    with CaptureQueriesContext(connection) as two:
        dashboard.compute(NOW, stores=[two_stores["jingan"].pk, two_stores["xuhui"].pk])
    assert len(brand) == len(one) == len(two) == 14


@pytest.mark.django_db
def test_each_scope_has_its_own_cache_entry(two_stores):
    jingan, xuhui = two_stores["jingan"].pk, two_stores["xuhui"].pk
    assert dashboard.cache_key(None) == "loyalty:dashboard:v3"
    assert dashboard.cache_key([jingan, xuhui]) != dashboard.cache_key([jingan]) != dashboard.cache_key([])
    # Each period its own entry too.
    assert dashboard.cache_key(None, YEAR) == "loyalty:dashboard:v3:20250701-20260615"
    assert dashboard.cache_key([jingan], YEAR) != dashboard.cache_key(
        [jingan], dashboard.period_preset("7d", NOW.date())
    )
    assert dashboard.dashboard(now=NOW, period=YEAR).members_total == 4
    assert (
        dashboard.dashboard(stores=[jingan], now=NOW, period=YEAR).members_total == 2
    )  # not the brand's cached figures
    # Ids in any order, or a queryset of stores, name the same scope.
    assert dashboard.dashboard(stores=[xuhui, jingan], period=YEAR) is not None
    assert dashboard.cache_key(dashboard._store_ids(Store.objects.filter(pk__in=[xuhui, jingan]))) == (
        dashboard.cache_key([jingan, xuhui])
    )
    MemberFactory(home_store=two_stores["jingan"])
    # Recomputing one scope leaves the others' cached figures alone.
    assert dashboard.dashboard(stores=[jingan], refresh=True, period=YEAR).members_total == 3
    assert dashboard.dashboard(period=YEAR).members_total == 4
    assert dashboard.dashboard(stores=[jingan], period=YEAR).members_total == 3


@pytest.mark.django_db
def test_a_store_manager_never_sees_the_brand_admins_cached_figures(
    client, dashboard_admin, django_user_model, two_stores
):
    client.force_login(dashboard_admin)
    page = client.get("/admin/dashboard/").content.decode()
    assert 'id="members-total">4<' in page and "Figures for: All stores" in page

    manager = _store_manager(django_user_model, "jingan-manager", [two_stores["jingan"]])
    client.force_login(manager)
    page = client.get("/admin/dashboard/").content.decode()
    assert 'id="members-total">2<' in page and "Figures for: Jing&#x27;an store<" in page

    # "Compute again" recomputes the manager's stores only.
    MemberFactory(home_store=two_stores["jingan"])
    assert client.post("/admin/dashboard/").status_code == 302
    assert 'id="members-total">3<' in client.get("/admin/dashboard/").content.decode()
    client.force_login(dashboard_admin)
    assert 'id="members-total">4<' in client.get("/admin/dashboard/").content.decode()


@pytest.mark.django_db
def test_the_page_names_every_store_of_the_scope(client, django_user_model, two_stores, django_assert_max_num_queries):
    manager = _store_manager(django_user_model, "area-manager", [two_stores["xuhui"], two_stores["jingan"]])
    client.force_login(manager)
    with django_assert_max_num_queries(30):
        page = client.get("/admin/dashboard/").content.decode()
    assert "Figures for: Jing&#x27;an store, Xuhui store<" in page and 'id="members-total">4<' in page


@pytest.mark.django_db
def test_staff_without_stores_see_zeros(client, staff_user, two_stores):
    staff_user.user_permissions.add(Permission.objects.get(codename="view_dashboard"))
    client.force_login(staff_user)  # no staff profile: no stores
    page = client.get("/admin/dashboard/").content.decode()
    assert 'id="members-total">0<' in page and "Figures for: no store" in page
