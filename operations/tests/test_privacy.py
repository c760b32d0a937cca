import json

import pytest
from django.utils import timezone

from api.models import ApiToken
from api.services import tokens_issue
from core.errors import LoyaltyError
from loyalty.models import LedgerEntry
from loyalty.selectors import ledger_violations
from loyalty.services import order_earn
from loyalty.tests.factories import MemberFactory, StoreFactory
from members.models import ConsentRecord, Member, Notification, StageChange, Tag
from members.notifications import notify
from members.services import member_set_consent
from operations.actions import member_for_phone_sign_in
from operations.privacy import member_erase, member_export

pytestmark = pytest.mark.django_db


@pytest.fixture
def member_with_history():
    member = MemberFactory(phone="+8613800138000", email="a@example.com", wechat_openid="o-1")
    member_set_consent(member=member, channel=ConsentRecord.Channel.SMS, granted=True, source="web")
    order_earn(member=member, store=StoreFactory(), number="A1", amount="100.00")
    notify(member_id=member.pk, kind=Notification.Kind.OTHER, title="Hello", dedupe_key=f"hello:{member.pk}")
    return Member.objects.get(pk=member.pk)


def test_export_holds_every_section_and_is_json(member_with_history):
    data = member_export(member=member_with_history)
    json.dumps(data)
    assert data["profile"]["phone"] == "+8613800138000"
    assert data["orders"][0]["number"] == "A1"
    assert {e["kind"] for e in data["entries"]} == {"earn"}
    assert data["consents"][0]["channel"] == "sms"
    assert data["notifications"][0]["title"] == "Hello"
    for section in ("balances", "lots", "coupons", "redemptions", "tier_changes"):
        assert section in data


def test_export_holds_the_profiling_and_consumer_operations_data(member_with_history):
    from engagement.checkin import member_check_in

    member = member_with_history
    member.tags.add(Tag.objects.create(name="VIP"))
    Member.objects.filter(pk=member.pk).update(stage="mature", rfm_recency=5, rfm_frequency=4, rfm_monetary=3)
    StageChange.objects.create(member=member, from_stage="growing", to_stage="mature")
    member_check_in(member=member)

    data = member_export(member=member)

    assert data["profile"]["tags"] == ["VIP"]
    assert (data["profile"]["stage"], data["profile"]["rfm_recency"]) == ("mature", 5)
    assert data["stage_changes"][0]["to_stage"] == "mature"
    assert data["check_ins"][0]["streak"] == 1
    assert data["referrals"] == [] and data["journey_runs"] == [] and data["staff_actions"] == []


def test_erase_takes_the_tags_off(member_with_history):
    member = member_with_history
    member.tags.add(Tag.objects.create(name="complained twice"))
    member_erase(member=member)
    assert not member.tags.exists()


def test_erase_removes_personal_data_and_keeps_the_ledger(member_with_history):
    member = member_with_history
    tokens_issue(member=member)
    entries = LedgerEntry.objects.filter(member=member).count()
    member_erase(member=member)
    member.refresh_from_db()
    assert member.phone == f"+erased-{member.pk}"
    assert (member.name, member.email, member.birthday, member.wechat_openid) == ("", "", None, None)
    assert member.status == Member.Status.CLOSED and member.erased_at is not None
    assert member.sms_consent_at is None
    assert LedgerEntry.objects.filter(member=member).count() == entries
    assert not Notification.objects.filter(member=member).exists()
    assert not ApiToken.objects.filter(member=member, revoked_at__isnull=True).exists()
    assert ledger_violations() == []


def test_a_second_erase_is_refused(member_with_history):
    member_erase(member=member_with_history)
    with pytest.raises(LoyaltyError) as error:
        member_erase(member=member_with_history)
    assert error.value.code == "member_erased"


def test_the_phone_can_sign_up_again_after_erasure(member_with_history):
    member_erase(member=member_with_history, now=timezone.now())
    again = member_for_phone_sign_in(phone="13800138000")
    assert again.pk != member_with_history.pk


def test_erase_voids_the_unused_coupons_and_keeps_the_used_ones(member_with_history, staff_user):
    from datetime import timedelta

    from rewards.models import Coupon
    from rewards.services import coupon_issue, coupon_verify

    member = member_with_history
    store = StoreFactory()
    expires = timezone.now() + timedelta(days=30)

    def issue(title):
        return coupon_issue(member=member, title=title, kind="gift", value=0, expires_at=expires, source="staff")

    unused, used = issue("Coffee"), issue("Cake")
    coupon_verify(code=used.code, store=store, actor=staff_user)
    member_erase(member=member)

    unused.refresh_from_db()
    used.refresh_from_db()
    assert unused.status == Coupon.Status.VOID and unused.voided_at is not None and unused.void_reason
    assert used.status == Coupon.Status.USED
    with pytest.raises(LoyaltyError) as error:
        coupon_verify(code=unused.code, store=store, actor=staff_user)
    assert error.value.code == "coupon_void"
