"""Staff roles (setup_roles), store scoping in the admin and the adjustment limit (docs/roles.md)."""

import pytest
from django.contrib.auth.models import Group
from django.contrib.messages import get_messages
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from loyalty.models import LedgerEntry, Order
from loyalty.services import order_earn
from loyalty.tests.factories import MemberFactory, StoreFactory
from members.models import StaffProfile
from members.scoping import BRAND_ADMIN, CLERK, STORE_MANAGER, staff_stores
from rewards.models import Coupon
from rewards.tests.factories import CouponFactory

pytestmark = pytest.mark.django_db

PASSWORD = "not-a-real-password-42"


def snapshot():
    return {
        group.name: sorted(f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.all())
        for group in Group.objects.prefetch_related("permissions__content_type").order_by("name")
    }


def test_setup_roles_is_idempotent_and_resets_each_role_to_its_definition(capsys):
    call_command("setup_roles")
    first = snapshot()
    call_command("setup_roles")
    assert snapshot() == first
    assert set(first) == {BRAND_ADMIN, STORE_MANAGER, CLERK}
    assert "Clerk: unchanged" in capsys.readouterr().out

    assert set(first[CLERK]) == {
        "members.view_member",
        "rewards.view_coupon",
        "loyalty.use_till",
        "api.pos_lookup",
        "api.pos_earn",
        "api.pos_verify_coupon",
    }
    assert {"loyalty.adjust_points", "members.change_member", "loyalty.view_order"} <= set(first[STORE_MANAGER])
    assert "members.delete_member" not in first[STORE_MANAGER]
    brand = set(first[BRAND_ADMIN])
    assert {"members.delete_member", "rewards.void_coupon", "django_celery_beat.change_periodictask"} <= brand
    assert not any(name.startswith("auth.") for name in brand)

    # An operator's hand edits are put back to the definition; users stay in their groups.
    clerk = Group.objects.get(name=CLERK)
    clerk.permissions.clear()
    call_command("setup_roles")
    assert snapshot() == first


@pytest.fixture
def world(django_user_model):
    call_command("setup_roles")
    store_a, store_b = StoreFactory(code="a"), StoreFactory(code="b")
    member_a, member_b = MemberFactory(home_store=store_a), MemberFactory(home_store=store_b)
    order_earn(member=member_a, store=store_a, number="A-1", amount="20")
    order_earn(member=member_b, store=store_b, number="B-1", amount="20")
    coupon_a, coupon_b = CouponFactory(member=member_a), CouponFactory(member=member_b)
    # A member of store B who used a coupon at store A: store A sees that coupon.
    used_at_a = CouponFactory(member=member_b, status=Coupon.Status.USED, used_store=store_a, used_at=timezone.now())

    def staff(username, role, stores=(), limit=None):
        user = django_user_model.objects.create_user(username, password=PASSWORD, is_staff=True)
        user.groups.add(Group.objects.get(name=role))
        if role != BRAND_ADMIN:
            profile = StaffProfile.objects.create(user=user, adjust_limit=limit)
            profile.stores.set(stores)
        return user

    return {
        "store_a": store_a,
        "member_a": member_a,
        "member_b": member_b,
        "order_a": Order.objects.get(number="A-1"),
        "coupons_a": {coupon_a, used_at_a},
        "coupon_b": coupon_b,
        "brand": staff("brand", BRAND_ADMIN),
        "manager": staff("manager", STORE_MANAGER, [store_a], limit=500),
        "clerk": staff("clerk", CLERK, [store_a]),
    }


PAGES = {
    "members": lambda w: reverse("admin:members_member_changelist"),
    "member of store B": lambda w: reverse("admin:members_member_change", args=[w["member_b"].pk]),
    "orders": lambda w: reverse("admin:loyalty_order_changelist"),
    "coupons": lambda w: reverse("admin:rewards_coupon_changelist"),
    "periodic tasks": lambda w: reverse("admin:django_celery_beat_periodictask_changelist"),
    "adjust points": lambda w: reverse("admin:members_member_adjust", args=[w["member_a"].pk]),
}

