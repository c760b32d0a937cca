"""The scheduled jobs' admin (django-celery-beat's ``PeriodicTask``) for operators: each job
named in the page's language and its schedule in words ("Daily at 04:00 (Asia/Shanghai)")
instead of a raw cron line; the editing form asks "how often, at what time" in words and
writes the cron line itself (``ScheduledJobForm``); cron, arguments and the other
django-celery-beat fields stay under "Advanced".
"""

import json

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django_celery_beat.admin import PeriodicTaskAdmin, PeriodicTaskForm
from django_celery_beat.models import CrontabSchedule, PeriodicTask, PeriodicTasks

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
    "operations.refresh_auto_tags": gettext_lazy("Refresh rule-based tags"),
    "webhooks.collect_and_dispatch": gettext_lazy("Deliver webhooks"),
    "bulk.resume_stalled": gettext_lazy("Resume stalled bulk jobs"),
    "operations.watch_jobs": gettext_lazy("Watch the jobs"),
    "foresight.leakage_scan": gettext_lazy("Scan for points leakage"),
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


class Repeat:
    DAILY = "daily"
    HOURLY = "hourly"
    MINUTES = "minutes"
    MONTHLY = "monthly"
    ADVANCED = "advanced"


def crontab_repeat(crontab: CrontabSchedule | None) -> dict:
    """The form's initial "how often" for a cron line of a shape it knows; else advanced."""
    if crontab is None:
        return {"repeat": Repeat.ADVANCED}
    minute, hour, day = crontab.minute, crontab.hour, crontab.day_of_month
    m, h, d = _number(minute), _number(hour), _number(day)
    if crontab.day_of_week != "*" or crontab.month_of_year != "*":
        return {"repeat": Repeat.ADVANCED}
    if day == "*" and m is not None and h is not None:
        return {"repeat": Repeat.DAILY, "at_time": f"{h:02d}:{m:02d}"}
    if day == "*" and m is not None and hour == "*":
        return {"repeat": Repeat.HOURLY, "at_minute": m}
    if day == "*" and hour == "*" and minute.startswith("*/") and _number(minute[2:]):
        return {"repeat": Repeat.MINUTES, "every_minutes": int(minute[2:])}
    if d is not None and m is not None and h is not None:
        return {"repeat": Repeat.MONTHLY, "day_of_month": d, "at_time": f"{h:02d}:{m:02d}"}
    return {"repeat": Repeat.ADVANCED}


