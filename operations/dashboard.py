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

CACHE_KEY = "loyalty:dashboard:v3"
COHORT_MONTHS = 6  # months after joining shown per cohort
MAX_DAILY_DAYS = 92  # a period up to this long charts points per day
MAX_PERIOD_DAYS = 731  # a custom period is at most two years
SCORES = (1, 2, 3, 4, 5)  # RFM scores


@dataclass(frozen=True)
class Period:
    """The days the period figures cover: ``start`` to ``end``, both included (local dates)."""

    start: dt.date
    end: dt.date
    preset: str = "custom"  # 7d, 30d, 90d, this_month, last_month or custom

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def bucket(self) -> str:
        """Points are charted per day over a short period, per month over a long one."""
        return "day" if self.days <= MAX_DAILY_DAYS else "month"

    def window(self) -> tuple[dt.datetime, dt.datetime]:
        """The instants [from, to): the first day's start to the last day's end (as the
        segment rules' date windows, operations.segments), so a figure and its members agree."""
        return _aware(self.start), _aware(self.end + dt.timedelta(days=1))

    def rules(self, prefix: str) -> dict:
        """The segment rules of this period on ``joined`` or ``bought`` (operations.segments)."""
        return {f"{prefix}_from": self.start.isoformat(), f"{prefix}_to": self.end.isoformat()}


PRESETS = ("7d", "30d", "90d", "this_month", "last_month")
DEFAULT_PRESET = "30d"


def period_preset(preset: str, today: dt.date) -> Period:
    """One of ``PRESETS`` ending today (last month: the whole previous calendar month)."""
    if preset in ("7d", "30d", "90d"):
        return Period(start=today - dt.timedelta(days=int(preset[:-1]) - 1), end=today, preset=preset)
    if preset == "this_month":
        return Period(start=today.replace(day=1), end=today, preset=preset)
    if preset == "last_month":
        end = today.replace(day=1) - dt.timedelta(days=1)
        return Period(start=end.replace(day=1), end=end, preset=preset)
    raise ValueError(preset)


@dataclass(frozen=True)
class PointsMonth:
    month: dt.date  # the bucket's first day: a day, or the first of a month (Period.bucket)
    issued: int  # earned (pending included) and positive adjustments
    redeemed: int  # spent, less spends reversed
    expired: int
    taken_back: int  # refunds, cancelled pending points, negative adjustments


@dataclass(frozen=True)
class Cohort:
    month: dt.date  # the month the members joined
    size: int
    # The days of that month inside the period (the first and last cohorts may be partial).
    joined_from: dt.date | None = None
    joined_to: dt.date | None = None
    # Share of the cohort (0-1) that bought in month 0, 1, ... after joining; None for a
    # month that has not happened yet.
    retention: list[float | None] = field(default_factory=list)
    buyers: list[int | None] = field(default_factory=list)  # members behind each share

    def rules(self) -> dict:
        return {"joined_from": self.joined_from.isoformat(), "joined_to": self.joined_to.isoformat()}

    def cell_rules(self, offset: int, now: dt.datetime) -> dict:
        """The cohort's members who bought in month ``offset`` after joining (to now)."""
        month = _month_start(self.month, -offset)
        last = min(_month_start(month, -1) - dt.timedelta(days=1), timezone.localdate(now))
        return {**self.rules(), "bought_from": month.isoformat(), "bought_to": last.isoformat()}


@dataclass(frozen=True)
class TierCount:
    name: str
    members: int
    pk: int | None = None  # the member list filters by it (the dashboard drills down)
    code: str = ""  # the segment rule ``tiers`` names it


@dataclass(frozen=True)
class StageMoves:
    day: dt.date
    into: dict[str, int]  # members who moved into each stage that day, by stage code


@dataclass(frozen=True)
class Dashboard:
    as_of: dt.datetime
    period: Period
    members_total: int
    members_new: int  # joined in the period
    buyers: int  # members with a purchase in the period (at any store)
    repeat_buyers: int  # ... of whom bought at least twice in it
    points_by_month: list[PointsMonth]  # per day or per month of the period (Period.bucket)
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
        return self.repeat_buyers / self.buyers if self.buyers else None

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
        """Points redeemed per point issued, over the period."""
        totals = self._totals()
        return totals.redeemed / totals.issued if totals.issued else None

    @property
    def breakage_rate(self) -> float | None:
        """Of the points that left accounts by being used or by lapsing in the period, the share that lapsed."""
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


