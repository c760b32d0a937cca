"""The operations dashboard's figures, each from one query (docs/dashboard.md defines them).

``dashboard()`` computes every figure at most once per ``LOYALTY_DASHBOARD_CACHE_SECONDS``
and keeps the result in Django's cache, so the database's work does not grow with page
views; staff can ask for fresh figures (``refresh=True``). The queries aggregate the last
twelve months of orders and ledger entries, which on a large programme takes seconds: the
cache is what makes the page cheap.

"Months" are calendar months in ``TIME_ZONE``. Refunded orders (status ``refunded``) do
not count as purchases; partly refunded ones do.

A scope (``stores``: store ids, or None for the whole brand) narrows every figure by adding
one condition to the same query, so a scoped dashboard runs as many queries as the
brand-wide one: members by home store, orders by the store that took them, ledger rows,
accounts, tier rows and stage moves by their member's home store (the admin's ledger
scoping, members.scoping); cohort retention and customer value over the scope's members
and their purchases at any store. Each scope has its own cache entry.
"""

import datetime as dt
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.core.cache import cache
from django.db.models import Case, Count, F, IntegerField, Q, Sum, Value, When
from django.db.models.functions import Coalesce, TruncDate, TruncMonth
from django.utils import timezone

from loyalty.checkout import point_value
from loyalty.models import Account, Currency, LedgerEntry, MemberTier, Order, Tier
from members.models import Member, RfmSegment, Stage, StageChange, Store
from operations.metrics import Metrics, member_metrics
from outreach.selectors import delivery_counts

CACHE_KEY = "loyalty:dashboard:v2"
MONTHS = 12  # months of history in the per-month figures
COHORT_MONTHS = 6  # months after joining shown per cohort
MOVE_DAYS = 30  # days of stage moves shown
SCORES = (1, 2, 3, 4, 5)  # RFM scores


@dataclass(frozen=True)
class PointsMonth:
    month: dt.date
    issued: int  # earned (pending included) and positive adjustments
    redeemed: int  # spent, less spends reversed
    expired: int
    taken_back: int  # refunds, cancelled pending points, negative adjustments


@dataclass(frozen=True)
class Cohort:
    month: dt.date  # the month the members joined
    size: int
    # Share of the cohort (0-1) that bought in month 0, 1, ... after joining; None for a
    # month that has not happened yet.
    retention: list[float | None]


@dataclass(frozen=True)
class TierCount:
    name: str
    members: int
    pk: int | None = None  # the member list filters by it (the dashboard drills down)


@dataclass(frozen=True)
class StageMoves:
    day: dt.date
    into: dict[str, int]  # members who moved into each stage that day, by stage code


@dataclass(frozen=True)
class Dashboard:
    as_of: dt.datetime
    members_total: int
    members_new_this_month: int
    active_30: int  # members with a purchase in the last 30 days
    active_90: int
    buyers_12m: int  # members with a purchase in the last 12 months
    repeat_buyers_12m: int  # ... of whom bought at least twice
    points_by_month: list[PointsMonth]
    outstanding_points: int  # available points on all accounts
    pending_points: int  # points waiting for their orders' return windows
    owed_points: int  # refund shortfalls not settled yet: the next points members get back pay these
    point_value: Decimal  # yuan per point (LOYALTY_POINT_VALUE)
    cohorts: list[Cohort]
    tiers: list[TierCount]
    without_tier: int
    notes: list[str] = field(default_factory=list)
    # Lifecycle and RFM (codes, not labels: the page translates them when it shows them).
    stages: list[tuple[str, int]] = field(default_factory=list)  # members per stage, in stage order
    stage_not_computed: int = 0  # members the nightly run has not given a stage yet
    rfm_grid: list[list[int]] = field(default_factory=list)  # [R score - 1][F score - 1] -> members
    rfm_not_scored: int = 0
    rfm_segments: list[tuple[str, int]] = field(default_factory=list)  # members per named segment
    stage_moves: list[StageMoves] = field(default_factory=list)  # one per day, oldest first
    stage_move_pairs: dict[tuple[str, str], int] = field(default_factory=dict)  # (from, to) -> moves
    value: Metrics | None = None  # CLV, repurchase, retention (operations.metrics)
    stores: tuple[int, ...] | None = None  # the store ids the figures cover; None: every store
    # Messages of the last 30 days by channel and status (outreach), to the scope's members.
    deliveries: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def stage_moves_total(self) -> int:
        return sum(self.stage_move_pairs.values())

    @property
    def repurchase_rate(self) -> float | None:
        return self.repeat_buyers_12m / self.buyers_12m if self.buyers_12m else None

    @property
    def liability(self) -> Decimal:
        """What the available and pending points are worth, in yuan."""
        return (self.outstanding_points + self.pending_points) * self.point_value

    def _totals(self) -> PointsMonth:
        return PointsMonth(
            month=self.as_of.date(),
            issued=sum(m.issued for m in self.points_by_month),
            redeemed=sum(m.redeemed for m in self.points_by_month),
            expired=sum(m.expired for m in self.points_by_month),
            taken_back=sum(m.taken_back for m in self.points_by_month),
        )

    @property
    def redemption_rate(self) -> float | None:
        """Points redeemed per point issued, over the months shown."""
        totals = self._totals()
        return totals.redeemed / totals.issued if totals.issued else None

    @property
    def breakage_rate(self) -> float | None:
        """Of the points that left accounts by being used or by lapsing, the share that lapsed."""
        totals = self._totals()
        gone = totals.redeemed + totals.expired
        return totals.expired / gone if gone else None


