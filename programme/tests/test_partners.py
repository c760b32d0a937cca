"""Partners: earn and burn at a partner, keys, settlement, benefits; services, API, admin."""

import csv
import datetime as dt
import io
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from api.tests.conftest import client_for_key, client_for_member
from core.errors import LoyaltyError
from loyalty import services as ledger
from loyalty.models import Account, LedgerEntry, MemberTier, Tier
from loyalty.selectors import ledger_violations
from loyalty.tests.factories import MemberFactory, StoreFactory
from members.models import Member
from programme import partners
from programme.models import PartnerBenefit, PartnerCode, PartnerEarn, PartnerOffer, PartnerVoucher

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def ledger_stays_exact():
    yield
    assert ledger_violations() == []


def balance(member) -> int:
    return Account.objects.filter(member=member, currency="points").values_list("balance", flat=True).first() or 0


@pytest.fixture
def carwash(db):
    return partners.Partner.objects.create(
        code="carwash",
        name="Sparkle Car Wash",
        points_per_yuan=Decimal("1.5"),
        issue_price=Decimal("0.005"),
        redeem_price=Decimal("0.008"),
    )


@pytest.fixture
def member(db):
    member = MemberFactory()
    ledger.points_award(member=member, currency="points", amount=2000, reason="seed", idempotency_key="seed")
    return member


@pytest.fixture
def wash(carwash):
    return PartnerOffer.objects.create(partner=carwash, name="One wash", points_cost=800, valid_days=30)


@pytest.fixture
def batch_offer(carwash):
    offer = PartnerOffer.objects.create(
        partner=carwash, name="Wax", points_cost=500, code_source=PartnerOffer.CodeSource.BATCH
    )
    partners.partner_codes_upload(offer=offer, codes="WAX-1\nWAX-2")
    return offer


def partner_client(partner) -> APIClient:
    _key, raw = partners.partner_key_create(partner=partner, name="pos")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Partner-Key {raw}")
    return client


# --- earn ----------------------------------------------------------------------------------


def test_earn_awards_points_at_the_partner_rate_and_records_what_the_partner_owes(carwash, member):
    earn = partners.partner_earn(partner=carwash, member=member, order_number="CW-1", amount="68.90")
    # 68.90 × 1.5 = 103.35 -> 103 points; 103 × 0.005 = 0.515 -> 0.52 owed
    assert (earn.points, earn.owed, earn.issue_price) == (103, Decimal("0.52"), Decimal("0.0050"))
    assert earn.entry.kind == LedgerEntry.Kind.EARN and earn.entry.detail["partner"] == "carwash"
    assert balance(member) == 2103


def test_earn_is_once_per_order_and_refuses_the_number_with_other_details(carwash, member):
    partners.partner_earn(partner=carwash, member=member, order_number="CW-1", amount="10")
    again = partners.partner_earn(partner=carwash, member=member, order_number="CW-1", amount="10")
    assert again.replayed and balance(member) == 2015
    with pytest.raises(LoyaltyError) as error:
        partners.partner_earn(partner=carwash, member=member, order_number="CW-1", amount="11")
    assert error.value.code == "order_number_taken"
    with pytest.raises(LoyaltyError) as error:
        partners.partner_earn(partner=carwash, member=MemberFactory(), order_number="CW-1", amount="10")
    assert error.value.code == "order_number_taken"
    assert PartnerEarn.objects.count() == 1 and balance(member) == 2015


@pytest.mark.parametrize(
    ("amount", "number", "code"),
    [
        ("0", "A", "invalid_amount"),
        ("-5", "A", "invalid_amount"),
        ("0.5", "A", "points_too_few"),
        ("5", " ", "order_number_required"),
    ],
)
def test_earn_refuses_bad_input_and_writes_nothing(carwash, member, amount, number, code):
    with pytest.raises(LoyaltyError) as error:
        partners.partner_earn(partner=carwash, member=member, order_number=number, amount=amount)
    assert error.value.code == code
    assert not PartnerEarn.objects.exists() and balance(member) == 2000


