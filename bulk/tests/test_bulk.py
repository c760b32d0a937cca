"""Batch orders and bulk awards through the ledger services."""

import pytest
from django.contrib.auth.models import Permission

from bulk.models import BulkJob, BulkLine
from bulk.services import award_job_confirm, award_job_preview, job_counts, job_result_rows, job_run_chunk, orders_batch
from core.errors import LoyaltyError
from loyalty.models import Account, LedgerEntry
from loyalty.tests.factories import MemberFactory, StoreFactory
from members.models import Member, Segment, StaffProfile

pytestmark = pytest.mark.django_db


class Runner:
    """Runs chunk tasks in place when the test says so (on_commit runs them in tests)."""

    def __init__(self):
        self.chunks = []

    def __call__(self, job_id, first, last):
        self.chunks.append((job_id, first, last))

    def run(self):
        while self.chunks:
            job_id, first, last = self.chunks.pop(0)
            job_run_chunk(job_id=job_id, first=first, last=last)


@pytest.fixture
def runner():
    return Runner()


def order(member, store, number, amount="10.00"):
    return {"member_number": member.member_number, "store_id": store.pk, "number": number, "amount": amount}


def test_a_small_batch_answers_each_order(django_capture_on_commit_callbacks):
    store = StoreFactory()
    a, b = MemberFactory.create_batch(2)
    orders_batch(orders=[order(a, store, "SO-1")])
    batch = [
        order(a, store, "SO-1"),  # sent before: replayed
        order(b, store, "SO-2", "25.00"),
        {"member_number": "0000000000", "store_id": store.pk, "number": "SO-3", "amount": "5.00"},
        {"refused": ["store_forbidden", "Not your store."], "member_number": b.member_number, "number": "SO-4"},
        order(a, store, "SO-1", "99.00"),  # same number, different order
    ]
    job, results = orders_batch(orders=batch)
    assert job is None
    assert [r["status"] for r in results] == ["replayed", "done", "refused", "refused", "refused"]
    assert [r.get("error", {}).get("code") for r in results] == [
        None,
        None,
        "member_not_found",
        "store_forbidden",
        "order_number_taken",
    ]
    assert results[1]["earned"]["points"]["pending_amount"] > 0
    assert LedgerEntry.objects.filter(order__number="SO-2").exists()
    assert not LedgerEntry.objects.filter(order__number="SO-3").exists()


def test_a_large_batch_runs_in_the_background_and_a_rerun_earns_nothing_twice(
    monkeypatch, runner, django_capture_on_commit_callbacks
):
    monkeypatch.setattr("bulk.services.SYNC_ORDERS", 5)  # small sizes: the same path as past 100
    monkeypatch.setattr("bulk.services.CHUNK", 10)
    store = StoreFactory()
    members = MemberFactory.create_batch(3)
    batch = [order(members[n % 3], store, f"SO-{n}") for n in range(15)]
    with django_capture_on_commit_callbacks(execute=True):
        job, results = orders_batch(orders=batch, enqueue=runner)
    assert results == [] and job.status == "queued" and job.total == 15
    assert runner.chunks == [(job.pk, 0, 9), (job.pk, 10, 14)]
    runner.run()
    job.refresh_from_db()
    assert (job.status, job.done) == ("done", 15)
    assert job_counts(job) == {"done": 15}
    # A chunk redelivered after it finished: nothing pending, nothing written.
    entries = LedgerEntry.objects.count()
    BulkLine.objects.filter(job=job, n__lt=4).update(status="pending")  # as if it died before marking these
    BulkJob.objects.filter(pk=job.pk).update(status="running", done=11)
    job_run_chunk(job_id=job.pk, first=0, last=9)
    assert LedgerEntry.objects.count() == entries
    assert job_counts(job) == {"done": 11, "replayed": 4}


def test_batches_over_the_limit_or_empty_are_refused():
    with pytest.raises(LoyaltyError) as refused:
        orders_batch(orders=[{}] * 1001)
    assert refused.value.code == "batch_too_large"
    with pytest.raises(LoyaltyError):
        orders_batch(orders=[])


