"""The scheduled jobs' form and actions: "how often" in words instead of a cron line, and
the actions' messages in one translated sentence (not django-celery-beat's "1 任务 启动成功")."""

import io

import pytest
from django.core.management import call_command
from django.urls import reverse
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from operations.admin_schedules import crontab_repeat

pytestmark = pytest.mark.django_db


@pytest.fixture
def jobs():
    call_command("setup_periodic_tasks", stdout=io.StringIO())
    return PeriodicTask.objects.exclude(crontab=None).order_by("pk")


def _form_data(job: PeriodicTask, **changes) -> dict:
    data = {
        "name": job.name,
        "enabled": "on" if job.enabled else "",
        "description": job.description,
        "regtask": job.task,
        "task": job.task,
        "crontab": job.crontab_id or "",
        "args": job.args,
        "kwargs": job.kwargs,
        "headers": job.headers or "{}",
        "priority": "",
        "expire_seconds": "",
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v != "" or k in ("priority", "expire_seconds", "description")}


def test_the_form_reads_the_cron_line_in_words(jobs):
    assert crontab_repeat(CrontabSchedule(minute="0", hour="4", timezone="Asia/Shanghai")) == {
        "repeat": "daily",
        "at_time": "04:00",
    }
    assert crontab_repeat(CrontabSchedule(minute="30", hour="*")) == {"repeat": "hourly", "at_minute": 30}
    assert crontab_repeat(CrontabSchedule(minute="*/5", hour="*")) == {"repeat": "minutes", "every_minutes": 5}
    assert crontab_repeat(CrontabSchedule(minute="0", hour="9", day_of_month="1"))["repeat"] == "monthly"
    assert crontab_repeat(CrontabSchedule(minute="0", hour="9", day_of_week="1"))["repeat"] == "advanced"


def test_an_operator_moves_a_job_to_0430_without_typing_cron(admin_client, jobs):
    job = jobs.first()
    url = reverse("admin:django_celery_beat_periodictask_change", args=[job.pk])
    page = admin_client.get(url, HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "运行频率" in page and "执行计划" not in page.split("运行频率")[0][-200:]
    response = admin_client.post(url, _form_data(job, repeat="daily", at_time="04:30"))
    assert response.status_code == 302, response.context["adminform"].form.errors
    job.refresh_from_db()
    assert (job.crontab.minute, job.crontab.hour, job.crontab.day_of_month) == ("30", "4", "*")
    listing = admin_client.get(
        reverse("admin:django_celery_beat_periodictask_changelist"), HTTP_ACCEPT_LANGUAGE="zh-hans"
    ).content.decode()
    assert "每天 04:30 (Asia/Shanghai)" in listing


def test_a_chosen_schedule_without_its_time_is_refused(admin_client, jobs):
    job = jobs.first()
    url = reverse("admin:django_celery_beat_periodictask_change", args=[job.pk])
    response = admin_client.post(url, _form_data(job, repeat="daily"), HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 200
    assert "Fill this in for the schedule you chose." in response.content.decode()


def test_the_actions_say_what_they_did_in_chinese(admin_client, jobs):
    url = reverse("admin:django_celery_beat_periodictask_changelist")
    ids = [str(j.pk) for j in jobs[:2]]
    response = admin_client.post(
        url, {"action": "disable_tasks", "_selected_action": ids}, HTTP_ACCEPT_LANGUAGE="zh-hans", follow=True
    )
    page = response.content.decode()
    assert "已停用 2 个任务。" in page and "任务 将" not in page
    assert PeriodicTask.objects.filter(pk__in=ids, enabled=False).count() == 2