def _month_start(day: dt.date, back: int = 0) -> dt.date:
    """The first day of the month ``back`` months before ``day``'s month."""
    index = day.year * 12 + day.month - 1 - back
    return dt.date(index // 12, index % 12 + 1, 1)


def _aware(day: dt.date) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))


def _months_between(start: dt.date, end: dt.date) -> int:
    return (end.year - start.year) * 12 + end.month - start.month


def _as_date(value) -> dt.date:
    """TruncMonth gives a datetime on PostgreSQL and SQLite alike; the dashboard wants dates."""
    return timezone.localtime(value).date() if isinstance(value, dt.datetime) else value


def _scope(stores: list[int] | None, lookup: str) -> Q:
    """The condition that keeps rows of ``stores`` only (no condition for the whole brand)."""
    return Q() if stores is None else Q(**{f"{lookup}__in": stores})


def _lifecycle(now: dt.datetime, stores: list[int] | None = None) -> dict:
    """The funnel, the RFM grid and segments, and the stage moves (queries 10-12)."""
    today = timezone.localdate(now)
    members = Member.objects.filter(_scope(stores, "home_store"))
    # 10. Members per lifecycle stage.
    per_stage = dict(members.values("stage").annotate(n=Count("id")).values_list("stage", "n").order_by())
    # 11. Members per R score, F score and named segment.
    grid = [[0 for _f in SCORES] for _r in SCORES]
    per_segment: dict[str, int] = {}
    not_scored = 0
    for r, f, segment, n in (
        members.values("rfm_recency", "rfm_frequency", "rfm_segment")
        .annotate(n=Count("id"))
        .values_list("rfm_recency", "rfm_frequency", "rfm_segment", "n")
        .order_by()
    ):
        if r is None or f is None:
            not_scored += n
        else:
            grid[r - 1][f - 1] += n
        if segment:
            per_segment[segment] = per_segment.get(segment, 0) + n
    # 12. Stage moves per day and per (from, to) over the last 30 days.
    first_day = today - dt.timedelta(days=MOVE_DAYS - 1)
    days = {first_day + dt.timedelta(days=i): {} for i in range(MOVE_DAYS)}
    pairs: dict[tuple[str, str], int] = {}
    for day, before, after, n in (
        StageChange.objects.filter(
            _scope(stores, "member__home_store"), changed_at__gte=_aware(first_day), changed_at__lte=now
        )
        .annotate(day=TruncDate("changed_at"))
        .values("day", "from_stage", "to_stage")
        .annotate(n=Count("id"))
        .values_list("day", "from_stage", "to_stage", "n")
        .order_by()
    ):
        into = days.get(day)
        if into is None:
            continue
        into[after] = into.get(after, 0) + n
        pairs[(before, after)] = pairs.get((before, after), 0) + n
    return {
        "stages": [(code, per_stage.get(code, 0)) for code in Stage.values],
        "stage_not_computed": per_stage.get("", 0),
        "rfm_grid": grid,
        "rfm_not_scored": not_scored,
        "rfm_segments": [(code, per_segment.get(code, 0)) for code in RfmSegment.values],
        "stage_moves": [StageMoves(day=day, into=into) for day, into in sorted(days.items())],
        "stage_move_pairs": pairs,
    }