@pytest.fixture
def supervisor(django_user_model):
    user = django_user_model.objects.create_user("sup", password="x-not-real-42", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="adjust_points", content_type__app_label="loyalty"))
    return django_user_model.objects.get(pk=user.pk)


@pytest.fixture
def brand_admin(django_user_model):
    return django_user_model.objects.create_superuser("boss", password="x-not-real-42")


def test_a_bulk_award_previews_then_awards_once_per_member(brand_admin, runner, django_capture_on_commit_callbacks):
    supervisor = brand_admin
    members = MemberFactory.create_batch(4)
    Member.objects.filter(pk=members[3].pk).update(status=Member.Status.FROZEN)
    given = [
        members[0].member_number,
        members[1].phone,
        "139 0000 0000",
        members[0].phone,
        "rubbish",
        members[3].member_number,
        members[2].member_number,
    ]
    job = award_job_preview(actor=supervisor, currency="points", amount=100, reason="Anniversary", identifiers=given)
    assert job.status == "preview"
    assert job.preview == {
        "members": 3,
        "total_points": 300,
        "skipped": {"not_found": 1, "duplicate": 1, "invalid": 1, "not_active": 1},
    }
    assert not LedgerEntry.objects.exists()  # nothing before confirmation
    with django_capture_on_commit_callbacks(execute=True):
        award_job_confirm(job=job, actor=supervisor, enqueue=runner)
    runner.run()
    job.refresh_from_db()
    assert (job.status, job.done, job.total) == ("done", 7, 7)
    assert sorted(Account.objects.filter(currency="points").values_list("balance", flat=True)) == [100, 100, 100]
    entry = LedgerEntry.objects.filter(kind="adjust").first()
    assert entry.operator == supervisor and entry.reason == "Anniversary"
    rows = list(job_result_rows(job))
    assert rows[0][:4] == ["line", "given", "member_number", "status"] and len(rows) == 8
    with pytest.raises(LoyaltyError) as again:
        award_job_confirm(job=job, actor=supervisor, enqueue=runner)
    assert again.value.code == "job_not_waiting"
    # Every line run again: replays only.
    BulkLine.objects.filter(job=job, status="done").update(status="pending")
    BulkJob.objects.filter(pk=job.pk).update(status="running")
    job_run_chunk(job_id=job.pk, first=0, last=6)
    assert sorted(Account.objects.filter(currency="points").values_list("balance", flat=True)) == [100, 100, 100]


def test_a_segment_award_and_the_adjustment_limit_on_the_total(supervisor, runner):
    store = StoreFactory()
    MemberFactory.create_batch(5, home_store=store)
    segment = Segment.objects.create(name="all", rules={})
    StaffProfile.objects.create(user=supervisor, adjust_limit=400)
    job = award_job_preview(actor=supervisor, currency="points", amount=100, reason="Gift", segment=segment)
    assert job.preview["members"] == 0 and job.preview["skipped"] == {"out_of_scope": 5}  # no stores on the profile
    supervisor.staff_profile.stores.add(store)
    job = award_job_preview(actor=supervisor, currency="points", amount=100, reason="Gift", segment=segment)
    assert job.preview["total_points"] == 500
    with pytest.raises(LoyaltyError) as refused:
        award_job_confirm(job=job, actor=supervisor, enqueue=runner)
    assert refused.value.code == "permission_denied" and runner.chunks == []
    job.refresh_from_db()
    assert job.status == "preview"


def test_bulk_award_refusals(supervisor, staff_user):
    with pytest.raises(LoyaltyError):
        award_job_preview(actor=staff_user, currency="points", amount=1, reason="x", identifiers=["1"])
    for bad in ({"amount": 0}, {"amount": -5}, {"reason": ""}, {"currency": "gold"}, {"identifiers": []}):
        fields = {"currency": "points", "amount": 10, "reason": "r", "identifiers": ["13900000000"]} | bad
        with pytest.raises(LoyaltyError):
            award_job_preview(actor=supervisor, **fields)
    assert not BulkJob.objects.exists()