def test_earn_refuses_an_order_that_would_earn_over_the_cap(carwash, member):
    with pytest.raises(LoyaltyError) as error:
        partners.partner_earn(partner=carwash, member=member, order_number="BIG", amount="9999999999.99")
    assert error.value.code == "invalid_amount" and not PartnerEarn.objects.exists()


def test_earn_refuses_an_order_time_in_the_future_or_of_a_settled_month(carwash, member):
    now = timezone.now()
    for when in (now + dt.timedelta(hours=1), now - dt.timedelta(days=61)):
        with pytest.raises(LoyaltyError) as error:
            partners.partner_earn(partner=carwash, member=member, order_number="T", amount="10", occurred_at=when)
        assert error.value.code == "invalid_time"
    assert not PartnerEarn.objects.exists()


def test_redeem_refuses_a_frozen_member(wash, member):
    Member.objects.filter(pk=member.pk).update(status=Member.Status.FROZEN)
    member.refresh_from_db()
    with pytest.raises(LoyaltyError) as error:
        partners.partner_voucher_redeem(member=member, offer=wash, idempotency_key="k")
    assert error.value.code == "member_inactive" and not PartnerVoucher.objects.exists()


def test_earn_refuses_a_frozen_member_and_an_inactive_partner(carwash, member):
    Member.objects.filter(pk=member.pk).update(status=Member.Status.FROZEN)
    member.refresh_from_db()
    with pytest.raises(LoyaltyError) as error:
        partners.partner_earn(partner=carwash, member=member, order_number="X", amount="10")
    assert error.value.code == "member_inactive"
    carwash.is_active = False
    carwash.save()
    with pytest.raises(LoyaltyError) as error:
        partners.partner_earn(partner=carwash, member=MemberFactory(), order_number="X", amount="10")
    assert error.value.code == "partner_inactive"
    assert not PartnerEarn.objects.exists()


# --- burn ----------------------------------------------------------------------------------


def test_redeem_spends_points_and_gives_a_generated_code(wash, member):
    voucher = partners.partner_voucher_redeem(member=member, offer=wash, idempotency_key="k1")
    assert voucher.status == "issued" and len(voucher.code) == 12
    assert (voucher.points, voucher.owed) == (800, Decimal("6.40"))  # 800 × 0.008
    assert voucher.spend_entry.kind == LedgerEntry.Kind.SPEND and balance(member) == 1200
    again = partners.partner_voucher_redeem(member=member, offer=wash, idempotency_key="k1")
    assert again.replayed and again.pk == voucher.pk and balance(member) == 1200


def test_redeem_takes_the_batch_codes_in_order_then_refuses(batch_offer, member):
    first = partners.partner_voucher_redeem(member=member, offer=batch_offer, idempotency_key="a")
    second = partners.partner_voucher_redeem(member=member, offer=batch_offer, idempotency_key="b")
    assert (first.code, second.code) == ("WAX-1", "WAX-2")
    assert partners.codes_left(batch_offer) == 0
    with pytest.raises(LoyaltyError) as error:
        partners.partner_voucher_redeem(member=member, offer=batch_offer, idempotency_key="c")
    assert error.value.code == "out_of_codes" and balance(member) == 1000


def test_redeem_refusals_change_nothing(wash, member, carwash):
    poor = MemberFactory()
    with pytest.raises(LoyaltyError) as error:
        partners.partner_voucher_redeem(member=poor, offer=wash, idempotency_key="k")
    assert error.value.code == "insufficient_balance"
    gold = Tier.objects.create(code="gold", name="Gold", rank=2)
    wash.min_tier = gold
    wash.save()
    with pytest.raises(LoyaltyError) as error:
        partners.partner_voucher_redeem(member=member, offer=wash, idempotency_key="k")
    assert error.value.code == "tier_too_low"
    wash.min_tier, wash.is_active = None, False
    wash.save()
    with pytest.raises(LoyaltyError) as error:
        partners.partner_voucher_redeem(member=member, offer=wash, idempotency_key="k")
    assert error.value.code == "offer_unavailable"
    other = PartnerOffer.objects.create(partner=carwash, name="Other", points_cost=10)
    wash.is_active = True
    wash.save()
    partners.partner_voucher_redeem(member=member, offer=wash, idempotency_key="k")
    with pytest.raises(LoyaltyError) as error:
        partners.partner_voucher_redeem(member=member, offer=other, idempotency_key="k")
    assert error.value.code == "idempotency_key_reused"
    assert PartnerVoucher.objects.count() == 1 and balance(member) == 1200


