"""The scheduled jobs' admin (django-celery-beat's ``PeriodicTask``) for operators: each job
named in the page's language and its schedule in words ("Daily at 04:00 (Asia/Shanghai)")
instead of a raw cron line. The editing form stays django-celery-beat's own.
"""

from django.contrib import admin
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django_celery_beat.admin import PeriodicTaskAdmin
from django_celery_beat.models import CrontabSchedule, PeriodicTask

# The jobs loyalty/management/commands/setup_periodic_tasks.py writes, by task.
TASK_LABELS = {
    "loyalty.release_matured_points": gettext_lazy("Release matured pending points"),
    "loyalty.expire_due_points": gettext_lazy("Expire due points"),
    "loyalty.evaluate_tiers": gettext_lazy("Evaluate tiers"),
    "loyalty.issue_birthday_benefits": gettext_lazy("Issue birthday benefits"),
    "rewards.issue_birthday_coupons": gettext_lazy("Issue birthday coupons"),
    "rewards.issue_monthly_benefits": gettext_lazy("Issue monthly benefits"),
    "rewards.expire_coupons": gettext_lazy("Expire coupons"),
    "loyalty.send_expiry_notices": gettext_lazy("Send expiry notices"),
    "members.refresh_lifecycle": gettext_lazy("Refresh lifecycle stages and RFM"),
    "engagement.run_journeys": gettext_lazy("Run journeys"),
    "engagement.reward_referrals": gettext_lazy("Reward referrals"),
    "members.send_notifications": gettext_lazy("Send notifications"),
}


def _number(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def crontab_in_words(crontab: CrontabSchedule) -> str:
    """The schedules our jobs use, in words; any other cron line as it is, with its zone."""
    minute, hour = crontab.minute, crontab.hour
    rest_any = crontab.day_of_week == "*" and crontab.month_of_year == "*"
    zone = str(crontab.timezone)
    m, h, day = _number(minute), _number(hour), _number(crontab.day_of_month)
    every_day = crontab.day_of_month == "*" and rest_any
    words = None
    if every_day and minute == "*" and hour == "*":
        words = _("Every minute")
    elif every_day and minute.startswith("*/") and _number(minute[2:]) and hour == "*":
        words = _("Every %(n)s minutes") % {"n": minute[2:]}
    elif every_day and m is not None and hour == "*":
        words = _("Every hour at :%(minute)02d") % {"minute": m}
    elif every_day and m is not None and h is not None:
        words = _("Daily at %(time)s") % {"time": f"{h:02d}:{m:02d}"}
    elif rest_any and day is not None and m is not None and h is not None:
        words = _("Monthly on day %(day)s at %(time)s") % {"day": day, "time": f"{h:02d}:{m:02d}"}
    if words is None:
        words = f"{minute} {hour} {crontab.day_of_month} {crontab.month_of_year} {crontab.day_of_week}"
    return f"{words} ({zone})"


admin.site.unregister(PeriodicTask)


@admin.register(PeriodicTask)
class ScheduledJobAdmin(PeriodicTaskAdmin):
    list_display = ("job", "enabled", "schedule", "last_run_at", "total_run_count")
    list_select_related = ("crontab", "interval", "solar", "clocked")

    @admin.display(description=gettext_lazy("job"), ordering="name")
    def job(self, task: PeriodicTask) -> str:
        return str(TASK_LABELS.get(task.task, task.name))

    @admin.display(description=gettext_lazy("schedule"))
    def schedule(self, task: PeriodicTask) -> str:
        if task.crontab_id:
            return crontab_in_words(task.crontab)
        return str(task.interval or task.solar or task.clocked or "–")