def test_staff_award_a_segment_in_the_admin(admin_client, monkeypatch, django_capture_on_commit_callbacks):
    from bulk import admin as bulk_admin

    MemberFactory.create_batch(3)
    segment = Segment.objects.create(name="everyone", rules={})
    ran = []
    monkeypatch.setattr(
        bulk_admin,
        "enqueue",
        lambda *chunk: ran.append(chunk) or job_run_chunk(job_id=chunk[0], first=chunk[1], last=chunk[2]),
    )
    form = {"segment": segment.pk, "currency": "points", "amount": 20, "reason": "Spring gift"}
    answer = admin_client.post("/admin/bulk/bulkjob/add/", form)
    assert answer.status_code == 302, answer.content.decode()[:3000]
    job = BulkJob.objects.get()
    page = admin_client.get(answer["Location"]).content.decode()
    assert "3 members, 60 in all." in page and "Confirm and award" in page
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(f"/admin/bulk/bulkjob/{job.pk}/confirm/")
    job.refresh_from_db()
    assert job.status == "done" and len(ran) == 1
    csv_file = admin_client.get(f"/admin/bulk/bulkjob/{job.pk}/results.csv").content.decode("utf-8-sig")
    assert csv_file.splitlines()[0].startswith("line,given,member_number,status") and csv_file.count("done") == 3


def test_an_uploaded_list_is_checked_in_the_admin(admin_client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    member = MemberFactory()
    both = {
        "segment": Segment.objects.create(name="s", rules={}).pk,
        "currency": "points",
        "amount": 5,
        "reason": "r",
        "members_file": SimpleUploadedFile("m.csv", b"x"),
    }
    assert "not both" in admin_client.post("/admin/bulk/bulkjob/add/", both).content.decode()
    upload = SimpleUploadedFile("m.csv", f"{member.phone}\n\nnobody\n".encode())
    answer = admin_client.post(
        "/admin/bulk/bulkjob/add/", {"currency": "points", "amount": 5, "reason": "r", "members_file": upload}
    )
    assert answer.status_code == 302
    assert BulkJob.objects.get().preview == {"members": 1, "total_points": 5, "skipped": {"invalid": 1}}


def test_a_coupon_award_gives_each_member_one_coupon(brand_admin, runner, django_capture_on_commit_callbacks):
    from rewards.models import Coupon

    members = MemberFactory.create_batch(2)
    coupon = {"title": "Free coffee", "kind": "gift", "value": "0", "valid_days": 14}
    job = award_job_preview(
        actor=brand_admin,
        currency="points",
        amount=0,
        reason="Opening week",
        coupon=coupon,
        identifiers=[m.member_number for m in members],
    )
    assert job.preview == {"members": 2, "total_points": 0, "skipped": {}, "coupons": 2}
    with django_capture_on_commit_callbacks(execute=True):
        award_job_confirm(job=job, actor=brand_admin, enqueue=runner)
    runner.run()
    runner.run()
    assert Coupon.objects.filter(title="Free coffee", source="staff").count() == 2
    assert not LedgerEntry.objects.exists()
    for bad in ({"title": ""}, {"kind": "cash"}, {"valid_days": 0}, {"value": "nan"}, {"value": "-1"}):
        with pytest.raises(LoyaltyError):
            award_job_preview(
                actor=brand_admin,
                currency="points",
                amount=0,
                reason="r",
                coupon=coupon | bad,
                identifiers=[members[0].member_number],
            )


def test_a_coupon_award_from_the_admin(admin_client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    member = MemberFactory()
    form = {
        "currency": "points",
        "amount": 0,
        "reason": "Opening",
        "coupon_title": "Free coffee",
        "coupon_kind": "gift",
        "coupon_value": "0",
        "coupon_days": 7,
        "members_file": SimpleUploadedFile("m.csv", member.member_number.encode()),
    }
    assert admin_client.post("/admin/bulk/bulkjob/add/", form).status_code == 302
    job = BulkJob.objects.get()
    assert job.coupon == {"title": "Free coffee", "kind": "gift", "value": "0", "valid_days": 7}
    assert job.preview["coupons"] == 1
