"""Real HTTP requests racing through the live server's threads against PostgreSQL."""

import threading
from collections import Counter

import pytest
import requests

from api.services import store_key_create, tokens_issue
from loyalty.selectors import ledger_violations
from loyalty.services import points_award
from loyalty.tests.factories import MemberFactory, StoreFactory
from rewards.models import Redemption, Reward
from rewards.tests.factories import CouponFactory, RewardFactory

pytestmark = pytest.mark.django_db(transaction=True)


def race(*calls):
    barrier = threading.Barrier(len(calls))
    results = [None] * len(calls)

    def run(index, call):
        barrier.wait(timeout=30)
        results[index] = call()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return results


def test_verifying_one_coupon_twice_at_once_succeeds_once(live_server):
    store = StoreFactory(code="sh001")
    coupon = CouponFactory()
    _key, raw = store_key_create(store=store, name="till", actions=["verify_coupon"])
    headers = {"Authorization": f"Api-Key {raw}"}
    url = f"{live_server.url}/api/v1/pos/coupons/verify/"

    def verify():
        return requests.post(url, json={"code": coupon.code}, headers=headers, timeout=30)

    responses = race(verify, verify)
    assert Counter(r.status_code for r in responses) == Counter({200: 1, 409: 1})
    assert {r.json().get("error", {}).get("code") for r in responses if r.status_code == 409} == {"coupon_used"}


def test_redeeming_the_last_item_twice_at_once_succeeds_once(live_server):
    reward = RewardFactory(points_cost=100, stock=1)
    members = [MemberFactory(), MemberFactory()]
    for member in members:
        points_award(member=member, currency="points", amount=500, reason="seed", idempotency_key="seed")
    tokens = [tokens_issue(member=member).access for member in members]
    url = f"{live_server.url}/api/v1/rewards/{reward.pk}/redeem/"

    def redeem(token):
        return lambda: requests.post(
            url, json={}, headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "once"}, timeout=30
        )

    responses = race(*(redeem(token) for token in tokens))
    assert Counter(r.status_code for r in responses) == Counter({201: 1, 409: 1})
    assert [r.json()["error"]["code"] for r in responses if r.status_code == 409] == ["out_of_stock"]
    assert Reward.objects.get().stock == 0
    assert Redemption.objects.count() == 1
    assert ledger_violations() == []


def test_one_member_sending_one_key_twice_at_once_redeems_once(live_server):
    reward = RewardFactory(points_cost=100, stock=5)
    member = MemberFactory()
    points_award(member=member, currency="points", amount=500, reason="seed", idempotency_key="seed")
    token = tokens_issue(member=member).access
    url = f"{live_server.url}/api/v1/rewards/{reward.pk}/redeem/"
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "same"}

    def redeem():
        return requests.post(url, json={}, headers=headers, timeout=30)

    responses = race(redeem, redeem)
    codes = sorted(r.status_code for r in responses)
    # Either the second arrived while the first ran (409) or after it (a replay, 201).
    assert codes in ([201, 201], [201, 409])
    assert Redemption.objects.count() == 1
    assert ledger_violations() == []
