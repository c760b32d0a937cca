import pytest
from rest_framework.test import APIClient

from api.models import StoreApiKey
from api.tests.conftest import client_for_key
from loyalty.models import LedgerEntry, Order
from loyalty.selectors import ledger_violations
from loyalty.services import order_earn
from rewards.models import Coupon
from rewards.tests.factories import CouponFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def ledger_stays_exact():
    yield
    assert ledger_violations() == []


def order_body(member, **extra):
    return {"member_number": member.member_number, "number": "A-1", "amount": "128.00", **extra}


# --- lookup ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        {"phone": "138 0013 8000"},
        {"phone": "+86 138-0013-8000"},
        {"member_number": "MEMBER"},
        {"card_code": "MEMBER"},
    ],
)
def test_lookup_by_phone_number_or_card(key_client, member, query):
    query = {k: (member.member_number if v == "MEMBER" else v) for k, v in query.items()}
    response = key_client.get("/api/v1/pos/members/lookup/", query)
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["member_number"] == member.member_number
    assert body["balances"]["points"]["balance"] == 0


def test_lookup_unknown_is_404_and_no_query_is_400(key_client, member):
    assert key_client.get("/api/v1/pos/members/lookup/", {"phone": "13700137000"}).status_code == 404
    bad = key_client.get("/api/v1/pos/members/lookup/")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid"


# --- earn ------------------------------------------------------------------------------------


def test_earn_for_an_order_and_replay(key_client, member):
    first = key_client.post("/api/v1/pos/orders/", order_body(member), format="json")
    assert first.status_code == 201, first.json()
    body = first.json()
    assert body["store"] == "sh001" and body["replayed"] is False
    points = next(e for e in body["earned"] if e["currency"] == "points")
    assert points["pending_amount"] == 128
    assert points["breakdown"][0]["points"] == 128
    again = key_client.post("/api/v1/pos/orders/", order_body(member), format="json")
    assert again.status_code == 200 and again.json()["replayed"] is True
    assert Order.objects.count() == 1


def test_earn_same_number_different_body_is_422(key_client, member):
    key_client.post("/api/v1/pos/orders/", order_body(member), format="json")
    response = key_client.post("/api/v1/pos/orders/", order_body(member, amount="99.00"), format="json")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "order_number_taken"


@pytest.mark.parametrize(
    "extra",
    [
        {"amount": "-1"},
        {"amount": "abc"},
        {"amount": "1.234"},
        {"points_paid_amount": "200.00"},
        {"lines": [{"sku": "X", "amount": "1.00"}]},
        {"number": "x" * 65},
        {"occurred_at": "2999-01-01T00:00:00Z"},
    ],
)
def test_earn_refuses_bad_input_with_400(key_client, member, extra):
    response = key_client.post("/api/v1/pos/orders/", order_body(member, **extra), format="json")
    assert response.status_code == 400, response.json()
    assert Order.objects.count() == 0


def test_earn_for_an_unknown_member_is_404(key_client):
    response = key_client.post(
        "/api/v1/pos/orders/", {"member_number": "8000000000", "number": "A", "amount": "1"}, format="json"
    )
    assert response.status_code == 404