class ScheduledJobForm(PeriodicTaskForm):
    """django-celery-beat's form with "how often" in words in front: an operator picks daily
    at 04:00, hourly at :30, every 5 minutes or monthly on day 1 at 09:00, and the form finds
    or makes the cron line (in ``TIME_ZONE``). "Advanced" keeps the raw fields."""

    repeat = forms.ChoiceField(
        label=gettext_lazy("How often"),
        choices=[
            (Repeat.DAILY, gettext_lazy("Every day at a time")),
            (Repeat.HOURLY, gettext_lazy("Every hour at a minute")),
            (Repeat.MINUTES, gettext_lazy("Every few minutes")),
            (Repeat.MONTHLY, gettext_lazy("Every month on a day at a time")),
            (Repeat.ADVANCED, gettext_lazy("Advanced: the schedule set below")),
        ],
        initial=Repeat.DAILY,
    )
    at_time = forms.TimeField(
        label=gettext_lazy("At (hh:mm)"),
        required=False,
        input_formats=["%H:%M"],
        widget=forms.TimeInput(format="%H:%M", attrs={"type": "time"}),
        help_text=gettext_lazy("For every day and every month."),
    )
    at_minute = forms.IntegerField(
        label=gettext_lazy("At minute"), required=False, min_value=0, max_value=59, help_text=gettext_lazy("0-59.")
    )
    every_minutes = forms.IntegerField(
        label=gettext_lazy("Every (minutes)"), required=False, min_value=1, max_value=59, help_text="1-59."
    )
    day_of_month = forms.IntegerField(
        label=gettext_lazy("On day of the month"),
        required=False,
        min_value=1,
        max_value=28,
        help_text=gettext_lazy("1-28, so every month has it."),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk and not self.is_bound:
            for name, value in crontab_repeat(self.instance.crontab).items():
                self.initial[name] = value

    def clean(self):
        repeat = self.cleaned_data.get("repeat")
        if repeat and repeat != Repeat.ADVANCED:
            self.cleaned_data.update(crontab=self._crontab(repeat), interval=None, solar=None, clocked=None)
        return super().clean()

    def _crontab(self, repeat: str) -> CrontabSchedule | None:
        data = self.cleaned_data
        needs = {
            Repeat.DAILY: ["at_time"],
            Repeat.HOURLY: ["at_minute"],
            Repeat.MINUTES: ["every_minutes"],
            Repeat.MONTHLY: ["day_of_month", "at_time"],
        }[repeat]
        missing = [name for name in needs if data.get(name) is None]
        for name in missing:
            self.add_error(name, _("Fill this in for the schedule you chose."))
        if missing:
            return None
        at = data.get("at_time")
        minute, hour, day = {
            Repeat.DAILY: lambda: (str(at.minute), str(at.hour), "*"),
            Repeat.HOURLY: lambda: (str(data["at_minute"]), "*", "*"),
            Repeat.MINUTES: lambda: (f"*/{data['every_minutes']}", "*", "*"),
            Repeat.MONTHLY: lambda: (str(at.minute), str(at.hour), str(data["day_of_month"])),
        }[repeat]()
        crontab, _created = CrontabSchedule.objects.get_or_create(
            minute=minute,
            hour=hour,
            day_of_month=day,
            month_of_year="*",
            day_of_week="*",
            timezone=settings.TIME_ZONE,
        )
        return crontab


class TaskFilter(admin.SimpleListFilter):
    """The job's task by its name in the page's language (django-celery-beat's own filter
    is titled with an untranslatable "Task Name")."""

    title = gettext_lazy("task")
    parameter_name = "task"

    def lookups(self, request, model_admin):
        return list(TASK_LABELS.items())

    def queryset(self, request, queryset):
        return queryset.filter(task=self.value()) if self.value() else queryset


admin.site.unregister(PeriodicTask)


@admin.register(PeriodicTask)
class ScheduledJobAdmin(PeriodicTaskAdmin):
    form = ScheduledJobForm
    list_filter = ("enabled", TaskFilter, "last_run_at")
    list_display = ("job", "enabled", "schedule", "last_run_at", "total_run_count")
    list_select_related = ("crontab", "interval", "solar", "clocked")
    readonly_fields = ("last_run_at",)
    fieldsets = (
        (None, {"fields": ("name", "enabled", "description")}),
        (
            gettext_lazy("When it runs"),
            {"fields": ("repeat", "at_time", "at_minute", "every_minutes", "day_of_month")},
        ),
        (
            gettext_lazy("Advanced: task, cron, arguments"),
            {
                "fields": (
                    "regtask",
                    "task",
                    "interval",
                    "crontab",
                    "solar",
                    "clocked",
                    "start_time",
                    "last_run_at",
                    "one_off",
                    "args",
                    "kwargs",
                    "expires",
                    "expire_seconds",
                    "queue",
                    "exchange",
                    "routing_key",
                    "priority",
                    "headers",
                ),
                "classes": ("collapse",),
            },
        ),
    )

    # django-celery-beat's own actions build their messages from English fragments
    # ("{0} task{1} {2} successfully run", "was,were"), which no catalogue can translate
    # ("1 任务 启动成功"); the same actions here say it in one sentence of ours.

    def _done(self, request, message: str, count: int):
        self.message_user(request, message % {"n": count}, messages.SUCCESS)

    @admin.action(description=gettext_lazy("Enable selected jobs"))
    def enable_tasks(self, request, queryset):
        count = queryset.update(enabled=True)
        PeriodicTasks.update_changed()
        self._done(request, ngettext("%(n)d job enabled.", "%(n)d jobs enabled.", count), count)

    @admin.action(description=gettext_lazy("Disable selected jobs"))
    def disable_tasks(self, request, queryset):
        count = queryset.update(enabled=False, last_run_at=None)
        PeriodicTasks.update_changed()
        self._done(request, ngettext("%(n)d job disabled.", "%(n)d jobs disabled.", count), count)

    @admin.action(description=gettext_lazy("Switch selected jobs on or off"))
    def toggle_tasks(self, request, queryset):
        count = self._toggle_tasks_activity(queryset)
        PeriodicTasks.update_changed()
        self._done(request, ngettext("%(n)d job switched on or off.", "%(n)d jobs switched on or off.", count), count)

    @admin.action(description=gettext_lazy("Run selected jobs now"))
    def run_tasks(self, request, queryset):
        self.celery_app.loader.import_default_modules()
        jobs = list(queryset)
        missing = [job for job in jobs if self.celery_app.tasks.get(job.task) is None]
        if missing:
            self.message_user(
                request,
                _("No worker task is called “%(task)s”; nothing was run.") % {"task": missing[0].task},
                messages.ERROR,
            )
            return
        for job in jobs:
            options = {"queue": job.queue} if job.queue else {}
            self.celery_app.tasks[job.task].apply_async(
                args=json.loads(job.args or "[]"),
                kwargs=json.loads(job.kwargs or "{}"),
                headers={"periodic_task_name": job.name},
                **options,
            )
        started = len(jobs)
        self._done(
            request,
            ngettext(
                "%(n)d job started; it runs in the background.",
                "%(n)d jobs started; they run in the background.",
                started,
            ),
            started,
        )

    @admin.display(description=gettext_lazy("job"), ordering="name")
    def job(self, task: PeriodicTask) -> str:
        return str(TASK_LABELS.get(task.task, task.name))

    @admin.display(description=gettext_lazy("schedule"))
    def schedule(self, task: PeriodicTask) -> str:
        if task.crontab_id:
            return crontab_in_words(task.crontab)
        return str(task.interval or task.solar or task.clocked or "–")