def test_the_partner_uses_its_voucher_once(wash, member, carwash):
    voucher = partners.partner_voucher_redeem(member=member, offer=wash, idempotency_key="k")
    used = partners.partner_voucher_use(partner=carwash, code=voucher.code.lower())
    assert used.status == "used" and used.used_at is not None
    with pytest.raises(LoyaltyError) as error:
        partners.partner_voucher_use(partner=carwash, code=voucher.code)
    assert error.value.code == "voucher_used"
    airline = partners.Partner.objects.create(code="air", name="Air")
    with pytest.raises(LoyaltyError) as error:
        partners.partner_voucher_use(partner=airline, code=voucher.code)
    assert error.value.code == "voucher_not_found"


def test_an_expired_voucher_is_refused(wash, member, carwash):
    voucher = partners.partner_voucher_redeem(member=member, offer=wash, idempotency_key="k")
    with pytest.raises(LoyaltyError) as error:
        partners.partner_voucher_use(partner=carwash, code=voucher.code, now=timezone.now() + dt.timedelta(days=31))
    assert error.value.code == "voucher_expired"


def test_staff_void_gives_the_points_back_and_needs_permission_and_reason(wash, member, django_user_model):
    voucher = partners.partner_voucher_redeem(member=member, offer=wash, idempotency_key="k")
    clerk = django_user_model.objects.create_user("clerk", is_staff=True)
    with pytest.raises(LoyaltyError) as error:
        partners.partner_voucher_void(voucher=voucher, actor=clerk, reason="customer changed mind")
    assert error.value.code == "permission_denied"
    boss = django_user_model.objects.create_superuser("boss", "b@example.com", None)
    with pytest.raises(LoyaltyError) as error:
        partners.partner_voucher_void(voucher=voucher, actor=boss, reason=" ")
    assert error.value.code == "reason_required"
    voided = partners.partner_voucher_void(voucher=voucher, actor=boss, reason="customer changed mind")
    assert voided.status == "void" and balance(member) == 2000
    with pytest.raises(LoyaltyError) as error:
        partners.partner_voucher_void(voucher=voucher, actor=boss, reason="again")
    assert error.value.code == "voucher_void"


def test_codes_upload_skips_known_codes_and_refuses_generated_offers(batch_offer, wash):
    assert partners.partner_codes_upload(offer=batch_offer, codes=["WAX-2", "WAX-3", "WAX-3"]) == (1, 1)
    for codes, code in [([], "codes_required"), (["x" * 65], "code_invalid")]:
        with pytest.raises(LoyaltyError) as error:
            partners.partner_codes_upload(offer=batch_offer, codes=codes)
        assert error.value.code == code
    with pytest.raises(LoyaltyError) as error:
        partners.partner_codes_upload(offer=wash, codes=["A"])
    assert error.value.code == "offer_codes_generated"
    assert PartnerCode.objects.filter(offer=batch_offer).count() == 3


# --- settlement ----------------------------------------------------------------------------


