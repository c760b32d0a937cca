"""One reason cleaner (core.cleaners.clean_reason) and one staff check (members.scoping.require_staff),
as every service that takes a reason or an actor uses them."""

import datetime as dt

import pytest
from django.contrib.auth.models import Permission

from core.cleaners import REASON_MAX_LENGTH, clean_key, clean_reason
from core.errors import LoyaltyError
from loyalty import services
from loyalty.models import Currency, LedgerEntry
from loyalty.tests.factories import MemberFactory, StoreFactory
from members.models import StaffAction, StaffProfile
from members.scoping import store_key_actor
from operations.actions import member_points_adjust
from rewards import services as rewards
from rewards.models import Coupon, Redemption
from rewards.tests.factories import RewardFactory

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 6, 15, 12, 0, tzinfo=dt.UTC)
TOO_LONG = "x" * (REASON_MAX_LENGTH + 1)


def refused(call) -> str:
    with pytest.raises(LoyaltyError) as error:
        call()
    return error.value.code


def test_the_reason_cleaner_strips_and_refuses_rather_than_cuts():
    assert clean_reason("  late delivery ") == "late delivery"
    assert clean_reason(None, required=False) == ""
    assert clean_reason("x" * REASON_MAX_LENGTH) == "x" * REASON_MAX_LENGTH
    assert refused(lambda: clean_reason("  ")) == "reason_required"
    assert refused(lambda: clean_reason(TOO_LONG, required=False)) == "reason_too_long"
    assert refused(lambda: clean_reason(42)) == "invalid_text"


def test_the_key_cleaner_takes_1_to_128_characters():
    assert clean_key("k" * 128, required=True) == "k" * 128
    assert clean_key("", required=False) is None
    assert refused(lambda: clean_key(None, required=True)) == "idempotency_key_required"
    assert refused(lambda: clean_key("k" * 129, required=False)) == "invalid_idempotency_key"


def test_a_spend_with_too_long_a_reason_is_refused_not_cut():
    member = MemberFactory()
    services.points_award(
        member=member, currency=Currency.POINTS, amount=100, reason="gift", idempotency_key="g", now=NOW
    )
    call = lambda: services.points_spend(member=member, amount=10, idempotency_key="s", reason=TOO_LONG, now=NOW)  # noqa: E731
    assert refused(call) == "reason_too_long"
    assert not LedgerEntry.objects.filter(kind=LedgerEntry.Kind.SPEND).exists()


def test_cancelling_a_redemption_with_too_long_a_reason_is_refused_not_cut():
    member = MemberFactory()
    services.points_award(
        member=member, currency=Currency.POINTS, amount=100, reason="gift", idempotency_key="g", now=NOW
    )
    redemption = rewards.reward_redeem(
        member=member, reward=RewardFactory(points_cost=50), idempotency_key="r", now=NOW
    )
    assert refused(lambda: rewards.redemption_cancel(redemption=redemption, reason=TOO_LONG, now=NOW)) == (
        "reason_too_long"
    )
    redemption.refresh_from_db()
    assert redemption.status == Redemption.Status.COMPLETED
    assert Coupon.objects.get(pk=redemption.coupon_id).status == Coupon.Status.ISSUED


def manager(django_user_model, store, *, limit):
    user = django_user_model.objects.create_user("manager", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="adjust_points", content_type__app_label="loyalty"))
    StaffProfile.objects.create(user=user, adjust_limit=limit).stores.set([store])
    return user


def test_the_adjustment_limit_is_checked_by_the_service_itself(django_user_model):
    """Before, only the API and the admin form held staff to their limit; the till or any
    other caller of the service did not."""
    store = StoreFactory()
    member = MemberFactory(home_store=store)
    user = manager(django_user_model, store, limit=500)
    adjust = lambda amount: member_points_adjust(  # noqa: E731
        member=member, currency=Currency.POINTS, amount=amount, reason="goodwill", actor=user
    )
    assert refused(lambda: adjust(501)) == "permission_denied"
    assert not LedgerEntry.objects.exists() and not StaffAction.objects.exists()
    assert adjust(500).amount == 500


def test_a_store_keys_acting_user_adjusts_any_member_within_their_limit(django_user_model):
    store, elsewhere = StoreFactory(), StoreFactory()
    member = MemberFactory(home_store=elsewhere)
    user = manager(django_user_model, store, limit=100)
    assert refused(
        lambda: member_points_adjust(member=member, currency=Currency.POINTS, amount=5, reason="x", actor=user)
    ) == ("out_of_scope")
    keyed = store_key_actor(user, store)
    entry = member_points_adjust(member=member, currency=Currency.POINTS, amount=5, reason="x", actor=keyed)
    assert entry.operator == user
    assert refused(
        lambda: member_points_adjust(member=member, currency=Currency.POINTS, amount=101, reason="x", actor=keyed)
    ) == ("permission_denied")
