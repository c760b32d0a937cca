"""The check-in and referral endpoints, and the referral code on sign-in."""

import datetime as dt

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from engagement.models import CheckIn, Referral
from engagement.referrals import referral_code_for
from loyalty.models import LedgerEntry
from loyalty.tests.factories import MemberFactory
from members.models import Member
from members.services import member_set_status

pytestmark = pytest.mark.django_db

NEW_PHONE = "+8613700137000"


def sign_in(sms, phone: str, **extra):
    client = APIClient()
    assert client.post("/api/v1/auth/otp/", {"phone": phone}, format="json").status_code == 202
    return client.post("/api/v1/auth/otp/sign-in/", {"phone": phone, "code": sms.last_code(), **extra}, format="json")


# --- check-in -----------------------------------------------------------------------------


def test_check_in_is_201_with_points_and_streak_then_409(member_client, member):
    status = member_client.get("/api/v1/me/check-in/")
    assert status.status_code == 200
    assert status.json()["checked_in_today"] is False
    assert status.json()["next_points"] == 5
    assert len(status.json()["week"]) == 7

    first = member_client.post("/api/v1/me/check-in/")
    assert first.status_code == 201, first.json()
    body = first.json()
    assert (body["points"], body["streak"]) == (5, 1)
    assert body["status"]["checked_in_today"] is True
    assert body["day"] == timezone.localdate().isoformat()

    again = member_client.post("/api/v1/me/check-in/")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "already_checked_in"
    assert "already checked in" in again.json()["error"]["message"]
    assert CheckIn.objects.filter(member=member).count() == 1
    assert LedgerEntry.objects.filter(member=member).count() == 1


def test_check_in_continues_yesterdays_streak(member_client, member):
    yesterday = timezone.localdate() - dt.timedelta(days=1)
    CheckIn.objects.create(member=member, day=yesterday, streak=6, points=10)
    body = member_client.post("/api/v1/me/check-in/").json()
    assert (body["streak"], body["points"]) == (7, 30)


def test_a_frozen_member_is_403(member_client, member):
    member_set_status(member=member, status=Member.Status.FROZEN)
    response = member_client.post("/api/v1/me/check-in/")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "member_inactive"
    assert not CheckIn.objects.exists()


def test_a_member_sees_only_their_own_check_ins(member_client, other_member):
    CheckIn.objects.create(member=other_member, day=timezone.localdate(), streak=3, points=10)
    body = member_client.get("/api/v1/me/check-in/").json()
    assert body["checked_in_today"] is False and body["streak"] == 0


@pytest.mark.parametrize("method", ["get", "post"])
def test_anonymous_is_refused(method):
    response = getattr(APIClient(), method)("/api/v1/me/check-in/")
    assert response.status_code == 401
    assert APIClient().get("/api/v1/me/referral/").status_code == 401


# --- referral code ------------------------------------------------------------------------


def test_referral_shows_the_code_link_and_counts(member_client, member):
    body = member_client.get("/api/v1/me/referral/").json()
    member.refresh_from_db()
    assert body["code"] == member.referral_code and len(body["code"]) == 8
    assert body["share_link"].endswith(f"/me/sign-in/?ref={body['code']}")
    assert body["code"] in body["share_text"]
    assert (body["joined"], body["rewarded"], body["pending"], body["points"]) == (0, 0, 0, 200)
    assert member_client.get("/api/v1/me/referral/").json()["code"] == body["code"]


def test_referral_counts_only_the_members_own_friends(member_client, member, other_member):
    friend = MemberFactory()
    Referral.objects.create(referrer=other_member, referee=friend, code="X")
    assert member_client.get("/api/v1/me/referral/").json()["joined"] == 0


# --- sign-in with a referral code ---------------------------------------------------------


def test_a_new_member_signs_up_with_a_referral_code(sms, member):
    code = referral_code_for(member)
    Member.objects.filter(pk=member.pk).update(joined_at=timezone.now() - dt.timedelta(days=30))
    response = sign_in(sms, NEW_PHONE, referral_code=code.lower())
    assert response.status_code == 200, response.json()
    assert response.json()["referral"]["status"] == "recorded"
    referral = Referral.objects.get()
    assert (referral.referrer, referral.referee.phone) == (member, NEW_PHONE)


def test_an_unknown_code_does_not_block_the_sign_up(sms):
    response = sign_in(sms, NEW_PHONE, referral_code="NOPE2345")
    assert response.status_code == 200
    body = response.json()
    assert body["access"].startswith("at_")
    assert body["referral"] == {
        "status": "not_recorded",
        "reason": "referral_code_unknown",
        "message": "No member has the referral code “NOPE2345”.",
    }
    assert Member.objects.filter(phone=NEW_PHONE).exists()
    assert not Referral.objects.exists()


def test_an_existing_member_signing_in_with_a_code_is_signed_in_without_a_referral(sms, member, other_member):
    response = sign_in(sms, member.phone, referral_code=referral_code_for(other_member))
    assert response.status_code == 200
    assert response.json()["referral"]["reason"] == "referral_not_new"
    assert not Referral.objects.exists()


def test_a_new_mini_program_user_joins_with_a_referral_code(member):
    code = referral_code_for(member)
    Member.objects.filter(pk=member.pk).update(joined_at=timezone.now() - dt.timedelta(days=30))
    response = APIClient().post(
        "/api/v1/auth/miniprogram/",
        {"code": "newbie", "phone_code": NEW_PHONE.removeprefix("+86"), "referral_code": code},
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert response.json()["referral"]["status"] == "recorded"
    assert Referral.objects.get().referee.phone == NEW_PHONE
    # The same user again (known now): tokens, no referral field, nothing new.
    again = APIClient().post("/api/v1/auth/miniprogram/", {"code": "newbie"}, format="json")
    assert again.status_code == 200 and "referral" not in again.json()
    assert Referral.objects.count() == 1
