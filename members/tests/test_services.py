import pytest

from core.errors import LoyaltyError
from members.models import ConsentRecord, Member
from members.phone import normalize_phone
from members.services import is_valid_member_number, luhn_digit, member_create, member_set_consent, member_set_status


@pytest.mark.parametrize(
    "raw",
    ["13800138000", "138 0013 8000", "138-0013-8000", "+86 138 0013 8000", "008613800138000", " +8613800138000 "],
)
def test_phone_spellings_normalise_to_one_identity(raw):
    assert normalize_phone(raw) == "+8613800138000"


@pytest.mark.parametrize("raw", ["", "12345", "1380013800", "abc", "+1 555", "23800138000"])
def test_invalid_phone_is_refused_with_a_message(raw):
    with pytest.raises(LoyaltyError) as error:
        normalize_phone(raw)
    assert error.value.code == "invalid_phone"
    assert "valid phone number" in str(error.value.message)


@pytest.mark.django_db
def test_a_member_reads_as_name_and_card_number_never_the_phone():
    named = member_create(phone="13800138000", name="王芳")
    unnamed = member_create(phone="13900139000")
    assert str(named) == f"王芳 ({named.member_number})"
    assert str(unnamed) == unnamed.member_number
    assert "13800138000" not in str(named) and "13900139000" not in str(unnamed)


@pytest.mark.django_db
def test_member_create_normalises_the_phone_and_issues_a_card_number():
    member = member_create(phone="138 0013 8000", name="王芳", consents=("sms",), source="web")
    assert member.phone == "+8613800138000"
    assert is_valid_member_number(member.member_number)
    assert member.sms_consent_at is not None and member.email_consent_at is None
    assert list(member.consent_records.values_list("channel", "granted", "source")) == [("sms", True, "web")]


@pytest.mark.django_db
def test_member_create_refuses_a_phone_that_already_belongs_to_a_member():
    member_create(phone="13800138000")
    with pytest.raises(LoyaltyError) as error:
        member_create(phone="+86 138-0013-8000")
    assert error.value.code == "phone_taken"
    assert Member.objects.count() == 1


def test_member_numbers_carry_a_luhn_check_digit():
    assert luhn_digit("7992739871") == "3"  # the textbook example
    assert is_valid_member_number("8123456785")
    assert not is_valid_member_number("8123456781")
    assert not is_valid_member_number("8123456758")  # two digits swapped
    assert not is_valid_member_number("81234567")


@pytest.mark.django_db
def test_consent_changes_are_kept_as_history():
    member = member_create(phone="13800138000", consents=("email",))
    member_set_consent(member=member, channel="email", granted=False, source="web")
    member_set_consent(member=member, channel="wechat", granted=True, source="api")
    member.refresh_from_db()
    assert member.email_consent_at is None and member.wechat_consent_at is not None
    assert ConsentRecord.objects.filter(member=member).count() == 3
    with pytest.raises(LoyaltyError):
        member_set_consent(member=member, channel="fax", granted=True, source="web")


@pytest.mark.django_db
def test_member_status_change_refuses_unknown_status():
    member = member_create(phone="13800138000")
    assert member_set_status(member=member, status="frozen").status == "frozen"
    with pytest.raises(LoyaltyError) as error:
        member_set_status(member=member, status="deleted")
    assert error.value.code == "invalid_status"