def compute(now: dt.datetime | None = None, *, stores: list[int] | None = None) -> Dashboard:
    """Every figure, straight from the database (14 queries, whatever the data size or scope).

    ``stores``: the store ids to cover, None for every store (see the module docstring).
    """
    now = now or timezone.now()
    members_in_scope = Member.objects.filter(_scope(stores, "home_store"))
    orders_in_scope = Order.objects.counting().filter(_scope(stores, "store"))
    today = timezone.localdate(now)
    this_month = _aware(_month_start(today))
    first_month = _month_start(today, MONTHS - 1)
    since = _aware(first_month)

    # 1. Members.
    members = members_in_scope.aggregate(total=Count("id"), new=Count("id", filter=Q(joined_at__gte=this_month)))

    # 2. Active members: a purchase in the last 30 / 90 days.
    active = orders_in_scope.aggregate(
        d30=Count("member", distinct=True, filter=Q(occurred_at__gte=now - dt.timedelta(days=30))),
        d90=Count("member", distinct=True, filter=Q(occurred_at__gte=now - dt.timedelta(days=90))),
    )

    # 3. Repurchase: of the members who bought in the last 12 months, those who bought twice or more.
    buyers = (
        orders_in_scope.filter(occurred_at__gte=now - dt.timedelta(days=365))
        .values("member")
        .annotate(orders=Count("id"))
        .order_by()
        .aggregate(all=Count("member"), repeat=Count("member", filter=Q(orders__gte=2)))
    )

    # 4. Points per month by what happened to them.
    def signed(sign: str):
        return Sum(
            Case(When(**{f"amount__{sign}": 0}, then=F("amount")), default=Value(0), output_field=IntegerField())
        )

    rows = (
        LedgerEntry.objects.filter(
            _scope(stores, "member__home_store"), currency=Currency.POINTS, created_at__gte=since
        )
        .annotate(month=TruncMonth("created_at"))
        .values("month", "kind")
        .annotate(total=Coalesce(Sum("amount"), 0), pending=Coalesce(Sum("pending_amount"), 0), up=signed("gt"))
        .order_by()
    )
    zero = {"issued": 0, "redeemed": 0, "expired": 0, "taken_back": 0}
    months = {_month_start(first_month, -i): dict(zero) for i in range(MONTHS)}
    Kind = LedgerEntry.Kind
    for row in rows:
        bucket = months.get(_as_date(row["month"]))
        if bucket is None:
            continue
        kind, amount, pending, up = row["kind"], row["total"], row["pending"], row["up"] or 0
        if kind == Kind.EARN:
            bucket["issued"] += amount + pending
        elif kind == Kind.ADJUST:
            bucket["issued"] += up
            bucket["taken_back"] += up - amount
        elif kind in (Kind.SPEND, Kind.REVERSE):  # a reversal's amount is positive: it lowers the figure
            bucket["redeemed"] -= amount
        elif kind == Kind.EXPIRE:
            bucket["expired"] -= amount
        elif kind in (Kind.REFUND, Kind.CANCEL):
            bucket["taken_back"] -= amount + pending
        # RELEASE moves points from pending to available: neither issued nor used.
    points_by_month = [PointsMonth(month=month, **figures) for month, figures in sorted(months.items())]

    # 5. Outstanding points.
    outstanding = Account.objects.filter(_scope(stores, "member__home_store"), currency=Currency.POINTS).aggregate(
        balance=Coalesce(Sum("balance"), 0), pending=Coalesce(Sum("pending"), 0), owed=Coalesce(Sum("owed"), 0)
    )

    # 6-7. Retention by monthly cohort: cohort sizes, then buyers per cohort and month.
    cohort_start = _aware(_month_start(today, MONTHS - 1))
    sizes = {
        _as_date(row["month"]): row["n"]
        for row in members_in_scope.filter(joined_at__gte=cohort_start)
        .annotate(month=TruncMonth("joined_at"))
        .values("month")
        .annotate(n=Count("id"))
        .order_by()
    }
    active_by_cohort: dict[tuple[dt.date, int], int] = {}
    # The cohort's members' purchases, wherever they bought (like the customer value figures).
    for row in (
        Order.objects.counting()
        .filter(_scope(stores, "member__home_store"), member__joined_at__gte=cohort_start)
        .annotate(cohort=TruncMonth("member__joined_at"), month=TruncMonth("occurred_at"))
        .values("cohort", "month")
        .annotate(n=Count("member", distinct=True))
        .order_by()
    ):
        offset = _months_between(_as_date(row["cohort"]), _as_date(row["month"]))
        if 0 <= offset < COHORT_MONTHS:
            active_by_cohort[(_as_date(row["cohort"]), offset)] = row["n"]
    cohorts = []
    for month in sorted(sizes):
        elapsed = _months_between(month, today)
        cohorts.append(
            Cohort(
                month=month,
                size=sizes[month],
                retention=[
                    active_by_cohort.get((month, k), 0) / sizes[month] if k <= elapsed else None
                    for k in range(COHORT_MONTHS)
                ],
            )
        )

    # 8. Members per tier, in rank order (tiers nobody holds included).
    held = dict(
        MemberTier.objects.filter(_scope(stores, "member__home_store"))
        .values("tier")
        .annotate(n=Count("id"))
        .values_list("tier", "n")
        .order_by()
    )
    tiers = [
        TierCount(name=tier.name, members=held.get(tier.pk, 0), pk=tier.pk) for tier in Tier.objects.order_by("rank")
    ]

    return Dashboard(
        as_of=now,
        members_total=members["total"],
        members_new_this_month=members["new"],
        active_30=active["d30"],
        active_90=active["d90"],
        buyers_12m=buyers["all"],
        repeat_buyers_12m=buyers["repeat"],
        points_by_month=points_by_month,
        outstanding_points=outstanding["balance"],
        pending_points=outstanding["pending"],
        owed_points=outstanding["owed"],
        point_value=point_value(),
        cohorts=cohorts,
        tiers=tiers,
        without_tier=members["total"] - sum(held.values()),
        **_lifecycle(now, stores),
        # 13-14. Customer value over the scope's members.
        value=member_metrics(members_in_scope, now=now),
        stores=None if stores is None else tuple(stores),
        deliveries=delivery_counts(since=now - dt.timedelta(days=30), stores=stores),
    )


