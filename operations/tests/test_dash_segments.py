"""The segment rules the dashboard's drill-downs use, checked on members built by hand: each
drill-down's members equal the members of the segment saved from it; the segment form keeps
rule keys it does not show and offers the order channels."""

import datetime as dt
import json
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.cache import cache
from django.urls import reverse

from core.errors import LoyaltyError
from loyalty import services
from loyalty.tests.factories import MemberFactory, StoreFactory
from members.models import Member, Segment, StaffProfile
from members.scoping import BRAND_ADMIN
from operations import dashboard
from operations.admin_segments import SegmentForm
from operations.segments import rules_describe, segment_create, segment_members, segment_rules_clean

pytestmark = pytest.mark.django_db

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = dt.datetime(2026, 6, 15, 12, 0, tzinfo=SHANGHAI)


def at(month: int, day: int, hour: int = 10) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, 0, tzinfo=SHANGHAI)


@pytest.fixture(autouse=True)
def empty_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def shop():
    """Two stores; five members with scores, joining days and orders worked out by hand.

    a: Jing'an, joined 1 June 00:30, R5 F4, orders 2 June and 10 June (two in June)
    b: Jing'an, joined 31 May 23:30, R5 F1, order 31 May 23:50 (local), a mini-program order
    c: Xuhui, joined 3 June, R3 F4, order 5 June fully refunded (no purchase)
    d: Xuhui, joined 15 June, R3 F2, order 14 June at Jing'an, online mall
    e: Jing'an, joined 2025, no score, no order
    """
    jingan, xuhui = StoreFactory(code="jingan", name="Jing'an"), StoreFactory(code="xuhui", name="Xuhui")
    members = {
        "a": MemberFactory(home_store=jingan, joined_at=at(6, 1, 0).replace(minute=30)),
        "b": MemberFactory(home_store=jingan, joined_at=at(5, 31, 23).replace(minute=30)),
        "c": MemberFactory(home_store=xuhui, joined_at=at(6, 3)),
        "d": MemberFactory(home_store=xuhui, joined_at=at(6, 15, 8)),
        "e": MemberFactory(home_store=jingan, joined_at=dt.datetime(2025, 3, 1, tzinfo=SHANGHAI)),
    }
    for name, r, f in (("a", 5, 4), ("b", 5, 1), ("c", 3, 4), ("d", 3, 2)):
        Member.objects.filter(pk=members[name].pk).update(rfm_recency=r, rfm_frequency=f, rfm_monetary=3)

    def order(name, store, number, when, channel="store"):
        return services.order_earn(
            member=members[name], store=store, number=number, amount=50, occurred_at=when, now=when, channel=channel
        )

    order("a", jingan, "A1", at(6, 2))
    order("a", jingan, "A2", at(6, 10))
    order("b", jingan, "B1", at(5, 31, 23).replace(minute=50), channel="mini_program")
    refunded = order("c", xuhui, "C1", at(6, 5)).order
    services.order_refund(order=refunded, amount=50, number="C1-R", now=at(6, 6))
    order("d", jingan, "D1", at(6, 14), channel="online_mall")
    return {"jingan": jingan, "xuhui": xuhui, **members}


def _ids(rules) -> set[int]:
    return set(segment_members(rules).values_list("pk", flat=True))


def test_rfm_scores_select_their_cell(shop):
    assert _ids({"rfm_recency": [5], "rfm_frequency": [4]}) == {shop["a"].pk}
    assert _ids({"rfm_recency": [3]}) == {shop["c"].pk, shop["d"].pk}
    assert _ids({"rfm_recency": ["5", 3], "rfm_frequency": [1, 2]}) == {shop["b"].pk, shop["d"].pk}


def test_joined_days_are_whole_local_days(shop):
    # b joined at 23:30 on 31 May (local), a at 00:30 on 1 June: the day boundary is local midnight.
    assert _ids({"joined_from": "2026-06-01", "joined_to": "2026-06-03"}) == {shop["a"].pk, shop["c"].pk}
    assert _ids({"joined_to": "2026-05-31"}) == {shop["b"].pk, shop["e"].pk}
    assert _ids({"joined_from": "2026-06-15"}) == {shop["d"].pk}


