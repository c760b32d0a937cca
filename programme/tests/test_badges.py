"""Badges: conditions, awarded once, by events and by the sweep, progress, staff award and revoke."""

import datetime as dt
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from api.tests.conftest import client_for_member
from center.services import member_user_for_sign_in
from core.errors import LoyaltyError
from engagement.models import CheckIn
from loyalty import services as ledger
from loyalty.models import Account, MemberTier, Tier
from loyalty.tests.factories import MemberFactory, StoreFactory
from programme import badges, jobs
from programme.models import Badge, MemberBadge
from programme.tasks import evaluate_badges
from rewards.models import Coupon

pytestmark = pytest.mark.django_db


def _points(member) -> int:
    return Account.objects.filter(member=member, currency="points").values_list("balance", flat=True).first() or 0


def _order(member, number, amount="100.00", store=None, when=None):
    return ledger.order_earn(
        member=member,
        store=store or StoreFactory(code="s1"),
        number=number,
        amount=Decimal(amount),
        occurred_at=when or timezone.now(),
    )


@pytest.fixture
def two_orders(db):
    return Badge.objects.create(
        code="two-orders",
        name="Regular",
        condition="orders",
        threshold=2,
        points=50,
        coupon_kind="amount_off",
        coupon_value=Decimal("5"),
    )


def test_orders_badge_awarded_once_with_points_and_coupon(two_orders):
    member = MemberFactory()
    _order(member, "A1")
    assert badges.badges_evaluate(member=member) == []
    _order(member, "A2")
    [held] = badges.badges_evaluate(member=member)
    assert held.badge == two_orders and held.source == "event"
    assert _points(member) == 50 and Coupon.objects.filter(member=member).count() == 1
    _order(member, "A3")
    assert badges.badges_evaluate(member=member) == []
    assert MemberBadge.objects.filter(member=member).count() == 1


def test_an_order_queues_the_evaluation_after_commit(two_orders, django_capture_on_commit_callbacks, monkeypatch):
    queued = []
    monkeypatch.setattr(evaluate_badges, "delay", queued.append)
    member = MemberFactory()
    with django_capture_on_commit_callbacks(execute=True):
        _order(member, "A1")
    assert queued == [member.pk]
    assert evaluate_badges.run(member.pk) == 0


def test_spend_window_streak_tier_store_and_referral_conditions(db):
    now = timezone.now()
    store = StoreFactory(code="flagship")
    gold = Tier.objects.create(code="gold", name="Gold", rank=2)
    made = {
        "spend": Badge.objects.create(code="big", name="Big", condition="spend", threshold=500, window_days=30),
        "streak": Badge.objects.create(code="streak", name="Streak", condition="checkin_streak", threshold=7),
        "tier": Badge.objects.create(code="gold", name="Gold", condition="tier", tier=gold),
        "store": Badge.objects.create(code="flag", name="Flagship", condition="first_store", store=store),
    }
    member = MemberFactory()
    _order(member, "OLD", amount="400.00", when=now - dt.timedelta(days=40))
    _order(member, "NEW", amount="300.00", store=store)
    CheckIn.objects.create(member=member, day=now.date(), streak=7, points=1)
    MemberTier.objects.update_or_create(member=member, defaults={"tier": gold, "started_at": now, "review_at": now})
    held = {h.badge.code for h in badges.badges_evaluate(member=member)}
    assert held == {"streak", "gold", "flag"}  # 300 in the last 30 days is not 500
    assert made["spend"].pk not in {h.badge_id for h in MemberBadge.objects.all()}


def test_nightly_sweep_awards_time_window_badges_once(two_orders):
    members = [MemberFactory() for _ in range(3)]
    for i, member in enumerate(members[:2]):
        _order(member, f"X{i}a")
        _order(member, f"X{i}b")
    jobs.badges_sweep(size=2)
    assert MemberBadge.objects.filter(source="sweep").count() == 2
    jobs.badges_sweep()
    assert MemberBadge.objects.count() == 2


def test_progress_toward_the_next_badges(two_orders, client, django_assert_max_num_queries):
    member = MemberFactory()
    _order(member, "A1")
    [progress] = badges.badges_progress(member)
    assert (progress.value, progress.target, progress.percent) == (1, 2, 50)
    client.force_login(member_user_for_sign_in(member=member))
    with django_assert_max_num_queries(10):
        page = client.get(reverse("center:badges"), HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "Regular" in page and "我的徽章" in page
    assert client_for_member(member).get(reverse("api:me-badges")).json()[0]["percent"] == 50


def test_staff_award_and_revoke_with_a_reason(two_orders, admin_user, staff_user):
    member = MemberFactory()
    with pytest.raises(LoyaltyError, match="permission_denied"):
        badges.badge_award(member=member, badge=two_orders, actor=staff_user, reason="x")
    with pytest.raises(LoyaltyError, match="reason_required"):
        badges.badge_award(member=member, badge=two_orders, actor=admin_user, reason=" ")
    held = badges.badge_award(member=member, badge=two_orders, actor=admin_user, reason="lost receipts")
    assert held.source == "staff" and _points(member) == 50
    with pytest.raises(LoyaltyError, match="badge_held"):
        badges.badge_award(member=member, badge=two_orders, actor=admin_user, reason="again")
    badges.badge_revoke(held=held, actor=admin_user, reason="mistake")
    assert _points(member) == 0 and Coupon.objects.get(member=member).status == "void"
    with pytest.raises(LoyaltyError, match="badge_revoked"):
        badges.badge_revoke(held=held, actor=admin_user, reason="again")
    _order(member, "A1")
    _order(member, "A2")
    assert badges.badges_evaluate(member=member) == []  # a revoked badge is not earned again by itself


def test_staff_api_award_revoke_and_refusals(two_orders, admin_user):
    member = MemberFactory()
    staff = APIClient()
    staff.force_authenticate(admin_user)
    award = reverse("api:programme-badge-award")
    body = {"member": member.phone, "badge": "two-orders", "reason": "event"}
    assert staff.post(award, {**body, "badge": "nope"}, format="json").status_code == 404
    assert staff.post(award, body, format="json").status_code == 201
    assert staff.post(award, body, format="json").json()["error"]["code"] == "badge_held"
    revoked = staff.post(reverse("api:programme-badge-revoke"), {**body, "reason": "oops"}, format="json")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert client_for_member(member).post(award, body, format="json").status_code == 403


def test_admin_badges(admin_client, two_orders):
    member = MemberFactory()
    held = badges.badge_award(member=member, badge=two_orders, actor=_admin(), reason="x")
    url = reverse("admin:programme_memberbadge_changelist")
    admin_client.post(url, {"action": "revoke", "_selected_action": [held.pk], "reason": ""})
    assert MemberBadge.objects.get().revoked_at is None
    admin_client.post(url, {"action": "revoke", "_selected_action": [held.pk], "reason": "mistake"})
    assert MemberBadge.objects.get().revoked_at is not None
    assert admin_client.get(reverse("admin:programme_badge_changelist")).status_code == 200


def _admin():
    from django.contrib.auth import get_user_model

    return get_user_model().objects.get(is_superuser=True)
