"""A transfer's own ledger kind, the programme's coupon source, and the programme's data in
the member's privacy export."""

from decimal import Decimal

import pytest

from loyalty import services as ledger
from loyalty.models import LedgerEntry
from loyalty.selectors import ledger_violations
from loyalty.tests.factories import MemberFactory
from operations.privacy import member_export
from programme import badges, partners, transfers
from programme.models import Badge, PartnerOffer, PlanGrant
from rewards.models import Coupon

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def ledger_stays_exact():
    yield
    assert ledger_violations() == []


def test_a_transfer_is_its_own_kind_of_entry_on_both_sides_and_a_return_gives_the_lots_back(settings):
    giver, receiver = MemberFactory(), MemberFactory()
    ledger.points_award(member=giver, currency="points", amount=300, reason="seed", idempotency_key="seed")
    done = transfers.transfer_create(giver=giver, to=receiver.phone, points=100)
    assert (done.out_entry.kind, done.out_entry.amount) == (LedgerEntry.Kind.TRANSFER, -100)
    assert (done.in_entry.kind, done.in_entry.amount) == (LedgerEntry.Kind.TRANSFER, 100)
    settings.PROGRAMME_TRANSFER_CONFIRM = True
    waiting = transfers.transfer_create(giver=giver, to=receiver.phone, points=50)
    transfers.transfer_decline(transfer=waiting, member=receiver)
    back = LedgerEntry.objects.get(reverses=waiting.out_entry)
    assert (back.kind, back.amount) == (LedgerEntry.Kind.REVERSE, 50)


def test_paid_plan_coupons_carry_the_programme_source(paid):
    coupons = Coupon.objects.filter(pk__in=PlanGrant.objects.filter(coupon__isnull=False).values("coupon"))
    assert coupons.exists() and set(coupons.values_list("source", flat=True)) == {Coupon.Source.PROGRAMME}


def test_the_privacy_export_has_the_programme_data(paid, django_user_model):
    member = paid.member
    friend = MemberFactory()
    transfers.transfer_create(giver=member, to=friend.phone, points=100, message="for you")
    badge = Badge.objects.create(code="first", name="First", condition=Badge.Condition.ORDERS, threshold=1)
    boss = django_user_model.objects.create_superuser("boss", "b@example.com", None)
    badges.badge_award(member=member, badge=badge, actor=boss, reason="welcome")
    partner = partners.Partner.objects.create(code="cafe", name="Cafe", redeem_price=Decimal("0.01"))
    partners.partner_earn(partner=partner, member=member, order_number="L1", amount="30")
    offer = PartnerOffer.objects.create(partner=partner, name="Latte", points_cost=100)
    partners.partner_voucher_redeem(member=member, offer=offer, idempotency_key="v")
    data = member_export(member=member)["programme"]
    assert data["membership"]["plan__code"] == "plus"
    assert [order["status"] for order in data["plan_orders"]] == ["paid"]
    assert data["transfers"][0]["direction"] == "given" and data["transfers"][0]["other_member"] == friend.member_number
    assert [b["badge__code"] for b in data["badges"]] == ["first"]
    assert data["partner_orders"][0]["points"] == 30
    assert data["partner_vouchers"][0]["offer__name"] == "Latte"
    assert member_export(member=friend)["programme"]["transfers"][0]["direction"] == "received"


def test_the_member_card_shows_the_plan_the_track_and_the_badges(client, paid, django_user_model, settings):
    from center.services import member_user_for_sign_in

    settings.PROGRAMME_TRACK_FAN = "粉丝"
    member = paid.member
    badge = Badge.objects.create(code="first", name="First drive", condition=Badge.Condition.ORDERS, threshold=1)
    boss = django_user_model.objects.create_superuser("boss", "b@example.com", None)
    badges.badge_award(member=member, badge=badge, actor=boss, reason="welcome")
    client.force_login(member_user_for_sign_in(member=member))
    page = client.get("/me/").content.decode()
    assert 'id="card-plan">PLUS<' in page and 'id="card-track">粉丝<' in page and "First drive" in page
