"""The FAST panel page and its drill-down: scope, bad input, languages (docs/fast.md)."""

import datetime as dt

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.cache import cache
from django.utils import timezone

from loyalty.tests.factories import MemberFactory, StoreFactory
from members.models import StaffProfile
from members.scoping import BRAND_ADMIN

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def empty_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def world(settings, django_user_model):
    """Two stores with one SMS-reachable member each (consented 40 days ago), and two
    staff users with the dashboard permission: a brand admin and store one's manager."""
    settings.LOYALTY_MARKETING_CHANNELS = ["sms"]
    one, two = StoreFactory(name="Store one"), StoreFactory(name="Store two")
    when = timezone.now() - dt.timedelta(days=40)
    m1 = MemberFactory(home_store=one, joined_at=when, sms_consent_at=when)
    m2 = MemberFactory(home_store=two, joined_at=when, sms_consent_at=when)
    permission = Permission.objects.get(codename="view_dashboard")
    brand = django_user_model.objects.create_user("brand", password="not-a-real-password-42", is_staff=True)
    brand.user_permissions.add(permission)
    brand.groups.add(Group.objects.get_or_create(name=BRAND_ADMIN)[0])
    manager = django_user_model.objects.create_user("manager", password="not-a-real-password-42", is_staff=True)
    manager.user_permissions.add(permission)
    StaffProfile.objects.create(user=manager).stores.set([one])
    return {"one": one, "two": two, "m1": m1, "m2": m2, "brand": brand, "manager": manager}


def _reachable_now(page: str) -> str:
    """The last cell of the SMS row of the reachable table."""
    row = page.split('id="fast-reachable"')[1].split("</tr>")[1]
    return row.rsplit('">', 1)[1].split("<")[0]


def test_the_brand_admin_sees_every_store_and_the_definitions(client, world, django_assert_max_num_queries):
    client.force_login(world["brand"])
    with django_assert_max_num_queries(12):
        response = client.get("/admin/fast/")
    assert response.status_code == 200
    page = response.content.decode()
    assert _reachable_now(page) == "2"
    assert 'id="fast-super-definition"' in page and "champions, loyal" in page
    assert "/admin/fast/members/?month=11&amp;at=" in page and "&amp;figure=reachable&amp;channel=sms" in page


def test_a_store_manager_sees_their_store_only_and_is_refused_another(client, world):
    client.force_login(world["manager"])
    page = client.get("/admin/fast/").content.decode()
    assert _reachable_now(page) == "1" and "Store two" not in page
    refused = client.get(f"/admin/fast/?store={world['two'].pk}")
    assert refused.status_code == 400 and "That store is not one of yours." in refused.content.decode()
    listed = client.get("/admin/fast/members/?figure=reachable&channel=sms&month=11").content.decode()
    assert world["m1"].member_number in listed and world["m2"].member_number not in listed
    assert 'id="fast-members-total">1 member' in listed


def test_the_drill_down_lists_a_picked_stores_members(client, world):
    client.force_login(world["brand"])
    response = client.get(f"/admin/fast/members/?figure=reachable&channel=any&month=11&store={world['two'].pk}")
    page = response.content.decode()
    assert response.status_code == 200
    assert world["m2"].member_number in page and world["m1"].member_number not in page


@pytest.mark.parametrize(
    "query, message",
    [
        ("figure=nonsense&month=11", "Unknown figure."),
        ("figure=super&month=12", "The month must be one of the last 12."),
        ("figure=super&month=x", "The month must be one of the last 12."),
        ("figure=reachable&month=1&channel=fax", "Unknown channel."),
    ],
)
def test_bad_drill_down_input_gets_a_clear_message(client, world, query, message):
    client.force_login(world["brand"])
    response = client.get(f"/admin/fast/members/?{query}")
    assert response.status_code == 400 and message in response.content.decode()


def test_the_pages_need_the_dashboard_permission(client, staff_user, world):
    client.force_login(staff_user)
    assert client.get("/admin/fast/").status_code == 403
    assert client.get("/admin/fast/members/?figure=super&month=1").status_code == 403


def test_the_page_reads_in_chinese(client, world):
    client.force_login(world["brand"])
    page = client.get("/admin/fast/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "FAST 看板" in page and "超级用户" in page and "新老客" in page
    # The definitions, whose English text carries placeholders, are translated too.
    assert "超级用户是 RFM 分群为" in page and "在已接入发送服务的渠道（短信）" in page and "数据截至" in page
    assert "月初处于起始阶段的会员中" in page and "首单客单价" in page


def test_the_panel_is_cached_until_computed_again(client, world):
    client.force_login(world["brand"])
    client.get("/admin/fast/")
    MemberFactory(home_store=world["one"], sms_consent_at=timezone.now() - dt.timedelta(days=1))
    assert _reachable_now(client.get("/admin/fast/").content.decode()) == "2"
    response = client.post("/admin/fast/")
    assert response.status_code == 302 and response.url == "/admin/fast/"
    assert _reachable_now(client.get("/admin/fast/").content.decode()) == "3"


def test_the_drill_down_lists_the_members_as_of_the_panels_time(client, world):
    client.force_login(world["brand"])
    before = (timezone.now() - dt.timedelta(days=45)).isoformat()
    response = client.get("/admin/fast/members/", {"figure": "reachable", "month": "11", "at": before})
    assert response.status_code == 200 and 'id="fast-members-total">0 members' in response.content.decode()
    for bad in ("yesterday", (timezone.now() + dt.timedelta(days=1)).isoformat()):
        response = client.get("/admin/fast/members/", {"figure": "reachable", "month": "11", "at": bad})
        assert response.status_code == 400
        assert "not a valid date and time" in response.content.decode()


def test_a_store_manager_never_sees_the_brand_admins_cached_panel(client, world):
    client.force_login(world["brand"])
    assert _reachable_now(client.get("/admin/fast/").content.decode()) == "2"
    client.force_login(world["manager"])
    assert _reachable_now(client.get("/admin/fast/").content.decode()) == "1"
