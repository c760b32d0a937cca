"""Admin for the mall: staff edit rewards; redemptions are read-only and cancelled through the service."""

import datetime as dt

import pytest
from django.contrib.auth.models import Group, Permission
from django.urls import reverse
from django.utils import timezone

from loyalty import services as ledger
from loyalty.models import Account, Currency
from loyalty.tests.factories import MemberFactory
from members.scoping import BRAND_ADMIN
from rewards import services
from rewards.models import Coupon, Redemption, Reward

from .factories import RewardFactory

pytestmark = pytest.mark.django_db


def staff_with(django_user_model, username: str, *codenames: str):
    user = django_user_model.objects.create_user(username, password="not-a-real-password-42", is_staff=True)
    user.user_permissions.add(
        *(Permission.objects.get(codename=c, content_type__app_label="rewards") for c in codenames)
    )
    # Not scoped to stores (members.scoping): only its permissions limit it.
    user.groups.add(Group.objects.get_or_create(name=BRAND_ADMIN)[0])
    return user


def redeemed(points: int = 500) -> Redemption:
    member = MemberFactory()
    ledger.points_award(
        member=member,
        currency=Currency.POINTS,
        amount=points,
        reason="gift",
        idempotency_key="gift",
        now=timezone.now() - dt.timedelta(days=1),
    )
    return services.reward_redeem(member=member, reward=RewardFactory(stock=4), idempotency_key="k")


def test_every_reward_field_staff_edit_has_a_help_text():
    editable = [f for f in Reward._meta.fields if f.editable and not f.primary_key]
    assert [f.name for f in editable if not f.help_text] == []


def test_reward_list_shows_cost_stock_and_tier(client, django_user_model):
    RewardFactory(name="Tote bag", points_cost=1500, stock=None)
    RewardFactory(name="Mug", points_cost=800, stock=7)
    client.force_login(staff_with(django_user_model, "merch", "view_reward"))

    response = client.get(reverse("admin:rewards_reward_changelist"))

    assert response.status_code == 200
    text = response.text
    assert "Tote bag" in text and "unlimited" in text and "1500" in text and ">7<" in text


def test_staff_add_a_reward_in_the_admin(client, django_user_model):
    client.force_login(staff_with(django_user_model, "merch", "add_reward", "view_reward"))
    form = {
        # One field per language (rewards/translation.py); the Chinese one is required.
        "name_zh_hans": "咖啡券",
        "name_en": "Coffee voucher",
        "description_zh_hans": "一杯",
        "description_en": "One cup",
        "points_cost": "500",
        "cash_cost": "0",
        "stock": "100",
        "per_member_limit": "",
        "available_from": "",
        "available_until": "",
        "min_tier": "",
        "is_active": "on",
        "sort_order": "10",
        "coupon_kind": "gift",
        "coupon_value": "0",
        "coupon_valid_days": "30",
    }

    response = client.post(reverse("admin:rewards_reward_add"), form)

    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    reward = Reward.objects.get()
    assert (reward.stock, reward.name_zh_hans, reward.name_en) == (100, "咖啡券", "Coffee voucher")


def test_the_admin_form_refuses_a_percent_coupon_above_100(client, django_user_model):
    client.force_login(staff_with(django_user_model, "merch", "add_reward", "view_reward"))
    form = {
        "name_zh_hans": "x",
        "points_cost": "5",
        "cash_cost": "0",
        "sort_order": "1",
        "coupon_kind": "discount_percent",
    }
    response = client.post(
        reverse("admin:rewards_reward_add"), {**form, "coupon_value": "150", "coupon_valid_days": "3"}
    )
    assert response.status_code == 200 and "100 percent" in response.text
    assert not Reward.objects.exists()


def test_redemptions_are_read_only(client, django_user_model):
    redemption = redeemed()
    client.force_login(staff_with(django_user_model, "viewer", "view_redemption"))

    listing = client.get(reverse("admin:rewards_redemption_changelist"), {"q": redemption.member.phone})
    change = client.post(reverse("admin:rewards_redemption_change", args=[redemption.pk]), {"status": "cancelled"})

    assert listing.status_code == 200 and redemption.coupon.code in listing.text
    assert "Cancel redemption" not in listing.text  # no cancel permission, no action
    assert change.status_code == 403
    assert Redemption.objects.get().status == Redemption.Status.COMPLETED


def test_cancel_action_cancels_through_the_service_and_reports_refusals(client, django_user_model):
    fresh, done = redeemed(), redeemed()
    services.redemption_cancel(redemption=done)
    user = staff_with(django_user_model, "lead", "view_redemption", "cancel_redemption")
    client.force_login(user)

    response = client.post(
        reverse("admin:rewards_redemption_changelist"),
        {"action": "cancel", "_selected_action": [fresh.pk, done.pk]},
        follow=True,
    )

    messages = [str(m) for m in response.context["messages"]]
    assert any("already cancelled" in m for m in messages), messages
    assert any("1 redemptions cancelled" in m for m in messages), messages
    fresh.refresh_from_db()
    assert fresh.status == Redemption.Status.CANCELLED and fresh.cancelled_by == user
    assert Coupon.objects.get(pk=fresh.coupon_id).status == Coupon.Status.VOID
    assert Account.objects.get(member=fresh.member, currency=Currency.POINTS).balance == 500
