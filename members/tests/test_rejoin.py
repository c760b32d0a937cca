"""Joining again after an erasure: a keyed hash of the phone, and no second joining bonus.

Every way of joining (sign-in, mini-program, admin, import) and every joining bonus
(signup rules, first-purchase rules, referrals) against members.erasure.phones_erased_recently.
"""

import datetime as dt
import hashlib
import hmac

import pytest
from django.urls import reverse
from django.utils import translation
from rest_framework.test import APIClient

from engagement.models import Referral
from engagement.referrals import referral_code_for, referral_on_join, referrals_reward
from loyalty.models import EarnRule, LedgerEntry
from loyalty.selectors import ledger_violations
from loyalty.services import order_earn
from loyalty.tests.factories import MemberFactory, StoreFactory
from members.erasure import erased_phone_hash, phone_erased_recently
from members.models import ErasedPhone, ImportJob, Member
from operations.actions import member_sign_in_or_join
from operations.privacy import member_erase, member_export

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 3, 2, 4, 0, tzinfo=dt.UTC)
PHONE = "+8613800138000"
DIGITS = "13800138000"
DAY = dt.timedelta(days=1)


@pytest.fixture(autouse=True)
def invariants_hold_after_each_test():
    yield
    assert ledger_violations() == []


@pytest.fixture
def store():
    return StoreFactory()


@pytest.fixture
def bonuses():
    """A signup bonus of 100 points and a first-purchase bonus of 88, both in force since long before."""
    since = T0 - dt.timedelta(days=800)
    signup = EarnRule.objects.create(
        name="Welcome", kind=EarnRule.Kind.SIGNUP, value=100, applies_to=EarnRule.Applies.POINTS, valid_from=since
    )
    first = EarnRule.objects.create(
        name="First order",
        kind=EarnRule.Kind.BONUS,
        value=88,
        applies_to=EarnRule.Applies.POINTS,
        first_purchase_only=True,
        valid_from=since,
    )
    return signup, first


def join(phone: str, at: dt.datetime) -> Member:
    member, created = member_sign_in_or_join(phone=phone, now=at)
    assert created
    return member


def signup_points(member) -> int:
    return sum(
        LedgerEntry.objects.filter(member=member, idempotency_key__startswith="signup:").values_list(
            "amount", flat=True
        )
    )


def first_order_rules(member, store, at: dt.datetime, number: str) -> list[str]:
    """The names of the lines the member's order at ``at`` earned in points."""
    result = order_earn(member=member, store=store, number=number, amount="100", occurred_at=at, now=at)
    return [line["name"] for line in result.entries["points"].detail["lines"]]


def erased_and_back(phone: str = PHONE, *, erased: dt.datetime = T0, back: dt.datetime = T0 + DAY) -> Member:
    """A member joined with ``phone``, erased at ``erased``; the one who joins with it again at ``back``."""
    member_erase(member=join(phone, erased - dt.timedelta(days=30)), now=erased)
    return join(phone, back)


# --- the hash kept -------------------------------------------------------------------------


def test_erasure_keeps_a_keyed_hash_of_the_phone_and_no_digits_of_it(settings):
    settings.LOYALTY_ERASED_PHONE_KEY = "key-one"
    member = MemberFactory(phone=PHONE)

    member_erase(member=member, now=T0)

    row = ErasedPhone.objects.get()
    assert row.phone_hash == hmac.new(b"key-one", PHONE.encode(), hashlib.sha256).hexdigest()
    assert row.erased_at == T0
    for value in ErasedPhone.objects.values_list(*[f.attname for f in ErasedPhone._meta.concrete_fields]).get():
        assert DIGITS not in str(value) and DIGITS[-8:] not in str(value)
    # Nor is there a plain, unkeyed hash of it anyone could look up.
    assert row.phone_hash != hashlib.sha256(PHONE.encode()).hexdigest()


