"""Write the scheduled jobs into django-celery-beat's tables (idempotent).

Operators can then change them in the admin (Periodic tasks); a rerun restores the task
name but keeps an operator's schedule and enabled flag, and adds schedules that are new.

Times are local (``settings.TIME_ZONE``, Asia/Shanghai by default, which has no daylight
saving time). No daily job runs between 01:00 and 03:00: in a zone with daylight saving
time that hour is skipped once a year (the job would not run that day) and repeated once
(it would run twice). The jobs are safe to run twice, but a skipped expiry or birthday
run is a visible mistake, so the schedule keeps clear of it wherever it is deployed.
"""

from django.conf import settings
from django.core.management.base import BaseCommand
from django_celery_beat.models import CrontabSchedule, PeriodicTask

SCHEDULES = [
    # name, task, crontab (minute, hour[, day of month]), description
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
    (
        "Evaluate tiers",
        "loyalty.evaluate_tiers",
        ("30", "3"),
        "Daily at 03:30, after expiry: upgrades, and downgrades of members whose review date has come.",
    ),
    (
        "Issue birthday benefits",
        "loyalty.issue_birthday_benefits",
        ("0", "8"),
        "Daily at 08:00: members born today get their tier's birthday points, once a year.",
    ),
    (
        "Issue birthday coupons",
        "rewards.issue_birthday_coupons",
        ("5", "8"),
        "Daily at 08:05: members born today get their tier's birthday coupon, once a year.",
    ),
    (
        "Issue monthly benefits",
        "rewards.issue_monthly_benefits",
        ("10", "8"),
        "Daily at 08:10: on the first run of a month (the 1st, or the next day the job runs) members get "
        "their tier's monthly coupons, valid to the month's end; the other days it finds the month done.",
    ),
    (
        "Expire coupons",
        "rewards.expire_coupons",
        ("40", "0"),
        "Daily at 00:40: issued coupons past their expiry date become expired.",
    ),
    (
        "Send expiry notices",
        "loyalty.send_expiry_notices",
        ("0", "10"),
        "Daily at 10:00: members are told about points expiring within LOYALTY_EXPIRY_NOTICE_DAYS, once per lot.",
    ),
    (
        "Refresh lifecycle stages and RFM",
        "members.refresh_lifecycle",
        ("0", "4"),
        "Daily at 04:00: order figures, lifecycle stage and RFM scores of every member; stage moves are recorded.",
    ),
    (
        "Refresh rule-based tags",
        "operations.refresh_auto_tags",
        ("45", "4"),
        "Daily at 04:45, after the lifecycle refresh: each rule-based tag's members made its segment's.",
    ),
    (
        "Run journeys",
        "engagement.run_journeys",
        ("30", "*"),
        "Hourly at :30: every active journey's triggers since its last run; "
        "in a journey's quiet hours its actions wait for a later run.",
    ),
    (
        "Reward referrals",
        "engagement.reward_referrals",
        ("15", "*"),
        "Hourly at :15: referrals whose first order is past its return window and not refunded "
        "earn both members their bonus.",
    ),
    (
        "Send notifications",
        "members.send_notifications",
        ("*", "*"),
        "Every minute: deliver unsent notifications from the outbox through the configured sender.",
    ),
    (
        "Deliver webhooks",
        "webhooks.collect_and_dispatch",
        ("*", "*"),
        "Every minute: turn the changes committed since the last run into events and deliver them to the "
        "shop systems' endpoints, with retries (docs/webhooks.md).",
    ),
    (
        "Resume stalled bulk jobs",
        "bulk.resume_stalled",
        ("*/5", "*"),
        "Every five minutes: a confirmed bulk award or order batch that made no progress for ten minutes "
        "(its chunk tasks were lost) gets its pending chunks queued again (docs/bulk.md).",
    ),
    (
        "Watch the jobs",
        "operations.watch_jobs",
        ("*/5", "*"),
        "Every 5 minutes: send again the chunks of a job run that stopped progressing, a scheduled task "
        "that was lost, and stuck member imports (docs/jobs.md).",
    ),
    (
        "Scan for points leakage",
        "foresight.leakage_scan",
        ("15", "4"),
        "Daily at 04:15: open refund shortfalls, late refunds, farming patterns, ping-pong transfers and "
        "adjustments near staff limits become leakage cases for staff to resolve (docs/foresight.md).",
    ),
]


class Command(BaseCommand):
    help = "Create the loyalty periodic tasks in django-celery-beat if they are missing."

    def handle(self, *args, **options):
        for name, task, (minute, hour, *day), description in SCHEDULES:
            fields = {
                "minute": minute,
                "hour": hour,
                "day_of_week": "*",
                "day_of_month": day[0] if day else "*",
                "month_of_year": "*",
                "timezone": settings.TIME_ZONE,
            }
            # An operator may have made the same schedule twice in the admin: take the first.
            crontab = CrontabSchedule.objects.filter(**fields).order_by("pk").first()
            if crontab is None:
                crontab = CrontabSchedule.objects.create(**fields)
            periodic, created = PeriodicTask.objects.get_or_create(
                name=name, defaults={"task": task, "crontab": crontab, "description": description}
            )
            if not created and periodic.task != task:
                periodic.task = task
                periodic.save(update_fields=["task"])
            self.stdout.write(f"{'created' if created else 'kept'}: {name} ({task})")