def test_settlement_of_a_month_by_hand(carwash, wash, member, django_user_model):
    tz = timezone.get_current_timezone()
    nov = dt.datetime(2026, 11, 10, 12, tzinfo=tz)
    partners.partner_earn(partner=carwash, member=member, order_number="N1", amount="100", now=nov)  # 150 pts, 0.75
    partners.partner_earn(partner=carwash, member=member, order_number="N2", amount="20", now=nov)  # 30 pts, 0.15
    partners.partner_earn(
        partner=carwash, member=member, order_number="D1", amount="100", now=dt.datetime(2026, 12, 1, 0, 5, tzinfo=tz)
    )
    partners.partner_voucher_redeem(member=member, offer=wash, idempotency_key="v1", now=nov)  # 800, 6.40
    voided = partners.partner_voucher_redeem(member=member, offer=wash, idempotency_key="v2", now=nov)
    boss = django_user_model.objects.create_superuser("boss", "b@example.com", None)
    partners.partner_voucher_void(voucher=voided, actor=boss, reason="mistake")
    month = partners.parse_month("2026-11")
    got = partners.partner_settlement(partner=carwash, month=month)
    assert (got.orders, got.points_issued, got.owed_by_partner) == (2, 180, Decimal("0.90"))
    assert (got.vouchers, got.points_redeemed, got.owed_to_partner) == (1, 800, Decimal("6.40"))
    assert got.balance == Decimal("-5.50")
    rows = list(csv.reader(io.StringIO(partners.settlement_csv(got))))
    assert rows[1] == ["carwash", "2026-11", "2", "180", "0.90", "1", "800", "6.40", "-5.50"]
    assert [row[1] for row in rows[4:]] == ["N1", "N2", PartnerVoucher.objects.get(idempotency_key="v1").code]


def test_parse_month_refuses_nonsense():
    for text in ["2026-13", "november", "2026"]:
        with pytest.raises(LoyaltyError) as error:
            partners.parse_month(text)
        assert error.value.code == "invalid_month"


# --- benefits ------------------------------------------------------------------------------


def test_benefits_follow_the_tier_and_the_paid_plan(carwash, member, paid, plan):
    gold = Tier.objects.create(code="gold", name="Gold", rank=2)
    by_tier = PartnerBenefit.objects.create(partner=carwash, title="Free wash")
    by_tier.tiers.add(gold)
    by_plan = PartnerBenefit.objects.create(partner=carwash, title="Lounge")
    by_plan.plans.add(plan)
    owner = paid.member
    assert [b.title for b in partners.partner_benefits_for(owner)] == ["Lounge"]
    now = timezone.now()
    MemberTier.objects.create(member=owner, tier=gold, started_at=now, review_at=now)
    assert [b.title for b in partners.partner_benefits_for(owner)] == ["Free wash", "Lounge"]
    assert partners.partner_benefits_for(MemberFactory()) == []
    Member.objects.filter(pk=owner.pk).update(status=Member.Status.FROZEN)
    owner.refresh_from_db()
    assert partners.partner_benefits_for(owner) == []


# --- API -----------------------------------------------------------------------------------


def test_partner_api_earn_use_and_settlement(carwash, wash, member):
    client = partner_client(carwash)
    body = {"member": member.phone, "order_number": "CW-9", "amount": "10.00"}
    answer = client.post(reverse("api:partner-orders"), body, format="json")
    assert answer.status_code == 201 and answer.json()["points"] == 15
    assert client.post(reverse("api:partner-orders"), body, format="json").status_code == 200
    assert client.post(reverse("api:partner-orders"), {**body, "amount": "11"}, format="json").status_code == 422
    answer = client.post(reverse("api:partner-orders"), {**body, "member": "13900000000"}, format="json")
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "member_not_found"
    answer = client.post(reverse("api:partner-orders"), {**body, "amount": "lots"}, format="json")
    assert answer.status_code == 400
    voucher = partners.partner_voucher_redeem(member=member, offer=wash, idempotency_key="k")
    answer = client.post(reverse("api:partner-voucher-use"), {"code": voucher.code}, format="json")
    assert answer.status_code == 200 and answer.json()["status"] == "used"
    answer = client.post(reverse("api:partner-voucher-use"), {"code": voucher.code}, format="json")
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "voucher_used"
    statement = client.get(reverse("api:partner-settlement")).json()
    assert (statement["points_issued"], statement["points_redeemed"]) == (15, 800)
    assert client.get(reverse("api:partner-settlement"), {"month": "soon"}).status_code == 400


