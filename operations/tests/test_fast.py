"""The FAST panel and new vs. returning customers against data worked out by hand (docs/fast.md).

NOW is 15 June 2026, noon in Shanghai, so the 12 months are July 2025 (index 0) to June
2026 (index 11); a month's snapshot is taken at the start of the next month (June: NOW).
"""

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from engagement.models import Referral
from loyalty import services
from loyalty.models import Order
from loyalty.tests.factories import MemberFactory, StoreFactory
from members.models import Member, StageChange
from operations import fast
from operations.lifecycle import members_refresh_profiles

pytestmark = pytest.mark.django_db

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = dt.datetime(2026, 6, 15, 12, 0, tzinfo=SHANGHAI)


def at(year: int, month: int, day: int, hour: int = 12) -> dt.datetime:
    return dt.datetime(year, month, day, hour, tzinfo=SHANGHAI)


def months(**values) -> list[int]:
    """Twelve zeros with some months set: months(m8=1, m9=2)."""
    row = [0] * 12
    for key, value in values.items():
        row[int(key[1:])] = value
    return row


@pytest.fixture
def base(settings):
    """Reach and stage history.

    - a (store 1): SMS consent 10 Mar 2026, email consent 20 May 2026 (has an address);
      stages: new 10 Dec 2025, growing 20 Jan 2026, mature 5 Mar 2026.
    - b (store 2): joined and WeChat consent 5 Apr 2026 with an openid; email consent but
      no address; stage new 5 Apr 2026.
    - c (store 1): SMS consent but frozen; d (store 1): SMS consent but erased.
    - e (store 1): no consent; growing 1 Jun 2025, dormant 15 Oct 2025, growing 10 Feb 2026.
    """
    settings.TIME_ZONE = "Asia/Shanghai"
    settings.LOYALTY_MARKETING_CHANNELS = ["sms", "email", "wechat"]
    s1, s2 = StoreFactory(name="One"), StoreFactory(name="Two")
    joined = at(2025, 1, 1)
    a = MemberFactory(
        home_store=s1, joined_at=joined, email="a@example.com", sms_consent_at=at(2026, 3, 10),
        email_consent_at=at(2026, 5, 20),
    )  # fmt: skip
    b = MemberFactory(
        home_store=s2, joined_at=at(2026, 4, 5), wechat_consent_at=at(2026, 4, 5), wechat_openid="ob",
        email="", email_consent_at=at(2026, 4, 5),
    )  # fmt: skip
    MemberFactory(home_store=s1, joined_at=joined, sms_consent_at=joined, status=Member.Status.FROZEN)
    MemberFactory(home_store=s1, joined_at=joined, sms_consent_at=joined, erased_at=at(2026, 1, 1))
    e = MemberFactory(home_store=s1, joined_at=joined)
    history = {
        a: [("", "new", at(2025, 12, 10)), ("new", "growing", at(2026, 1, 20)), ("growing", "mature", at(2026, 3, 5))],
        b: [("", "new", at(2026, 4, 5))],
        e: [("", "growing", at(2025, 6, 1)), ("growing", "dormant", at(2025, 10, 15))]
        + [("dormant", "growing", at(2026, 2, 10))],
    }
    for member, stages in history.items():
        for before, after, when in stages:
            StageChange.objects.create(member=member, from_stage=before, to_stage=after, changed_at=when)
    return {"s1": s1, "s2": s2, "a": a, "b": b, "e": e}


def test_month_bounds_are_local_month_starts_then_now():
    bounds = fast.month_bounds(NOW)
    assert bounds[0] == at(2025, 7, 1, 0) and bounds[11] == at(2026, 6, 1, 0) and bounds[12] == NOW
    assert len(bounds) == 13


def test_reachable_base_per_channel_matches_the_hand_computed_answer(base, django_assert_max_num_queries):
    with django_assert_max_num_queries(4):
        panel = fast.fast_panel(now=NOW)
    assert panel.reachable["sms"] == months(m8=1, m9=1, m10=1, m11=1)
    assert panel.reachable["email"] == months(m10=1, m11=1)
    assert panel.reachable["wechat"] == months(m9=1, m10=1, m11=1)
    assert panel.reachable["any"] == months(m8=1, m9=2, m10=2, m11=2)
    store_two = fast.fast_panel(now=NOW, stores=[base["s2"].pk])
    assert store_two.reachable["sms"] == months() and store_two.reachable["any"] == months(m9=1, m10=1, m11=1)
    members = fast.figure_member_ids("reachable", month=9, channel="any", now=NOW, stores=None)
    assert members == sorted([base["a"].pk, base["b"].pk])