# Scoped roles do not find store B's member: the admin redirects to its index with a message.
MATRIX = {
    "brand": {
        "members": 200,
        "member of store B": 200,
        "orders": 200,
        "coupons": 200,
        "periodic tasks": 200,
        "adjust points": 200,
    },
    "manager": {
        "members": 200,
        "member of store B": 302,
        "orders": 200,
        "coupons": 200,
        "periodic tasks": 403,
        "adjust points": 200,
    },
    "clerk": {
        "members": 200,
        "member of store B": 302,
        "orders": 403,
        "coupons": 200,
        "periodic tasks": 403,
        "adjust points": 403,
    },
}


@pytest.mark.parametrize("role", MATRIX)
def test_permission_matrix(client, world, role):
    client.force_login(world[role])
    got = {page: client.get(url(world)).status_code for page, url in PAGES.items()}
    assert got == MATRIX[role]


def rows(client, name):
    response = client.get(reverse(name))
    assert response.status_code == 200
    return set(response.context["cl"].result_list)


@pytest.mark.parametrize("role", ["manager", "clerk"])
def test_scoped_roles_list_only_their_stores_rows(client, world, role):
    client.force_login(world[role])
    assert rows(client, "admin:members_member_changelist") == {world["member_a"]}
    assert rows(client, "admin:rewards_coupon_changelist") == world["coupons_a"]
    if role == "manager":
        assert rows(client, "admin:loyalty_order_changelist") == {world["order_a"]}
        entries = rows(client, "admin:loyalty_ledgerentry_changelist")
        assert entries and {entry.member for entry in entries} == {world["member_a"]}


def test_brand_admin_lists_every_store(client, world):
    client.force_login(world["brand"])
    assert rows(client, "admin:members_member_changelist") == {world["member_a"], world["member_b"]}
    assert len(rows(client, "admin:rewards_coupon_changelist")) == 3
    assert staff_stores(world["brand"]) is None


def test_a_store_role_without_stores_sees_nothing(client, world):
    world["clerk"].staff_profile.stores.clear()
    client.force_login(world["clerk"])
    assert rows(client, "admin:members_member_changelist") == set()
    assert rows(client, "admin:rewards_coupon_changelist") == set()


def adjust(client, member, amount):
    url = reverse("admin:members_member_adjust", args=[member.pk])
    token = str(client.get(url).context["form"]["token"].value())
    return client.post(url, {"currency": "points", "amount": str(amount), "reason": "补录", "token": token})


@pytest.mark.parametrize("amount", [600, -600])
def test_store_manager_is_refused_an_adjustment_over_their_limit(client, world, amount):
    client.force_login(world["manager"])
    before = LedgerEntry.objects.count()

    response = adjust(client, world["member_a"], amount)

    assert response.status_code == 200
    assert response.context["form"].has_error("amount", "over_limit")
    assert any("at most 500" in str(m) for m in get_messages(response.wsgi_request))
    assert LedgerEntry.objects.count() == before


def test_store_manager_may_adjust_within_their_limit(client, world):
    client.force_login(world["manager"])

    response = adjust(client, world["member_a"], 400)

    assert response.status_code == 302
    entry = LedgerEntry.objects.get(kind="adjust", member=world["member_a"])
    assert (entry.amount, entry.operator) == (400, world["manager"])


def test_the_limit_holds_for_the_list_action_too(client, world):
    client.force_login(world["manager"])
    changelist = reverse("admin:members_member_changelist")
    selected = {"action": "adjust_points", "_selected_action": [world["member_a"].pk]}
    token = str(client.post(changelist, {**selected, "index": "0"}).context["form"]["token"].value())
    fields = {"apply": "1", "currency": "points", "reason": "补录", "token": token}

    response = client.post(changelist, {**selected, **fields, "amount": "501"})

    assert response.status_code == 200 and response.context["form"].has_error("amount", "over_limit")
    assert not LedgerEntry.objects.filter(kind="adjust").exists()


def test_brand_admin_has_no_limit(client, world):
    client.force_login(world["brand"])
    assert adjust(client, world["member_b"], 600).status_code == 302
    assert LedgerEntry.objects.get(kind="adjust").amount == 600


def test_a_scoped_manager_cannot_adjust_a_member_of_another_store(client, world):
    client.force_login(world["manager"])
    url = reverse("admin:members_member_adjust", args=[world["member_b"].pk])
    assert client.get(url).status_code == 302
    assert client.post(url, {"currency": "points", "amount": "5", "reason": "x", "token": "t"}).status_code == 302
    assert not LedgerEntry.objects.filter(kind="adjust").exists()