def test_a_store_key_cannot_act_for_another_store(key_client, member, other_store):
    response = key_client.post("/api/v1/pos/orders/", order_body(member, store="bj001"), format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "store_forbidden"


def test_a_key_without_the_action_is_403(store, member):
    client = client_for_key(store, actions=["lookup"])
    assert client.post("/api/v1/pos/orders/", order_body(member), format="json").status_code == 403
    assert client.get("/api/v1/pos/members/lookup/", {"phone": member.phone}).status_code == 200


def test_an_inactive_or_unknown_key_is_401(store, member):
    client = client_for_key(store)
    StoreApiKey.objects.update(is_active=False)
    assert client.get("/api/v1/pos/members/lookup/", {"phone": member.phone}).status_code == 401
    wrong = APIClient(HTTP_AUTHORIZATION="Api-Key sk_nope")
    assert wrong.get("/api/v1/pos/members/lookup/", {"phone": member.phone}).status_code == 401


def test_a_member_token_cannot_call_pos(member, member_client):
    for path in ("/api/v1/pos/orders/", "/api/v1/pos/refunds/", "/api/v1/pos/coupons/verify/"):
        assert member_client.post(path, {}, format="json").status_code == 403
    assert member_client.get("/api/v1/pos/members/lookup/", {"phone": member.phone}).status_code == 403


def test_staff_earn_names_the_store_and_needs_permission(staff_client, member, store, staff_user):
    missing = staff_client.post("/api/v1/pos/orders/", order_body(member), format="json")
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "store_required"
    ok = staff_client.post("/api/v1/pos/orders/", order_body(member, store="sh001"), format="json")
    assert ok.status_code == 201
    plain = APIClient()
    token = plain.post(
        "/api/v1/auth/staff-token/", {"username": "clerk", "password": "not-a-real-password-42"}, format="json"
    ).json()["token"]
    plain.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert (
        plain.post("/api/v1/pos/orders/", order_body(member, store="sh001", number="B"), format="json").status_code
        == 403
    )


# --- refund ----------------------------------------------------------------------------------


def test_partial_then_full_refund(key_client, member):
    key_client.post("/api/v1/pos/orders/", order_body(member), format="json")
    part = key_client.post(
        "/api/v1/pos/refunds/", {"order_number": "A-1", "number": "R1", "amount": "28.00"}, format="json"
    )
    assert part.status_code == 201, part.json()
    assert part.json()["order_status"] == "partially_refunded"
    taken = {t["currency"]: t["pending_amount"] for t in part.json()["taken_back"]}
    assert taken == {"points": -28, "growth": -28}
    replay = key_client.post(
        "/api/v1/pos/refunds/", {"order_number": "A-1", "number": "R1", "amount": "28.00"}, format="json"
    )
    assert replay.status_code == 200 and replay.json()["replayed"] is True
    rest = key_client.post(
        "/api/v1/pos/refunds/", {"order_number": "A-1", "number": "R2", "amount": "100.00"}, format="json"
    )
    assert rest.json()["order_status"] == "refunded"
    too_much = key_client.post(
        "/api/v1/pos/refunds/", {"order_number": "A-1", "number": "R3", "amount": "1.00"}, format="json"
    )
    assert too_much.status_code == 409 and too_much.json()["error"]["code"] == "refund_too_large"


def test_refund_of_another_stores_order_is_404(key_client, member, other_store):
    order_earn(member=member, store=other_store, number="A-1", amount="10.00")
    response = key_client.post(
        "/api/v1/pos/refunds/", {"order_number": "A-1", "number": "R1", "amount": "1.00"}, format="json"
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "order_not_found"


# --- adjust ----------------------------------------------------------------------------------


def test_adjust_with_a_reason_and_an_idempotency_key(key_client, member, adjuster):
    body = {"member_number": member.member_number, "amount": 100, "reason": "late delivery"}
    first = key_client.post("/api/v1/pos/adjustments/", body, format="json", HTTP_IDEMPOTENCY_KEY="adj-1")
    assert first.status_code == 201, first.json()
    assert first.json()["balance_after"] == 100
    again = key_client.post("/api/v1/pos/adjustments/", body, format="json", HTTP_IDEMPOTENCY_KEY="adj-1")
    assert again.status_code == 200 and again.json()["replayed"] is True
    other = key_client.post(
        "/api/v1/pos/adjustments/", {**body, "amount": 5}, format="json", HTTP_IDEMPOTENCY_KEY="adj-1"
    )
    assert other.status_code == 422
    entry = LedgerEntry.objects.get(kind="adjust")
    assert entry.operator == adjuster and entry.reason == "late delivery"
    # One staff-action row, for the first request only (the replay writes nothing).
    audit = member.staff_actions.get()
    assert (audit.actor, audit.action, audit.reason) == (adjuster, "adjust_points", "late delivery")


def test_adjust_refusals(key_client, member, store):
    no_reason = key_client.post(
        "/api/v1/pos/adjustments/", {"member_number": member.member_number, "amount": 5, "reason": " "}, format="json"
    )
    assert no_reason.status_code == 400
    too_much = key_client.post(
        "/api/v1/pos/adjustments/", {"member_number": member.member_number, "amount": -5, "reason": "x"}, format="json"
    )
    assert too_much.status_code == 409 and too_much.json()["error"]["code"] == "insufficient_balance"
    # a key whose acting user lacks the permission
    keyless = client_for_key(store, actions=["adjust"])
    response = keyless.post(
        "/api/v1/pos/adjustments/", {"member_number": member.member_number, "amount": 5, "reason": "x"}, format="json"
    )
    assert response.status_code == 403 and response.json()["error"]["code"] == "operator_required"


def test_staff_adjust_needs_adjust_points(staff_client, member):
    response = staff_client.post(
        "/api/v1/pos/adjustments/", {"member_number": member.member_number, "amount": 5, "reason": "x"}, format="json"
    )
    assert response.status_code == 403


# --- coupons ---------------------------------------------------------------------------------


def test_verify_a_coupon_once(key_client, member, store):
    coupon = CouponFactory(member=member)
    first = key_client.post("/api/v1/pos/coupons/verify/", {"code": coupon.code.lower()}, format="json")
    assert first.status_code == 200, first.json()
    assert first.json()["status"] == "used" and first.json()["used_store"] == "sh001"
    second = key_client.post("/api/v1/pos/coupons/verify/", {"code": coupon.code}, format="json")
    assert second.status_code == 409 and second.json()["error"]["code"] == "coupon_used"
    assert Coupon.objects.get().used_store == store


def test_verify_unknown_coupon_is_404(key_client):
    response = key_client.post("/api/v1/pos/coupons/verify/", {"code": "NOPE"}, format="json")
    assert response.status_code == 404


def test_session_staff_without_permission_is_403(client, staff_user, member):
    client.force_login(staff_user)
    response = client.get("/api/v1/pos/members/lookup/", {"phone": member.phone})
    assert response.status_code == 403


# --- checkout (积分抵扣) -------------------------------------------------------------------


def test_checkout_quote_then_pay_with_points(key_client, member, member_client):
    from loyalty.services import points_award

    points_award(member=member, currency="points", amount=2000, reason="seed", idempotency_key="seed")
    quote = key_client.post(
        "/api/v1/pos/checkout/quote/", {"member_number": member.member_number, "order_total": "30.00"}, format="json"
    )
    assert quote.status_code == 200
    assert quote.json()["max_points"] == 1500 and quote.json()["value"] == "15.00"
    assert member_client.get("/api/v1/me/checkout-quote/", {"order_total": "30.00"}).json() == quote.json()
    body = {"member_number": member.member_number, "number": "C-1", "amount": "30.00", "points": 1500}
    paid = key_client.post("/api/v1/pos/checkout/", body, format="json")
    assert paid.status_code == 201, paid.json()
    assert paid.json()["points_paid_amount"] == "15.00" and paid.json()["points_value"] == "15.00"
    earned = {e["currency"]: e["pending_amount"] for e in paid.json()["earned"]}
    assert earned["points"] == 15
    again = key_client.post("/api/v1/pos/checkout/", body, format="json")
    assert again.status_code == 200 and again.json()["replayed"] is True
    assert member_client.get("/api/v1/me/balances/").json()["points"]["balance"] == 500
    over = key_client.post("/api/v1/pos/checkout/", {**body, "number": "C-2", "points": 501}, format="json")
    assert over.status_code == 409 and over.json()["error"]["code"] == "points_over_limit"


def test_checkout_needs_the_checkout_action(store, member):
    client = client_for_key(store, actions=["earn"])
    body = {"member_number": member.member_number, "number": "C-1", "amount": "30.00", "points": 10}
    assert client.post("/api/v1/pos/checkout/", body, format="json").status_code == 403