def test_a_channel_without_a_sender_is_not_reachable(base, settings):
    settings.LOYALTY_MARKETING_CHANNELS = ["sms"]
    panel = fast.fast_panel(now=NOW)
    assert panel.channels == ("sms",) and set(panel.reachable) == {"sms", "any"}
    assert panel.reachable["any"] == months(m8=1, m9=1, m10=1, m11=1)


def test_stage_conversion_matches_the_hand_computed_answer(base):
    conversions = {c.code: c for c in fast.fast_panel(now=NOW).conversions}
    new = conversions["new_growing"]
    assert new.base == months(m6=1, m10=1, m11=1) and new.converted == months(m6=1)
    growing = conversions["growing_mature"]
    assert growing.base == [1, 1, 1, 1, 0, 0, 0, 1, 2, 1, 1, 1] and growing.converted == months(m8=1)
    assert growing.rates[8] == 0.5 and growing.rates[4] is None
    dormant = conversions["dormant_active"]
    assert dormant.base == months(m4=1, m5=1, m6=1, m7=1) and dormant.converted == months(m7=1)
    store_two = {c.code: c for c in fast.fast_panel(now=NOW, stores=[base["s2"].pk]).conversions}
    assert store_two["growing_mature"].base == months() and store_two["new_growing"].base == months(m10=1, m11=1)
    assert fast.figure_member_ids("converted", month=8, conversion="growing_mature", now=NOW, stores=None) == [
        base["a"].pk
    ]
    assert fast.figure_member_ids("conversion", month=8, conversion="growing_mature", now=NOW, stores=None) == sorted(
        [base["a"].pk, base["e"].pk]
    )


@pytest.fixture
def buyers(settings):
    """Five buyers p1..p5 (store 1), 100 yuan an order; p_k has k orders, the last one
    80/60/45/35/10 days before NOW and the others a day apart before it, so at NOW each
    p_k scores (k, k, k): p5 champions, p4 loyal. At 1 June p5 has not bought yet and p4,
    p3 score 5 and 4 (champions, loyal). p5's last order is refunded 40 yuan; p1 also has an
    order 90 days ago refunded in full (it does not count). r (store 2) referred x, rewarded
    on 10 May 2026. a (store 1) bought 1 May 2025 and 10 Jul 2025 at store 2, 50 yuan each.
    The RFM window is 120 days, so a's orders are outside it."""
    settings.TIME_ZONE = "Asia/Shanghai"
    settings.LOYALTY_RFM_WINDOW_DAYS = 120
    settings.LOYALTY_MARKETING_CHANNELS = ["sms"]
    s1, s2 = StoreFactory(name="One"), StoreFactory(name="Two")
    joined = at(2025, 1, 1)
    people = {f"p{k}": MemberFactory(home_store=s1, joined_at=joined) for k in range(1, 6)}
    people["r"] = MemberFactory(home_store=s2, joined_at=joined)
    people["x"] = MemberFactory(home_store=s2, joined_at=joined)
    people["a"] = MemberFactory(home_store=s1, joined_at=joined)

    def order(name, number, when, amount=100, store=s1):
        return services.order_earn(
            member=people[name], store=store, number=number, amount=amount, occurred_at=when, now=when
        ).order

    for k, last in zip(range(1, 6), (80, 60, 45, 35, 10), strict=True):
        for j in range(k):
            order(f"p{k}", f"P{k}-{j}", NOW - dt.timedelta(days=last + j))
    p5_last = Order.objects.get(number="P5-0")
    services.order_refund(order=p5_last, amount=40, number="P5-0-R", now=NOW - dt.timedelta(days=9))
    refunded = order("p1", "P1-X", NOW - dt.timedelta(days=90))
    services.order_refund(order=refunded, amount=100, number="P1-X-R", now=NOW - dt.timedelta(days=89))
    order("a", "A-1", at(2025, 5, 1), amount=50, store=s2)
    order("a", "A-2", at(2025, 7, 10), amount=50, store=s2)
    Referral.objects.create(
        referrer=people["r"], referee=people["x"], code="R", status=Referral.Status.REWARDED,
        decided_at=at(2026, 5, 10),
    )  # fmt: skip
    return {"s1": s1, "s2": s2, **people}