def test_a_partner_key_opens_partner_endpoints_only(carwash, member):
    client = partner_client(carwash)
    assert client.get(reverse("api:me-badges")).status_code in (401, 403)
    assert client.get("/api/v1/pos/members/", {"phone": member.phone}).status_code in (401, 403, 404)
    store_key = client_for_key(StoreFactory())
    answer = store_key.post(reverse("api:partner-orders"), {"member": member.phone}, format="json")
    assert answer.status_code in (401, 403)
    member_token = client_for_member(member)
    assert member_token.get(reverse("api:partner-settlement")).status_code in (401, 403)
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Partner-Key pk_nope")
    assert bad.get(reverse("api:partner-settlement")).status_code == 401
    key, raw = partners.partner_key_create(partner=carwash, name="old")
    key.is_active = False
    key.save()
    bad.credentials(HTTP_AUTHORIZATION=f"Partner-Key {raw}")
    assert bad.get(reverse("api:partner-settlement")).status_code == 401


def test_partner_uploads_codes_for_its_own_offers_only(carwash, batch_offer):
    client = partner_client(carwash)
    url = reverse("api:partner-offer-codes", args=[batch_offer.pk])
    answer = client.post(url, {"codes": ["WAX-3", "WAX-1"]}, format="json")
    assert answer.json() == {"added": 1, "already_there": 1, "left": 3}
    other = partners.Partner.objects.create(code="air", name="Air")
    assert partner_client(other).post(url, {"codes": ["X"]}, format="json").status_code == 404


def test_partner_checks_a_members_benefits(carwash, paid, plan):
    benefit = PartnerBenefit.objects.create(partner=carwash, title="Lounge")
    benefit.plans.add(plan)
    answer = partner_client(carwash).get(reverse("api:partner-benefits"), {"member": paid.member.member_number})
    assert [b["title"] for b in answer.json()["benefits"]] == ["Lounge"]
    other = partners.Partner.objects.create(code="air", name="Air")
    answer = partner_client(other).get(reverse("api:partner-benefits"), {"member": paid.member.member_number})
    assert answer.json()["benefits"] == []


def test_member_sees_partner_offers_redeems_and_lists_vouchers(wash, member, django_assert_max_num_queries):
    client = client_for_member(member)
    offers = client.get(reverse("api:partner-offers")).json()
    assert offers[0]["is_partner"] is True and offers[0]["partner"]["code"] == "carwash"
    url = reverse("api:me-partner-vouchers")
    answer = client.post(url, {"offer": wash.pk, "idempotency_key": "m1"}, format="json")
    assert answer.status_code == 201
    assert client.post(url, {"offer": wash.pk, "idempotency_key": "m1"}, format="json").status_code == 200
    assert client.post(url, {"offer": wash.pk, "idempotency_key": "m2"}, format="json").status_code == 201
    answer = client.post(url, {"offer": wash.pk, "idempotency_key": "m3"}, format="json")
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "insufficient_balance"
    assert client.post(url, {"offer": 999999, "idempotency_key": "m4"}, format="json").status_code == 404
    for n in range(5):
        PartnerVoucher.objects.create(
            partner=wash.partner,
            offer=wash,
            member=member,
            code=f"C{n}",
            points=1,
            redeem_price=0,
            owed=0,
            spend_entry=ledger.points_spend(member=member, amount=1, idempotency_key=f"s{n}", reason="t"),
            idempotency_key=f"x{n}",
            expires_at=timezone.now() + dt.timedelta(days=1),
        )
    with django_assert_max_num_queries(4):
        assert len(client.get(url).json()) == 7


