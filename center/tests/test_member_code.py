"""The member card's rotating code (members.member_code): made on the card page, accepted by
the till and the POS lookup while fresh, refused when expired, altered or someone else's."""

import datetime as dt

import pytest
from django.utils import timezone

from api.tests.conftest import client_for_key
from console.till import till_lookup
from core.errors import LoyaltyError
from loyalty.tests.factories import MemberFactory
from members.member_code import (
    CODE_LENGTH,
    STEP_SECONDS,
    VALID_SECONDS,
    looks_like_member_code,
    member_code_issue,
    member_code_verify,
)

pytestmark = pytest.mark.django_db


def _tamper(code: str, position: int) -> str:
    digit = str((int(code[position]) + 1) % 10)
    return code[:position] + digit + code[position + 1 :]


def test_a_fresh_code_names_its_member(member):
    now = timezone.now()
    made = member_code_issue(member, now=now)
    assert len(made.code) == CODE_LENGTH and made.code.isdigit()
    assert made.code.startswith(member.member_number)
    assert made.expires_at - made.issued_at == dt.timedelta(seconds=VALID_SECONDS)
    assert member_code_verify(made.code, now=now) == member.member_number
    # Grouped as the card prints it, or with a scanner's dashes: the same code.
    grouped = " ".join(made.code[i : i + 4] for i in range(0, CODE_LENGTH, 4))
    assert member_code_verify(grouped, now=now + dt.timedelta(seconds=VALID_SECONDS - STEP_SECONDS)) == (
        member.member_number
    )


def test_the_code_changes_every_step(member):
    now = timezone.now()
    first = member_code_issue(member, now=now).code
    later = member_code_issue(member, now=now + dt.timedelta(seconds=STEP_SECONDS)).code
    assert first != later
    assert first[:10] == later[:10]


def test_an_expired_code_is_refused_with_its_own_error(member):
    made = member_code_issue(member, now=timezone.now() - dt.timedelta(seconds=VALID_SECONDS + STEP_SECONDS))
    with pytest.raises(LoyaltyError) as refused:
        member_code_verify(made.code)
    assert refused.value.code == "member_code_expired"
    assert "expired" in str(refused.value.message)


@pytest.mark.parametrize("position", [3, 11, 15, 19])
def test_a_tampered_code_is_refused(member, position):
    made = member_code_issue(member)
    with pytest.raises(LoyaltyError) as refused:
        member_code_verify(_tamper(made.code, position))
    assert refused.value.code == "member_code_invalid"


def test_one_members_code_never_resolves_another(member, other_member):
    now = timezone.now()
    mine = member_code_issue(member, now=now).code
    theirs = member_code_issue(other_member, now=now).code
    assert member_code_verify(theirs, now=now) == other_member.member_number
    # My step and signature with their member number: refused, not read as theirs.
    swapped = other_member.member_number + mine[10:]
    with pytest.raises(LoyaltyError) as refused:
        member_code_verify(swapped, now=now)
    assert refused.value.code == "member_code_invalid"


def test_a_code_from_days_ago_is_refused(member):
    # Past the step counter's cycle the step cannot be told apart: refused as not valid.
    made = member_code_issue(member, now=timezone.now() - dt.timedelta(days=4))
    with pytest.raises(LoyaltyError) as refused:
        member_code_verify(made.code)
    assert refused.value.code in {"member_code_invalid", "member_code_expired"}


def test_member_numbers_and_phones_do_not_look_like_codes(member):
    assert not looks_like_member_code(member.member_number)
    assert not looks_like_member_code("+8613800138000")
    assert not looks_like_member_code("ABCD" * 5)
    assert looks_like_member_code(member_code_issue(member).code)


# --- the till ----------------------------------------------------------------------------


def test_the_till_finds_the_member_by_the_card_code(member, other_member):
    card = till_lookup(query=member_code_issue(member).code)
    assert card.member.pk == member.pk


def test_the_till_refuses_an_expired_card_code(member):
    old = member_code_issue(member, now=timezone.now() - dt.timedelta(minutes=10))
    with pytest.raises(LoyaltyError) as refused:
        till_lookup(query=old.code)
    assert refused.value.code == "member_code_expired"


def test_the_till_refuses_a_tampered_card_code(member):
    with pytest.raises(LoyaltyError) as refused:
        till_lookup(query=_tamper(member_code_issue(member).code, 16))
    assert refused.value.code == "member_code_invalid"


def test_the_till_does_not_find_an_erased_member_by_a_fresh_code(member):
    code = member_code_issue(member).code
    member.erased_at = timezone.now()
    member.save(update_fields=["erased_at"])
    with pytest.raises(LoyaltyError) as refused:
        till_lookup(query=code)
    assert refused.value.code == "till_not_found"


# --- the POS -----------------------------------------------------------------------------


@pytest.fixture
def pos(store):
    return client_for_key(store, actions=["lookup", "earn"])


def test_the_pos_lookup_accepts_the_card_code(pos, member, other_member):
    response = pos.get("/api/v1/pos/members/lookup/", {"card_code": member_code_issue(member).code})
    assert response.status_code == 200, response.content
    assert response.json()["member_number"] == member.member_number


def test_the_pos_refuses_an_expired_card_code_in_the_error_shape(pos, member):
    old = member_code_issue(member, now=timezone.now() - dt.timedelta(minutes=10)).code
    response = pos.get("/api/v1/pos/members/lookup/", {"card_code": old})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "member_code_expired"


def test_the_pos_order_refuses_a_tampered_card_code(pos, member, store):
    code = _tamper(member_code_issue(member).code, 12)
    response = pos.post(
        "/api/v1/pos/orders/",
        {"store": store.code, "member_number": code, "number": "A-1", "amount": "100.00"},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "member_code_invalid"


def test_another_members_code_is_theirs_at_the_pos(pos, member):
    someone = MemberFactory()
    response = pos.get("/api/v1/pos/members/lookup/", {"card_code": member_code_issue(someone).code})
    assert response.json()["member_number"] == someone.member_number != member.member_number