def test_the_hash_depends_on_the_key(settings):
    settings.LOYALTY_ERASED_PHONE_KEY = "key-one"
    one = erased_phone_hash(PHONE)
    settings.LOYALTY_ERASED_PHONE_KEY = "key-two"
    assert erased_phone_hash(PHONE) != one
    settings.LOYALTY_ERASED_PHONE_KEY = ""
    derived = erased_phone_hash(PHONE)
    assert derived not in (one, erased_phone_hash("+8613900139000"))
    settings.SECRET_KEY = "another-secret-key-" * 3
    assert erased_phone_hash(PHONE) != derived  # derived from SECRET_KEY when no key is set


def test_a_new_key_forgets_the_erased_phones(settings):
    settings.LOYALTY_ERASED_PHONE_KEY = "key-one"
    member_erase(member=MemberFactory(phone=PHONE), now=T0)
    assert phone_erased_recently("138 0013 8000", now=T0 + DAY)
    settings.LOYALTY_ERASED_PHONE_KEY = "key-two"
    assert not phone_erased_recently(PHONE, now=T0 + DAY)


def test_erasing_the_phone_again_moves_its_date_on_and_the_period_runs_from_there(bonuses, store):
    rejoined = erased_and_back(erased=T0, back=T0 + DAY)
    member_erase(member=rejoined, now=T0 + 200 * DAY)

    assert list(ErasedPhone.objects.values_list("erased_at", flat=True)) == [T0 + 200 * DAY]
    third = join(PHONE, T0 + 400 * DAY)  # more than 365 days after the first erasure, not the second
    assert third.rejoined_after_erasure and signup_points(third) == 0


def test_hashes_older_than_the_period_are_deleted_at_the_next_erasure():
    member_erase(member=MemberFactory(phone=PHONE), now=T0)
    member_erase(member=MemberFactory(phone="+8613900139000"), now=T0 + 366 * DAY)
    assert list(ErasedPhone.objects.values_list("phone_hash", flat=True)) == [erased_phone_hash("+8613900139000")]


def test_a_period_of_zero_keeps_no_hash_and_blocks_nothing(settings, bonuses):
    settings.LOYALTY_REJOIN_BONUS_BLOCK_DAYS = 0
    rejoined = erased_and_back()
    assert not ErasedPhone.objects.exists()
    assert not rejoined.rejoined_after_erasure and signup_points(rejoined) == 100


def test_the_export_says_a_keyed_hash_of_the_phone_is_kept_after_erasure(settings):
    settings.LOYALTY_REJOIN_BONUS_BLOCK_DAYS = 200
    data = member_export(member=MemberFactory())
    assert len(data["notes"]) == 1
    assert "keyed hash of your phone number" in data["notes"][0] and "200 days" in data["notes"][0]
    assert data["profile"]["rejoined_after_erasure"] is False
    with translation.override("zh-hans"):
        assert "200 天内保留您手机号的带密钥哈希值" in member_export(member=MemberFactory())["notes"][0]


# --- no second joining bonus ----------------------------------------------------------------


def test_joining_again_with_an_erased_phone_earns_no_signup_and_no_first_order_bonus(bonuses, store):
    first = join(PHONE, T0 - 30 * DAY)
    assert signup_points(first) == 100
    assert first_order_rules(first, store, T0 - 20 * DAY, "A1") == ["base rate", "First order"]
    member_erase(member=first, now=T0)

    again = join("138-0013-8000", T0 + DAY)

    assert again.pk != first.pk and again.rejoined_after_erasure
    assert signup_points(again) == 0
    # Base points as for anyone; the first-purchase bonus was had the first time.
    assert first_order_rules(again, store, T0 + 2 * DAY, "A2") == ["base rate"]


def test_a_different_phone_still_gets_the_joining_bonuses(bonuses, store):
    erased_and_back()
    other = join("+8613900139000", T0 + DAY)
    assert not other.rejoined_after_erasure and signup_points(other) == 100
    assert first_order_rules(other, store, T0 + 2 * DAY, "B1") == ["base rate", "First order"]


