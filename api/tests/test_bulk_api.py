"""Batch orders and bulk awards through the API."""

import pytest
from django.contrib.auth.models import Permission

from api.tests.conftest import client_for_key
from bulk import tasks
from bulk.models import BulkJob
from bulk.services import job_run_chunk
from loyalty.models import Account, LedgerEntry
from loyalty.tests.factories import MemberFactory

pytestmark = pytest.mark.django_db
URL = "/api/v1/pos/orders/batch/"


@pytest.fixture
def run_chunks_inline(monkeypatch):
    ran = []

    def enqueue(job_id, first, last):
        ran.append((first, last))
        job_run_chunk(job_id=job_id, first=first, last=last)

    monkeypatch.setattr(tasks, "enqueue", enqueue)
    monkeypatch.setattr("api.views.bulk.enqueue", enqueue)
    return ran


def test_a_batch_answers_one_result_per_order(key_client, member, other_store):
    orders = [
        {"member_number": member.member_number, "number": "B-1", "amount": "100.00"},
        {"member_number": member.member_number, "number": "B-1", "amount": "100.00"},
        {"member_number": "8000000000", "number": "B-2", "amount": "10.00"},
        {"member_number": member.member_number, "number": "B-3", "amount": "-1"},
        {"member_number": member.member_number, "number": "B-4", "amount": "5.00", "store": other_store.code},
        "not an order",
    ]
    answer = key_client.post(URL, {"orders": orders}, format="json")
    assert answer.status_code == 200, answer.content
    results = answer.json()["results"]
    assert [r["status"] for r in results] == ["done", "replayed", "refused", "refused", "refused", "refused"]
    assert [r.get("error", {}).get("code") for r in results][2:] == [
        "member_not_found",
        "invalid",
        "store_forbidden",
        "invalid",
    ]
    assert LedgerEntry.objects.filter(order__number="B-1").count() >= 1


def test_a_large_batch_is_a_job_to_poll(
    monkeypatch, key_client, member, store, run_chunks_inline, django_capture_on_commit_callbacks
):
    monkeypatch.setattr("bulk.services.SYNC_ORDERS", 5)  # small sizes: the same path as past 100
    orders = [{"member_number": member.member_number, "number": f"L-{n}", "amount": "1.00"} for n in range(12)]
    with django_capture_on_commit_callbacks(execute=True):
        answer = key_client.post(URL, {"orders": orders}, format="json")
    assert answer.status_code == 202, answer.content
    job = answer.json()["job"]
    assert run_chunks_inline == [(0, 11)]
    polled = key_client.get(f"/api/v1/pos/jobs/{job['id']}/", {"limit": 5}).json()
    assert (polled["status"], polled["done"], polled["counts"]) == ("done", 12, {"done": 12})
    assert len(polled["results"]) == 5 and polled["results"][-1]["line"] == 4
    rest = key_client.get(f"/api/v1/pos/jobs/{job['id']}/", {"after": 4}).json()["results"]
    assert [r["line"] for r in rest] == list(range(5, 12))
    other_key = client_for_key(store, actions=["earn"])
    assert other_key.get(f"/api/v1/pos/jobs/{job['id']}/").status_code == 404


def test_bad_batches_are_refused_whole(key_client):
    for body in ({}, {"orders": []}, {"orders": "x"}, {"orders": [{}] * 1001}):
        answer = key_client.post(URL, body, format="json")
        assert answer.status_code == 400, body
    assert not BulkJob.objects.exists()


def test_staff_award_through_the_api(
    staff_client, pos_staff, store, run_chunks_inline, django_capture_on_commit_callbacks
):
    pos_staff.user_permissions.add(Permission.objects.get(codename="adjust_points", content_type__app_label="loyalty"))
    members = MemberFactory.create_batch(3, home_store=store)
    body = {"amount": 50, "reason": "Store opening", "members": [m.member_number for m in members] + ["nobody"]}
    answer = staff_client.post("/api/v1/bulk/awards/", body, format="json")
    assert answer.status_code == 201, answer.content
    job = answer.json()
    assert job["preview"] == {"members": 3, "total_points": 150, "skipped": {"invalid": 1}}
    with django_capture_on_commit_callbacks(execute=True):
        confirmed = staff_client.post(f"/api/v1/bulk/awards/{job['id']}/confirm/")
    assert confirmed.status_code == 202
    assert sorted(Account.objects.filter(member__in=members).values_list("balance", flat=True)) == [50, 50, 50]
    again = staff_client.post(f"/api/v1/bulk/awards/{job['id']}/confirm/")
    assert again.status_code == 400 and again.json()["error"]["code"] == "job_not_waiting"


def test_a_store_key_cannot_start_a_bulk_award(key_client):
    answer = key_client.post("/api/v1/bulk/awards/", {"amount": 5, "reason": "x", "members": ["1"]}, format="json")
    assert answer.status_code == 403


def test_bulk_awards_need_credentials_and_staff(member_client):
    from rest_framework.test import APIClient

    body = {"amount": 5, "reason": "x", "members": ["1"]}
    assert APIClient().post("/api/v1/bulk/awards/", body, format="json").status_code == 401
    assert member_client.post("/api/v1/bulk/awards/", body, format="json").status_code == 403
    assert not BulkJob.objects.exists()


def test_only_the_jobs_owner_polls_it(staff_client, member_client, key_client, pos_staff):
    from rest_framework.test import APIClient

    job = BulkJob.objects.create(kind="award", created_by=pos_staff, total=0)
    assert staff_client.get(f"/api/v1/pos/jobs/{job.pk}/").json()["status"] == "preview"
    assert key_client.get(f"/api/v1/pos/jobs/{job.pk}/").status_code == 404
    assert member_client.get(f"/api/v1/pos/jobs/{job.pk}/").status_code == 403
    assert APIClient().get(f"/api/v1/pos/jobs/{job.pk}/").status_code == 401


def test_a_coupon_award_through_the_api(staff_client, pos_staff, store):
    pos_staff.user_permissions.add(Permission.objects.get(codename="adjust_points", content_type__app_label="loyalty"))
    member = MemberFactory(home_store=store)
    body = {
        "amount": 0,
        "reason": "Opening",
        "members": [member.member_number],
        "coupon": {"title": "Free coffee", "kind": "gift", "value": "0", "valid_days": 7},
    }
    answer = staff_client.post("/api/v1/bulk/awards/", body, format="json")
    assert answer.status_code == 201, answer.content
    assert answer.json()["preview"]["coupons"] == 1
    bad = staff_client.post("/api/v1/bulk/awards/", body | {"coupon": {"title": "x"}}, format="json")
    assert bad.status_code == 400 and "coupon" in bad.json()["error"]["fields"]
    assert staff_client.post("/api/v1/bulk/awards/", body | {"coupon": None}, format="json").status_code == 400
