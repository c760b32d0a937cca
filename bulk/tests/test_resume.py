"""A confirmed job whose chunk tasks were lost (the broker did not answer, a worker died
with them) is resumed by the watchdog, and a chunk task is queueable with the project's limits."""

import datetime as dt
import json

import pytest
from django.conf import settings
from django.utils import timezone

from bulk.models import BulkJob
from bulk.services import award_job_confirm, award_job_preview, job_result_rows, job_run_chunk, jobs_resume_stalled
from bulk.tests.test_bulk import Runner
from config.celery import app
from loyalty.models import Account
from loyalty.tests.factories import MemberFactory

pytestmark = pytest.mark.django_db


def test_every_task_of_the_channels_apps_can_be_queued_with_the_project_time_limits():
    # celery refuses apply_async when a task's soft limit is above its (or the project's) hard limit
    names = [name for name in app.tasks if name.split(".")[0] in ("bulk", "webhooks", "outreach")]
    assert "bulk.run_chunk" in names and "bulk.resume_stalled" in names
    for name in names:
        task = app.tasks[name]
        soft = task.soft_time_limit or settings.CELERY_TASK_SOFT_TIME_LIMIT
        hard = task.time_limit or settings.CELERY_TASK_TIME_LIMIT
        assert soft <= hard, name


def test_a_job_whose_chunks_were_never_queued_is_resumed_once_and_awards_once(
    django_user_model, django_capture_on_commit_callbacks
):
    boss = django_user_model.objects.create_superuser("boss", "boss@example.com", "x")
    MemberFactory.create_batch(3)
    job = award_job_preview(
        actor=boss,
        currency="points",
        amount=40,
        reason="Sorry",
        identifiers=list(MemberFactory._meta.model.objects.values_list("member_number", flat=True)),
    )

    def broker_down(*args):
        raise ConnectionError("the broker did not answer")

    with django_capture_on_commit_callbacks(execute=True):
        award_job_confirm(job=job, actor=boss, enqueue=broker_down)  # no error for the staff member
    job.refresh_from_db()
    assert job.status == "queued" and job.done == 0
    runner = Runner()
    assert jobs_resume_stalled(enqueue=runner) == []  # too early: its tasks may still come
    later = timezone.now() + dt.timedelta(minutes=11)
    assert jobs_resume_stalled(enqueue=runner, now=later) == [job.pk]
    assert jobs_resume_stalled(enqueue=runner, now=later) == []  # claimed: resumed once
    assert runner.chunks == [(job.pk, 0, 2)]
    runner.run()
    job_run_chunk(job_id=job.pk, first=0, last=2)  # a lost task arriving late after all
    job.refresh_from_db()
    assert job.status == "done" and job.progress_at is not None
    assert sorted(Account.objects.filter(currency="points").values_list("balance", flat=True)) == [40, 40, 40]
    assert jobs_resume_stalled(enqueue=runner, now=later + dt.timedelta(hours=1)) == []
    assert BulkJob.objects.get(pk=job.pk).done == 3
    # The result file's last column is JSON a spreadsheet or a script can read.
    rows = list(job_result_rows(job))
    assert rows[1][3] == "done" and json.loads(rows[1][6])["balance_after"] == 40