def _lifecycle(now: dt.datetime, period: Period, stores: list[int] | None = None) -> dict:
    """The funnel, the RFM grid and segments (now), and the stage moves of the period (queries 10-12)."""
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
    # 12. Stage moves per day and per (from, to) over the period.
    since, until = period.window()
    days = {period.start + dt.timedelta(days=i): {} for i in range(period.days)}
    pairs: dict[tuple[str, str], int] = {}
    for day, before, after, n in (
        StageChange.objects.filter(_scope(stores, "member__home_store"), changed_at__gte=since, changed_at__lt=until)
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


def _points(period: Period, since: dt.datetime, until: dt.datetime, stores: list[int] | None) -> list[PointsMonth]:
    """Query 4: the points ledger of the period per day or per month, by what happened to them."""

    def signed(sign: str):
        return Sum(
            Case(When(**{f"amount__{sign}": 0}, then=F("amount")), default=Value(0), output_field=IntegerField())
        )

    daily = period.bucket == "day"
    rows = (
        LedgerEntry.objects.filter(
            _scope(stores, "member__home_store"), currency=Currency.POINTS, created_at__gte=since, created_at__lt=until
        )
        .annotate(bucket=TruncDate("created_at") if daily else TruncMonth("created_at"))
        .values("bucket", "kind")
        .annotate(total=Coalesce(Sum("amount"), 0), pending=Coalesce(Sum("pending_amount"), 0), up=signed("gt"))
        .order_by()
    )
    zero = {"issued": 0, "redeemed": 0, "expired": 0, "taken_back": 0}
    if daily:
        buckets = {period.start + dt.timedelta(days=i): dict(zero) for i in range(period.days)}
    else:
        first = _month_start(period.start)
        months = _months_between(first, period.end) + 1
        buckets = {_month_start(first, -i): dict(zero) for i in range(months)}
    Kind = LedgerEntry.Kind
    for row in rows:
        bucket = buckets.get(_as_date(row["bucket"]))
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
    return [PointsMonth(month=day, **figures) for day, figures in sorted(buckets.items())]


def _cohorts(
    now: dt.datetime, period: Period, since: dt.datetime, until: dt.datetime, members_in_scope, stores
) -> list[Cohort]:
    """Queries 6-7: the members who joined in the period by month, and who of them bought when."""
    today = timezone.localdate(now)
    joined = members_in_scope.filter(joined_at__gte=since, joined_at__lt=until)
    sizes = {
        _as_date(row["month"]): row["n"]
        for row in joined.annotate(month=TruncMonth("joined_at")).values("month").annotate(n=Count("id")).order_by()
    }
    active_by_cohort: dict[tuple[dt.date, int], int] = {}
    # The cohort's members' purchases, wherever they bought (like the customer value figures).
    for row in (
        Order.objects.counting()
        .filter(
            _scope(stores, "member__home_store"),
            member__joined_at__gte=since,
            member__joined_at__lt=until,
        )
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
        buyers = [active_by_cohort.get((month, k), 0) if k <= elapsed else None for k in range(COHORT_MONTHS)]
        cohorts.append(
            Cohort(
                month=month,
                size=sizes[month],
                joined_from=max(month, period.start),
                joined_to=min(_month_start(month, -1) - dt.timedelta(days=1), period.end),
                retention=[None if n is None else n / sizes[month] for n in buyers],
                buyers=buyers,
            )
        )
    return cohorts


def compute(
    now: dt.datetime | None = None, *, stores: list[int] | None = None, period: Period | None = None
) -> Dashboard:
    """Every figure, straight from the database (13 queries, whatever the data size, scope or period).

    ``stores``: the store ids to cover, None for every store (see the module docstring).
    ``period``: the days the period figures cover (default: the last 30 days).
    """
    now = now or timezone.now()
    period = period or period_preset(DEFAULT_PRESET, timezone.localdate(now))
    since, until = period.window()
    members_in_scope = Member.objects.filter(_scope(stores, "home_store"))

    # 1. Members now, and those who joined in the period.
    members = members_in_scope.aggregate(
        total=Count("id"), new=Count("id", filter=Q(joined_at__gte=since, joined_at__lt=until))
    )

    # 2. Buyers: the scope's members with a purchase in the period (at any store), and those with two or more.
    buyers = (
        Order.objects.counting()
        .filter(_scope(stores, "member__home_store"), occurred_at__gte=since, occurred_at__lt=until)
        .values("member")
        .annotate(orders=Count("id"))
        .order_by()
        .aggregate(all=Count("member"), repeat=Count("member", filter=Q(orders__gte=2)))
    )

    # 3. Points of the period by what happened to them.
    points_by_month = _points(period, since, until, stores)

    # 4. Outstanding points now.
    outstanding = Account.objects.filter(_scope(stores, "member__home_store"), currency=Currency.POINTS).aggregate(
        balance=Coalesce(Sum("balance"), 0), pending=Coalesce(Sum("pending"), 0), owed=Coalesce(Sum("owed"), 0)
    )

    # 5-6. Retention by monthly cohort of the members who joined in the period.
    cohorts = _cohorts(now, period, since, until, members_in_scope, stores)

    # 7-8. Members per tier now, in rank order (tiers nobody holds included).
    held = dict(
        MemberTier.objects.filter(_scope(stores, "member__home_store"))
        .values("tier")
        .annotate(n=Count("id"))
        .values_list("tier", "n")
        .order_by()
    )
    tiers = [
        TierCount(name=tier.name, members=held.get(tier.pk, 0), pk=tier.pk, code=tier.code)
        for tier in Tier.objects.order_by("rank")
    ]

    return Dashboard(
        as_of=now,
        period=period,
        members_total=members["total"],
        members_new=members["new"],
        buyers=buyers["all"],
        repeat_buyers=buyers["repeat"],
        points_by_month=points_by_month,
        outstanding_points=outstanding["balance"],
        pending_points=outstanding["pending"],
        owed_points=outstanding["owed"],
        point_value=point_value(),
        cohorts=cohorts,
        tiers=tiers,
        without_tier=members["total"] - sum(held.values()),
        # 9-11. Funnel and RFM now, stage moves of the period.
        **_lifecycle(now, period, stores),
        # 12-13. Customer value over the scope's members.
        value=member_metrics(members_in_scope, now=now),
        stores=None if stores is None else tuple(stores),
        deliveries=delivery_counts(since=now - dt.timedelta(days=30), stores=stores),
    )


def _store_ids(stores: Iterable[int | Store] | None) -> list[int] | None:
    """``stores`` as a sorted list of distinct ids: store ids, stores, or a queryset of either."""
    if stores is None:
        return None
    return sorted({getattr(store, "pk", store) for store in stores})


def cache_key(stores: list[int] | None, period: Period | None = None) -> str:
    """The cache entry of a scope and period: the brand-wide one, or one per set of stores."""
    suffix = "" if period is None else f":{period.start:%Y%m%d}-{period.end:%Y%m%d}"
    if stores is None:
        return CACHE_KEY + suffix
    ids = ",".join(str(pk) for pk in stores)
    if len(ids) > 150:  # keep keys short (memcached refuses keys over 250 characters)
        ids = hashlib.sha256(ids.encode()).hexdigest()
    return f"{CACHE_KEY}:stores:{ids}{suffix}"


def dashboard(
    *,
    stores: Iterable[int | Store] | None = None,
    refresh: bool = False,
    now: dt.datetime | None = None,
    period: Period | None = None,
) -> Dashboard:
    """The figures of ``stores`` (ids or stores; None: every store) over ``period`` from the cache.

    Computed when missing, stale or asked for (``refresh``); a refresh recomputes this
    scope only. Each scope has its own cache entry, so figures are never served to a
    scope they were not computed for.
    """
    stores = _store_ids(stores)
    period = period or period_preset(DEFAULT_PRESET, timezone.localdate(now or timezone.now()))
    key = cache_key(stores, period)
    if not refresh:
        cached = cache.get(key)
        if cached is not None:
            return cached
    figures = compute(now, stores=stores, period=period)
    cache.set(key, figures, settings.LOYALTY_DASHBOARD_CACHE_SECONDS)
    return figures
