"""An Idempotency-Key names one request of one client (store key, staff user, member):
a retry gets the first answer, the same key with any other content is 422, on every
endpoint that takes a key (docs/api.md, "Idempotent requests")."""

import datetime as dt

import pytest
from rest_framework.test import APIClient

from engagement.models import CheckIn
from loyalty.models import LedgerEntry, Order
from loyalty.selectors import ledger_violations
from loyalty.services import points_award
from members.models import StaffAction
from rewards.models import Coupon, Redemption, Reward
from rewards.tests.factories import CouponFactory, RewardFactory

from .conftest import client_for_key

pytestmark = pytest.mark.django_db

ADJUST = "/api/v1/pos/adjustments/"
VERIFY = "/api/v1/pos/coupons/verify/"


@pytest.fixture(autouse=True)
def ledger_stays_exact():
    yield
    assert ledger_violations() == []


def seed(member, amount=1000):
    points_award(member=member, currency="points", amount=amount, reason="seed", idempotency_key="seed")


def adjust(client, member, key, **fields):
    body = {"member_number": member.member_number, "amount": 100, "reason": "late delivery", **fields}
    return client.post(ADJUST, body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def assert_reused(response):
    assert response.status_code == 422, response.content
    assert response.json()["error"]["code"] == "idempotency_key_reused"


@pytest.fixture
def admin_client(django_user_model):
    """A brand admin's staff token: every store, every POS action."""
    django_user_model.objects.create_superuser("boss", password="not-a-real-password-42")
    client = APIClient()
    token = client.post(
        "/api/v1/auth/staff-token/", {"username": "boss", "password": "not-a-real-password-42"}, format="json"
    ).json()["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


# --- adjustments ---------------------------------------------------------------------------


@pytest.mark.parametrize("caller", ["store_key", "staff"])
def test_an_adjust_key_reused_for_another_member_is_422_and_adjusts_nothing(
    request, caller, member, other_member, store
):
    client = request.getfixturevalue("key_client" if caller == "store_key" else "admin_client")
    assert adjust(client, member, "adj-1").status_code == 201
    assert_reused(adjust(client, other_member, "adj-1"))
    assert LedgerEntry.objects.filter(kind="adjust").count() == 1
    assert not other_member.entries.exists()
    assert StaffAction.objects.filter(action="adjust_points").count() == 1


def test_an_adjust_key_reused_for_another_currency_or_amount_is_422(key_client, member):
    assert adjust(key_client, member, "adj-1").status_code == 201
    assert_reused(adjust(key_client, member, "adj-1", currency="growth"))
    assert_reused(adjust(key_client, member, "adj-1", amount=5))
    assert list(LedgerEntry.objects.filter(kind="adjust").values_list("account__currency", "amount")) == [
        ("points", 100)
    ]


def test_an_adjust_retry_gets_the_first_entry(key_client, member):
    first = adjust(key_client, member, "adj-1")
    again = adjust(key_client, member, "adj-1")
    assert first.status_code == 201 and first.json()["replayed"] is False
    assert again.status_code == 200 and again.json() == {**first.json(), "replayed": True}
    assert again["Idempotent-Replayed"] == "true"
    assert LedgerEntry.objects.filter(kind="adjust").count() == 1


def test_one_key_from_two_clients_is_two_requests(member, store, other_store, adjuster):
    # Two tills of two stores may pick the same key: each is its own client's request.
    first = adjust(client_for_key(store, acting_user=adjuster), member, "adj-1")
    second = adjust(client_for_key(other_store, acting_user=adjuster), member, "adj-1", amount=5)
    assert (first.status_code, second.status_code) == (201, 201)
    assert sorted(LedgerEntry.objects.filter(kind="adjust").values_list("amount", flat=True)) == [5, 100]


def test_a_store_keys_adjust_takes_a_key_of_128_characters(key_client, member):
    # The store used to be put in front of the key, so 123 characters and more were refused.
    key = "a" * 128
    first = adjust(key_client, member, key)
    assert first.status_code == 201, first.content
    assert adjust(key_client, member, key).json()["replayed"] is True
    too_long = adjust(key_client, member, key + "a")
    assert too_long.status_code == 400
    assert too_long.json()["error"]["code"] == "invalid_idempotency_key"
    assert LedgerEntry.objects.filter(kind="adjust").count() == 1


def test_a_key_used_on_one_endpoint_is_refused_on_another(key_client, member):
    coupon = CouponFactory(member=member)
    assert adjust(key_client, member, "k-1").status_code == 201
    assert_reused(key_client.post(VERIFY, {"code": coupon.code}, format="json", HTTP_IDEMPOTENCY_KEY="k-1"))
    assert Coupon.objects.get().status == "issued"


# --- coupon verification -----------------------------------------------------------------


def test_a_retried_verification_gets_the_first_answer(key_client, member):
    coupon = CouponFactory(member=member)
    first = key_client.post(VERIFY, {"code": coupon.code}, format="json", HTTP_IDEMPOTENCY_KEY="v-1")
    used_at = Coupon.objects.get().used_at
    again = key_client.post(VERIFY, {"code": coupon.code}, format="json", HTTP_IDEMPOTENCY_KEY="v-1")
    assert first.status_code == 200, first.content
    assert (again.status_code, again.content) == (200, first.content)
    assert again["Idempotent-Replayed"] == "true"
    assert Coupon.objects.get().used_at == used_at
    # Another key, or none, is another verification: the coupon is used.
    for headers in ({"HTTP_IDEMPOTENCY_KEY": "v-2"}, {}):
        twice = key_client.post(VERIFY, {"code": coupon.code}, format="json", **headers)
        assert twice.status_code == 409 and twice.json()["error"]["code"] == "coupon_used"


def test_a_verification_key_reused_for_another_coupon_is_422(key_client, member):
    first, other = CouponFactory(member=member), CouponFactory(member=member)
    key_client.post(VERIFY, {"code": first.code}, format="json", HTTP_IDEMPOTENCY_KEY="v-1")
    assert_reused(key_client.post(VERIFY, {"code": other.code}, format="json", HTTP_IDEMPOTENCY_KEY="v-1"))
    assert Coupon.objects.get(pk=other.pk).status == "issued"


# --- redemptions ---------------------------------------------------------------------------


def redeem(client, reward, key):
    return client.post(f"/api/v1/rewards/{reward.pk}/redeem/", {}, format="json", HTTP_IDEMPOTENCY_KEY=key)


def test_a_redeem_key_reused_for_another_reward_is_422(member_client, member):
    seed(member)
    reward, other = RewardFactory(points_cost=300), RewardFactory(points_cost=300)
    assert redeem(member_client, reward, "r-1").status_code == 201
    assert_reused(redeem(member_client, other, "r-1"))
    assert Redemption.objects.count() == 1


@pytest.mark.parametrize("length", [121, 128])
def test_redeem_keys_of_up_to_128_characters_are_taken_and_replayed(member_client, member, length):
    seed(member)
    reward = RewardFactory(points_cost=300)
    key = "r" * length
    first = redeem(member_client, reward, key)
    again = redeem(member_client, reward, key)
    assert first.status_code == 201, first.content
    assert (again.status_code, again.content) == (201, first.content)
    assert Redemption.objects.get().idempotency_key == key


def test_a_redeem_key_of_129_characters_is_400_in_the_error_shape(member_client, member):
    seed(member)
    response = redeem(member_client, RewardFactory(points_cost=300), "r" * 129)
    assert response.status_code == 400
    assert set(response.json()["error"]) >= {"code", "message"}
    assert response.json()["error"]["code"] == "invalid_idempotency_key"
    assert Redemption.objects.count() == 0


def test_a_retried_cancel_gets_the_first_answer(member_client, member):
    seed(member)
    reward = RewardFactory(points_cost=300, stock=5)
    redemption_id = redeem(member_client, reward, "r-1").json()["id"]
    url = f"/api/v1/me/redemptions/{redemption_id}/cancel/"
    first = member_client.post(url, {"reason": "oops"}, format="json", HTTP_IDEMPOTENCY_KEY="c-1")
    again = member_client.post(url, {"reason": "oops"}, format="json", HTTP_IDEMPOTENCY_KEY="c-1")
    assert first.status_code == 200, first.content
    assert (again.status_code, again.content) == (200, first.content)
    assert again["Idempotent-Replayed"] == "true"
    assert LedgerEntry.objects.filter(kind="reverse").count() == 1
    assert Reward.objects.get().stock == 5
    assert member_client.get("/api/v1/me/balances/").json()["points"]["balance"] == 1000
    assert_reused(member_client.post(url, {"reason": "other"}, format="json", HTTP_IDEMPOTENCY_KEY="c-1"))
    # Without a key, cancelling twice stays a conflict.
    assert member_client.post(url, {}, format="json").status_code == 409


def test_one_members_key_is_not_another_members(member_client, other_member_client, member, other_member):
    seed(member)
    seed(other_member)
    reward = RewardFactory(points_cost=300)
    assert redeem(member_client, reward, "same").status_code == 201
    assert redeem(other_member_client, reward, "same").status_code == 201
    assert Redemption.objects.count() == 2


# --- check-in ------------------------------------------------------------------------------


def test_a_retried_check_in_gets_the_first_answer(member_client, member):
    first = member_client.post("/api/v1/me/check-in/", HTTP_IDEMPOTENCY_KEY="ci-1")
    again = member_client.post("/api/v1/me/check-in/", HTTP_IDEMPOTENCY_KEY="ci-1")
    assert first.status_code == 201, first.content
    assert (again.status_code, again.content) == (201, first.content)
    assert again["Idempotent-Replayed"] == "true"
    assert CheckIn.objects.count() == 1
    assert member.entries.count() == 1
    # Another key, or none, is another check-in: today's is done.
    for headers in ({"HTTP_IDEMPOTENCY_KEY": "ci-2"}, {}):
        twice = member_client.post("/api/v1/me/check-in/", **headers)
        assert twice.status_code == 409 and twice.json()["error"]["code"] == "already_checked_in"


def test_a_check_in_refused_for_a_bad_setting_leaves_its_key_free(member_client, member, settings):
    settings.LOYALTY_CHECKIN_POINTS = "oops"
    refused = member_client.post("/api/v1/me/check-in/", HTTP_IDEMPOTENCY_KEY="ci-1")
    assert refused.status_code == 503
    settings.LOYALTY_CHECKIN_POINTS = "5,10"
    assert member_client.post("/api/v1/me/check-in/", HTTP_IDEMPOTENCY_KEY="ci-1").status_code == 201


# --- keys that are order and refund numbers --------------------------------------------------


def test_an_order_number_resent_for_another_member_or_amount_is_422(key_client, member, other_member):
    seed(member)
    seed(other_member)
    order = {"member_number": member.member_number, "number": "A-1", "amount": "100.00"}
    assert key_client.post("/api/v1/pos/orders/", order, format="json").status_code == 201
    for change in ({"member_number": other_member.member_number}, {"amount": "90.00"}):
        response = key_client.post("/api/v1/pos/orders/", {**order, **change}, format="json")
        assert response.status_code == 422 and response.json()["error"]["code"] == "order_number_taken"
    checkout = {"member_number": member.member_number, "number": "C-1", "amount": "100.00", "points": 1000}
    assert key_client.post("/api/v1/pos/checkout/", checkout, format="json").status_code == 201
    for change in ({"member_number": other_member.member_number}, {"points": 900}, {"amount": "110.00"}):
        response = key_client.post("/api/v1/pos/checkout/", {**checkout, **change}, format="json")
        assert response.status_code == 422
        assert response.json()["error"]["code"] in {"order_number_taken", "idempotency_key_reused"}
    assert Order.objects.count() == 2
    assert LedgerEntry.objects.filter(kind="spend").count() == 1
    assert other_member.entries.count() == 1  # the seed only


def test_a_keyless_request_is_as_before(key_client, member):
    # No key: every adjustment is its own, as before.
    assert adjust(key_client, member, "").status_code == 201
    assert adjust(key_client, member, "").status_code == 201
    assert LedgerEntry.objects.filter(kind="adjust").count() == 2


def test_refusals_are_answers_and_replayed(key_client, member):
    coupon = CouponFactory(
        member=member,
        valid_from=dt.datetime(2019, 1, 1, tzinfo=dt.UTC),
        expires_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
    )
    first = key_client.post(VERIFY, {"code": coupon.code}, format="json", HTTP_IDEMPOTENCY_KEY="v-1")
    assert first.status_code == 409 and first.json()["error"]["code"] == "coupon_expired"
    again = key_client.post(VERIFY, {"code": coupon.code}, format="json", HTTP_IDEMPOTENCY_KEY="v-1")
    assert (again.status_code, again.content) == (409, first.content)


def test_bad_input_leaves_the_key_free(key_client, member):
    bad = key_client.post(ADJUST, {"member_number": member.member_number}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert bad.status_code == 400
    assert adjust(key_client, member, "k").status_code == 201


def test_staff_keys_are_the_staff_users_whatever_token(admin_client, member):
    assert adjust(admin_client, member, "adj-1").status_code == 201
    other = APIClient()
    token = other.post(
        "/api/v1/auth/staff-token/", {"username": "boss", "password": "not-a-real-password-42"}, format="json"
    ).json()["token"]
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert adjust(other, member, "adj-1").json()["replayed"] is True
    assert LedgerEntry.objects.filter(kind="adjust").count() == 1
