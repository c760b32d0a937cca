"""POS writes respect staff store scoping (members.scoping, docs/roles.md, docs/api.md).

A staff token or a store key's acting user may record orders, refunds, checkouts and
coupon verifications only at their own stores: anywhere else is 403 ``store_forbidden``
and nothing is written. Lookups stay brand-wide. Adjustments respect the adjust limit.
"""

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from rest_framework.test import APIClient

from api.services import staff_token_create
from api.tests.conftest import client_for_key
from loyalty.models import LedgerEntry, Order
from loyalty.selectors import ledger_violations
from loyalty.services import order_earn, points_award
from members.models import StaffProfile
from members.scoping import BRAND_ADMIN, CLERK, STORE_MANAGER
from rewards.models import Coupon
from rewards.tests.factories import CouponFactory

pytestmark = pytest.mark.django_db

PASSWORD = "not-a-real-password-42"


@pytest.fixture(autouse=True)
def fast_hashing_and_exact_ledger(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    yield
    assert ledger_violations() == []


@pytest.fixture
def staff(django_user_model, store, other_store):
    """staff(role, stores, limit) -> an API client with that user's staff token."""
    call_command("setup_roles")

    def make(role=None, stores=(), limit=None, perms=(), username=None):
        user = django_user_model.objects.create_user(
            username or f"u-{role or 'plain'}", password=PASSWORD, is_staff=True
        )
        if role:
            user.groups.add(Group.objects.get(name=role))
        if role in (CLERK, STORE_MANAGER) or stores:
            StaffProfile.objects.create(user=user, adjust_limit=limit).stores.set(stores)
        if perms:
            user.user_permissions.add(*Permission.objects.filter(codename__in=perms, content_type__app_label="api"))
        _token, raw = staff_token_create(username=user.username, password=PASSWORD)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        client.user = user
        return client

    return make


def forbidden(response):
    assert response.status_code == 403, response.json()
    error = response.json()["error"]
    assert error["code"] == "store_forbidden" and "does not work at store" in error["message"]


def order(member, store_code, number="A-1", **extra):
    return {"member_number": member.member_number, "store": store_code, "number": number, "amount": "50.00", **extra}


def test_a_clerk_records_orders_at_their_store_only(staff, member, store, other_store):
    clerk = staff(CLERK, [store])
    assert clerk.post("/api/v1/pos/orders/", order(member, "sh001"), format="json").status_code == 201
    forbidden(clerk.post("/api/v1/pos/orders/", order(member, "bj001", "B-1"), format="json"))
    assert list(Order.objects.values_list("store__code", flat=True)) == ["sh001"]


def test_a_clerk_looks_up_any_member_brand_wide(staff, member, store, other_store):
    member.home_store = other_store
    member.save()
    clerk = staff(CLERK, [store])
    response = clerk.get("/api/v1/pos/members/lookup/", {"phone": "13800138000"})
    assert response.status_code == 200 and response.json()["member_number"] == member.member_number


def test_a_clerk_verifies_coupons_only_at_their_store(staff, member, store, other_store):
    coupon = CouponFactory(member=member)
    clerk = staff(CLERK, [store])
    forbidden(clerk.post("/api/v1/pos/coupons/verify/", {"code": coupon.code, "store": "bj001"}, format="json"))
    assert Coupon.objects.get(pk=coupon.pk).status == Coupon.Status.ISSUED
    ok = clerk.post("/api/v1/pos/coupons/verify/", {"code": coupon.code, "store": "sh001"}, format="json")
    assert ok.status_code == 200 and ok.json()["used_store"] == "sh001"


def test_a_manager_refunds_only_their_stores_orders(staff, member, store, other_store):
    order_earn(member=member, store=other_store, number="B-1", amount="50")
    order_earn(member=member, store=store, number="A-1", amount="50")
    manager = staff(STORE_MANAGER, [store])
    refund = {"store": "bj001", "order_number": "B-1", "number": "R-1", "amount": "10.00"}
    forbidden(manager.post("/api/v1/pos/refunds/", refund, format="json"))
    assert not LedgerEntry.objects.filter(kind__in=["refund", "cancel"]).exists()
    ok = manager.post("/api/v1/pos/refunds/", {**refund, "store": "sh001", "order_number": "A-1"}, format="json")
    assert ok.status_code == 201, ok.json()


def test_checkout_is_scoped_too(staff, member, store, other_store):
    points_award(member=member, currency="points", amount=1000, reason="seed", idempotency_key="seed")
    cashier = staff(stores=[store], perms=["pos_checkout", "pos_earn"])
    body = order(member, "bj001", "C-1", points=100)
    forbidden(cashier.post("/api/v1/pos/checkout/", body, format="json"))
    assert not Order.objects.exists()
    assert cashier.post("/api/v1/pos/checkout/", {**body, "store": "sh001"}, format="json").status_code == 201


def test_a_clerk_without_stores_can_act_nowhere(staff, member, store):
    forbidden(staff(CLERK, []).post("/api/v1/pos/orders/", order(member, "sh001"), format="json"))
    assert not Order.objects.exists()


def test_brand_admins_act_at_any_store_and_staff_without_a_profile_nowhere(staff, member, store, other_store):
    brand = staff(BRAND_ADMIN, username="brand")
    assert brand.post("/api/v1/pos/orders/", order(member, "bj001", "B-1"), format="json").status_code == 201
    # Permissions granted one by one, but no profile: no stores (members.scoping).
    plain = staff(perms=["pos_earn"], username="plain")
    forbidden(plain.post("/api/v1/pos/orders/", order(member, "sh001", "A-2"), format="json"))
    assert Order.objects.count() == 1


def test_a_store_key_acts_for_its_own_store_only(django_user_model, member, store, other_store, adjuster):
    # The key's store is its scope: its acting user (the operator of adjustments) needs no profile.
    key = client_for_key(store, acting_user=adjuster)
    assert key.post("/api/v1/pos/orders/", order(member, "sh001"), format="json").status_code == 201
    other = key.post("/api/v1/pos/orders/", order(member, "bj001", "B-1"), format="json")
    assert other.status_code == 403 and other.json()["error"]["code"] == "store_forbidden"
    assert list(Order.objects.values_list("store__code", flat=True)) == ["sh001"]


def test_adjustments_respect_the_managers_stores_and_limit(staff, member, store, other_store):
    member.home_store = store
    member.save()
    manager = staff(STORE_MANAGER, [store], limit=500)
    body = {"member_number": member.member_number, "currency": "points", "reason": "goodwill"}
    over = manager.post("/api/v1/pos/adjustments/", {**body, "amount": 600}, format="json")
    assert over.status_code == 403 and over.json()["error"]["code"] == "permission_denied"
    assert "at most 500" in over.json()["error"]["message"]
    assert not LedgerEntry.objects.exists()
    assert manager.post("/api/v1/pos/adjustments/", {**body, "amount": 500}, format="json").status_code == 201
    elsewhere = staff(STORE_MANAGER, [other_store], username="elsewhere")
    response = elsewhere.post("/api/v1/pos/adjustments/", {**body, "amount": 5}, format="json")
    assert response.status_code == 403 and response.json()["error"]["code"] == "store_forbidden"
    assert LedgerEntry.objects.filter(kind="adjust").count() == 1
