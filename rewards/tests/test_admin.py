"""Coupon admin: staff find coupons by code or phone; voiding goes through the service."""

import pytest
from django.contrib.auth.models import Group, Permission
from django.urls import reverse

from members.scoping import BRAND_ADMIN
from rewards.models import Coupon

from .factories import CouponFactory


@pytest.fixture
def voider(django_user_model):
    user = django_user_model.objects.create_user("lead", password="not-a-real-password-42", is_staff=True)
    user.user_permissions.add(
        Permission.objects.get(codename="view_coupon"), Permission.objects.get(codename="void_coupon")
    )
    # Not scoped to stores (members.scoping): only its permissions limit it.
    user.groups.add(Group.objects.get_or_create(name=BRAND_ADMIN)[0])
    return user


@pytest.fixture
def staff_user(staff_user):
    """Staff not scoped to stores, so a refusal below comes from the missing permission."""
    staff_user.groups.add(Group.objects.get_or_create(name=BRAND_ADMIN)[0])
    return staff_user


@pytest.mark.django_db
def test_changelist_finds_a_coupon_by_code_in_lower_case(client, voider):
    coupon, other = CouponFactory(), CouponFactory()
    client.force_login(voider)
    response = client.get(reverse("admin:rewards_coupon_changelist"), {"q": coupon.code.lower()})
    assert response.status_code == 200
    assert coupon.code in response.text and other.code not in response.text


@pytest.mark.django_db
def test_changelist_finds_coupons_by_member_phone(client, voider):
    coupon, other = CouponFactory(), CouponFactory()
    client.force_login(voider)
    response = client.get(reverse("admin:rewards_coupon_changelist"), {"q": coupon.member.phone})
    assert coupon.code in response.text and other.code not in response.text


@pytest.mark.django_db
def test_void_action_voids_through_the_service_and_nothing_is_editable(client, voider):
    coupon = CouponFactory()
    client.force_login(voider)
    url = reverse("admin:rewards_coupon_changelist")
    response = client.post(url, {"action": "void", "_selected_action": [coupon.pk]}, follow=True)
    assert response.status_code == 200
    coupon.refresh_from_db()
    assert (coupon.status, coupon.voided_by, coupon.void_reason) == (Coupon.Status.VOID, voider, "Voided in the admin")
    change = client.get(reverse("admin:rewards_coupon_change", args=[coupon.pk]))
    assert change.status_code == 200 and 'name="title"' not in change.text
    assert client.get(reverse("admin:rewards_coupon_delete", args=[coupon.pk])).status_code == 403


@pytest.mark.django_db
def test_void_action_needs_the_void_permission(client, staff_user):
    staff_user.user_permissions.add(Permission.objects.get(codename="view_coupon"))
    coupon = CouponFactory()
    client.force_login(staff_user)
    url = reverse("admin:rewards_coupon_changelist")
    client.post(url, {"action": "void", "_selected_action": [coupon.pk]})
    coupon.refresh_from_db()
    assert coupon.status == Coupon.Status.ISSUED
