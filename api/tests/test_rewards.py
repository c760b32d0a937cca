import pytest

from loyalty.selectors import ledger_violations
from loyalty.services import points_award
from rewards.models import Coupon, Redemption, Reward
from rewards.tests.factories import RewardFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def ledger_stays_exact():
    yield
    assert ledger_violations() == []


@pytest.fixture
def rich_member(member):
    points_award(member=member, currency="points", amount=1000, reason="gift", idempotency_key="seed")
    return member


def redeem(client, reward, key="k-1", body=None):
    return client.post(f"/api/v1/rewards/{reward.pk}/redeem/", body or {}, format="json", HTTP_IDEMPOTENCY_KEY=key)


def test_catalogue_says_what_i_can_redeem_and_filters(member_client, rich_member):
    cheap = RewardFactory(points_cost=100)
    dear = RewardFactory(points_cost=5000)
    body = member_client.get("/api/v1/rewards/").json()
    by_id = {r["id"]: r for r in body}
    assert by_id[cheap.pk]["eligible"] is True
    assert by_id[dear.pk]["eligible"] is False and by_id[dear.pk]["code"] == "insufficient_balance"
    assert by_id[dear.pk]["points_missing"] == 4000
    assert [r["id"] for r in member_client.get("/api/v1/rewards/", {"eligible": "true"}).json()] == [cheap.pk]
    assert [r["id"] for r in member_client.get("/api/v1/rewards/", {"min_points": 1000}).json()] == [dear.pk]
    assert [r["id"] for r in member_client.get("/api/v1/rewards/", {"max_points": 100}).json()] == [cheap.pk]


def test_redeem_issues_a_coupon_and_a_replay_returns_the_first_response_exactly(member_client, rich_member):
    reward = RewardFactory(points_cost=300, stock=5)
    first = redeem(member_client, reward)
    assert first.status_code == 201, first.json()
    assert first.json()["coupon"]["status"] == "issued"
    again = redeem(member_client, reward)
    assert again.status_code == 201
    assert again.content == first.content
    assert again["Idempotent-Replayed"] == "true"
    assert Redemption.objects.count() == 1
    assert Reward.objects.get().stock == 4
    assert member_client.get("/api/v1/me/balances/").json()["points"]["balance"] == 700


def test_same_key_different_body_is_422(member_client, rich_member):
    reward, other = RewardFactory(points_cost=300), RewardFactory(points_cost=300)
    redeem(member_client, reward)
    response = redeem(member_client, other)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"


def test_redeem_needs_an_idempotency_key(member_client, rich_member):
    response = member_client.post(f"/api/v1/rewards/{RewardFactory().pk}/redeem/", {}, format="json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "idempotency_key_required"


def test_redeem_refusals_are_replayed_too(member_client, member):
    reward = RewardFactory(points_cost=300)
    poor = redeem(member_client, reward)
    assert poor.status_code == 409 and poor.json()["error"]["code"] == "insufficient_balance"
    assert redeem(member_client, reward).content == poor.content


def test_out_of_stock_and_unknown_reward(member_client, rich_member):
    empty = RewardFactory(stock=0)
    assert redeem(member_client, empty, key="a").json()["error"]["code"] == "out_of_stock"
    assert redeem(member_client, Reward(pk=999999), key="b").status_code == 404


def test_my_redemptions_and_cancel(member_client, other_member_client, rich_member):
    reward = RewardFactory(points_cost=300, stock=5)
    redemption_id = redeem(member_client, reward).json()["id"]
    listed = member_client.get("/api/v1/me/redemptions/").json()
    assert [r["id"] for r in listed] == [redemption_id]
    assert other_member_client.get("/api/v1/me/redemptions/").json() == []
    assert (
        other_member_client.post(f"/api/v1/me/redemptions/{redemption_id}/cancel/", {}, format="json").status_code
        == 404
    )
    cancelled = member_client.post(f"/api/v1/me/redemptions/{redemption_id}/cancel/", {"reason": "oops"}, format="json")
    assert cancelled.status_code == 200, cancelled.json()
    assert cancelled.json()["status"] == "cancelled" and cancelled.json()["coupon"]["status"] == "void"
    assert member_client.get("/api/v1/me/balances/").json()["points"]["balance"] == 1000
    assert Reward.objects.get().stock == 5
    twice = member_client.post(f"/api/v1/me/redemptions/{redemption_id}/cancel/", {}, format="json")
    assert twice.status_code == 409


def test_a_used_coupons_redemption_cannot_be_cancelled(member_client, rich_member, key_client):
    reward = RewardFactory(points_cost=300)
    body = redeem(member_client, reward).json()
    assert (
        key_client.post("/api/v1/pos/coupons/verify/", {"code": body["coupon"]["code"]}, format="json").status_code
        == 200
    )
    response = member_client.post(f"/api/v1/me/redemptions/{body['id']}/cancel/", {}, format="json")
    assert response.status_code == 409 and response.json()["error"]["code"] == "coupon_used"
    assert Coupon.objects.get().status == "used"


def test_redeem_is_throttled_per_member(member_client, rich_member, settings):
    from api.throttles import RedeemThrottle

    RedeemThrottle.THROTTLE_RATES = {**RedeemThrottle.THROTTLE_RATES, "redeem": "2/minute"}
    try:
        reward = RewardFactory(points_cost=1)
        codes = [redeem(member_client, reward, key=f"t{i}").status_code for i in range(3)]
    finally:
        RedeemThrottle.THROTTLE_RATES = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
    assert codes == [201, 201, 429]
