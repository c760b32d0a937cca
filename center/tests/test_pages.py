import datetime as dt
import json
import re

import pytest
from django.contrib.auth import SESSION_KEY
from django.template.defaultfilters import date as date_filter
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from center.tests.data import award, earn, spend
from loyalty.models import Currency, MemberTier
from loyalty.tiers import tier_assign_default
from members.models import ConsentRecord, Member, Notification
from rewards.models import Coupon, Redemption, Reward

pytestmark = pytest.mark.django_db


def _text(response) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


# --- home -------------------------------------------------------------------------------------


def test_home_shows_card_tier_progress_expiring_pending_and_news(member_client, member, tiers, store):
    now = timezone.now()
    MemberTier.objects.create(
        member=member,
        tier=tiers["silver"],
        started_at=now - dt.timedelta(days=300),
        review_at=now + dt.timedelta(days=60),
    )
    award(member, 500, currency=Currency.GROWTH)
    award(member, 120, at=now - dt.timedelta(days=350))  # expires in about 15 days
    award(member, 400)  # expires in a year: not "soon"
    earn(member, store, "SHJA-1", "88.00")  # pending for the return window
    Notification.objects.create(member=member, kind="other", title="Double points weekend", dedupe_key="t:1")

    response = member_client.get(reverse("center:home"))

    assert response.status_code == 200
    text = _text(response)
    assert "Li Wei" in text
    assert member.member_number[:5] + " " + member.member_number[5:] in text
    assert 'class="tier-badge">Silver<' in text
    assert "520" in text  # points balance: 120 + 400
    # Growth counts pending growth: 500 + 88. 2,412 more to Gold (3,000); 212 more to keep
    # Silver (800) by the review date.
    assert "<strong>2,412</strong> more growth to reach Gold" in text
    review = date_filter(timezone.localtime(now + dt.timedelta(days=60)), "DATE_FORMAT")
    assert f"To keep Silver at your review on {review}, earn <strong>212</strong> more growth" in text
    expiring = response.context["expiring"]
    assert [bucket.amount for bucket in expiring] == [120]
    assert date_filter(expiring[0].date, "DATE_FORMAT") in text
    pending = response.context["pending"]
    assert [release.amount for release in pending] == [88]
    assert "Available on " + date_filter(pending[0].date, "DATE_FORMAT") in text
    assert "Double points weekend" in text


def test_home_says_when_the_tier_is_already_kept_and_at_the_top(member_client, member, tiers):
    tier_assign_default(member=member, now=timezone.now())
    award(member, 3200, currency=Currency.GROWTH)  # straight up to Gold, the top tier

    text = _text(member_client.get(reverse("center:home")))

    assert "You are a Gold member, our highest tier." in text
    assert "You already have the 2,400 growth needed to keep Gold" in text
    assert 'aria-valuenow="100"' in text


def test_home_for_a_new_member_with_nothing_yet(member_client, tiers, member):
    tier_assign_default(member=member, now=timezone.now())
    text = _text(member_client.get(reverse("center:home")))
    assert "<strong>1,000</strong> more growth to reach Silver" in text
    assert "No points expire in the next 30 days." in text
    assert "No pending points right now." in text


# --- languages --------------------------------------------------------------------------------


