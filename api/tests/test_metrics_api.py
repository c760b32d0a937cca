"""GET /api/v1/metrics/ and /api/v1/segments/: staff only, scoped to the caller's stores."""

import datetime as dt

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone
from rest_framework.test import APIClient

from loyalty.services import order_earn
from loyalty.tests.factories import MemberFactory, StoreFactory
from members.models import Segment, StaffProfile

from .conftest import client_for_key

pytestmark = pytest.mark.django_db

PASSWORD = "not-a-real-password-42"


def staff_token_client(user) -> APIClient:
    client = APIClient()
    response = client.post(
        "/api/v1/auth/staff-token/", {"username": user.username, "password": PASSWORD}, format="json"
    )
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['token']}")
    return client


@pytest.fixture
def shops():
    """Two stores; north: ann (two orders, 100 + 50) and bob (none); south: cat (one order, 30)."""
    north, south = StoreFactory(code="north"), StoreFactory(code="south")
    ann = MemberFactory(home_store=north, stage="mature")
    MemberFactory(home_store=north, stage="new")  # bob: no order
    cat = MemberFactory(home_store=south, stage="mature")
    now = timezone.now()
    for member, store, number, amount, days in (
        (ann, north, "N1", 100, 50),
        (ann, north, "N2", 50, 10),
        (cat, south, "S1", 30, 5),
    ):
        when = now - dt.timedelta(days=days)
        order_earn(member=member, store=store, number=number, amount=amount, occurred_at=when, now=when)
    mature = Segment.objects.create(name="Mature", rules={"stages": ["mature"]})
    new = Segment.objects.create(name="New", rules={"stages": ["new"]})
    return {"north": north, "south": south, "mature": mature, "new": new}


@pytest.fixture
def boss(django_user_model):
    return django_user_model.objects.create_superuser("boss", password=PASSWORD)


@pytest.fixture
def north_manager(django_user_model, shops):
    user = django_user_model.objects.create_user("north-manager", password=PASSWORD, is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_dashboard"))
    StaffProfile.objects.create(user=user).stores.add(shops["north"])
    return user


@pytest.mark.parametrize("url", ["/api/v1/metrics/", "/api/v1/segments/"])
def test_members_store_keys_and_staff_without_the_permission_are_refused(
    url, shops, member_client, store, pos_staff, django_user_model
):
    assert member_client.get(url).status_code == 403
    assert client_for_key(store).get(url).status_code == 403
    assert staff_token_client(pos_staff).get(url).status_code == 403  # POS rights are not dashboard rights
    assert APIClient().get(url).status_code == 401


def test_staff_see_the_figures_of_every_member(shops, boss):
    response = staff_token_client(boss).get("/api/v1/metrics/")
    assert response.status_code == 200
    body = response.json()
    assert (body["segment"], body["stores"]) == (None, None)
    assert (body["members"], body["buyers"], body["repeat_buyers"], body["orders"]) == (3, 2, 1, 3)
    assert body["revenue"] == "180.00" and body["historical_clv"] == "60.00"  # 180 / 3
    assert body["average_order_value"] == "60.00" and body["repurchase_rate"] == 0.5


def test_a_segment_narrows_the_figures_and_an_unknown_or_bad_one_is_refused(shops, boss):
    client = staff_token_client(boss)
    body = client.get("/api/v1/metrics/", {"segment": shops["mature"].pk}).json()
    assert body["segment"] == {"id": shops["mature"].pk, "name": "Mature"}
    assert (body["members"], body["buyers"], body["revenue"]) == (2, 2, "180.00")
    missing = client.get("/api/v1/metrics/", {"segment": 999999})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    bad = client.get("/api/v1/metrics/", {"segment": "abc"})
    assert bad.status_code == 400 and "segment" in bad.json()["error"]["fields"]


def test_a_scoped_staff_user_sees_only_their_stores_members(shops, north_manager):
    client = staff_token_client(north_manager)
    body = client.get("/api/v1/metrics/").json()
    assert body["stores"] == ["north"]
    assert (body["members"], body["buyers"], body["revenue"]) == (2, 1, "150.00")  # ann and bob
    body = client.get("/api/v1/metrics/", {"segment": shops["mature"].pk}).json()
    assert (body["members"], body["revenue"]) == (1, "150.00")  # cat is in the south
    segments = client.get("/api/v1/segments/").json()
    assert [(s["name"], s["members"]) for s in segments] == [("Mature", 1), ("New", 1)]


def test_the_segments_list_gives_live_counts(shops, boss):
    response = staff_token_client(boss).get("/api/v1/segments/")
    assert response.status_code == 200
    assert [(s["id"], s["name"], s["members"]) for s in response.json()] == [
        (shops["mature"].pk, "Mature", 2),
        (shops["new"].pk, "New", 1),
    ]


def test_an_admin_session_works_too(shops, boss, client):
    client.force_login(boss)
    assert client.get("/api/v1/segments/").status_code == 200


def test_the_segments_list_runs_a_bounded_number_of_queries(shops, boss, django_assert_max_num_queries):
    client = staff_token_client(boss)
    client.get("/api/v1/segments/")
    for n in range(15):
        Segment.objects.create(name=f"extra {n}", rules={"orders_min": n})
    with django_assert_max_num_queries(6):  # token, user, segments, one count for all of them
        response = client.get("/api/v1/segments/")
    assert len(response.json()) == 17
