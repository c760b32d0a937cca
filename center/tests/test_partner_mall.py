"""Partner vouchers in the main mall: /me/rewards/ and GET /api/v1/rewards/ list them beside
our rewards, marked as the partner's, with the same reasons partner_voucher_redeem refuses
for; getting one from the mall spends the points and issues the partner's voucher."""

from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import translation

from api.tests.conftest import client_for_member
from center.services import member_user_for_sign_in
from loyalty import services as ledger
from loyalty.models import Account, MemberTier, Tier
from loyalty.selectors import ledger_violations
from loyalty.tests.factories import MemberFactory
from members.models import Member
from programme import partners
from programme.models import Partner, PartnerOffer, PartnerVoucher
from rewards.models import Reward

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def ledger_stays_exact():
    yield
    assert ledger_violations() == []


@pytest.fixture
def member(db):
    member = MemberFactory()
    ledger.points_award(member=member, currency="points", amount=1200, reason="seed", idempotency_key="seed")
    return member


@pytest.fixture
def carwash(db):
    return Partner.objects.create(
        code="carwash",
        name="Sparkle Car Wash",
        points_per_yuan=Decimal("1.5"),
        issue_price=Decimal("0.005"),
        redeem_price=Decimal("0.008"),
    )


@pytest.fixture
def catalogue(carwash):
    wash = PartnerOffer.objects.create(partner=carwash, name="One wash", points_cost=800, valid_days=30)
    wax = PartnerOffer.objects.create(
        partner=carwash, name="Wax", points_cost=500, code_source=PartnerOffer.CodeSource.BATCH
    )
    partners.partner_codes_upload(offer=wax, codes="WAX-1")
    detail = PartnerOffer.objects.create(partner=carwash, name="Full detail", points_cost=4300)
    latte = Reward.objects.create(name="Latte voucher", points_cost=300, coupon_kind="gift")
    return {"wash": wash, "wax": wax, "detail": detail, "latte": latte}


def balance(member) -> int:
    return Account.objects.get(member=member, currency="points").balance


def by_name(items) -> dict:
    return {item["name"]: item for item in items}


def test_the_mall_offers_say_why_not_as_the_redeem_refuses(member, catalogue, django_assert_max_num_queries):
    with django_assert_max_num_queries(4):
        offers = {offer.offer.name: offer for offer in partners.partner_mall_offers(member)}
    assert offers["One wash"].eligible and offers["Wax"].eligible
    assert offers["Wax"].codes_left == 1 and offers["One wash"].codes_left is None
    detail = offers["Full detail"]
    assert (detail.eligible, detail.code, detail.points_missing) == (False, "insufficient_balance", 3100)
    with translation.override("en"):
        text = partners.partner_mall_offers(member)[-1].reason
    assert text == "You need 3,100 more points."


def test_out_of_codes_tier_and_status_refusals_match_the_service(member, catalogue):
    partners.partner_voucher_redeem(member=member, offer=catalogue["wax"], idempotency_key="k1")
    gold = Tier.objects.create(code="gold", name="Gold", rank=5)
    PartnerOffer.objects.filter(pk=catalogue["wash"].pk).update(min_tier=gold)
    offers = {offer.offer.name: offer for offer in partners.partner_mall_offers(member)}
    assert offers["Wax"].code == "out_of_codes"
    assert offers["One wash"].code == "tier_too_low"
    MemberTier.objects.filter(member=member).delete()
    Member.objects.filter(pk=member.pk).update(status=Member.Status.FROZEN)
    member.refresh_from_db()
    assert {offer.code for offer in partners.partner_mall_offers(member)} == {"member_inactive"}


def test_the_api_mall_lists_partner_vouchers_marked_and_the_path_to_get_one(member, catalogue):
    client = client_for_member(member)
    response = client.get("/api/v1/rewards/")
    assert response.status_code == 200
    items = by_name(response.json())
    assert items["Latte voucher"]["is_partner"] is False and items["Latte voucher"]["partner"] is None
    wash = items["One wash"]
    assert wash["is_partner"] is True
    assert wash["partner"] == {"code": "carwash", "name": "Sparkle Car Wash"}
    assert wash["id"] == catalogue["wash"].pk and wash["eligible"] is True
    assert items["Wax"]["stock"] == 1
    assert items["Full detail"]["code"] == "insufficient_balance"
    # The filters apply to both kinds.
    cheap = by_name(client.get("/api/v1/rewards/?max_points=600").json())
    assert set(cheap) == {"Latte voucher", "Wax"}
    # Getting it through the path the mall gives spends the points once.
    got = client.post(wash["redeem"], {"offer": wash["id"], "idempotency_key": "mall-1"}, format="json")
    assert got.status_code == 201, got.content
    assert balance(member) == 400
    assert PartnerVoucher.objects.filter(member=member, offer=catalogue["wash"]).count() == 1


def test_the_member_mall_page_shows_partner_vouchers_and_gets_one(client, member, catalogue):
    client.force_login(member_user_for_sign_in(member=member))
    page = client.get(reverse("center:rewards"), HTTP_ACCEPT_LANGUAGE="en")
    html = page.content.decode()
    assert page.status_code == 200
    assert "Latte voucher" in html and "One wash" in html and "Sparkle Car Wash" in html
    assert 'class="badge badge--partner"' in html
    assert "You need 3,100 more points." in html
    shelf = client.get(reverse("center:rewards") + "?category=partner").content.decode()
    assert "One wash" in shelf and "Latte voucher" not in shelf
    afford = client.get(reverse("center:rewards") + "?afford=on&sort=-cost").content.decode()
    assert "Full detail" not in afford
    assert afford.index("One wash") < afford.index("Wax") < afford.index("Latte voucher")
    key = "mall-page-1"
    done = client.post(reverse("center:partner_redeem", args=[catalogue["wash"].pk]), {"key": key})
    assert done.status_code == 302
    assert balance(member) == 400
    # A double submit of the same form spends once.
    client.post(reverse("center:partner_redeem", args=[catalogue["wash"].pk]), {"key": key})
    assert balance(member) == 400


def test_the_chinese_mall_marks_partner_vouchers_in_chinese(client, member, catalogue):
    client.force_login(member_user_for_sign_in(member=member))
    html = client.get(reverse("center:rewards"), HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "合作伙伴" in html
    assert "还差 3,100 积分" in html
