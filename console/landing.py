"""The admin's index page: what a brand admin looks at first (``UNFOLD["DASHBOARD_CALLBACK"]``).

A few figures, the shortcuts a shift starts with, and the "needs attention" list: imports
waiting for confirmation, failed imports, scheduled jobs that have not finished lately,
notices not delivered, messages that failed today, webhook deliveries that failed, open refund
shortfalls, open leakage cases (foresight) and staff adjustments close to their limit.
Each item links to the admin list of those rows. A handful of small queries, whatever the
size of the tables (counts over indexed columns, at most ``NEAR_LIMIT_SCAN`` recent actions).
"""

import datetime as dt
from dataclasses import dataclass
from urllib.parse import urlencode

from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from foresight.selectors import open_cases_count
from loyalty.models import Account
from members.models import ImportJob, JobRun, Member, Notification, StaffAction, StaffProfile
from members.scoping import sees_everything

from .navigation import role_name
from .selectors import deliveries_today, start_of_today, webhook_failures

JOB_STALE_AFTER = dt.timedelta(days=2)
UNSENT_AFTER = dt.timedelta(hours=1)
FAILED_IMPORTS_SINCE = dt.timedelta(days=7)
NEAR_LIMIT_SINCE = dt.timedelta(days=7)
NEAR_LIMIT_SHARE = 0.8
NEAR_LIMIT_SCAN = 500


@dataclass(frozen=True)
class Attention:
    code: str
    text: str
    count: int
    url: str
    level: str  # "warning" or "danger"


def _changelist(app_model: str, **query) -> str:
    try:
        url = reverse(f"admin:{app_model}_changelist")
    except NoReverseMatch:
        return ""
    return f"{url}?{urlencode(query)}" if query else url


def _near_limit(now) -> list[tuple[str, int, int]]:
    """(staff name, largest recent adjustment, their limit) for adjustments >= 80 % of the limit."""
    limits = dict(StaffProfile.objects.filter(adjust_limit__isnull=False).values_list("user_id", "adjust_limit"))
    if not limits:
        return []
    actions = (
        StaffAction.objects.filter(
            action=StaffAction.Action.ADJUST_POINTS, created_at__gte=now - NEAR_LIMIT_SINCE, actor_id__in=list(limits)
        )
        .order_by("-created_at")
        .values_list("actor_id", "actor_name", "detail")[:NEAR_LIMIT_SCAN]
    )
    largest: dict[int, tuple[str, int]] = {}
    for actor_id, name, detail in actions:
        amount = abs(int((detail or {}).get("amount") or 0))
        if amount >= NEAR_LIMIT_SHARE * limits[actor_id] and amount > largest.get(actor_id, ("", -1))[1]:
            largest[actor_id] = (name, amount)
    return sorted(((name, amount, limits[actor]) for actor, (name, amount) in largest.items()), key=lambda r: r[0])


