"""Pages for operators: the scheduled jobs (named in the page's language, schedules in words)
and the member import's template file."""

import io

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import translation
from django_celery_beat.models import CrontabSchedule

from operations.admin_schedules import crontab_in_words

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "minute, hour, day, english, chinese",
    [
        ("*", "*", "*", "Every minute", "每分钟"),
        ("*/15", "*", "*", "Every 15 minutes", "每 15 分钟"),
        ("5", "*", "*", "Every hour at :05", "每小时第 05 分"),
        ("0", "4", "*", "Daily at 04:00", "每天 04:00"),
        ("30", "9", "1", "Monthly on day 1 at 09:30", "每月 1 日 09:30"),
        ("0", "1-5", "*", "0 1-5 * * *", "0 1-5 * * *"),
    ],
)
def test_schedules_read_in_words(minute, hour, day, english, chinese):
    crontab = CrontabSchedule(minute=minute, hour=hour, day_of_month=day, timezone="Asia/Shanghai")
    with translation.override("en"):
        assert crontab_in_words(crontab) == f"{english} (Asia/Shanghai)"
    with translation.override("zh-hans"):
        assert crontab_in_words(crontab) == f"{chinese} (Asia/Shanghai)"


def test_the_list_names_jobs_in_chinese_with_their_schedule(admin_client):
    call_command("setup_periodic_tasks", stdout=io.StringIO())
    page = admin_client.get(
        reverse("admin:django_celery_beat_periodictask_changelist"), HTTP_ACCEPT_LANGUAGE="zh-hans"
    ).content.decode()
    assert "更新生命周期阶段与 RFM" in page and "每天 04:00 (Asia/Shanghai)" in page
    assert "Refresh lifecycle stages and RFM" not in page and "m/h/dM/MY/d" not in page


def test_the_import_page_offers_a_template_file_with_the_columns(admin_client):
    page = admin_client.get(reverse("admin:members_importjob_add")).content.decode()
    assert 'id="import-template"' in page
    response = admin_client.get(reverse("admin:members_importjob_template"))
    lines = response.content.decode("utf-8-sig").splitlines()
    assert response["Content-Disposition"].startswith("attachment") and lines[0] == (
        "phone,name,gender,birthday,email,home_store,opening_points"
    )
    assert len(lines) == 2
