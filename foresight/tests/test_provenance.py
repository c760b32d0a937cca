import datetime as dt

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from api.services import tokens_issue
from center.services import member_user_for_sign_in
from foresight.provenance import member_provenance
from loyalty.models import EarnRule
from loyalty.services import lots_release_matured, order_earn, points_spend

pytestmark = pytest.mark.django_db

EARLY = timezone.make_aware(dt.datetime(2025, 12, 10, 15, 0))
LATER = timezone.make_aware(dt.datetime(2026, 2, 3, 11, 0))


@pytest.fixture
def history(world):
    """Order A-1002 in "Double points week" earns 60 + 60, order A-1003 earns 50; a spend
    of 30 takes from A-1002's lot, which expires first (rolling 12 months)."""
    member, store = world["member"](), world["store_a"]
    EarnRule.objects.create(
        name="Double points week",
        kind=EarnRule.Kind.MULTIPLIER,
        value=2,
        valid_from=EARLY - dt.timedelta(days=1),
        valid_until=EARLY + dt.timedelta(days=6),
    )
    order_earn(member=member, store=store, number="A-1002", amount="60", occurred_at=EARLY, now=EARLY)
    order_earn(member=member, store=store, number="A-1003", amount="50", occurred_at=LATER, now=LATER)
    lots_release_matured(now=LATER + dt.timedelta(days=8))
    points_spend(
        member=member, amount=30, idempotency_key="mall-1", reason="Tote bag", now=LATER + dt.timedelta(days=9)
    )
    return member


def test_remaining_and_expiring_points_name_their_order_and_campaign(history):
    report = member_provenance(history)
    assert report.remaining == 90 + 50
    assert [(lot.remaining, lot.source.order_number) for lot in report.lots] == [(90, "A-1002"), (50, "A-1003")]
    first, second = report.expiring
    assert (first.day, first.points) == (dt.date(2026, 12, 10), 90)
    assert [source.label for source in first.sources] == ["A-1002 (Double points week)"]
    assert (second.day, second.points, second.sources[0].label) == (dt.date(2027, 2, 3), 50, "A-1003")


def test_each_spend_names_the_lots_it_took(history):
    (spend,) = member_provenance(history).consumptions
    assert (spend.kind, spend.amount, spend.reason) == ("spend", -30, "Tote bag")
    assert [(taken.amount, taken.source.order_number) for taken in spend.lots] == [(30, "A-1002")]


def test_provenance_reads_three_queries_whatever_the_history(history, django_assert_num_queries, world):
    store = world["store_a"]
    for n in range(15):
        at = LATER + dt.timedelta(days=20 + n)
        order_earn(member=history, store=store, number=f"B-{n}", amount="10", occurred_at=at, now=at)
    lots_release_matured(now=LATER + dt.timedelta(days=60))
    for n in range(6):
        points_spend(member=history, amount=7, idempotency_key=f"s{n}", reason="x", now=LATER + dt.timedelta(days=61))
    with django_assert_num_queries(3):
        report = member_provenance(history)
    assert len(report.consumptions) == 7


def test_member_api_and_page_show_the_provenance(client, history):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens_issue(member=history).access}")
    body = api.get("/api/v1/me/points/provenance/").json()
    assert body["remaining"] == 140
    assert body["expiring"][0] == {
        "date": "2026-12-10",
        "points": 90,
        "sources": [body["lots"][0]["source"]],
    }
    assert body["lots"][0]["source"]["campaigns"] == ["Double points week"]
    assert body["consumptions"][0]["lots"][0]["amount"] == 30
    assert api.get("/api/v1/me/points/provenance/?currency=gold").status_code == 400

    client.force_login(member_user_for_sign_in(member=history))
    page = client.get(reverse("center:points")).content.decode()
    assert "These 90 points expiring on" in page
    assert "90 from order A-1002" in page and "(Double points week)" in page
    client.cookies["django_language"] = "zh-hans"
    chinese = client.get(reverse("center:points"), HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "积分来源" in chinese


def test_staff_api_reads_members_of_their_stores_only(history, world):
    def client_of(user):
        api = APIClient()
        api.force_authenticate(user)
        return api

    url = f"/api/v1/members/{history.member_number}/provenance/"
    assert client_of(world["manager_a"]).get(url).json()["remaining"] == 140
    refused = client_of(world["manager_b"]).get(url)
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "out_of_scope")
    assert client_of(world["manager_a"]).get("/api/v1/members/123/provenance/").status_code == 404
    clerkish = world["manager_b"]
    clerkish.groups.clear()
    clerkish.user_permissions.set(Permission.objects.filter(codename="view_member"))
    assert client_of(clerkish).get(url).status_code == 403


def test_staff_admin_page_shows_a_members_lots(client, history, world):
    client.force_login(world["manager_a"])
    url = reverse("admin:foresight_provenance")
    page = client.get(url, {"member": history.member_number}).content.decode()
    assert "A-1002 (Double points week)" in page
    client.force_login(world["manager_b"])
    assert "No member of your stores" in client.get(url, {"member": history.member_number}).content.decode()
