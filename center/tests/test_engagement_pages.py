"""Member pages: the check-in card on home, the invite page, the referral code at sign-in."""

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from center.tests.helpers import last_code
from engagement.models import CheckIn, Referral
from engagement.referrals import referral_code_for
from loyalty.models import LedgerEntry
from loyalty.tests.factories import MemberFactory
from members.models import Member
from members.services import member_set_status

pytestmark = pytest.mark.django_db

HOME = reverse("center:home")
CHECK_IN = reverse("center:check_in")
INVITE = reverse("center:invite")
SIGN_IN = reverse("center:sign_in")
CODE = reverse("center:sign_in_code")
NEW_PHONE = "+8613700137000"


def test_home_shows_the_check_in_card_with_a_csrf_form(member_client):
    page = member_client.get(HOME).content.decode()
    assert 'id="check-in"' in page
    assert f'action="{CHECK_IN}"' in page
    assert "csrfmiddlewaretoken" in page
    assert "Check in: +5 points" in page


def test_checking_in_shows_the_points_and_streak(member_client, member):
    response = member_client.post(CHECK_IN, follow=True)
    assert response.redirect_chain[-1][0].startswith(HOME)
    page = response.content.decode()
    assert "Checked in: +5 points. Day 1 of your streak." in page
    assert "Checked in today: <strong>1</strong> day in a row." in page
    assert "You earned 5 points today. Come back tomorrow for 5 more." in page
    assert CheckIn.objects.filter(member=member).count() == 1


def test_a_second_check_in_the_same_day_says_so_and_changes_nothing(member_client, member):
    member_client.post(CHECK_IN)
    page = member_client.post(CHECK_IN, follow=True).content.decode()
    assert "already checked in today" in page
    assert CheckIn.objects.filter(member=member).count() == 1
    assert LedgerEntry.objects.filter(member=member).count() == 1


def test_the_streak_shows_on_the_card(member_client, member):
    yesterday = timezone.localdate() - dt.timedelta(days=1)
    CheckIn.objects.create(member=member, day=yesterday, streak=2, points=5)
    page = member_client.get(HOME).content.decode()
    assert "Your streak: <strong>2</strong> days." in page
    assert "Check in: +10 points" in page


def test_a_frozen_member_is_told_to_contact_staff(member_client, member):
    member_set_status(member=member, status=Member.Status.FROZEN)
    page = member_client.post(CHECK_IN, follow=True).content.decode()
    assert "cannot check in" in page
    assert not CheckIn.objects.exists()


def test_check_in_needs_post_and_a_member(client, member_client):
    assert member_client.get(CHECK_IN).status_code == 405
    response = client.__class__().post(CHECK_IN)
    assert response.status_code == 302 and SIGN_IN in response.url
    assert not CheckIn.objects.exists()


def test_check_in_refuses_a_post_without_csrf(member, settings):
    from django.test import Client

    from center.services import member_user_for_sign_in

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(member_user_for_sign_in(member=member))
    assert strict.post(CHECK_IN).status_code == 403
    assert not CheckIn.objects.exists()


def test_invite_page_shows_the_members_own_code_and_friends(member_client, member, other_member):
    own_friend = MemberFactory()
    Referral.objects.create(referrer=member, referee=own_friend, code="X", status=Referral.Status.REWARDED)
    Referral.objects.create(referrer=other_member, referee=MemberFactory(), code="Y")
    page = member_client.get(INVITE).content.decode()
    member.refresh_from_db()
    assert member.referral_code and member.referral_code in page
    assert f"?ref={member.referral_code}" in page
    assert "data-copy" in page
    other_code = referral_code_for(other_member)
    assert other_code not in page
    assert "<span>Joined with your code</span><strong>1</strong>" in page
    assert "<span>Rewarded</span><strong>1</strong>" in page


def test_profile_links_to_the_invite_page(member_client):
    page = member_client.get(reverse("center:profile")).content.decode()
    assert INVITE in page and "Invite friends" in page


def test_anonymous_cannot_see_the_invite_page(client):
    response = client.get(INVITE)
    assert response.status_code == 302 and SIGN_IN in response.url


def test_a_new_member_joins_with_a_code_from_the_share_link(client, member, outbox):
    code = referral_code_for(member)
    page = client.get(SIGN_IN, {"ref": code}).content.decode()
    assert f'value="{code}"' in page
    client.post(SIGN_IN, {"phone": NEW_PHONE, "referral_code": code})
    response = client.post(CODE, {"code": last_code(NEW_PHONE)}, follow=True)
    assert "Referral code accepted" in response.content.decode()
    referral = Referral.objects.get()
    assert (referral.referrer, referral.referee.phone) == (member, NEW_PHONE)


def test_a_bad_code_does_not_stop_the_sign_in(client, outbox):
    client.post(SIGN_IN, {"phone": NEW_PHONE, "referral_code": "nope-2345"})
    response = client.post(CODE, {"code": last_code(NEW_PHONE)}, follow=True)
    assert response.redirect_chain[-1][0] == HOME
    page = response.content.decode()
    assert "The referral code was not applied: No member has the referral code “NOPE2345”." in page
    assert Member.objects.filter(phone=NEW_PHONE).exists()
    assert not Referral.objects.exists()


def test_an_existing_member_with_a_code_is_signed_in_without_a_referral(client, member, other_member, outbox):
    client.post(SIGN_IN, {"phone": member.phone, "referral_code": referral_code_for(other_member)})
    response = client.post(CODE, {"code": last_code(member.phone)}, follow=True)
    assert response.redirect_chain[-1][0] == HOME
    assert "Referral codes are for new members" in response.content.decode()
    assert not Referral.objects.exists()
