"""Scheduled coupon jobs: birthday coupons, monthly benefit coupons, coupon expiry.

They use the jobs' lock (:func:`~core.jobs.guarded`) and member-id chunks
(:func:`~members.jobs.run_in_member_chunks`, one transaction per chunk). Inside a chunk
the work is set-based: one query for the eligible (member, benefit) pairs that have no
grant for the period yet, then one insert each for the grants
(``loyalty.services.benefit_grants_record``), the coupons
(``rewards.services.benefit_coupons_issue``, the bulk form of ``coupon_issue``) and the
notifications (``members.notifications.notices_enqueue``). The
unique keys (grant per member/benefit/period, coupon per member/benefit/period,
notification ``dedupe_key``) make a run without the lock harmless too: a conflicting row
is skipped, and the notices are built from the coupons actually in the database.
"""

import datetime as dt
import functools
from collections.abc import Callable

from django.db.models import Exists, OuterRef
from django.utils import timezone
from django.utils.translation import gettext_lazy

from core.jobs import guarded
from loyalty import services as loyalty_services
from loyalty.jobs import CATCH_UP_DAYS, birthday_filter, next_day
from loyalty.models import Benefit, BenefitGrant, MemberTier
from members.jobs import MEMBER_CHUNK, chunk_params_now, job_period_done, job_periods, run_in_member_chunks
from members.models import JobRun, Member, Notification
from members.notifications import Notice, in_languages, notices_enqueue

from . import services


def _start_of_day(day: dt.date) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))


def _issue_benefit_coupons(
    lo: int,
    hi: int,
    *,
    kind: str,
    period: str,
    now: dt.datetime,
    valid_from: dt.datetime,
    expires_at: Callable[[int], dt.datetime],
    notice_kind: str,
    dedupe_prefix: str,
    extra_filter=None,
) -> int:
    """Issue the ``kind`` benefit coupons of members ``[lo, hi)`` for ``period``; returns coupons issued.

    Once per member per period and benefit kind: a member who already has a grant of this
    kind for the period (say, from the tier held before an upgrade) gets nothing more.
    """
    already = BenefitGrant.objects.filter(member_id=OuterRef("member_id"), benefit__kind=kind, period=period)
    eligible = MemberTier.objects.filter(
        member_id__gte=lo,
        member_id__lt=hi,
        member__status=Member.Status.ACTIVE,
        tier__benefits__kind=kind,
        tier__benefits__is_active=True,
    ).filter(~Exists(already))
    if extra_filter is not None:
        eligible = eligible.filter(extra_filter)
    pairs = list(
        eligible.order_by("member_id", "tier__benefits__id").values_list(
            "member_id", "tier__benefits__id", "tier__benefits__value", "tier__benefits__title"
        )
    )
    if not pairs:
        return 0
    loyalty_services.benefit_grants_record(
        [(member_id, benefit_id) for member_id, benefit_id, _v, _t in pairs], period=period, now=now
    )
    benefits = Benefit.objects.in_bulk({b for _m, b, _v, _t in pairs})
    issued, new = services.benefit_coupons_issue(
        [(member_id, benefits[benefit_id], value, title) for member_id, benefit_id, value, title in pairs],
        period=period,
        valid_from=valid_from,
        expires_at=lambda benefit: expires_at(benefit.coupon_valid_days),
        now=now,
    )
    if notice_kind == Notification.Kind.BIRTHDAY_GIFT:
        heading = gettext_lazy("Happy birthday!")
        body = gettext_lazy("Happy birthday! A coupon is our gift to you: %(title)s, valid until %(date)s.")
    else:
        heading = gettext_lazy("Your monthly coupon")
        body = gettext_lazy("Your member benefit for this month: %(title)s, valid until %(date)s.")
    notices = []
    for member_id, benefit_id, _value, _title in pairs:
        coupon = issued.get((member_id, benefit_id))
        if coupon is None:
            continue
        expires_on = (timezone.localtime(coupon.expires_at) - dt.timedelta(seconds=1)).date().isoformat()
        notices.append(
            Notice(
                member_id=member_id,
                kind=notice_kind,
                title=heading,
                body=body,
                params={"title": in_languages(benefits[benefit_id], "title"), "date": expires_on},
                data={"benefit": benefit_id, "period": period, "coupon": coupon.pk},
                dedupe_key=f"{dedupe_prefix}:{benefit_id}:{period}:{member_id}",
            )
        )
    notices_enqueue(notices, now=now)
    return new


def _first_of_next_month(day: dt.date) -> dt.date:
    return (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)


