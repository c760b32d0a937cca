"""The nightly badge sweep's schedule in django-celery-beat, on the ledger queue (daily
04:30, after lifecycle at 04:00, clear of 01:00-03:00). Written once; editable in the admin."""

from django.conf import settings
from django.db import migrations

NAME, TASK = "Sweep badges", "programme.badges_sweep"


def create(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    crontab, _ = CrontabSchedule.objects.get_or_create(
        minute="30", hour="4", day_of_week="*", day_of_month="*", month_of_year="*", timezone=settings.TIME_ZONE
    )
    PeriodicTask.objects.get_or_create(
        name=NAME,
        defaults={
            "task": TASK,
            "crontab": crontab,
            "queue": "ledger",
            "description": "Daily at 04:30: members meeting a badge's condition (windows, referrals) get it, once.",
        },
    )


def remove(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(task=TASK).delete()


class Migration(migrations.Migration):
    dependencies = [("programme", "0004_badges"), ("programme", "0002_schedules")]

    operations = [migrations.RunPython(create, remove)]