def test_bought_windows_count_purchases_at_any_store(shop):
    june = {"bought_from": "2026-06-01", "bought_to": "2026-06-30"}
    # c's only order was refunded in full: no purchase. d bought at Jing'an, his home is Xuhui.
    assert _ids(june) == {shop["a"].pk, shop["d"].pk}
    assert _ids({"bought_to": "2026-05-31"}) == {shop["b"].pk}  # 23:50 on 31 May is still May
    assert _ids({**june, "bought_orders_min": 2}) == {shop["a"].pk}
    assert _ids({**june, "stores": ["xuhui"]}) == {shop["d"].pk}
    assert _ids({"channels": ["mini_program", "online_mall"]}) == {shop["b"].pk, shop["d"].pk}


@pytest.mark.parametrize(
    ("rules", "key"),
    [
        ({"rfm_recency": [6]}, "rfm_recency"),
        ({"rfm_frequency": [True]}, "rfm_frequency"),
        ({"rfm_recency": "x"}, "rfm_recency"),
        ({"joined_from": "2026-02-30"}, "joined_from"),
        ({"bought_to": 20260601}, "bought_to"),
        ({"joined_from": "2026-06-02", "joined_to": "2026-06-01"}, "joined_from"),
        ({"bought_from": "2026-06-02", "bought_to": "2026-06-01"}, "bought_from"),
        ({"bought_orders_min": 2}, "bought_orders_min"),
        ({"bought_from": "2026-06-01", "bought_orders_min": 0}, "bought_orders_min"),
        ({"channels": ["shop"]}, "channels"),
    ],
)
def test_bad_drill_down_rules_are_refused_naming_the_key(rules, key):
    with pytest.raises(LoyaltyError) as refused:
        segment_rules_clean(rules)
    assert refused.value.code == "segment_rule_invalid" and refused.value.extra["key"] == key


def test_every_drill_down_of_the_dashboard_selects_what_its_figure_counts(shop):
    """The page's drill-down rules, figure by figure: the members listed = the count shown."""
    from console.admin_dashboard import Drill

    period = dashboard.Period(start=dt.date(2026, 6, 1), end=dt.date(2026, 6, 15))
    for stores, codes in ((None, None), ([shop["jingan"].pk], ["jingan"]), ([shop["xuhui"].pk], ["xuhui"])):
        board = dashboard.compute(NOW, stores=stores, period=period)
        drill = Drill(codes)
        figures = [
            (board.members_new, drill("", 0, **period.rules("joined"))),
            (board.buyers, drill("", 0, **period.rules("bought"))),
            (board.repeat_buyers, drill("", 0, bought_orders_min=2, **period.rules("bought"))),
            (board.members_total, drill("", 0)),
        ]
        for r in (1, 2, 3, 4, 5):
            for f in (1, 2, 3, 4, 5):
                cell = drill("", 0, rfm_recency=[r], rfm_frequency=[f])
                figures.append((board.rfm_grid[r - 1][f - 1], cell))
        for cohort in board.cohorts:
            figures.append((cohort.size, drill("", 0, **cohort.rules())))
            for k, n in enumerate(cohort.buyers):
                if n is not None:
                    figures.append((n, drill("", 0, **cohort.cell_rules(k, NOW))))
        for count, link in figures:
            assert len(_ids(json.loads(link["rules"]))) == count, link["rules"]
    # The hand-computed answers behind them, brand-wide: joined in June a, c, d; bought in June a, d.
    board = dashboard.compute(NOW, period=period)
    assert (board.members_new, board.buyers, board.repeat_buyers) == (3, 2, 1)
    assert [(c.month, c.size, c.buyers[0]) for c in board.cohorts] == [(dt.date(2026, 6, 1), 3, 2)]


def test_a_drill_down_on_the_member_list_lists_exactly_the_segments_members(client, shop, django_user_model):
    boss = django_user_model.objects.create_superuser("boss", password="not-a-real-password-42")
    client.force_login(boss)
    rules = {"bought_from": "2026-06-01", "bought_to": "2026-06-30", "stores": ["jingan", "xuhui"]}
    listed = client.get(reverse("admin:members_member_changelist"), {"rules": json.dumps(rules)})
    assert listed.status_code == 200
    shown = {m.pk for m in listed.context["cl"].result_list}
    segment = segment_create(actor=boss, name="June buyers", rules=rules)
    assert shown == _ids(segment.rules) == {shop["a"].pk, shop["d"].pk}
    assert "Jing&#x27;an" in listed.content.decode()  # the selection in words, on the list


