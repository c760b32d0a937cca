import datetime as dt

import pytest
from django.utils import timezone

from core.errors import LoyaltyError
from loyalty.tests.factories import MemberFactory
from members.models import Member
from members.services import (
    member_bind_miniprogram,
    member_set_status,
    member_update_profile,
)
from operations.actions import member_for_phone_sign_in

pytestmark = pytest.mark.django_db


def test_sign_in_finds_the_member_by_any_spelling_of_the_phone():
    member = MemberFactory(phone="+8613800138000")
    assert member_for_phone_sign_in(phone="138 0013 8000") == member


def test_sign_in_registers_a_new_phone():
    member = member_for_phone_sign_in(phone="13900139000")
    assert member.phone == "+8613900139000"
    assert Member.objects.count() == 1


def test_sign_in_refuses_a_closed_member():
    member = MemberFactory(phone="+8613800138000")
    member_set_status(member=member, status=Member.Status.CLOSED)
    with pytest.raises(LoyaltyError) as error:
        member_for_phone_sign_in(phone="13800138000")
    assert error.value.code == "member_closed"


def test_profile_update_saves_valid_fields():
    member = MemberFactory(birthday=None, email="")
    member_update_profile(member=member, name="  李雷 ", gender="male", email="li@example.com", birthday="1991-02-03")
    member.refresh_from_db()
    assert (member.name, member.gender, member.email, member.birthday) == (
        "李雷",
        "male",
        "li@example.com",
        dt.date(1991, 2, 3),
    )


def test_profile_update_refuses_bad_values_and_saves_nothing():
    member = MemberFactory(name="Old", birthday=None)
    with pytest.raises(LoyaltyError) as error:
        member_update_profile(member=member, name="New", email="not-an-email", gender="x", birthday="1800-01-01")
    assert error.value.code == "invalid"
    assert set(error.value.extra["fields"]) == {"email", "gender", "birthday"}
    member.refresh_from_db()
    assert member.name == "Old"


def test_profile_update_refuses_system_fields():
    member = MemberFactory()
    with pytest.raises(LoyaltyError) as error:
        member_update_profile(member=member, status="active", phone="+8613900139000")
    assert set(error.value.extra["fields"]) == {"status", "phone"}


def test_birthday_can_be_set_once():
    member = MemberFactory(birthday=None)
    member_update_profile(member=member, birthday=dt.date(1990, 5, 2))
    member_update_profile(member=member, birthday=dt.date(1990, 5, 2))  # the same again is fine
    with pytest.raises(LoyaltyError) as error:
        member_update_profile(member=member, birthday=dt.date(1990, 5, 3))
    assert error.value.code == "birthday_locked"


def test_birthday_in_the_future_is_refused():
    member = MemberFactory(birthday=None)
    with pytest.raises(LoyaltyError) as error:
        member_update_profile(member=member, birthday=timezone.localdate() + dt.timedelta(days=1))
    assert "birthday" in error.value.extra["fields"]


def test_bind_miniprogram_once_per_member_and_per_openid():
    alice, bob = MemberFactory(), MemberFactory()
    member_bind_miniprogram(member=alice, openid="o-alice", unionid="u-alice")
    member_bind_miniprogram(member=alice, openid="o-alice")  # again: nothing changes
    alice.refresh_from_db()
    assert (alice.wechat_openid, alice.wechat_unionid) == ("o-alice", "u-alice")
    for member, openid in ((alice, "o-other"), (bob, "o-alice")):
        with pytest.raises(LoyaltyError) as error:
            member_bind_miniprogram(member=member, openid=openid)
        assert error.value.code == "miniprogram_already_bound"
