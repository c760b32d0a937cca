import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from loyalty.models import Benefit, LedgerEntry
from loyalty.services import order_earn, points_award
from members.models import Member, Notification
from members.notifications import notify
from rewards.tests.factories import CouponFactory

pytestmark = pytest.mark.django_db


def earn(member, store, n: int, *, days_ago: int = 30, amount="10.00"):
    return order_earn(
        member=member,
        store=store,
        number=f"O-{member.pk}-{n}",
        amount=amount,
        occurred_at=timezone.now() - dt.timedelta(days=days_ago),
    )


def test_profile_read_and_update(member_client, member, tiers):
    body = member_client.get("/api/v1/me/").json()
    assert body["member_number"] == member.member_number and body["birthday_locked"] is False
    response = member_client.patch("/api/v1/me/", {"name": "李雷", "birthday": "1990-05-02"}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["name"] == "李雷" and response.json()["birthday_locked"] is True
    locked = member_client.patch("/api/v1/me/", {"birthday": "1990-05-03"}, format="json")
    assert locked.status_code == 409 and locked.json()["error"]["code"] == "birthday_locked"


def test_profile_system_fields_are_read_only(member_client, member):
    response = member_client.patch("/api/v1/me/", {"status": "active", "member_number": "1"}, format="json")
    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"status", "member_number"}
    bad = member_client.patch("/api/v1/me/", {"email": "nope", "gender": "x"}, format="json")
    assert bad.status_code == 400 and set(bad.json()["error"]["fields"]) == {"email", "gender"}


def test_balances_and_expiry_calendar(member_client, member, store):
    earn(member, store, 1, days_ago=30)  # released
    earn(member, store, 2, days_ago=1)  # pending
    body = member_client.get("/api/v1/me/balances/").json()
    assert body["points"]["balance"] == 10 and body["points"]["pending"] == 10
    assert body["points"]["pending_next_release_date"] is not None
    calendar = member_client.get("/api/v1/me/expiry-calendar/").json()
    assert sum(b["amount"] for b in calendar["expiring"]) == 10
    assert sum(b["amount"] for b in calendar["pending"]) == 10
    assert member_client.get("/api/v1/me/expiry-calendar/", {"currency": "gold"}).status_code == 400


def test_entries_paginate_by_cursor_and_filter(member_client, member, store):
    for n in range(25):
        earn(member, store, n)
    first = member_client.get("/api/v1/me/entries/", {"currency": "points"}).json()
    assert len(first["results"]) == 20
    assert first["results"][0]["breakdown"][0]["points"] == 10
    assert first["results"][0]["store"] == "sh001" and first["results"][0]["order_number"]
    second = member_client.get(first["next"]).json()
    ids = {e["id"] for e in first["results"]} | {e["id"] for e in second["results"]}
    assert len(ids) == 25 and second["next"] is None
    kinds = member_client.get("/api/v1/me/entries/", {"kind": "adjust"}).json()
    assert kinds["results"] == []
    assert member_client.get("/api/v1/me/entries/", {"kind": "nope"}).status_code == 400
    future = member_client.get("/api/v1/me/entries/", {"since": "2999-01-01"}).json()
    assert future["results"] == []


def test_entries_query_count_does_not_grow_with_history(member_client, member, store):
    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert member_client.get("/api/v1/me/entries/").status_code == 200
        return len(queries)

    earn(member, store, 0)
    one = count()
    LedgerEntry.objects.bulk_create(
        [
            LedgerEntry(
                account=LedgerEntry.objects.first().account,
                member=member,
                currency="points",
                kind="earn",
                amount=0,
                pending_amount=1,
                balance_after=0,
                pending_after=1,
                store=store,
                order=LedgerEntry.objects.first().order,
                detail={"lines": [{"rule": "base", "name": "Base", "kind": "base", "points": 1}]},
            )
            for _ in range(500)
        ]
    )
    assert count() == one


def test_notifications_and_coupons_query_counts_do_not_grow(member_client, member):
    def counts():
        out = []
        for path in ("/api/v1/me/notifications/", "/api/v1/me/coupons/"):
            with CaptureQueriesContext(connection) as queries:
                assert member_client.get(path).status_code == 200
            out.append(len(queries))
        return out

    notify(member_id=member.pk, kind="other", title="t", dedupe_key="n-0")
    CouponFactory(member=member)
    before = counts()
    Notification.objects.bulk_create(
        [Notification(member=member, kind="other", title="t", dedupe_key=f"n-{i}") for i in range(1, 500)]
    )
    CouponFactory.create_batch(100, member=member)
    assert counts() == before


def test_tier_and_benefits(member_client, member, tiers):
    from loyalty.tiers import tier_assign_default

    tier_assign_default(member=member, now=timezone.now())
    Benefit.objects.create(tier=tiers["bronze"], kind="custom_text", title="Free water")
    body = member_client.get("/api/v1/me/tier/").json()
    assert body["tier"]["code"] == "bronze" and body["next_tier"]["code"] == "gold"
    assert body["growth_to_next"] == 1000
    benefits = member_client.get("/api/v1/me/benefits/").json()
    assert [b["title"] for b in benefits] == ["Free water"]


def test_notifications_list_and_mark_read(member_client, other_member_client, member):
    notify(member_id=member.pk, kind="other", title="Hello", dedupe_key="hello")
    notification = Notification.objects.get()
    listed = member_client.get("/api/v1/me/notifications/").json()
    assert listed["results"][0]["title"] == "Hello" and listed["results"][0]["read_at"] is None
    # another member cannot see or mark it
    assert other_member_client.post(f"/api/v1/me/notifications/{notification.pk}/read/").status_code == 404
    assert other_member_client.get("/api/v1/me/notifications/").json()["results"] == []
    read = member_client.post(f"/api/v1/me/notifications/{notification.pk}/read/")
    assert read.status_code == 200 and read.json()["read_at"] is not None


def test_coupons_are_the_members_own(member_client, other_member_client, member):
    coupon = CouponFactory(member=member)
    assert [c["code"] for c in member_client.get("/api/v1/me/coupons/").json()] == [coupon.code]
    assert other_member_client.get("/api/v1/me/coupons/").json() == []
    assert member_client.get("/api/v1/me/coupons/", {"status": "used"}).json() == []


def test_another_members_history_is_invisible(member_client, other_member_client, member, store):
    earn(member, store, 1)
    assert other_member_client.get("/api/v1/me/entries/").json()["results"] == []
    assert other_member_client.get("/api/v1/me/balances/").json()["points"]["pending"] == 0


def test_export_is_my_data(member_client, member, store):
    earn(member, store, 1)
    response = member_client.get("/api/v1/me/export/")
    assert response.status_code == 200
    assert "attachment" in response["Content-Disposition"]
    assert response.json()["profile"]["member_number"] == member.member_number
    assert len(response.json()["orders"]) == 1


def test_erase_needs_the_confirmation_word(member_client, member):
    refused = member_client.post("/api/v1/me/erase/", {"confirm": "yes"}, format="json")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "confirmation_required"
    assert member_client.post("/api/v1/me/erase/", {"confirm": "ERASE"}, format="json").status_code == 204
    member.refresh_from_db()
    assert member.status == Member.Status.CLOSED and member.name == ""
    assert member_client.get("/api/v1/me/").status_code == 401


def test_points_award_shows_in_history_with_reason(member_client, member):
    points_award(member=member, currency="points", amount=50, reason="Welcome", idempotency_key="w")
    entry = member_client.get("/api/v1/me/entries/").json()["results"][0]
    assert entry["reason"] == "Welcome" and entry["amount"] == 50 and entry["store"] is None
