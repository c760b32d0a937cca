"""Write the loyalty schedules into django-celery-beat's tables (idempotent).

Operators can then change them in the admin (Periodic tasks); a rerun restores the task
name and arguments but keeps an operator's schedule and enabled flag.
"""

from django.conf import settings
from django.core.management.base import BaseCommand
from django_celery_beat.models import CrontabSchedule, PeriodicTask

SCHEDULES = [
    # name, task, crontab (minute, hour), description
    (
        "Release matured pending points",
        "loyalty.release_matured_points",
        ("*/15", "*"),
        "Every 15 minutes: points whose order's return window ended become available.",
    ),
    (
        "Expire due points",
        "loyalty.expire_due_points",
        ("30", "0"),
        "Daily at 00:30: what is left of lots past their expiry date expires.",
    ),
]


class Command(BaseCommand):
    help = "Create the loyalty periodic tasks in django-celery-beat if they are missing."

    def handle(self, *args, **options):
        for name, task, (minute, hour), description in SCHEDULES:
            crontab, _ = CrontabSchedule.objects.get_or_create(
                minute=minute,
                hour=hour,
                day_of_week="*",
                day_of_month="*",
                month_of_year="*",
                timezone=settings.TIME_ZONE,
            )
            periodic, created = PeriodicTask.objects.get_or_create(
                name=name, defaults={"task": task, "crontab": crontab, "description": description}
            )
            if not created and periodic.task != task:
                periodic.task = task
                periodic.save(update_fields=["task"])
            self.stdout.write(f"{'created' if created else 'kept'}: {name} ({task})")