@guarded("rewards.issue_birthday_coupons")
def issue_birthday_coupons(*, now: dt.datetime | None = None, size: int = MEMBER_CHUNK) -> dict:
    """Give members born today (local date) their tier's birthday coupon, once per year.

    The coupon is valid from the birthday until ``coupon_valid_days`` after today.

    Catches up: members born on any day since the last finished run (at most
    ``loyalty.jobs.CATCH_UP_DAYS``) get theirs too, in the year of that birthday; a late
    coupon keeps its full validity from the day it is issued.

    29 February birthdays fall on 28 February in other years (``loyalty.jobs.birthday_filter``).
    """
    now = now or timezone.now()
    today = timezone.localdate(now)
    days = job_periods("rewards.issue_birthday_coupons", current=today, following=next_day, limit=CATCH_UP_DAYS)
    coupons = chunks = 0
    longest = 0.0
    for day in days:
        step = functools.partial(
            _issue_benefit_coupons,
            kind=Benefit.Kind.BIRTHDAY_COUPON,
            period=str(day.year),
            now=now,
            valid_from=_start_of_day(day),
            expires_at=lambda valid_days: _start_of_day(today + dt.timedelta(days=valid_days)),
            notice_kind=Notification.Kind.BIRTHDAY_GIFT,
            dedupe_prefix="birthday-coupon",
            extra_filter=birthday_filter(day, prefix="member__"),
        )
        stats = run_in_member_chunks(step, size=size)
        coupons, chunks = coupons + stats["count"], chunks + stats["chunks"]
        longest = max(longest, stats["longest_chunk_s"])
        job_period_done("rewards.issue_birthday_coupons", period=day, now=now)
    return {"coupons": coupons, "days": len(days), "chunks": chunks, "longest_chunk_s": longest}


# A monthly job down longer than this catches up on this many months only (logged).
CATCH_UP_MONTHS = 2


@guarded("rewards.issue_monthly_benefits")
def issue_monthly_benefits(*, now: dt.datetime | None = None, size: int = MEMBER_CHUNK) -> dict:
    """Give every member their current tier's monthly coupons, once per month, valid to the month's end.

    Scheduled daily: a month already done costs one query. A month whose 1st was missed
    is done on the next run; a month already over when its coupons are issued (at most
    :data:`CATCH_UP_MONTHS` back) gets coupons valid to the end of the current month, so a
    member does not receive a coupon that has already expired.
    """
    now = now or timezone.now()
    today = timezone.localdate(now)
    current = today.replace(day=1)
    name = "rewards.issue_monthly_benefits"
    if JobRun.objects.filter(name=name, last_period__gte=current).exists():
        return {"coupons": 0, "months": 0, "chunks": 0, "longest_chunk_s": 0.0}
    months = job_periods(name, current=current, following=_first_of_next_month, limit=CATCH_UP_MONTHS)
    coupons = chunks = 0
    longest = 0.0
    for first in months:
        ends = max(_first_of_next_month(first), _first_of_next_month(today))
        step = functools.partial(
            _issue_benefit_coupons,
            kind=Benefit.Kind.MONTHLY_COUPON,
            period=f"{first:%Y-%m}",
            now=now,
            valid_from=_start_of_day(first),
            expires_at=lambda _days, ends=ends: _start_of_day(ends),
            notice_kind=Notification.Kind.MONTHLY_BENEFIT,
            dedupe_prefix="monthly-coupon",
        )
        stats = run_in_member_chunks(step, size=size)
        coupons, chunks = coupons + stats["count"], chunks + stats["chunks"]
        longest = max(longest, stats["longest_chunk_s"])
        job_period_done(name, period=first, now=now)
    return {"coupons": coupons, "months": len(months), "chunks": chunks, "longest_chunk_s": longest}


@guarded("rewards.expire_coupons")
def expire_coupons(*, now: dt.datetime | None = None, size: int = MEMBER_CHUNK) -> dict:
    """Mark issued coupons past their expiry as expired, one UPDATE per member-id chunk."""
    now = now or timezone.now()
    stats = run_in_member_chunks(lambda lo, hi: services.coupons_expire(now=now, member_ids=(lo, hi)), size=size)
    return {"expired": stats["count"], "chunks": stats["chunks"], "longest_chunk_s": stats["longest_chunk_s"]}


def expire_coupons_chunk(lo: int, hi: int, params: dict) -> int:
    """The chunk step of the ``rewards.expire_coupons`` task: the expired coupons of members ``[lo, hi)``."""
    return services.coupons_expire(now=chunk_params_now(params), member_ids=(lo, hi))
