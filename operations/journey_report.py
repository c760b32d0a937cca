"""A journey's (or broadcast's) effect: treated vs held-out members, 30/60/90 days after entry.

For every entry old enough (entered at least N days ago), the member's spend (net of
refunds), orders and whether they ordered at all ("retained") in the N days after entering,
from the orders that count (``loyalty.models.ORDERS_COUNTING_SQL``). Treated entries are
runs with status *done*, the control group runs *held out*. Per group one SQL statement
returns the count, sum and sum of squares of each figure; the difference of the means and
its 95% confidence interval are Welch's (unequal variances, normal approximation), written
out below in plain Python. A/B variants of a step are compared the same way, variant
against the first variant, among the treated members who reached that step.
"""

import datetime as dt
import math
from dataclasses import dataclass
from decimal import Decimal

from django.db import connection
from django.db.models import Sum
from django.utils import timezone

from engagement.models import Journey, JourneyRun, JourneyStep, JourneyStepRun
from loyalty.checkout import point_value
from loyalty.models import ORDERS_COUNTING_SQL

WINDOWS = (30, 60, 90)
Z95 = 1.959964  # the normal quantile of a two-sided 95% interval
METRICS = ("spend", "orders", "retained")


@dataclass(frozen=True)
class Moments:
    """What SQL returns per group and figure: n, the sum and the sum of squares."""

    n: int
    total: float
    squares: float

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None

    @property
    def variance(self) -> float | None:
        """The sample variance (n - 1 in the denominator); None below two members."""
        if self.n < 2:
            return None
        return max(self.squares - self.n * (self.total / self.n) ** 2, 0.0) / (self.n - 1)


@dataclass(frozen=True)
class Difference:
    treated: float | None
    control: float | None
    difference: float | None
    low: float | None
    high: float | None

    @property
    def significant(self) -> bool:
        return self.low is not None and (self.low > 0 or self.high < 0)


def welch(treated: Moments, control: Moments, *, z: float = Z95) -> Difference:
    """The difference of the means, treated minus control, with its confidence interval.

    Welch's standard error sqrt(s1²/n1 + s2²/n2) with the normal quantile ``z``: both groups
    are hundreds of members or more, where the t and normal quantiles agree to two decimals.
    With fewer than two members in a group there is no interval.
    """
    if not treated.n or not control.n:
        return Difference(treated.mean, control.mean, None, None, None)
    difference = treated.mean - control.mean
    if treated.variance is None or control.variance is None:
        return Difference(treated.mean, control.mean, difference, None, None)
    error = math.sqrt(treated.variance / treated.n + control.variance / control.n)
    return Difference(treated.mean, control.mean, difference, difference - z * error, difference + z * error)


# One row per entry (its spend and orders in the window after it, correlated subqueries
# over the member's orders index), summed per group. Plain SQL that PostgreSQL and SQLite
# (the embedded default) both run: the window's end is passed in per dialect.
_MOMENTS_SQL = f"""
SELECT s.grp, count(*),
       coalesce(sum(s.spend), 0), coalesce(sum(s.spend * s.spend), 0),
       coalesce(sum(s.orders), 0), coalesce(sum(s.orders * s.orders), 0),
       coalesce(sum(CASE WHEN s.orders > 0 THEN 1 ELSE 0 END), 0)
FROM (
    SELECT {{group}} AS grp,
        (SELECT coalesce(sum(o.amount - o.refunded_amount), 0) FROM loyalty_order o
         WHERE o.member_id = r.member_id AND {ORDERS_COUNTING_SQL}
           AND o.occurred_at > r.created_at AND o.occurred_at <= {{window_end}}) AS spend,
        (SELECT count(o.id) FROM loyalty_order o
         WHERE o.member_id = r.member_id AND {ORDERS_COUNTING_SQL}
           AND o.occurred_at > r.created_at AND o.occurred_at <= {{window_end}}) AS orders
    FROM engagement_journeyrun r
    {{join}}
    JOIN members_member m ON m.id = r.member_id
    WHERE r.journey_id = %(journey)s AND r.status IN ({{statuses}}) AND r.created_at <= %(matured)s {{scope}}
) s
GROUP BY s.grp
"""


def _placeholders(name: str, values: list, params: dict) -> str:
    """``%(name_0)s, %(name_1)s, ...`` for an IN list, the values put in ``params``."""
    for i, value in enumerate(values):
        params[f"{name}_{i}"] = value
    return ", ".join(f"%({name}_{i})s" for i in range(len(values))) or "NULL"


