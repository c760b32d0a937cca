"""The paid membership jobs' schedules in django-celery-beat, on the ledger queue.

Written once (get_or_create): operators may change them in the admin afterwards.
Times are local (TIME_ZONE), clear of 01:00-03:00 like the other daily jobs.
"""

from django.conf import settings
from django.db import migrations

SCHEDULES = [
    (
        "Renew paid memberships",
        "programme.renew_memberships",
        ("20", "*"),
        "Hourly at :20: memberships with auto-renew (and consent) ending within PROGRAMME_RENEW_AHEAD_HOURS "
        "are charged, once per period.",
    ),
    (
        "Paid membership housekeeping",
        "programme.membership_housekeeping",
        ("50", "7"),
        "Daily at 07:50: memberships past their end end; renewal notices PROGRAMME_RENEWAL_NOTICE_DAYS ahead; "
        "this month's coupon packs.",
    ),
]


def create(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, (minute, hour), description in SCHEDULES:
        crontab, _ = CrontabSchedule.objects.get_or_create(
            minute=minute, hour=hour, day_of_week="*", day_of_month="*", month_of_year="*", timezone=settings.TIME_ZONE
        )
        PeriodicTask.objects.get_or_create(
            name=name, defaults={"task": task, "crontab": crontab, "description": description, "queue": "ledger"}
        )


def remove(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(task__in=[task for _n, task, _c, _d in SCHEDULES]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("programme", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, remove)]