def test_after_the_period_the_joining_bonuses_apply_again(bonuses, store):
    within = erased_and_back(erased=T0, back=T0 + 364 * DAY)
    assert within.rejoined_after_erasure and signup_points(within) == 0
    member_erase(member=within, now=T0 + 364 * DAY + dt.timedelta(hours=1))

    later = erased_and_back("+8613900139000", erased=T0, back=T0 + 366 * DAY)
    assert not later.rejoined_after_erasure and signup_points(later) == 100
    assert first_order_rules(later, store, T0 + 367 * DAY, "C1") == ["base rate", "First order"]


def test_no_referral_for_either_side_when_the_new_member_joined_again(bonuses, store, settings):
    referrer = MemberFactory(joined_at=T0 - 300 * DAY)
    code = referral_code_for(referrer)
    rejoined = erased_and_back(erased=T0, back=T0 + DAY)

    outcome = referral_on_join(member=rejoined, code=code, created=True, now=T0 + DAY)

    assert (outcome.status, outcome.reason) == ("not_recorded", "referral_not_new")
    assert not Referral.objects.exists()
    order_earn(member=rejoined, store=store, number="R1", amount="100", occurred_at=T0 + DAY, now=T0 + DAY)
    referrals_reward(now=T0 + 30 * DAY)
    assert not LedgerEntry.objects.filter(idempotency_key__startswith="referral:").exists()


def test_after_the_period_a_referral_counts_again(store):
    referrer = MemberFactory(joined_at=T0 - 300 * DAY)
    back = T0 + 366 * DAY
    rejoined = erased_and_back(erased=T0, back=back)

    outcome = referral_on_join(member=rejoined, code=referral_code_for(referrer), created=True, now=back)

    assert outcome.status == "recorded"
    order_earn(member=rejoined, store=store, number="R1", amount="100", occurred_at=back, now=back)
    assert referrals_reward(now=back + 30 * DAY)["rewarded"] == 1
    assert set(
        LedgerEntry.objects.filter(idempotency_key__startswith="referral:").values_list("member_id", flat=True)
    ) == {
        referrer.pk,
        rejoined.pk,
    }


# --- every way of joining asks the same question ------------------------------------------


def test_the_mini_program_sign_in_marks_a_rejoined_member(bonuses):
    member_erase(member=join(PHONE, T0 - 30 * DAY), now=T0)

    response = APIClient().post("/api/v1/auth/miniprogram/", {"code": "alice", "phone_code": DIGITS}, format="json")

    assert response.status_code == 200, response.content
    member = Member.objects.get(phone=PHONE)
    assert member.rejoined_after_erasure and signup_points(member) == 0


def test_the_admin_add_form_marks_a_rejoined_member(admin_client, bonuses):
    member_erase(member=join(PHONE, T0 - 30 * DAY), now=T0)
    data = {"phone": "138 0013 8000", "name": "王芳", "gender": "female", "home_store": "", "email": ""}

    response = admin_client.post(reverse("admin:members_member_add"), data)

    assert response.status_code == 302
    member = Member.objects.get(phone=PHONE)
    assert member.rejoined_after_erasure and signup_points(member) == 0


def test_the_background_import_marks_a_rejoined_member_and_no_first_order_bonus(settings, tmp_path, bonuses, store):
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.utils import timezone

    from operations.imports import import_job_check, import_job_confirm, import_job_create, import_job_run

    settings.LOYALTY_IMPORT_ROOT = tmp_path / "imports"
    user = type(store)._meta.apps.get_model("auth", "User").objects.create_superuser("op", password="x-not-real-42")
    now = timezone.now()
    member_erase(member=join(PHONE, now - 30 * DAY), now=now - DAY)
    text = "phone,name\n13800138000,Back Again\n13900139000,Someone New\n"
    job = import_job_check(import_job_create(file=SimpleUploadedFile("m.csv", text.encode()), user=user).pk)
    import_job_confirm(job_id=job.pk, user=user)

    assert import_job_run(job.pk).status == ImportJob.Status.DONE

    back, new = Member.objects.get(phone=PHONE), Member.objects.get(phone="+8613900139000")
    assert (back.rejoined_after_erasure, new.rejoined_after_erasure) == (True, False)
    assert first_order_rules(back, store, now, "I1") == ["base rate"]
    assert first_order_rules(new, store, now, "I2") == ["base rate", "First order"]
