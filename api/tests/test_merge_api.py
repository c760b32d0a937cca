"""POST /api/v1/staff/members/merge/ and .../<id>/undo/ (docs/merge.md): every refusal, no 500."""

import datetime as dt
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from loyalty import services
from loyalty.models import Account, Currency, Order
from loyalty.selectors import ledger_violations
from loyalty.tests.factories import MemberFactory, StoreFactory
from members.models import Member, MemberMerge, StaffProfile
from members.scoping import BRAND_ADMIN, STORE_MANAGER

pytestmark = pytest.mark.django_db

URL = "/api/v1/staff/members/merge/"


def staff_client(user) -> APIClient:
    client = APIClient()
    token = client.post(
        "/api/v1/auth/staff-token/", {"username": user.username, "password": "pw-merge-api-1"}, format="json"
    ).json()["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def world(django_user_model):
    call_command("setup_roles", stdout=open("/dev/null", "w"))  # noqa: SIM115
    store, other = StoreFactory(code="ma1"), StoreFactory(code="ma2")

    def staff(name, role=None, stores=()):
        user = django_user_model.objects.create_user(name, password="pw-merge-api-1", is_staff=True)
        if role:
            user.groups.add(Group.objects.get(name=role))
        if role != BRAND_ADMIN:
            StaffProfile.objects.create(user=user).stores.set(stores)
        return user

    return {
        "store": store,
        "other": other,
        "brand": staff_client(staff("brand-api", BRAND_ADMIN)),
        "manager": staff_client(staff("manager-api", STORE_MANAGER, [store])),
        "clerk": staff_client(staff("clerk-api", None, [store])),
    }


def body(keep, merged, reason="same person, two phones"):
    return {"keep": keep.member_number, "merged": merged.member_number, "reason": reason}


def test_merge_and_undo_through_the_api(world):
    store = world["store"]
    keep, merged = MemberFactory(home_store=store), MemberFactory(home_store=store)
    services.points_award(member=merged, currency="points", amount=500, reason="gift", idempotency_key="g")
    services.order_earn(member=merged, store=store, number="API-1", amount=Decimal("20.00"))

    response = world["manager"].post(URL, body(keep, merged), format="json")

    assert response.status_code == 201, response.content
    data = response.json()
    assert data["points"]["available"] == 500 and data["points"]["pending"] == 20
    assert data["moved"]["orders"] == 1 and data["replayed"] is False
    assert Account.objects.get(member=keep, currency=Currency.POINTS).balance == 500
    again = world["manager"].post(URL, body(keep, merged), format="json")
    assert again.status_code == 200 and again.json()["replayed"] is True and again.json()["id"] == data["id"]

    undo = world["manager"].post(f"{URL}{data['id']}/undo/", {"reason": "two people"}, format="json")
    assert undo.status_code == 200, undo.content
    assert undo.json()["undone_at"] is not None
    assert Account.objects.get(member=merged, currency=Currency.POINTS).balance == 500
    assert Order.objects.get(number="API-1").member_id == merged.pk
    assert ledger_violations() == []


def test_pos_lookup_and_earn_by_the_old_number_or_phone_follow_the_pointer(world, django_user_model):
    store = world["store"]
    keep, merged = MemberFactory(home_store=store), MemberFactory(home_store=store, phone="+8613700137000")
    assert world["brand"].post(URL, body(keep, merged), format="json").status_code == 201
    from api.tests.conftest import client_for_key

    key = client_for_key(store)
    by_number = key.get("/api/v1/pos/members/lookup/", {"member_number": merged.member_number})
    by_phone = key.get("/api/v1/pos/members/lookup/", {"phone": "13700137000"})
    assert by_number.status_code == 200 and by_number.json()["member_number"] == keep.member_number
    assert by_phone.status_code == 200 and by_phone.json()["member_number"] == keep.member_number
    earned = key.post(
        "/api/v1/pos/orders/",
        {
            "member_number": merged.member_number,
            "number": "OLD-1",
            "amount": "30.00",
            "occurred_at": timezone.now().isoformat(),
        },
        format="json",
    )
    assert earned.status_code == 201, earned.content
    assert Order.objects.get(number="OLD-1").member_id == keep.pk


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "keep"),
        ({"keep": "8123", "merged": "8124"}, "reason"),
        ({"keep": "x" * 41, "merged": "1", "reason": "r"}, "keep"),
        ({"keep": ["a"], "merged": {"b": 1}, "reason": "r"}, "keep"),
    ],
)
def test_bad_input_is_400_in_the_error_shape(world, payload, field):
    response = world["brand"].post(URL, payload, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert not MemberMerge.objects.exists()


def test_unknown_numbers_are_404_and_a_blank_reason_400(world):
    keep = MemberFactory(home_store=world["store"])
    response = world["brand"].post(
        URL, {"keep": keep.member_number, "merged": "700000000", "reason": "x"}, format="json"
    )
    assert response.status_code == 404 and response.json()["error"]["code"] == "member_not_found"
    other = MemberFactory(home_store=world["store"])
    response = world["brand"].post(URL, body(keep, other, reason="   "), format="json")
    assert response.status_code == 400
    assert not MemberMerge.objects.exists()


def test_every_refusal_has_its_code_and_status(world):
    store, brand = world["store"], world["brand"]
    a, b, c = (MemberFactory(home_store=store) for _ in range(3))

    same = brand.post(URL, body(a, a), format="json")
    assert (same.status_code, same.json()["error"]["code"]) == (400, "merge_same_member")

    Member.objects.filter(pk=c.pk).update(status=Member.Status.FROZEN)
    frozen = brand.post(URL, body(a, c), format="json")
    assert (frozen.status_code, frozen.json()["error"]["code"]) == (409, "member_not_mergeable")

    erased = MemberFactory(home_store=store, erased_at=timezone.now())
    gone = brand.post(URL, body(a, erased), format="json")
    assert (gone.status_code, gone.json()["error"]["code"]) == (409, "member_not_mergeable")

    assert brand.post(URL, body(a, b), format="json").status_code == 201
    again = brand.post(URL, body(MemberFactory(home_store=store), b), format="json")
    assert (again.status_code, again.json()["error"]["code"]) == (409, "member_already_merged")

    outside = MemberFactory(home_store=world["other"])
    scoped = world["manager"].post(URL, body(a, outside), format="json")
    assert (scoped.status_code, scoped.json()["error"]["code"]) == (403, "out_of_scope")

    clerk = world["clerk"].post(URL, body(a, MemberFactory(home_store=store)), format="json")
    assert (clerk.status_code, clerk.json()["error"]["code"]) == (403, "permission_denied")

    assert APIClient().post(URL, body(a, b), format="json").status_code == 401


def test_refund_shortfall_refused(world):
    store = world["store"]
    keep, merged = MemberFactory(home_store=store), MemberFactory(home_store=store)
    now = timezone.now()
    services.order_earn(
        member=merged, store=store, number="SF-1", amount=Decimal("100.00"), now=now - dt.timedelta(days=30)
    )
    services.lots_release_matured(now=now)
    balance = Account.objects.get(member=merged, currency=Currency.POINTS).balance
    services.points_spend(member=merged, amount=balance, idempotency_key="all", reason="all")
    services.order_refund(order=Order.objects.get(number="SF-1"), amount="100.00", number="R")
    response = world["brand"].post(URL, body(keep, merged), format="json")
    assert (response.status_code, response.json()["error"]["code"]) == (409, "refund_shortfall_open")


def test_undo_refusals(world):
    store, brand = world["store"], world["brand"]
    keep, merged = MemberFactory(home_store=store), MemberFactory(home_store=store)
    services.points_award(member=merged, currency="points", amount=100, reason="gift", idempotency_key="g")
    merge_id = brand.post(URL, body(keep, merged), format="json").json()["id"]

    missing = brand.post(f"{URL}999999/undo/", {"reason": "x"}, format="json")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "merge_not_found")
    no_reason = brand.post(f"{URL}{merge_id}/undo/", {}, format="json")
    assert no_reason.status_code == 400 and "reason" in no_reason.json()["error"]["fields"]

    services.points_spend(member=keep, amount=60, idempotency_key="s", reason="reward")
    spent = brand.post(f"{URL}{merge_id}/undo/", {"reason": "x"}, format="json")
    assert (spent.status_code, spent.json()["error"]["code"]) == (409, "merge_points_spent")

    MemberMerge.objects.filter(pk=merge_id).update(created_at=timezone.now() - dt.timedelta(days=30))
    late = brand.post(f"{URL}{merge_id}/undo/", {"reason": "x"}, format="json")
    assert (late.status_code, late.json()["error"]["code"]) == (409, "merge_undo_expired")
    assert MemberMerge.objects.get(pk=merge_id).undone_at is None


def test_an_idempotency_key_replays_the_first_answer_and_refuses_another_body(world):
    store = world["store"]
    keep, merged, third = (MemberFactory(home_store=store) for _ in range(3))
    first = world["brand"].post(URL, body(keep, merged), format="json", HTTP_IDEMPOTENCY_KEY="merge-1")
    again = world["brand"].post(URL, body(keep, merged), format="json", HTTP_IDEMPOTENCY_KEY="merge-1")
    assert first.status_code == 201 and again.status_code == 201
    assert again["Idempotent-Replayed"] == "true" and again.json() == first.json()
    other = world["brand"].post(URL, body(keep, third), format="json", HTTP_IDEMPOTENCY_KEY="merge-1")
    assert (other.status_code, other.json()["error"]["code"]) == (422, "idempotency_key_reused")
    assert MemberMerge.objects.count() == 1
