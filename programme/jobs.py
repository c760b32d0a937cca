"""Scheduled paid membership jobs: automatic renewals, and the daily housekeeping (renewal
notices, ending memberships whose time ran out, the monthly coupon packs).

Both are guarded (one process at a time) and safe to run twice: a renewal order is unique
per member and period renewed (``plan_order_one_renewal_per_period``), a notice per dedupe
key, a coupon of the pack per member, month and place. The renewals walk the due
memberships one by one because each is a call to the payment platform; the set is the
memberships ending within ``PROGRAMME_RENEW_AHEAD_HOURS``, a small share of all members.
"""

import datetime as dt
import logging

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone
from django.utils.translation import gettext_lazy

from core.errors import LoyaltyError
from core.jobs import guarded
from members.jobs import MEMBER_CHUNK, run_in_member_chunks
from members.notifications import notices_enqueue

from . import badges, contribution, services, transfers
from .models import Membership, PlanGrant, PlanOrder
from .payments import get_adapter

logger = logging.getLogger(__name__)


def _renewal_open(membership: Membership, now: dt.datetime) -> PlanOrder | None:
    """The renewal order of the membership's current period, or None if one exists already."""
    try:
        with transaction.atomic():
            return PlanOrder.objects.create(
                member_id=membership.member_id,
                plan=membership.plan,
                number=services._order_number(),
                # A trial's first charge is its purchase: it brings the welcome gift.
                kind=PlanOrder.Kind.PURCHASE if membership.on_trial else PlanOrder.Kind.RENEWAL,
                amount=membership.plan.price,
                adapter=settings.PROGRAMME_PAYMENT_ADAPTER,
                auto_renew=True,
                auto_renew_consent_at=membership.auto_renew_consent_at,
                renews_from=membership.ends_at,
                created_at=now,
            )
    except IntegrityError:
        return None


def _due_for_renewal(now: dt.datetime):
    ahead = now + dt.timedelta(hours=settings.PROGRAMME_RENEW_AHEAD_HOURS)
    tried = PlanOrder.objects.filter(member_id=OuterRef("member_id"), renews_from=OuterRef("ends_at"))
    return (
        Membership.objects.filter(
            status=Membership.Status.ACTIVE,
            auto_renew=True,
            auto_renew_consent_at__isnull=False,
            ends_at__gt=now,
            ends_at__lte=ahead,
            plan__is_active=True,
        )
        .exclude(Exists(tried))
        .select_related("plan", "member")
        .order_by("id")
    )


@guarded("programme.renew_memberships")
def memberships_renew(*, now: dt.datetime | None = None) -> dict:
    """Charge the memberships with auto-renew (and the member's recorded consent) that end
    within ``PROGRAMME_RENEW_AHEAD_HOURS``, once per period. A charge that the adapter
    answers at once goes through the same verification as a notification; a refused one
    fails the order and tells the member to renew by hand."""
    now = now or timezone.now()
    counts = {"charged": 0, "waiting": 0, "failed": 0}
    for membership in _due_for_renewal(now):
        order = _renewal_open(membership, now)
        if order is None:
            continue
        try:
            signed = get_adapter(order.adapter).charge(order)
            if signed is None:
                counts["waiting"] += 1
                continue
            services.payment_notification_handle(
                adapter=order.adapter, headers=signed.headers, body=signed.body, now=now
            )
            counts["charged"] += 1
        except LoyaltyError as error:
            logger.warning("renewal %s failed: %s", order.number, error)
            services.plan_order_failed(order_number=order.number, reason=str(error.message))
            notices_enqueue(
                [
                    services._notice(
                        order.member_id,
                        f"renewal-failed:{order.pk}",
                        gettext_lazy("We could not renew %(plan)s"),
                        gettext_lazy(
                            "The charge did not go through. Renew by hand before %(date)s to keep your benefits."
                        ),
                        {"plan": order.plan.name, "date": f"{timezone.localtime(membership.ends_at):%Y-%m-%d}"},
                    )
                ],
                now=now,
            )
            counts["failed"] += 1
    return counts


@guarded("programme.membership_housekeeping")
def memberships_housekeeping(*, now: dt.datetime | None = None) -> dict:
    """End the memberships whose time ran out, send renewal notices
    ``PROGRAMME_RENEWAL_NOTICE_DAYS`` before the end (once per period), give this month's
    coupon packs not given yet, give back transfers nobody accepted in time, give the
    contribution of rewarded referrals."""
    now = now or timezone.now()
    with transaction.atomic():
        ending = list(
            Membership.objects.select_for_update()
            .filter(status=Membership.Status.ACTIVE, ends_at__lte=now)
            .select_related("plan")
        )
        Membership.objects.filter(pk__in=[m.pk for m in ending]).update(status=Membership.Status.ENDED, ended_at=now)
        notices_enqueue(
            [
                services._notice(
                    m.member_id,
                    f"ended:{m.pk}:{m.ends_at:%Y%m%d}",
                    gettext_lazy("Your %(plan)s membership has ended"),
                    gettext_lazy("Buy %(plan)s again in the member center to get its benefits back."),
                    {"plan": m.plan.name},
                )
                for m in ending
            ],
            now=now,
        )
    soon = now + dt.timedelta(days=settings.PROGRAMME_RENEWAL_NOTICE_DAYS)
    due = Membership.objects.filter(status=Membership.Status.ACTIVE, ends_at__gt=now, ends_at__lte=soon).select_related(
        "plan"
    )
    notices = []
    for m in due:
        date = f"{timezone.localtime(m.ends_at):%Y-%m-%d}"
        if m.auto_renew:
            title = gettext_lazy("%(plan)s renews on %(date)s")
            body = gettext_lazy(
                "We will charge %(price)s yuan for the next period. Cancel in the member center to stop it."
            )
        else:
            title = gettext_lazy("%(plan)s ends on %(date)s")
            body = gettext_lazy("Renew in the member center for %(price)s yuan to keep your benefits.")
        notices.append(
            services._notice(
                m.member_id,
                f"renewal-notice:{m.pk}:{m.ends_at:%Y%m%d}",
                title,
                body,
                {"plan": m.plan.name, "date": date, "price": m.plan.price},
            )
        )
    noticed = notices_enqueue(notices, now=now)
    month = services._month(now)
    given = PlanGrant.objects.filter(member_id=OuterRef("member_id"), kind=PlanGrant.Kind.MONTHLY_COUPON, period=month)
    coupons = 0
    for membership in (
        Membership.objects.filter(status=Membership.Status.ACTIVE, ends_at__gt=now, plan__monthly_coupon_count__gt=0)
        .exclude(Exists(given))
        .select_related("plan", "member")
    ):
        with transaction.atomic():
            coupons += services._monthly_coupons_give(membership, order=None, now=now)
    returned = transfers.transfers_return_unanswered(now=now)
    referrals = contribution.referrals_contribute(now=now)
    return {
        "ended": len(ending),
        "noticed": noticed,
        "coupons": coupons,
        "transfers_returned": returned,
        "referral_contributions": referrals,
    }


@guarded("programme.badges_sweep")
def badges_sweep(*, now: dt.datetime | None = None, size: int = MEMBER_CHUNK) -> dict:
    """Award every active badge its members meet and do not hold (the conditions over a
    time window, and the events that sent no signal): per member-id chunk, one query per
    badge, then the awards. Safe to run twice: a badge is held once per member."""
    now = now or timezone.now()
    return run_in_member_chunks(lambda lo, hi: badges.badges_award_range(lo, hi, now=now), size=size)
