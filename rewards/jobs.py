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
from loyalty.jobs import birthday_filter
from loyalty.models import Benefit, BenefitGrant, MemberTier
from members.jobs import MEMBER_CHUNK, run_in_member_chunks
from members.models import Member, Notification
from members.notifications import Notice, notices_enqueue

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
    for member_id, benefit_id, _value, title in pairs:
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
                params={"title": title, "date": expires_on},
                data={"benefit": benefit_id, "period": period, "coupon": coupon.pk},
                dedupe_key=f"{dedupe_prefix}:{benefit_id}:{period}:{member_id}",
            )
        )
    notices_enqueue(notices, now=now)
    return new


@guarded("rewards.issue_birthday_coupons")
def issue_birthday_coupons(*, now: dt.datetime | None = None, size: int = MEMBER_CHUNK) -> dict:
    """Give members born today (local date) their tier's birthday coupon, once per year.

    The coupon is valid from today for the benefit's ``coupon_valid_days``.

    29 February birthdays fall on 28 February in other years (``loyalty.jobs.birthday_filter``).
    """
    now = now or timezone.now()
    today = timezone.localdate(now)
    valid_from = _start_of_day(today)
    step = functools.partial(
        _issue_benefit_coupons,
        kind=Benefit.Kind.BIRTHDAY_COUPON,
        period=str(today.year),
        now=now,
        valid_from=valid_from,
        expires_at=lambda days: _start_of_day(today + dt.timedelta(days=days)),
        notice_kind=Notification.Kind.BIRTHDAY_GIFT,
        dedupe_prefix="birthday-coupon",
        extra_filter=birthday_filter(today, prefix="member__"),
    )
    stats = run_in_member_chunks(step, size=size)
    return {"coupons": stats["count"], "chunks": stats["chunks"], "longest_chunk_s": stats["longest_chunk_s"]}


@guarded("rewards.issue_monthly_benefits")
def issue_monthly_benefits(*, now: dt.datetime | None = None, size: int = MEMBER_CHUNK) -> dict:
    """Give every member their current tier's monthly coupons, once per month, valid to the month's end."""
    now = now or timezone.now()
    today = timezone.localdate(now)
    first = today.replace(day=1)
    next_month = (first + dt.timedelta(days=32)).replace(day=1)
    step = functools.partial(
        _issue_benefit_coupons,
        kind=Benefit.Kind.MONTHLY_COUPON,
        period=f"{today:%Y-%m}",
        now=now,
        valid_from=_start_of_day(first),
        expires_at=lambda _days: _start_of_day(next_month),
        notice_kind=Notification.Kind.MONTHLY_BENEFIT,
        dedupe_prefix="monthly-coupon",
    )
    stats = run_in_member_chunks(step, size=size)
    return {"coupons": stats["count"], "chunks": stats["chunks"], "longest_chunk_s": stats["longest_chunk_s"]}


@guarded("rewards.expire_coupons")
def expire_coupons(*, now: dt.datetime | None = None, size: int = MEMBER_CHUNK) -> dict:
    """Mark issued coupons past their expiry as expired, one UPDATE per member-id chunk."""
    now = now or timezone.now()
    stats = run_in_member_chunks(lambda lo, hi: services.coupons_expire(now=now, member_ids=(lo, hi)), size=size)
    return {"expired": stats["count"], "chunks": stats["chunks"], "longest_chunk_s": stats["longest_chunk_s"]}
