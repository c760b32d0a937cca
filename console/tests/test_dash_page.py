"""The dashboard page: the period picker, the drill-downs and "Save as segment" (permission,
CSRF, a store manager's scope), number formatting, empty charts that say so, and readable
cell colours (WCAG AA)."""

import datetime as dt
import json

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.cache import cache
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from console.admin_dashboard import contrast_ratio, period_from, shade
from loyalty.services import order_earn
from loyalty.tests.factories import MemberFactory, StoreFactory
from members.models import Member, Segment, StaffProfile
from members.scoping import STORE_MANAGER
from operations import dashboard
from operations.segments import segment_members

pytestmark = pytest.mark.django_db
PASSWORD = "not-a-real-password-42"


@pytest.fixture(autouse=True)
def fresh_figures():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def stores():
    """Jing'an: m1 (R5 F4, two orders today) and m2; Xuhui: x1 (R5 F4, bought at Jing'an)."""
    jingan, xuhui = StoreFactory(code="jingan", name="Jing'an"), StoreFactory(code="xuhui", name="Xuhui")
    m1, m2 = MemberFactory(home_store=jingan), MemberFactory(home_store=jingan)
    x1 = MemberFactory(home_store=xuhui)
    Member.objects.filter(pk__in=[m1.pk, x1.pk]).update(rfm_recency=5, rfm_frequency=4, rfm_monetary=4)
    now = timezone.now()
    order_earn(member=m1, store=jingan, number="M1-1", amount="6171.40", occurred_at=now - dt.timedelta(hours=2))
    order_earn(member=m1, store=jingan, number="M1-2", amount="584213", occurred_at=now - dt.timedelta(hours=1))
    order_earn(member=x1, store=jingan, number="X1-1", amount="10", occurred_at=now - dt.timedelta(hours=1))
    return {"jingan": jingan, "xuhui": xuhui, "m1": m1, "m2": m2, "x1": x1}


@pytest.fixture
def manager(django_user_model, stores):
    call_command("setup_roles")
    user = django_user_model.objects.create_user("manager", password=PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name=STORE_MANAGER))
    StaffProfile.objects.create(user=user).stores.set([stores["jingan"]])
    return user


def test_every_cell_shade_passes_wcag_aa_for_its_text():
    for step in range(101):
        background, text = shade(step / 100)
        assert contrast_ratio(text, background) >= 4.5, (step, background, text)
    # The palette still says something: an empty cell is light, a full one dark.
    assert shade(0)[1] == "#111827" and shade(1)[1] == "#ffffff"
    assert contrast_ratio("#ffffff", "#000000") == pytest.approx(21)


def test_the_period_picker_reads_presets_and_refuses_bad_custom_periods():
    today = dt.date(2026, 6, 15)
    assert period_from({"period": "this_month"}, today) == (
        dashboard.Period(dt.date(2026, 6, 1), today, "this_month"),
        None,
    )
    period, error = period_from({"period": "custom", "from": "2026-01-01", "to": "2026-02-28"}, today)
    assert (period.start, period.end, period.bucket, error) == (dt.date(2026, 1, 1), dt.date(2026, 2, 28), "day", None)
    for query in (
        {"period": "custom", "from": "2026-02-01", "to": "2026-01-01"},
        {"period": "custom", "from": "2026-06-01", "to": "2026-06-16"},
        {"period": "custom", "from": "x", "to": "2026-06-01"},
        {"period": "custom", "from": "2020-01-01", "to": "2026-06-01"},
        {"period": "forever"},
    ):
        period, error = period_from(query, today)
        assert error and period.preset == "30d", query


def test_a_bad_period_shows_a_message_and_the_default(admin_client, stores):
    response = admin_client.get(reverse("loyalty_dashboard"), {"period": "custom", "from": "2026-02-01", "to": "x"})
    assert response.status_code == 200 and response.context["period"].preset == "30d"
    assert "Give the first and the last day of the period as dates." in response.content.decode()


def test_numbers_are_formatted_and_empty_charts_say_so(admin_client, stores):
    page = admin_client.get(reverse("loyalty_dashboard"), {"period": "7d"}).content.decode()
    # 584,213 + 6,171.40 + 10 yuan at 1 point a yuan (pending: their return windows are open).
    assert "590,394 more pending" in page
    assert 'id="moves-empty">No stage moves in these 7 days.<' in page and 'id="moves-chart"' not in page
    assert 'id="points-chart"' in page  # points did move
    assert "R5 F4" in page and "Points per day" in page