def _moments(journey: Journey, days: int, *, now, stores, position: int | None = None) -> dict[str, dict[str, Moments]]:
    """{group: {figure: Moments}}: groups are statuses, or a step's variants with ``position``."""
    params = {"days": days, "journey": journey.pk, "matured": now - dt.timedelta(days=days)}
    statuses = [JourneyRun.Status.DONE, JourneyRun.Status.HELD_OUT]
    scope = ""
    if stores is not None:
        scope = f"AND m.home_store_id IN ({_placeholders('store', list(stores), params)})"
    if connection.vendor == "postgresql":
        window_end = "r.created_at + %(days)s * interval '1 day'"
    else:  # SQLite keeps times as ISO text: datetime() shifts it by whole days
        window_end = "datetime(r.created_at, '+' || %(days)s || ' days')"
    if position is None:
        group, join = "r.status", ""
    else:
        params["position"] = position
        statuses = [JourneyRun.Status.DONE]
        group = "sr.variant"
        join = "JOIN engagement_journeysteprun sr ON sr.run_id = r.id AND sr.position = %(position)s"
    sql = _MOMENTS_SQL.format(
        group=group,
        join=join,
        scope=scope,
        window_end=window_end,
        statuses=_placeholders("status", statuses, params),
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    out = {}
    for grp, n, spend, spend2, orders, orders2, retained in rows:
        out[grp] = {
            "spend": Moments(n, float(spend), float(spend2)),
            "orders": Moments(n, float(orders), float(orders2)),
            # A yes/no figure: its square is itself.
            "retained": Moments(n, float(retained), float(retained)),
        }
    return out


def _cost(journey: Journey, days: int, *, now, stores) -> dict:
    """Points and coupon value the treated entries of this window were given, and in yuan."""
    runs = JourneyStepRun.objects.filter(
        journey=journey,
        status=JourneyStepRun.Status.DONE,
        run__status=JourneyRun.Status.DONE,
        run__created_at__lte=now - dt.timedelta(days=days),
    )
    if stores is not None:
        runs = runs.filter(member__home_store_id__in=stores)
    totals = runs.aggregate(points=Sum("points"), coupons=Sum("coupon_value"))
    points = totals["points"] or 0
    coupons = totals["coupons"] or Decimal("0")
    return {
        "points": points,
        "coupons": coupons,
        "yuan": (Decimal(points) * point_value() + coupons).quantize(Decimal("0.01")),
    }


def journey_report(journey: Journey, *, now=None, stores=None) -> dict:
    """The journey page's figures: per window, treated vs held out, the differences, cost, ROI;
    and per A/B step, each variant against the first. ``stores``: count only those stores'
    members (a scoped staff member's view); None: every member."""
    now = now or timezone.now()
    windows = []
    for days in WINDOWS:
        groups = _moments(journey, days, now=now, stores=stores)
        empty = {name: Moments(0, 0.0, 0.0) for name in METRICS}
        treated, control = groups.get(JourneyRun.Status.DONE, empty), groups.get(JourneyRun.Status.HELD_OUT, empty)
        figures = {name: welch(treated[name], control[name]) for name in METRICS}
        cost = _cost(journey, days, now=now, stores=stores)
        spend = figures["spend"]
        incremental = (
            None
            if spend.difference is None
            else Decimal(spend.difference * treated["spend"].n).quantize(Decimal("0.01"))
        )
        roi = None
        if incremental is not None and cost["yuan"] > 0:
            roi = float((incremental - cost["yuan"]) / cost["yuan"])
        windows.append(
            {
                "days": days,
                "treated": treated["spend"].n,
                "control": control["spend"].n,
                "figures": figures,
                "cost": cost,
                "incremental_revenue": incremental,
                "roi": roi,
            }
        )
    tests = []
    positions = (
        JourneyStep.objects.filter(journey=journey).exclude(variant="").values_list("position", flat=True).distinct()
    )
    for position in sorted(set(positions)):
        for days in WINDOWS:
            groups = _moments(journey, days, now=now, stores=stores, position=position)
            labels = sorted(groups)
            if len(labels) < 2:
                continue
            base = labels[0]
            tests.append(
                {
                    "step": position,
                    "days": days,
                    "base": base,
                    "counts": {label: groups[label]["spend"].n for label in labels},
                    "variants": [
                        {
                            "variant": label,
                            "figures": {name: welch(groups[label][name], groups[base][name]) for name in METRICS},
                        }
                        for label in labels[1:]
                    ],
                }
            )
    return {"windows": windows, "tests": tests, "holdout_percent": journey.holdout_percent}
