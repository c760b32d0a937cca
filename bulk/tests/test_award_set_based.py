"""A points award's chunks through ``points_award_bulk``: per-line results, reruns, refusals."""

import datetime as dt

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from bulk.models import BulkJob, BulkLine
from bulk.services import award_job_confirm, award_job_preview, job_run_chunk
from loyalty import services
from loyalty.models import Account, LedgerEntry
from loyalty.selectors import ledger_violations
from loyalty.tests.factories import MemberFactory, StoreFactory
from members.models import Member, StaffProfile

pytestmark = pytest.mark.django_db


@pytest.fixture
def boss(django_user_model):
    return django_user_model.objects.create_superuser("boss", password="x-not-real-42")


@pytest.fixture
def confirmed(django_capture_on_commit_callbacks):
    """Preview and confirm an award; its chunks, enqueued after commit, are returned."""

    def confirm(actor, members, amount=50):
        with django_capture_on_commit_callbacks(execute=True):
            return _confirmed(actor, members, amount)

    return confirm


def _confirmed(actor, members, amount):
    chunks = []
    job = award_job_preview(
        actor=actor,
        currency="points",
        amount=amount,
        reason="Anniversary",
        identifiers=[m.member_number for m in members],
    )
    award_job_confirm(job=job, actor=actor, enqueue=lambda *chunk: chunks.append(chunk))
    return job, chunks


def balances(members):
    return [
        Account.objects.filter(member=m, currency="points").values_list("balance", flat=True).first() for m in members
    ]


def test_a_chunk_awards_its_lines_in_a_few_statements_and_a_rerun_awards_nothing_twice(
    boss, monkeypatch, django_assert_max_num_queries, confirmed
):
    monkeypatch.setattr("bulk.services.CHUNK", 30)
    people = MemberFactory.create_batch(40)
    services.points_adjust(member=people[0], currency="points", amount=7, reason="earlier", actor=boss)
    job, chunks = confirmed(boss, people)
    Member.objects.filter(pk=people[1].pk).update(status=Member.Status.FROZEN)  # frozen after the preview
    assert chunks == [(job.pk, 0, 29), (job.pk, 30, 39)]
    with django_assert_max_num_queries(20):  # about 11 for 30 members; per line it was ~11 each
        counts = job_run_chunk(job_id=job.pk, first=0, last=29)
    assert counts == {"done": 29, "refused": 1}
    job_run_chunk(job_id=job.pk, first=30, last=39)
    job.refresh_from_db()
    assert (job.status, job.done) == ("done", 40)
    assert balances(people[:3]) == [57, None, 50]
    frozen = BulkLine.objects.get(job=job, member=people[1])
    assert (frozen.status, frozen.code) == ("refused", "member_inactive")
    first = BulkLine.objects.get(job=job, member=people[0])
    entry = LedgerEntry.objects.get(pk=first.result["entry"])
    assert first.status == "done" and first.result["balance_after"] == entry.balance_after == 57
    assert (entry.kind, entry.idempotency_key, entry.operator, entry.reason) == (
        "adjust",
        f"bulk:{job.pk}",
        boss,
        "Anniversary",
    )

    # A worker died after committing: the chunk runs again with its lines pending.
    BulkLine.objects.filter(job=job).exclude(status="refused").update(status="pending", result={})
    BulkJob.objects.filter(pk=job.pk).update(status="running")
    assert job_run_chunk(job_id=job.pk, first=0, last=39) == {"replayed": 39}
    assert balances(people[:3]) == [57, None, 50]
    assert LedgerEntry.objects.filter(kind="adjust", idempotency_key=f"bulk:{job.pk}").count() == 39
    assert BulkLine.objects.get(pk=first.pk).result == {"entry": entry.pk, "balance_after": 57}
    assert ledger_violations() == []


def test_a_creator_who_lost_the_permission_gets_every_line_refused(django_user_model, confirmed):
    user = django_user_model.objects.create_user("sup", password="x-not-real-42", is_staff=True)
    permission = Permission.objects.get(codename="adjust_points", content_type__app_label="loyalty")
    user.user_permissions.add(permission)
    people = MemberFactory.create_batch(3)
    StaffProfile.objects.create(user=user).stores.add(*{m.home_store for m in people})
    job, chunks = confirmed(django_user_model.objects.get(pk=user.pk), people)
    user.user_permissions.remove(permission)
    assert job_run_chunk(job_id=job.pk, first=0, last=2) == {"refused": 3}
    assert set(BulkLine.objects.filter(job=job).values_list("code", flat=True)) == {"operator_required"}
    assert not LedgerEntry.objects.exists()


def test_a_member_in_debt_pays_it_first(boss, confirmed):

    store = StoreFactory()
    debtor, other = MemberFactory.create_batch(2)
    services.order_earn(
        member=debtor, store=store, number="D-1", amount="80", occurred_at=timezone.now() - dt.timedelta(days=10)
    )
    services.points_spend(member=debtor, amount=80, idempotency_key="spend", reason="gift")
    services.order_refund(order=debtor.orders.get(), amount="80", number="RF-D")
    job, chunks = confirmed(boss, [debtor, other], amount=30)
    assert job_run_chunk(job_id=job.pk, first=0, last=1) == {"done": 2}
    account = Account.objects.get(member=debtor, currency="points")
    assert (account.balance, account.owed) == (0, 50)  # the 30 paid the debt
    assert BulkLine.objects.get(job=job, member=debtor).result["balance_after"] == 30  # the award entry's own
    assert ledger_violations() == []
