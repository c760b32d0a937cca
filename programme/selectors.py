"""Reads shared by the admin, the member pages and the API: plans on sale, a member's
membership and orders, the paid membership dashboard."""

import datetime as dt
from decimal import Decimal

from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncMonth
from django.utils import timezone

from loyalty.checkout import point_value
from members.models import Member

from .models import (
    Contribution,
    MemberBadge,
    Membership,
    PartnerEarn,
    PartnerVoucher,
    Plan,
    PlanGrant,
    PlanOrder,
    Transfer,
)


def plans_on_sale():
    return Plan.objects.filter(is_active=True).order_by("rank")


def membership_for(member: Member) -> Membership | None:
    return Membership.objects.select_related("plan").filter(member=member).first()


def orders_for(member: Member, *, limit: int = 20) -> list[PlanOrder]:
    return list(PlanOrder.objects.filter(member=member).select_related("plan").order_by("-created_at", "-id")[:limit])


def _month_starts(now: dt.datetime, months: int) -> list[dt.date]:
    first = timezone.localtime(now).date().replace(day=1)
    starts = []
    for _i in range(months):
        starts.append(first)
        first = (first - dt.timedelta(days=1)).replace(day=1)
    return starts


def dashboard(*, now: dt.datetime | None = None, months: int = 6) -> dict:
    """Paying members now, and per month (newest first): new and renewed paid orders,
    churned memberships (ended or refunded), the renewal rate (renewed / (renewed +
    churned)), revenue (orders paid that month, refunded later or not), refunds (by the
    month of the refund), and the benefit cost (welcome points, coupons given, and their
    cost in yuan). Five grouped queries, whatever the number of members."""
    now = now or timezone.now()
    starts = _month_starts(now, months)
    since = timezone.make_aware(dt.datetime.combine(starts[-1], dt.time.min))

    def by_month(queryset, field: str, **aggregates) -> dict:
        rows = (
            queryset.filter(**{f"{field}__gte": since})
            .annotate(month=TruncMonth(field))
            .values("month")
            .annotate(**aggregates)
            .order_by()
        )
        return {
            timezone.localtime(row["month"]).date() if isinstance(row["month"], dt.datetime) else row["month"]: row
            for row in rows
        }

    paid = by_month(
        PlanOrder.objects.filter(status__in=[PlanOrder.Status.PAID, PlanOrder.Status.REFUNDED]),
        "paid_at",
        new=Count("id", filter=Q(kind=PlanOrder.Kind.PURCHASE)),
        renewed=Count("id", filter=Q(kind=PlanOrder.Kind.RENEWAL)),
        revenue=Sum("amount"),
    )
    refunded = by_month(
        PlanOrder.objects.filter(status=PlanOrder.Status.REFUNDED), "refunded_at", refunded=Sum("amount")
    )
    churned = by_month(
        Membership.objects.filter(status__in=[Membership.Status.ENDED, Membership.Status.REFUNDED]),
        "ended_at",
        churned=Count("id"),
    )
    grants = by_month(
        PlanGrant.objects.all(),
        "created_at",
        welcome_points=Sum("points", filter=Q(kind=PlanGrant.Kind.WELCOME_POINTS)),
        coupons=Count("id", filter=Q(kind=PlanGrant.Kind.MONTHLY_COUPON)),
        coupon_yuan=Sum("coupon__value", filter=Q(kind=PlanGrant.Kind.MONTHLY_COUPON, coupon__kind="amount_off")),
    )
    yuan_per_point = point_value()
    out = []
    for start in starts:
        p, r, c, g = (table.get(start, {}) for table in (paid, refunded, churned, grants))
        renewed, lost = p.get("renewed", 0), c.get("churned", 0)
        out.append(
            {
                "month": f"{start:%Y-%m}",
                "new": p.get("new", 0),
                "renewed": renewed,
                "churned": lost,
                "renewal_rate": round(renewed / (renewed + lost), 4) if renewed + lost else None,
                "revenue": p.get("revenue") or Decimal("0.00"),
                "refunded": r.get("refunded") or Decimal("0.00"),
                "welcome_points": g.get("welcome_points") or 0,
                "coupons": g.get("coupons", 0),
                # What the benefits given cost in yuan: the welcome points at the points'
                # value, and the yuan-off coupons at their face value (percent-off and gift
                # coupons have no fixed cost: counted in ``coupons`` only).
                "benefit_cost": (
                    (g.get("welcome_points") or 0) * yuan_per_point + (g.get("coupon_yuan") or 0)
                ).quantize(Decimal("0.01")),
            }
        )
    paying = Membership.objects.filter(status=Membership.Status.ACTIVE, ends_at__gt=now, on_trial=False).count()
    return {"paying_members": paying, "months": out}