def needs_attention(user, *, now=None) -> list[Attention]:
    """What a brand admin should look at today; empty for scoped staff (they see their stores' pages)."""
    if not sees_everything(user):
        return []
    now = now or timezone.now()
    items: list[Attention] = []
    waiting = ImportJob.objects.filter(status=ImportJob.Status.CHECKED).count()
    if waiting:
        text = ngettext(
            "%(n)s member import checked and waiting for your confirmation",
            "%(n)s member imports checked and waiting for your confirmation",
            waiting,
        ) % {"n": f"{waiting:,}"}
        items.append(
            Attention("import_waiting", text, waiting, _changelist("members_importjob", status="checked"), "warning")
        )
    failed = ImportJob.objects.filter(
        status__in=[ImportJob.Status.FAILED, ImportJob.Status.INVALID], created_at__gte=now - FAILED_IMPORTS_SINCE
    ).count()
    if failed:
        text = ngettext(
            "%(n)s member import failed or has errors this week",
            "%(n)s member imports failed or have errors this week",
            failed,
        ) % {"n": f"{failed:,}"}
        items.append(Attention("import_failed", text, failed, _changelist("members_importjob"), "danger"))
    for job in JobRun.objects.filter(last_success_at__lt=now - JOB_STALE_AFTER).order_by("name")[:10]:
        days = (now - job.last_success_at).days
        text = ngettext(
            "Scheduled job “%(job)s” last finished %(days)s day ago: check the workers and beat",
            "Scheduled job “%(job)s” last finished %(days)s days ago: check the workers and beat",
            days,
        ) % {"job": job.name, "days": days}
        items.append(Attention("job_stale", text, days, _changelist("django_celery_beat_periodictask"), "danger"))
    unsent = Notification.objects.filter(sent_at__isnull=True, created_at__lt=now - UNSENT_AFTER).count()
    if unsent:
        text = ngettext(
            "%(n)s notice to members not delivered for over an hour",
            "%(n)s notices to members not delivered for over an hour",
            unsent,
        ) % {"n": f"{unsent:,}"}
        items.append(Attention("notices_unsent", text, unsent, "", "danger"))
    failed_today = deliveries_today(now=now).failed
    if failed_today:
        text = ngettext(
            "%(n)s message to members failed today (SMS, WeChat or email)",
            "%(n)s messages to members failed today (SMS, WeChat or email)",
            failed_today,
        ) % {"n": f"{failed_today:,}"}
        today = start_of_today(now)
        url = _changelist(
            "outreach_delivery",
            status__exact="failed",
            created_at__year=today.year,
            created_at__month=today.month,
            created_at__day=today.day,
        )
        url = url if user.has_perm("outreach.view_delivery") else ""
        items.append(Attention("deliveries_failed", text, failed_today, url, "danger"))
    hooks = webhook_failures(now=now)
    if hooks:
        text = ngettext(
            "%(n)s webhook delivery to a shop system failed this week",
            "%(n)s webhook deliveries to shop systems failed this week",
            hooks,
        ) % {"n": f"{hooks:,}"}
        url = _changelist("webhooks_webhookdelivery", status__exact="failed")
        url = url if user.has_perm("webhooks.view_webhookdelivery") else ""
        items.append(Attention("webhooks_failed", text, hooks, url, "danger"))
    owed = Account.objects.filter(owed__gt=0).count()
    if owed:
        text = ngettext(
            "%(n)s account owes points after a refund (open refund shortfall)",
            "%(n)s accounts owe points after a refund (open refund shortfalls)",
            owed,
        ) % {"n": f"{owed:,}"}
        items.append(Attention("refund_shortfall", text, owed, _changelist("loyalty_account", owed__gt=0), "warning"))
    cases = open_cases_count(user)
    if cases:
        text = ngettext(
            "%(n)s possible leak of points is waiting for review",
            "%(n)s possible leaks of points are waiting for review",
            cases,
        ) % {"n": f"{cases:,}"}
        items.append(
            Attention(
                "leakage_open", text, cases, _changelist("foresight_leakagecase", status__exact="open"), "warning"
            )
        )
    for name, amount, limit in _near_limit(now):
        text = _("%(staff)s adjusted %(amount)s points at once this week; their limit is %(limit)s") % {
            "staff": name,
            "amount": f"{amount:,}",
            "limit": f"{limit:,}",
        }
        items.append(
            Attention(
                "near_limit",
                text,
                amount,
                _changelist("members_staffaction", action__exact=StaffAction.Action.ADJUST_POINTS),
                "warning",
            )
        )
    return items


def index_context(request, context: dict) -> dict:
    """Unfold's dashboard callback: the role, the shortcuts and the attention list."""
    user = request.user
    context.update(
        {
            "role_name": role_name(user),
            "attention": needs_attention(user),
            "attention_checked": sees_everything(user),
            "member_search_url": _changelist("members_member"),
            "member_count": None,
            "deliveries_today": None,
        }
    )
    if sees_everything(user):
        context["deliveries_today"] = deliveries_today(now=timezone.now())
    if user.has_perm("members.view_member") and sees_everything(user):
        context["member_count"] = f"{Member.objects.filter(status=Member.Status.ACTIVE).count():,}"
    return context