def test_a_store_managers_segment_keeps_to_their_stores(shop, django_user_model):
    manager = django_user_model.objects.create_user("m", password="not-a-real-password-42", is_staff=True)
    manager.user_permissions.add(Permission.objects.get(codename="add_segment"))
    StaffProfile.objects.create(user=manager).stores.set([shop["jingan"]])
    june = {"bought_from": "2026-06-01", "bought_to": "2026-06-30"}
    segment = segment_create(actor=manager, name="", rules=june)
    assert segment.rules["stores"] == ["jingan"] and segment.created_by == manager
    assert _ids(segment.rules) == {shop["a"].pk}  # d bought at Jing'an, but is Xuhui's
    assert segment.name == rules_describe(segment.rules)
    with pytest.raises(LoyaltyError) as refused:
        segment_create(actor=manager, name="theirs", rules={**june, "stores": ["xuhui"]})
    assert refused.value.code == "out_of_scope"
    with pytest.raises(LoyaltyError) as taken:
        segment_create(actor=manager, name=segment.name, rules=june)
    assert taken.value.code == "segment_name_taken"
    clerk = django_user_model.objects.create_user("c", password="not-a-real-password-42", is_staff=True)
    with pytest.raises(LoyaltyError) as denied:
        segment_create(actor=clerk, name="x", rules=june)
    assert denied.value.code == "permission_denied"


def _form_data(segment, **extra):
    return {"name": segment.name, "description": segment.description, **extra}


def test_the_segment_form_keeps_rule_keys_it_does_not_show(shop, monkeypatch):
    from operations import admin_segments

    # A key the form has no field for (here: pretend the form does not know "channels" yet).
    monkeypatch.setattr(
        admin_segments, "SEGMENT_RULE_FIELDS", tuple(k for k in admin_segments.SEGMENT_RULE_FIELDS if k != "channels")
    )
    segment = Segment.objects.create(name="Online", rules={"channels": ["online_mall"], "stages": ["new"]})
    form = SegmentForm(data=_form_data(segment, stages=["new", "growing"]), instance=segment)
    assert form.is_valid(), form.errors
    form.save()
    segment.refresh_from_db()
    assert segment.rules == {"channels": ["online_mall"], "stages": ["new", "growing"]}


def test_the_segment_form_saves_channels_scores_and_dates(shop):
    segment = Segment.objects.create(name="Dash", rules={"rfm_recency": [5], "joined_from": "2026-06-01"})
    form = SegmentForm(instance=segment)
    assert form.initial["rfm_recency"] == [5] and form.initial["joined_from"] == "2026-06-01"
    assert [value for value, _label in form.fields["channels"].choices] == [
        "store",
        "mini_program",
        "online_mall",
        "marketplace",
        "partner",
    ]
    form = SegmentForm(
        data=_form_data(
            segment,
            rfm_recency=["5", "3"],
            joined_from="2026-06-01",
            bought_from="2026-06-01",
            bought_to="2026-06-30",
            bought_orders_min="2",
            channels=["store", "online_mall"],
        ),
        instance=segment,
    )
    assert form.is_valid(), form.errors
    form.save()
    segment.refresh_from_db()
    assert segment.rules == {
        "rfm_recency": [3, 5],
        "joined_from": "2026-06-01",
        "bought_from": "2026-06-01",
        "bought_to": "2026-06-30",
        "bought_orders_min": 2,
        "channels": ["store", "online_mall"],
    }
    assert _ids(segment.rules) == {shop["a"].pk}
    # The cleaner's message on its field: a minimum without a window.
    form = SegmentForm(data=_form_data(segment, bought_orders_min="2"), instance=segment)
    assert not form.is_valid() and "bought_orders_min" in form.errors


def test_the_segment_page_reads_in_chinese(client, django_user_model, shop):
    boss = django_user_model.objects.create_user("brand", password="not-a-real-password-42", is_staff=True)
    boss.groups.add(Group.objects.get_or_create(name=BRAND_ADMIN)[0])
    boss.user_permissions.add(*Permission.objects.filter(content_type__app_label="members"))
    segment = Segment.objects.create(name="Dash", rules={"channels": ["online_mall"]}, created_by=boss)
    page = client_page(client, boss, reverse("admin:members_segment_change", args=[segment.pk]))
    assert "下单渠道" in page and "创建人" in page and "来源流水" not in page
    listing = client_page(client, boss, reverse("admin:members_segment_changelist"))
    assert "创建人" in listing and "来源流水" not in listing


def client_page(client, user, url) -> str:
    client.force_login(user)
    response = client.get(url, HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert response.status_code == 200
    return response.content.decode()