def test_staff_settlement_api_and_csv(carwash, member, django_user_model):
    partners.partner_earn(partner=carwash, member=member, order_number="N1", amount="100")
    staff = django_user_model.objects.create_user("accounts", is_staff=True)
    client = APIClient()
    client.force_authenticate(staff)
    url = reverse("api:programme-partner-settlement", args=["carwash"])
    assert client.get(url).status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="view_settlement"))
    staff = django_user_model.objects.get(pk=staff.pk)
    client.force_authenticate(staff)
    assert client.get(url).json()["points_issued"] == 150
    answer = client.get(url, {"export": "csv"})
    assert answer["Content-Type"].startswith("text/csv") and b"N1" in answer.content
    assert client.get(reverse("api:programme-partner-settlement", args=["nope"])).status_code == 404


def test_admin_settlement_page_csv_and_key_action(admin_client, carwash, member):
    partners.partner_earn(partner=carwash, member=member, order_number="N1", amount="100")
    url = reverse("admin:programme_partner_settlement", args=[carwash.pk])
    page = admin_client.get(url)
    assert page.status_code == 200 and b"150" in page.content
    answer = admin_client.get(url, {"export": "csv"})
    assert answer["Content-Type"].startswith("text/csv")
    assert admin_client.get(url, {"month": "bad"}).status_code == 200
    changelist = reverse("admin:programme_partner_changelist")
    answer = admin_client.post(changelist, {"action": "create_key", "_selected_action": [carwash.pk]}, follow=True)
    assert "pk_" in answer.content.decode() and carwash.keys.count() == 1


def test_member_page_lists_offers_redeems_and_shows_the_voucher_in_both_languages(
    client, wash, member, django_assert_max_num_queries
):
    from center.services import member_user_for_sign_in

    client.force_login(member_user_for_sign_in(member=member))
    with django_assert_max_num_queries(12):
        page = client.get(reverse("center:partners")).content.decode()
    assert "Sparkle Car Wash" in page and "Partner" in page
    client.post(reverse("center:partner_redeem", args=[wash.pk]), {"key": "page-1"})
    client.post(reverse("center:partner_redeem", args=[wash.pk]), {"key": "page-1"})  # a double click
    voucher = PartnerVoucher.objects.get()
    assert balance(member) == 1200
    page = client.get(reverse("center:partners"), HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert voucher.code in page and "合作伙伴" in page
    client.post(reverse("center:partner_redeem", args=[wash.pk]), {"key": "page-2"})
    client.post(reverse("center:partner_redeem", args=[wash.pk]), {"key": "page-3"})  # not enough points left
    assert PartnerVoucher.objects.count() == 2 and balance(member) == 400


@pytest.mark.parametrize(
    "model, field",
    [("partner", "name"), ("partneroffer", "name"), ("partnerbenefit", "title"), ("fanlevel", "name"),
     ("plan", "name"), ("badge", "name")],
)  # fmt: skip
def test_admin_edits_programme_texts_in_both_languages(admin_client, model, field):
    page = admin_client.get(reverse(f"admin:programme_{model}_add"))
    assert page.status_code == 200
    html = page.content.decode()
    assert f'name="{field}_zh_hans"' in html and f'name="{field}_en"' in html


def test_partner_offer_saved_from_the_admin_reads_in_the_members_language(admin_client, carwash):
    answer = admin_client.post(
        reverse("admin:programme_partneroffer_add"),
        {
            "partner": carwash.pk,
            "name_zh_hans": "打蜡一次",
            "name_en": "One wax",
            "description_zh_hans": "",
            "description_en": "",
            "points_cost": 500,
            "code_source": PartnerOffer.CodeSource.GENERATED,
            "valid_days": 30,
            "is_active": "on",
            "upload_codes": "",
            "sort_order": 0,
        },
    )
    assert answer.status_code == 302, answer.context["adminform"].form.errors
    offer = PartnerOffer.objects.get(name_en="One wax")
    from django.utils import translation

    with translation.override("en"):
        assert offer.name == "One wax"
    with translation.override("zh-hans"):
        assert offer.name == "打蜡一次"