def test_the_page_has_a_bounded_number_of_queries(admin_client, stores, django_assert_max_num_queries):
    with django_assert_max_num_queries(30):
        admin_client.get(reverse("loyalty_dashboard"))
    for n in range(20):
        MemberFactory(home_store=stores["xuhui"], rfm_recency=n % 5 + 1, rfm_frequency=1, rfm_monetary=1)
    cache.clear()
    with django_assert_max_num_queries(30):
        admin_client.get(reverse("loyalty_dashboard"), {"period": "90d"})


def test_a_store_managers_drill_down_lists_their_members_only(client, manager, stores):
    client.force_login(manager)
    response = client.get(reverse("loyalty_dashboard"))
    cell = {(r, n): d for r, cells in response.context["rfm_grid"] for n, (_count, _bg, _text, d) in enumerate(cells)}
    r5f4 = cell[(5, 3)]
    # m1 and x1 are both R5 F4; x1 is Xuhui's, so the manager's figure and list hold m1 only.
    assert r5f4["count"] == 1 and json.loads(r5f4["rules"])["stores"] == ["jingan"]
    listed = client.get(r5f4["href"])
    assert [m.pk for m in listed.context["cl"].result_list] == [stores["m1"].pk]
    buyers = response.context["drill_buyers"]
    assert buyers["count"] == 1  # m1; x1 bought at Jing'an but is Xuhui's member
    assert {m.pk for m in client.get(buyers["href"]).context["cl"].result_list} == {stores["m1"].pk}
    # No "Save as segment" for a role without "add segment".
    assert 'id="drill-save"' not in response.content.decode()


def test_save_as_segment_creates_the_segment_of_the_figure(client, manager, stores):
    manager.user_permissions.add(Permission.objects.get(codename="add_segment"))
    manager.user_permissions.add(Permission.objects.get(codename="change_segment"))
    csrf = Client(enforce_csrf_checks=True)
    csrf.force_login(manager)
    page = csrf.get(reverse("loyalty_dashboard"))
    assert 'id="drill-save"' in page.content.decode()
    repeat = page.context["drill_repeat"]
    url = reverse("loyalty_dashboard_segment")
    # Without the CSRF token: refused, nothing saved.
    assert csrf.post(url, {"rules": repeat["rules"], "name": "Repeat"}).status_code == 403
    assert not Segment.objects.exists()
    token = page.cookies["csrftoken"].value
    response = csrf.post(url, {"rules": repeat["rules"], "name": "Repeat", "csrfmiddlewaretoken": token})
    segment = Segment.objects.get()
    assert response.status_code == 302 and response.url == reverse("admin:members_segment_change", args=[segment.pk])
    assert segment.name == "Repeat" and segment.created_by == manager and segment.rules["stores"] == ["jingan"]
    listed = csrf.get(repeat["href"]).context["cl"].result_list
    assert {m.pk for m in listed} == set(segment_members(segment).values_list("pk", flat=True)) == {stores["m1"].pk}
    # A GET changes nothing; bad rules come back with a message.
    assert csrf.get(url).status_code == 405
    response = csrf.post(url, {"rules": "{", "csrfmiddlewaretoken": token}, follow=True)
    assert "The selection&#x27;s rules are not valid." in response.content.decode()
    assert Segment.objects.count() == 1


def test_save_as_segment_needs_the_permissions(client, manager, stores):
    client.force_login(manager)  # a store manager may view the dashboard but not add segments
    response = client.post(reverse("loyalty_dashboard_segment"), {"rules": "{}"}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("loyalty_dashboard")
    assert [m.level_tag for m in response.context["messages"]] == ["error"]
    assert not Segment.objects.exists()
    clerk = type(manager).objects.create_user("clerk", password=PASSWORD, is_staff=True)
    client.force_login(clerk)
    assert client.post(reverse("loyalty_dashboard_segment"), {"rules": "{}"}).status_code == 403


def test_the_dashboard_reads_in_chinese(admin_client, stores):
    page = admin_client.get(reverse("loyalty_dashboard"), HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    for words in ("时间段", "最近 30 天", "期间购买会员", "保存为分群", "打开会员列表", "这 30 天内没有阶段变化。"):
        assert words in page, words
    for english in ("Buyers in the period", "Save as segment", "Stage moves in the period", "Last 30 days"):
        assert english not in page, english
