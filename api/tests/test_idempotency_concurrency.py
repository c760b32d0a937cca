"""Idempotency claims under real concurrency, on PostgreSQL: the same key sent twice at
once has one effect, and a claim whose database connection died is gone at once."""

import threading
import time
from collections import Counter

import pytest
import requests
from django.db import connection
from rest_framework.test import APIClient

from api.services import store_key_create, tokens_issue
from api.views import rewards as reward_views
from engagement.models import CheckIn
from loyalty.models import LedgerEntry
from loyalty.selectors import ledger_violations
from loyalty.services import points_award
from loyalty.tests.factories import MemberFactory, StoreFactory
from rewards.models import Coupon, Redemption
from rewards.tests.factories import CouponFactory, RewardFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("claims are advisory locks on PostgreSQL; SQLite runs one write at a time")


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


def first_or_waiting(responses, first_status):
    """Of two at once: one ran; the other got its answer replayed or was told to retry."""
    statuses = sorted(r.status_code for r in responses)
    assert first_status in statuses, [r.content for r in responses]
    for response in responses:
        if response.status_code == 409:
            assert response.json()["error"]["code"] == "idempotency_in_flight"


def test_one_adjust_key_sent_twice_at_once_adjusts_once(live_server, adjuster):
    store = StoreFactory(code="sh001")
    member = MemberFactory()
    _key, raw = store_key_create(store=store, name="till", actions=["adjust"], acting_user=adjuster)
    headers = {"Authorization": f"Api-Key {raw}", "Idempotency-Key": "adj-1"}
    body = {"member_number": member.member_number, "amount": 100, "reason": "late delivery"}

    def send():
        return requests.post(f"{live_server.url}/api/v1/pos/adjustments/", json=body, headers=headers, timeout=30)

    for _round in range(3):
        first_or_waiting(race(send, send), 201 if _round == 0 else 200)
    assert LedgerEntry.objects.filter(kind="adjust").count() == 1
    assert ledger_violations() == []


def test_one_verification_key_sent_twice_at_once_verifies_once_and_never_says_used(live_server):
    store = StoreFactory(code="sh001")
    coupon = CouponFactory()
    _key, raw = store_key_create(store=store, name="till", actions=["verify_coupon"])
    headers = {"Authorization": f"Api-Key {raw}", "Idempotency-Key": "v-1"}

    def send():
        return requests.post(
            f"{live_server.url}/api/v1/pos/coupons/verify/", json={"code": coupon.code}, headers=headers, timeout=30
        )

    responses = race(send, send)
    first_or_waiting(responses, 200)
    assert Coupon.objects.get().status == "used"
    retry = send()
    assert retry.status_code == 200 and retry.headers["Idempotent-Replayed"] == "true"


def test_one_check_in_key_sent_twice_at_once_checks_in_once(live_server):
    member = MemberFactory()
    headers = {"Authorization": f"Bearer {tokens_issue(member=member).access}", "Idempotency-Key": "ci-1"}

    def send():
        return requests.post(f"{live_server.url}/api/v1/me/check-in/", headers=headers, timeout=30)

    first_or_waiting(race(send, send), 201)
    assert CheckIn.objects.count() == 1
    assert member.entries.count() == 1


def backend_alive(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
        return cursor.fetchone()[0] == 1


def test_a_claim_whose_connection_died_is_released_at_once(monkeypatch):
    """A redemption claims its key, then its database connection is killed (as a PostgreSQL
    restart does); the retry runs at once instead of 409 for minutes."""
    member = MemberFactory()
    points_award(member=member, currency="points", amount=1000, reason="seed", idempotency_key="seed")
    reward = RewardFactory(points_cost=300)
    token = tokens_issue(member=member).access
    claimed, hang_up = threading.Event(), threading.Event()
    pids = []
    real_redeem = reward_views.reward_redeem

    def redeem_that_hangs(**kwargs):
        if threading.current_thread().name == "doomed":
            with connection.cursor() as cursor:  # this request's own connection
                cursor.execute("SELECT pg_backend_pid()")
                pids.append(cursor.fetchone()[0])
            claimed.set()
            hang_up.wait(timeout=30)
        return real_redeem(**kwargs)

    monkeypatch.setattr(reward_views, "reward_redeem", redeem_that_hangs)

    def client():
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        api.raise_request_exception = False
        return api

    def post(api):
        return api.post(f"/api/v1/rewards/{reward.pk}/redeem/", {}, format="json", HTTP_IDEMPOTENCY_KEY="r-1")

    doomed_answer = []

    def doomed():
        try:
            doomed_answer.append(post(client()).status_code)
        finally:
            connection.close()

    thread = threading.Thread(target=doomed, name="doomed")
    thread.start()
    try:
        assert claimed.wait(timeout=30)
        # While the claimer lives, the key is in flight.
        alive = post(client())
        assert alive.status_code == 409 and alive.json()["error"]["code"] == "idempotency_in_flight"

        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pids[0]])
        deadline = time.monotonic() + 10
        while backend_alive(pids[0]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not backend_alive(pids[0])

        # The claimer's thread still hangs; the key is free all the same.
        started = time.monotonic()
        retry = post(client())
        assert retry.status_code == 201, retry.content
        assert time.monotonic() - started < 5
        assert thread.is_alive()
    finally:
        hang_up.set()
        thread.join(timeout=30)
    # Its connection was killed under it: the database-unavailable answer (issue 12 §4).
    assert doomed_answer == [503]
    assert Redemption.objects.count() == 1
    assert post(client()).content == retry.content
    assert ledger_violations() == []


def test_a_request_that_fails_on_the_server_leaves_its_key_free(monkeypatch):
    member = MemberFactory()
    points_award(member=member, currency="points", amount=1000, reason="seed", idempotency_key="seed")
    reward = RewardFactory(points_cost=300)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens_issue(member=member).access}")
    api.raise_request_exception = False
    real_redeem = reward_views.reward_redeem
    calls = Counter()

    def fails_once(**kwargs):
        calls["n"] += 1
        redemption = real_redeem(**kwargs)
        if calls["n"] == 1:
            raise RuntimeError("the worker died after writing")
        return redemption

    monkeypatch.setattr(reward_views, "reward_redeem", fails_once)
    url = f"/api/v1/rewards/{reward.pk}/redeem/"
    assert api.post(url, {}, format="json", HTTP_IDEMPOTENCY_KEY="r-1").status_code == 500
    assert Redemption.objects.count() == 0  # rolled back with the claim
    assert api.post(url, {}, format="json", HTTP_IDEMPOTENCY_KEY="r-1").status_code == 201
    assert Redemption.objects.count() == 1