def _store_ids(stores: Iterable[int | Store] | None) -> list[int] | None:
    """``stores`` as a sorted list of distinct ids: store ids, stores, or a queryset of either."""
    if stores is None:
        return None
    return sorted({getattr(store, "pk", store) for store in stores})


def cache_key(stores: list[int] | None) -> str:
    """The cache entry of a scope: the brand-wide one, or one per set of stores."""
    if stores is None:
        return CACHE_KEY
    ids = ",".join(str(pk) for pk in stores)
    if len(ids) > 150:  # keep keys short (memcached refuses keys over 250 characters)
        ids = hashlib.sha256(ids.encode()).hexdigest()
    return f"{CACHE_KEY}:stores:{ids}"


def dashboard(
    *, stores: Iterable[int | Store] | None = None, refresh: bool = False, now: dt.datetime | None = None
) -> Dashboard:
    """The figures of ``stores`` (ids or stores; None: every store) from the cache.

    Computed when missing, stale or asked for (``refresh``); a refresh recomputes this
    scope only. Each scope has its own cache entry, so figures are never served to a
    scope they were not computed for.
    """
    stores = _store_ids(stores)
    key = cache_key(stores)
    if not refresh:
        cached = cache.get(key)
        if cached is not None:
            return cached
    figures = compute(now, stores=stores)
    cache.set(key, figures, settings.LOYALTY_DASHBOARD_CACHE_SECONDS)
    return figures
