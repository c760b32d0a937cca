"""Customer value figures for a set of members: a segment, a store's members or everybody.

Every figure is defined in docs/segments.md. ``member_metrics`` runs two aggregate
queries whatever the number of members or orders: one counts the members, the other
groups their purchases by member inside the database and aggregates the groups.

A purchase is an order not refunded in full (status ``refunded``); its net spend is
``amount − refunded_amount`` yuan (the part paid with points included: it is still a sale).
"""

import datetime as dt
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import Count, DecimalField, F, Q, QuerySet, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from loyalty.models import Order
from members.models import Member

WINDOW_DAYS = 90  # retention compares the last 90 days with the 90 before them
YEAR_DAYS = 365
MAX_LIFETIME_YEARS = Decimal(5)
CENT = Decimal("0.01")


def _ratio(part, whole) -> Decimal | None:
    return None if not whole else Decimal(part) / Decimal(whole)


def _money(value: Decimal | None) -> Decimal | None:
    return None if value is None else value.quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Metrics:
    as_of: dt.datetime
    members: int
    buyers: int  # members with at least one purchase, ever
    repeat_buyers: int  # ... with two or more
    orders: int  # purchases, ever
    revenue: Decimal  # net spend of all purchases, yuan
    buyers_12m: int  # members with a purchase in the last 365 days
    orders_12m: int
    revenue_12m: Decimal
    previous_window_buyers: int  # members with a purchase 180-90 days ago
    retained_buyers: int  # ... who also bought in the last 90 days

    @property
    def historical_clv(self) -> Decimal | None:
        """Average net spend per member since joining."""
        return _money(_ratio(self.revenue, self.members))

    @property
    def historical_clv_per_buyer(self) -> Decimal | None:
        return _money(_ratio(self.revenue, self.buyers))

    @property
    def average_order_value(self) -> Decimal | None:
        """Net spend per purchase, last 365 days."""
        return _money(_ratio(self.revenue_12m, self.orders_12m))

    @property
    def purchase_frequency(self) -> Decimal | None:
        """Purchases per buyer per year: purchases in the last 365 days ÷ buyers in them."""
        ratio = _ratio(self.orders_12m, self.buyers_12m)
        return None if ratio is None else ratio.quantize(CENT, rounding=ROUND_HALF_UP)

    @property
    def repurchase_rate(self) -> float | None:
        ratio = _ratio(self.repeat_buyers, self.buyers)
        return None if ratio is None else float(ratio)

    @property
    def retention(self) -> float | None:
        """Of the members who bought 180-90 days ago, the share who bought again in the last 90 days."""
        ratio = _ratio(self.retained_buyers, self.previous_window_buyers)
        return None if ratio is None else float(ratio)

    @property
    def expected_lifetime_years(self) -> Decimal | None:
        """1 ÷ (1 − r) quarters for a 90-day retention r, in years, at most five."""
        ratio = _ratio(self.retained_buyers, self.previous_window_buyers)
        if ratio is None:
            return None
        if ratio >= 1:
            return MAX_LIFETIME_YEARS
        return min(MAX_LIFETIME_YEARS, 1 / (4 * (1 - ratio))).quantize(CENT, rounding=ROUND_HALF_UP)

    @property
    def predicted_clv(self) -> Decimal | None:
        """Average order value × yearly frequency × expected lifetime: what an active buyer is worth from now."""
        yearly = _ratio(self.revenue_12m, self.buyers_12m)  # = AOV × frequency, unrounded
        lifetime = self.expected_lifetime_years
        if yearly is None or lifetime is None:
            return None
        return _money(yearly * lifetime)

    def as_dict(self) -> dict:
        """The figures for the API: amounts as 2-decimal strings, rates 0-1 (None when undefined)."""

        def money(value):
            return None if value is None else str(value)

        def rate(value):
            return None if value is None else round(value, 4)

        return {
            "as_of": self.as_of,
            "members": self.members,
            "buyers": self.buyers,
            "repeat_buyers": self.repeat_buyers,
            "orders": self.orders,
            "revenue": money(_money(self.revenue)),
            "historical_clv": money(self.historical_clv),
            "historical_clv_per_buyer": money(self.historical_clv_per_buyer),
            "average_order_value": money(self.average_order_value),
            "purchase_frequency": money(self.purchase_frequency),
            "repurchase_rate": rate(self.repurchase_rate),
            "retention": rate(self.retention),
            "expected_lifetime_years": money(self.expected_lifetime_years),
            "predicted_clv": money(self.predicted_clv),
        }


def member_metrics(members: QuerySet[Member] | None = None, *, now: dt.datetime | None = None) -> Metrics:
    """The value figures of ``members`` (everybody when None), in two queries."""
    now = now or timezone.now()
    members = Member.objects.all() if members is None else members
    year_ago = now - dt.timedelta(days=YEAR_DAYS)
    window = now - dt.timedelta(days=WINDOW_DAYS)
    previous = now - dt.timedelta(days=2 * WINDOW_DAYS)

    count = members.order_by().count()

    money = DecimalField(max_digits=16, decimal_places=2)
    net = F("amount") - F("refunded_amount")
    zero = Decimal("0")
    per_member = (
        Order.objects.counting()
        .filter(member__in=members.order_by().values("pk"))
        .filter(occurred_at__lt=now)
        .values("member")
        .annotate(
            n=Count("id"),
            spent=Sum(net, output_field=money),
            n12=Count("id", filter=Q(occurred_at__gte=year_ago)),
            spent12=Coalesce(Sum(net, filter=Q(occurred_at__gte=year_ago), output_field=money), zero),
            before=Count("id", filter=Q(occurred_at__gte=previous, occurred_at__lt=window)),
            recent=Count("id", filter=Q(occurred_at__gte=window)),
        )
        .order_by()
    )
    totals = per_member.aggregate(
        buyers=Count("member"),
        repeat=Count("member", filter=Q(n__gte=2)),
        orders=Coalesce(Sum("n"), 0),
        revenue=Coalesce(Sum("spent", output_field=money), zero, output_field=money),
        buyers12=Count("member", filter=Q(n12__gt=0)),
        orders12=Coalesce(Sum("n12"), 0),
        revenue12=Coalesce(Sum("spent12", output_field=money), zero, output_field=money),
        previous_buyers=Count("member", filter=Q(before__gt=0)),
        retained=Count("member", filter=Q(before__gt=0, recent__gt=0)),
    )
    return Metrics(
        as_of=now,
        members=count,
        buyers=totals["buyers"],
        repeat_buyers=totals["repeat"],
        orders=totals["orders"],
        revenue=Decimal(totals["revenue"]),
        buyers_12m=totals["buyers12"],
        orders_12m=totals["orders12"],
        revenue_12m=Decimal(totals["revenue12"]),
        previous_window_buyers=totals["previous_buyers"],
        retained_buyers=totals["retained"],
    )
