"""A POS refund of an order paid partly with points gives the member those points back."""

import pytest

from loyalty.models import LedgerEntry
from loyalty.selectors import ledger_violations
from loyalty.services import points_award

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def ledger_stays_exact():
    yield
    assert ledger_violations() == []


def balance(member_client) -> int:
    return member_client.get("/api/v1/me/balances/").json()["points"]["balance"]


def test_pos_refunds_give_back_the_points_paid_proportionally(key_client, member, member_client):
    points_award(member=member, currency="points", amount=2000, reason="seed", idempotency_key="seed")
    body = {"member_number": member.member_number, "number": "C-1", "amount": "30.00", "points": 1500}
    assert key_client.post("/api/v1/pos/checkout/", body, format="json").status_code == 201
    assert balance(member_client) == 500

    part = {"order_number": "C-1", "number": "R1", "amount": "10.00"}
    first = key_client.post("/api/v1/pos/refunds/", part, format="json")
    assert first.status_code == 201, first.json()
    assert balance(member_client) == 500 + 500  # floor(1500 × 10 / 30)

    replay = key_client.post("/api/v1/pos/refunds/", part, format="json")
    assert replay.status_code == 200 and replay.json()["replayed"] is True
    assert replay.json()["taken_back"] == first.json()["taken_back"]
    assert balance(member_client) == 1000

    rest = key_client.post("/api/v1/pos/refunds/", {**part, "number": "R2", "amount": "20.00"}, format="json")
    assert rest.status_code == 201 and rest.json()["order_status"] == "refunded"
    assert balance(member_client) == 2000
    returned = LedgerEntry.objects.filter(member=member, kind=LedgerEntry.Kind.REVERSE).order_by("pk")
    assert list(returned.values_list("amount", "refund__number")) == [(500, "R1"), (1000, "R2")]