def transfers_for(member: Member, *, limit: int = 50) -> list:
    """The member's transfers, given and received, newest first, with both members."""
    return list(
        Transfer.objects.filter(Q(giver=member) | Q(receiver=member))
        .select_related("giver", "receiver")
        .order_by("-created_at", "-id")[:limit]
    )


def transfers_for_staff(*, status: str | None = None, member: Member | None = None, since=None, limit: int = 100):
    """Transfers for staff, filtered by status, a member on either side and a start time."""
    rows = Transfer.objects.select_related("giver", "receiver").order_by("-created_at", "-id")
    if status:
        rows = rows.filter(status=status)
    if member is not None:
        rows = rows.filter(Q(giver=member) | Q(receiver=member))
    if since is not None:
        rows = rows.filter(created_at__gte=since)
    return list(rows[:limit])


def member_programme_export(member: Member) -> dict:
    """The member's programme data for their privacy export (``operations.privacy``): paid
    membership and its orders, transfers given and received (the other member by number),
    badges, contribution, partner orders and vouchers. A fixed number of queries."""
    membership = (
        Membership.objects.filter(member=member)
        .values(
            "plan__code",
            "status",
            "started_at",
            "ends_at",
            "on_trial",
            "auto_renew",
            "auto_renew_consent_at",
            "cancelled_at",
        )
        .first()
    )
    transfers = []
    for row in (
        Transfer.objects.filter(Q(giver=member) | Q(receiver=member))
        .order_by("created_at", "id")
        .values(
            "giver_id",
            "giver__member_number",
            "receiver__member_number",
            "points",
            "message",
            "status",
            "created_at",
            "decided_at",
            "reversed_at",
            "reverse_reason",
        )
    ):
        given = row.pop("giver_id") == member.pk
        giver, receiver = row.pop("giver__member_number"), row.pop("receiver__member_number")
        transfers.append(
            {"direction": "given" if given else "received", "other_member": receiver if given else giver, **row}
        )
    return {
        "membership": membership,
        "plan_orders": list(
            PlanOrder.objects.filter(member=member)
            .order_by("created_at", "id")
            .values(
                "number",
                "plan__code",
                "kind",
                "amount",
                "status",
                "adapter",
                "created_at",
                "paid_at",
                "refunded_at",
                "refund_reason",
            )
        ),
        "transfers": transfers,
        "badges": list(
            MemberBadge.objects.filter(member=member)
            .order_by("awarded_at", "id")
            .values("badge__code", "badge__name", "source", "awarded_at", "reason", "revoked_at", "revoke_reason")
        ),
        "contributions": list(
            Contribution.objects.filter(member=member)
            .order_by("created_at", "id")
            .values("kind", "amount", "reason", "created_at")
        ),
        "partner_orders": list(
            PartnerEarn.objects.filter(member=member)
            .order_by("created_at", "id")
            .values("partner__code", "order_number", "amount", "points", "occurred_at", "created_at")
        ),
        "partner_vouchers": list(
            PartnerVoucher.objects.filter(member=member)
            .order_by("issued_at", "id")
            .values("partner__code", "offer__name", "code", "points", "status", "issued_at", "expires_at", "used_at")
        ),
    }