def test_language_comes_from_the_browser(member_client):
    zh = member_client.get(reverse("center:home"), HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert '<html lang="zh-hans">' in zh.content.decode()
    en = member_client.get(reverse("center:home"), HTTP_ACCEPT_LANGUAGE="en")
    assert '<html lang="en">' in en.content.decode()


def test_every_page_has_a_language_switch_that_sticks(member_client):
    page = Client().get(reverse("center:sign_in"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert 'action="/i18n/setlang/"' in page and 'name="language" value="zh-hans"' in page

    response = member_client.post("/i18n/setlang/", {"language": "zh-hans", "next": reverse("center:history")})
    assert response.status_code == 302 and response.url == reverse("center:history")
    again = member_client.get(reverse("center:history"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert '<html lang="zh-hans">' in again
    assert 'value="zh-hans" lang="zh-hans" aria-pressed="true"' in again


# --- history ----------------------------------------------------------------------------------


def test_history_pages_by_twenty_newest_first(member_client, member):
    start = timezone.now() - dt.timedelta(days=30)
    for i in range(25):
        award(member, 10 + i, at=start + dt.timedelta(hours=i), key=f"a{i}")

    first = member_client.get(reverse("center:history"))
    second = member_client.get(reverse("center:history"), {"page": 2})

    assert len(first.context["page"].object_list) == 20
    assert [e.points for e in second.context["page"].object_list] == [14, 13, 12, 11, 10]
    assert first.context["page"].object_list[0].points == 34
    assert "Page 1 of 2" in _text(first)


def test_history_filters_by_kind_and_keeps_the_filter_across_pages(member_client, member):
    award(member, 500)
    spend(member, 100, "s1")
    response = member_client.get(reverse("center:history"), {"kind": "spend"})
    entries = list(response.context["page"].object_list)
    assert [(e.kind, e.points) for e in entries] == [("spend", -100)]
    assert "−100" in _text(response)


def test_history_with_an_unknown_kind_shows_the_error_and_everything(member_client, member):
    award(member, 500)
    response = member_client.get(reverse("center:history"), {"kind": "steal"})
    assert response.status_code == 200
    assert response.context["form"].errors["kind"]
    assert len(response.context["page"].object_list) == 1


def test_history_shows_store_order_and_the_earning_breakdown(member_client, member, store):
    earn(member, store, "SHJA-77", "120.00")
    text = _text(member_client.get(reverse("center:history")))
    assert "Jing&#x27;an store" in text
    assert "Order SHJA-77" in text
    assert "<details" in text and "How this was earned" in text
    assert "base rate" in text and "¥120.00" in text
    assert "+120 pending" in text


# --- rewards ----------------------------------------------------------------------------------


@pytest.fixture
def coffee(db):
    return Reward.objects.create(
        name="Coffee voucher", points_cost=100, stock=5, coupon_kind="amount_off", coupon_value=15
    )


@pytest.fixture
def suitcase(db):
    return Reward.objects.create(name="Suitcase", points_cost=90000)


def test_rewards_show_cost_stock_and_why_some_are_greyed_out(member_client, member, coffee, suitcase):
    award(member, 500)
    response = member_client.get(reverse("center:rewards"))
    text = _text(response)
    assert "Coffee voucher" in text and "5 left" in text
    assert reverse("center:redeem", args=[coffee.pk]) in text
    assert reverse("center:redeem", args=[suitcase.pk]) not in text
    assert "reward--unavailable" in text
    offer = next(o for o in response.context["offers"] if o.reward == suitcase)
    assert offer.reason and offer.reason in text


def test_redeem_confirms_first_then_redeems_once_for_a_double_submit(member_client, member, coffee):
    award(member, 500)
    page = member_client.get(reverse("center:redeem", args=[coffee.pk]))
    assert page.status_code == 200
    key = re.search(r'name="idempotency_key" value="([^"]+)"', page.content.decode()).group(1)
    assert Redemption.objects.count() == 0  # the confirmation step changes nothing

    first = member_client.post(reverse("center:redeem", args=[coffee.pk]), {"idempotency_key": key})
    second = member_client.post(reverse("center:redeem", args=[coffee.pk]), {"idempotency_key": key})

    redemption = Redemption.objects.get()
    assert first.url == second.url == reverse("center:redemption", args=[redemption.pk])
    coffee.refresh_from_db()
    assert coffee.stock == 4
    result = _text(member_client.get(first.url))
    code = redemption.coupon.code
    assert f"{code[:4]} {code[4:8]} {code[8:]}" in result
    assert f"QR code of coupon {code}" in result and 'class="segno"' in result


def test_redeem_refusal_says_what_to_do_next(member_client, member, suitcase):
    award(member, 500)
    key = "0f8fad5b-d9cb-469f-a165-70867728950e"
    response = member_client.post(reverse("center:redeem", args=[suitcase.pk]), {"idempotency_key": key}, follow=True)
    text = _text(response)
    assert "Not enough points" in text
    assert Redemption.objects.count() == 0


def test_redeem_with_a_broken_key_asks_to_confirm_again(member_client, member, coffee):
    award(member, 500)
    response = member_client.post(reverse("center:redeem", args=[coffee.pk]), {"idempotency_key": "nope"})
    assert response.status_code == 200
    assert "please confirm again" in _text(response)
    assert Redemption.objects.count() == 0


def test_unknown_or_inactive_reward_is_404(member_client, coffee):
    assert member_client.get(reverse("center:redeem", args=[coffee.pk + 999])).status_code == 404
    Reward.objects.filter(pk=coffee.pk).update(is_active=False)
    assert member_client.get(reverse("center:redeem", args=[coffee.pk])).status_code == 404


def test_another_members_redemption_is_404(member_client, other_member, coffee):
    from rewards.services import reward_redeem

    award(other_member, 500)
    theirs = reward_redeem(member=other_member, reward=coffee, idempotency_key="theirs")
    assert member_client.get(reverse("center:redemption", args=[theirs.pk])).status_code == 404
    assert member_client.get(reverse("center:coupon", args=[theirs.coupon.pk])).status_code == 404


# --- coupons ----------------------------------------------------------------------------------


def _coupon(member, title, *, status=Coupon.Status.ISSUED, days=30, **fields):
    now = timezone.now()
    return Coupon.objects.create(
        member=member,
        title=title,
        kind="amount_off",
        value=20,
        source="staff",
        status=status,
        issued_at=now - dt.timedelta(days=40),
        valid_from=now - dt.timedelta(days=40),
        expires_at=now + dt.timedelta(days=days),
        **fields,
    )


def test_coupons_in_tabs_with_a_qr_code_only_for_usable_ones(member_client, member, store):
    active = _coupon(member, "Birthday treat")
    _coupon(member, "Old treat", days=-1)  # issued but past its date: expired
    _coupon(member, "Autumn coupon", status=Coupon.Status.EXPIRED, days=-5)
    _coupon(member, "Used coupon", status=Coupon.Status.USED, used_at=timezone.now(), used_store=store)

    active_page = _text(member_client.get(reverse("center:coupons")))
    used_page = _text(member_client.get(reverse("center:coupons"), {"tab": "used"}))
    expired_page = _text(member_client.get(reverse("center:coupons"), {"tab": "expired"}))

    assert "Birthday treat" in active_page and "Old treat" not in active_page
    assert active_page.count("QR code of coupon") == 1
    assert f"{active.code[:4]} {active.code[4:8]} {active.code[8:]}" in active_page
    assert "¥20 off" in active_page
    assert "Used coupon" in used_page and "Jing&#x27;an store" in used_page and "QR code" not in used_page
    assert "Old treat" in expired_page and "Autumn coupon" in expired_page and "QR code" not in expired_page


def test_unknown_tab_falls_back_to_active(member_client, member):
    _coupon(member, "Birthday treat")
    response = member_client.get(reverse("center:coupons"), {"tab": "<script>"})
    assert response.context["tab"] == "active"
    assert "Birthday treat" in _text(response)


def test_coupon_page_shows_a_big_qr_for_the_till(member_client, member, other_member):
    mine = _coupon(member, "Birthday treat")
    theirs = _coupon(other_member, "Their treat")
    page = _text(member_client.get(reverse("center:coupon", args=[mine.pk])))
    assert f"QR code of coupon {mine.code}" in page and "Show this at the till" in page
    assert member_client.get(reverse("center:coupon", args=[theirs.pk])).status_code == 404


# --- profile ----------------------------------------------------------------------------------


def _profile(**overrides):
    data = {"name": "Li Wei", "email": "", "birthday": ""}
    data.update(overrides)
    return data


def test_profile_saves_details_and_consent_per_channel(member_client, member):
    response = member_client.post(
        reverse("center:profile"),
        _profile(
            name="Li Xiaowei", email="li@example.com", birthday="1990-05-04", consent_sms="on", consent_wechat="on"
        ),
    )
    assert response.status_code == 302
    member.refresh_from_db()
    assert (member.name, member.email, member.birthday) == ("Li Xiaowei", "li@example.com", dt.date(1990, 5, 4))
    assert member.sms_consent_at and member.wechat_consent_at and member.email_consent_at is None
    records = set(ConsentRecord.objects.filter(member=member).values_list("channel", "granted", "source"))
    assert records == {("sms", True, "web"), ("wechat", True, "web")}

    member_client.post(reverse("center:profile"), _profile(name="Li Xiaowei", email="li@example.com", consent_sms="on"))
    member.refresh_from_db()
    assert member.wechat_consent_at is None
    assert ConsentRecord.objects.filter(member=member, channel="wechat", granted=False).count() == 1


def test_birthday_can_be_set_once(member_client, member):
    member_client.post(reverse("center:profile"), _profile(birthday="1990-05-04"))
    page = member_client.get(reverse("center:profile"))
    assert page.context["form"].fields["birthday"].disabled
    assert "ask our staff" in _text(page)

    member_client.post(reverse("center:profile"), _profile(birthday="1991-01-01"))
    member.refresh_from_db()
    assert member.birthday == dt.date(1990, 5, 4)


def test_profile_bad_input_shows_field_errors_and_changes_nothing(member_client, member):
    response = member_client.post(reverse("center:profile"), _profile(email="not-an-email", name="x"))
    assert response.status_code == 200 and response.context["form"].errors["email"]
    future = (timezone.localdate() + dt.timedelta(days=3)).isoformat()
    response = member_client.post(reverse("center:profile"), _profile(birthday=future))
    assert response.status_code == 200 and response.context["form"].errors["birthday"]
    member.refresh_from_db()
    assert member.name == "Li Wei" and member.birthday is None


def test_set_then_change_password_keeps_the_member_signed_in(member_client, member):
    url = reverse("center:password")
    weak = member_client.post(url, {"new_password1": "123", "new_password2": "123"})
    assert weak.status_code == 200 and weak.context["form"].errors

    strong = "Plum-blossom-2026!"
    response = member_client.post(url, {"new_password1": strong, "new_password2": strong})
    assert response.status_code == 302
    member.refresh_from_db()
    assert member.user.check_password(strong)
    assert member_client.get(reverse("center:home")).status_code == 200

    # Now changing it needs the current one.
    page = member_client.get(url)
    assert "old_password" in page.context["form"].fields
    refused = member_client.post(
        url, {"old_password": "wrong", "new_password1": "x-Y-z-123456", "new_password2": "x-Y-z-123456"}
    )
    assert refused.context["form"].errors["old_password"]


def test_download_my_data_is_a_json_attachment(member_client, member):
    award(member, 50)
    response = member_client.get(reverse("center:export"))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert response["Content-Disposition"] == f'attachment; filename="my-data-{member.member_number}.json"'
    data = json.loads(response.content)
    assert member.member_number in json.dumps(data)


def test_erase_needs_the_word_then_erases_and_signs_out(member_client, member):
    url = reverse("center:erase")
    page = _text(member_client.get(url))
    assert "<strong>ERASE</strong>" in page

    refused = member_client.post(url, {"confirm": "yes"})
    assert refused.status_code == 200 and refused.context["form"].errors["confirm"]
    member.refresh_from_db()
    assert member.status == Member.Status.ACTIVE

    response = member_client.post(url, {"confirm": "erase"})
    assert response.status_code == 302 and response.url == reverse("center:sign_in")
    member.refresh_from_db()
    assert member.status == Member.Status.CLOSED and member.name == ""
    assert SESSION_KEY not in member_client.session
    assert member_client.get(reverse("center:home")).status_code == 302
