"""A background import whose task was lost: detected by its progress time, resumed from the admin or the watchdog."""

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from core.errors import LoyaltyError
from loyalty.selectors import ledger_violations
from loyalty.tests.factories import StoreFactory
from members.models import ImportJob, Member
from operations import imports
from operations.imports import import_job_confirm, import_job_resume, import_job_run

from .test_import_job import _many_rows, checked_job, upload

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.LOYALTY_IMPORT_ROOT = tmp_path / "imports"


@pytest.fixture
def store():
    return StoreFactory(code="sh01", name="Shanghai 1")


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_superuser("operator", password="not-a-real-password-42")


STUCK = imports.IMPORT_STUCK_AFTER + dt.timedelta(minutes=1)


def lose_the_task_after_two_chunks(job, monkeypatch) -> None:
    """The worker dies after two chunks of ten rows: the job stays IMPORTING, nothing marks it."""
    real = imports._import_chunk
    calls = {"n": 0}

    def die_on_third_chunk(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise SystemExit("worker killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(imports, "_import_chunk", die_on_third_chunk)
    with pytest.raises(SystemExit):
        import_job_run(job.pk, chunk_rows=10)
    monkeypatch.setattr(imports, "_import_chunk", real)


def test_an_import_without_progress_is_stuck_and_resumes_where_it_stopped(
    store, operator, monkeypatch, django_capture_on_commit_callbacks
):
    job = checked_job(_many_rows(40), operator)
    import_job_confirm(job_id=job.pk, user=operator)
    lose_the_task_after_two_chunks(job, monkeypatch)
    job.refresh_from_db()
    assert (job.status, job.imported_rows) == (ImportJob.Status.IMPORTING, 20)
    assert job.progress_at is not None

    # Still recent: not stuck, and Resume is refused (its task may be running).
    assert not imports.import_job_is_stuck(job)
    with pytest.raises(LoyaltyError) as refused:
        import_job_resume(job_id=job.pk, user=operator)
    assert refused.value.code == "import_not_failed"

    later = timezone.now() + STUCK
    assert list(imports.import_jobs_stuck(now=later)) == [job]
    with django_capture_on_commit_callbacks(execute=False) as queued:
        assert imports.import_jobs_resume_stuck(now=later) == [job.pk]
    assert len(queued) == 1  # run_import queued again, once
    # A second watchdog tick (or a click) right after does not queue it twice.
    assert imports.import_jobs_resume_stuck(now=later) == []

    job = import_job_run(job.pk, chunk_rows=10)  # what the queued task does
    assert (job.status, job.imported_rows, job.summary["new"]) == (ImportJob.Status.DONE, 40, 40)
    assert Member.objects.count() == 40
    assert ledger_violations() == []


def test_a_check_whose_task_was_lost_is_checked_again(operator, django_capture_on_commit_callbacks):
    job = imports.import_job_create(file=upload(_many_rows(5)), user=operator)  # the check was never run
    ImportJob.objects.filter(pk=job.pk).update(created_at=timezone.now() - STUCK)
    with django_capture_on_commit_callbacks(execute=False) as queued:
        import_job_resume(job_id=job.pk, user=operator)
    assert len(queued) == 1
    job = imports.import_job_check(job.pk)
    assert job.status in (ImportJob.Status.CHECKED, ImportJob.Status.INVALID) and job.checked_rows == 5


def test_the_admin_offers_resume_for_a_stuck_import(client, store, operator, monkeypatch):
    job = checked_job(_many_rows(30), operator)
    import_job_confirm(job_id=job.pk, user=operator)
    lose_the_task_after_two_chunks(job, monkeypatch)
    client.force_login(operator)
    page = client.get(reverse("admin:members_importjob_change", args=[job.pk]))
    assert "Resume import" not in page.content.decode()

    ImportJob.objects.filter(pk=job.pk).update(progress_at=timezone.now() - STUCK)
    page = client.get(reverse("admin:members_importjob_change", args=[job.pk]))
    assert "Resume import" in page.content.decode() and "made no progress since" in page.content.decode()
    response = client.post(reverse("admin:members_importjob_resume", args=[job.pk]))
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.status == ImportJob.Status.IMPORTING and job.progress_at > timezone.now() - dt.timedelta(minutes=1)