def test_super_users_and_their_activity_match_the_hand_computed_answer(buyers):
    panel = fast.fast_panel(now=NOW)
    assert panel.super_users == months(m10=3, m11=3)
    assert panel.super_active == months(m10=1, m11=1)
    assert panel.super_active_share[11] == pytest.approx(1 / 3) and panel.super_active_share[0] is None
    ids = {name: buyers[name].pk for name in ("p3", "p4", "p5", "r")}
    assert fast.figure_member_ids("super", month=10, now=NOW, stores=None) == sorted([ids["p4"], ids["p3"], ids["r"]])
    assert fast.figure_member_ids("super", month=11, now=NOW, stores=None) == sorted([ids["p4"], ids["p5"], ids["r"]])
    assert fast.figure_member_ids("super_active", month=11, now=NOW, stores=None) == [ids["p5"]]
    store_two = fast.fast_panel(now=NOW, stores=[buyers["s2"].pk])
    assert store_two.super_users == months(m10=1, m11=1) and store_two.super_active == months()


def test_super_users_now_are_the_nightly_runs_top_segments_plus_rewarded_referrers(buyers):
    members_refresh_profiles(now=NOW)
    top = set(Member.objects.filter(rfm_segment__in=fast.SUPER_SEGMENTS).values_list("pk", flat=True))
    assert top == {buyers["p4"].pk, buyers["p5"].pk}
    assert set(fast.figure_member_ids("super", month=11, now=NOW, stores=None)) == top | {buyers["r"].pk}


def test_new_and_returning_customers_match_the_hand_computed_answer(buyers):
    rows = fast.fast_panel(now=NOW).returning
    assert [row.month for row in rows][:2] == [dt.date(2025, 7, 1), dt.date(2025, 8, 1)]

    def split(i):
        row = rows[i]
        return (row.first.orders, row.first.revenue, row.repeat.orders, row.repeat.revenue)

    assert split(0) == (0, 0, 1, Decimal("50"))  # a's second order; the first was in May 2025
    assert split(8) == (1, Decimal("100"), 0, 0)  # p1 (the refunded order before it does not count)
    assert split(9) == (2, Decimal("200"), 2, Decimal("200"))  # p2 both, p3's first two
    assert split(10) == (1, Decimal("100"), 4, Decimal("400"))  # p4's four, p3's third
    assert split(11) == (1, Decimal("100"), 4, Decimal("360"))  # p5, one refunded 40
    assert rows[11].repeat.aov == Decimal("90.00") and rows[11].first.customers == 1
    assert rows[10].repeat.customers == 2 and rows[3].first.aov is None
    assert rows[11].repeat_revenue_share == pytest.approx(360 / 460)
    store_two = fast.fast_panel(now=NOW, stores=[buyers["s2"].pk]).returning
    assert [(r.first.orders, r.repeat.orders) for r in store_two] == [(0, 1)] + [(0, 0)] * 11
    assert fast.figure_member_ids("first", month=9, now=NOW, stores=None) == sorted([buyers["p2"].pk, buyers["p3"].pk])
    assert fast.figure_member_ids("repeat", month=10, now=NOW, stores=None) == sorted(
        [buyers["p3"].pk, buyers["p4"].pk]
    )


@pytest.mark.parametrize(
    "figure, kwargs",
    [
        ("nonsense", {}),
        ("super", {"month": 12}),
        ("reachable", {"channel": "fax"}),
        ("converted", {"conversion": "new_churned"}),
    ],
)
def test_an_unknown_figure_is_refused_clearly(figure, kwargs):
    with pytest.raises(fast.LoyaltyError) as refused:
        fast.figure_member_ids(figure, **{"month": 0, "now": NOW, "stores": None, **kwargs})
    assert refused.value.code == "invalid"


def test_no_store_in_scope_gives_zeros(base):
    panel = fast.fast_panel(now=NOW, stores=[])
    assert panel.reachable["any"] == months() and all(c.base == months() for c in panel.conversions)


def test_a_drill_down_page_gives_the_total_and_that_pages_ids(base):
    ids = sorted([base["a"].pk, base["b"].pk])
    kwargs = {"month": 11, "channel": "any", "now": NOW, "stores": None}
    assert fast.figure_members_page("reachable", page=1, per_page=1, **kwargs) == (2, ids[:1])
    assert fast.figure_members_page("reachable", page=2, per_page=1, **kwargs) == (2, ids[1:])
    assert fast.figure_members_page("reachable", page=3, per_page=1, **kwargs) == (2, [])
