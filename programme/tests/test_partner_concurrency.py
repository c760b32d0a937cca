"""Real threads against PostgreSQL: partner voucher redemptions racing each other."""

import pytest

from core.errors import LoyaltyError
from loyalty import services as ledger
from loyalty.models import Account
from loyalty.selectors import ledger_violations
from loyalty.tests.factories import MemberFactory
from loyalty.tests.test_concurrency import run_concurrently
from programme import partners
from programme.models import Partner, PartnerOffer, PartnerVoucher

pytestmark = pytest.mark.django_db(transaction=True)


def _redeem(member, offer, key):
    def call():
        try:
            return partners.partner_voucher_redeem(member=member, offer=offer, idempotency_key=key).code
        except LoyaltyError as error:
            return error.code

    return call


@pytest.fixture
def offer():
    partner = Partner.objects.create(code="wash", name="Wash")
    offer = PartnerOffer.objects.create(
        partner=partner, name="Wash", points_cost=100, code_source=PartnerOffer.CodeSource.BATCH
    )
    partners.partner_codes_upload(offer=offer, codes=["A", "B", "C"])
    return offer


def _member(points: int):
    member = MemberFactory()
    ledger.points_award(member=member, currency="points", amount=points, reason="seed", idempotency_key="seed")
    return member


def test_the_same_key_twice_at_once_gives_one_voucher_and_charges_once(offer):
    member = _member(1000)
    outcomes = run_concurrently(_redeem(member, offer, "k"), _redeem(member, offer, "k"))
    assert outcomes[0] == outcomes[1]
    assert PartnerVoucher.objects.count() == 1
    assert Account.objects.get(member=member, currency="points").balance == 900
    assert partners.codes_left(offer) == 2 and ledger_violations() == []


def test_members_racing_for_the_last_codes_get_one_code_each(offer):
    members = [_member(1000) for _ in range(4)]
    outcomes = run_concurrently(*[_redeem(m, offer, f"k{i}") for i, m in enumerate(members)])
    assert sorted(outcomes) == ["A", "B", "C", "out_of_codes"]
    assert ledger_violations() == []
