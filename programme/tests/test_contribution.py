"""Dual membership: fans and owners, contribution from non-purchase actions, levels, every refusal."""

import datetime as dt
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone, translation
from rest_framework.test import APIClient

from api.tests.conftest import client_for_member
from center.services import member_user_for_sign_in
from core.errors import LoyaltyError
from engagement.models import CheckIn, Referral
from loyalty import services as ledger
from loyalty.tests.factories import MemberFactory, StoreFactory
from members.models import Member
from programme import contribution, jobs
from programme.models import Contribution, FanLevel

pytestmark = pytest.mark.django_db


@pytest.fixture
def levels(db):
    return [
        FanLevel.objects.create(code="friend", name="Friend", threshold=10),
        FanLevel.objects.create(code="insider", name="Insider", threshold=50),
    ]


def test_a_fan_earns_contribution_and_keeps_it_on_becoming_an_owner(levels, settings):
    settings.PROGRAMME_CONTRIBUTION_CHECK_IN = 5
    member = MemberFactory(birthday=None, email="")
    CheckIn.objects.create(member=member, day=timezone.localdate(), streak=1, points=1)
    member.birthday, member.email = dt.date(1990, 5, 2), "fan@example.com"
    member.save()
    member.save()  # the profile counts once
    with translation.override("zh-hans"):
        standing = contribution.standing(member)
    assert (standing.track, standing.is_owner, standing.value) == ("粉丝", False, 15)
    with translation.override("en"):
        assert contribution.standing(member).track == "Fan"
    assert standing.level.code == "friend" and standing.to_next == 35
    ledger.order_earn(member=member, store=StoreFactory(code="c1"), number="F1", amount=Decimal("10"))
    with translation.override("zh-hans"):
        standing = contribution.standing(member)
    assert (standing.track, standing.value) == ("车主", 15)
    with translation.override("en"):
        assert contribution.standing(member).track == "Owner"


def test_referrals_contribute_once_in_the_daily_job(levels):
    referrer, referee = MemberFactory(), MemberFactory()
    Referral.objects.create(referrer=referrer, referee=referee, code="R", status=Referral.Status.REWARDED)
    jobs.memberships_housekeeping()
    jobs.memberships_housekeeping()
    assert list(Contribution.objects.filter(member=referrer).values_list("kind", "amount")) == [("referral", 20)]


def test_staff_record_events_with_every_refusal(admin_user, staff_user):
    member = MemberFactory()
    ok = {"member": member, "kind": "event", "amount": 30, "key": "event:1", "reason": "Owners' day"}
    for change, actor, code in [
        ({"kind": "check_in"}, admin_user, "invalid_kind"),
        ({"amount": 0}, admin_user, "invalid_amount"),
        ({"amount": 5000}, admin_user, "invalid_amount"),
        ({"reason": ""}, admin_user, "reason_required"),
        ({"key": ""}, admin_user, "idempotency_key_required"),
        ({}, staff_user, "permission_denied"),
    ]:
        with pytest.raises(LoyaltyError) as refused:
            contribution.contribution_record(**{**ok, **change}, actor=actor)
        assert refused.value.code == code
    assert not Contribution.objects.exists()
    first = contribution.contribution_record(**ok, actor=admin_user)
    assert contribution.contribution_record(**ok, actor=admin_user).pk == first.pk
    with pytest.raises(LoyaltyError, match="idempotency_key_reused"):
        contribution.contribution_record(**{**ok, "amount": 31}, actor=admin_user)
    Member.objects.filter(pk=member.pk).update(status=Member.Status.FROZEN)
    member.refresh_from_db()
    with pytest.raises(LoyaltyError, match="member_inactive"):
        contribution.contribution_record(**{**ok, "member": member, "key": "event:2"}, actor=admin_user)
    assert Contribution.objects.count() == 1


def test_api_and_member_page(levels, admin_user, client):
    member = MemberFactory()
    staff = APIClient()
    staff.force_authenticate(admin_user)
    url = reverse("api:programme-contributions")
    body = {"member": member.phone, "kind": "community", "amount": 12, "key": "post:9", "reason": "forum post"}
    assert staff.post(url, body, format="json").status_code == 201
    assert staff.post(url, body, format="json").status_code == 200
    assert staff.post(url, {**body, "amount": 13}, format="json").status_code == 422
    assert staff.post(url, {**body, "member": "+8613000000000"}, format="json").status_code == 404
    assert client_for_member(member).post(url, body, format="json").status_code == 403
    mine = client_for_member(member).get(reverse("api:me-contribution")).json()
    assert mine["value"] == 12 and mine["level"]["code"] == "friend" and mine["is_owner"] is False
    client.force_login(member_user_for_sign_in(member=member))
    page = client.get(reverse("center:contribution"), HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "我的贡献值" in page and "forum post" in page


def test_admin_lists_contributions(admin_client, levels):
    assert admin_client.get(reverse("admin:programme_contribution_changelist")).status_code == 200
    assert admin_client.get(reverse("admin:programme_fanlevel_changelist")).status_code == 200
