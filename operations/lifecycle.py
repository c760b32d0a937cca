"""Lifecycle stage and RFM per member, recomputed nightly from orders (docs/lifecycle.md).

:func:`members_refresh_profiles` is the nightly job (the celery task
``members.refresh_lifecycle`` wraps it in a job lock). It works in member-id chunks, one
transaction each, and decides everything from the orders, so it is safe to run twice and
safe to stop halfway and rerun: a chunk whose members already have today's stage writes no
stage change.

- PostgreSQL: one set-based statement per chunk (:data:`CHUNK_SQL`) aggregates the chunk's
  orders, decides stage and scores, inserts the stage changes and updates the members. Its
  stage CASE is generated from :data:`STAGE_RULES`, the table the Python path reads.
- Elsewhere (SQLite, the embedded default for a first run): the same rules in Python over
  one chunk's aggregated rows (:func:`_chunk_portable`), written with ``bulk_create`` and
  ``bulk_update``.

RFM scores are quintiles over the *active base* (members with a counted order within
``LOYALTY_RFM_WINDOW_DAYS``). The cut points (20/40/60/80th percentiles, linear
interpolation like ``percentile_cont``) are computed once over the whole base, then every
chunk scores its members against them.

The selectors at the end (:func:`stage_counts`, :func:`rfm_grid`, :func:`stage_moves`)
are reads for the API, the admin and the bench.
"""

import datetime as dt
import operator
import time
from collections import Counter
from collections.abc import Sequence
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, DecimalField, ExpressionWrapper, F, Max, Min, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from core.db import is_postgresql
from loyalty.models import ORDERS_COUNTING_SQL, Order
from members.models import Member, RfmSegment, Stage, StageChange

QUANTILES = (0.2, 0.4, 0.6, 0.8)

# Segment per (R, FM) where FM = (F + M + 1) // 2, the rounded-up mean of F and M. The
# widely used R/FM grid (docs/lifecycle.md draws it). Members with a counted order ever
# but none within the RFM window are LOST; members who never ordered have no segment.
_SEGMENT_RULES = [
    ((1, 2), (1, 2), RfmSegment.HIBERNATING),
    ((1, 2), (3, 4), RfmSegment.AT_RISK),
    ((1, 2), (5,), RfmSegment.CANT_LOSE),
    ((3,), (1, 2), RfmSegment.ABOUT_TO_SLEEP),
    ((3,), (3,), RfmSegment.NEED_ATTENTION),
    ((3, 4), (4, 5), RfmSegment.LOYAL),
    ((4,), (1,), RfmSegment.PROMISING),
    ((4, 5), (2, 3), RfmSegment.POTENTIAL),
    ((5,), (1,), RfmSegment.NEW_CUSTOMERS),
    ((5,), (4, 5), RfmSegment.CHAMPIONS),
]
SEGMENTS: dict[tuple[int, int], str] = {
    (r, fm): segment.value for rs, fms, segment in _SEGMENT_RULES for r in rs for fm in fms
}
assert len(SEGMENTS) == 25, "every (R, FM) cell has exactly one segment"


def rfm_segment(recency: int | None, frequency: int | None, monetary: int | None, *, ever_ordered: bool) -> str:
    """The segment the three scores form; LOST for a past customer outside the window, "" for none."""
    if recency is None:
        return RfmSegment.LOST.value if ever_ordered else ""
    return SEGMENTS[(recency, (frequency + monetary + 1) // 2)]


# --- lifecycle stages ---------------------------------------------------------------------

# The stage rules, first match wins: (stage, conditions that must all hold). A condition is
# (figure, operator, limit); a limit is an attribute of the run (a str: an instant or a
# setting derived from ``now``) or a number. Python (``_Run.stage``, the portable path)
# reads this table and the PostgreSQL statement's CASE is generated from it
# (:func:`stage_case_sql`), so the two cannot drift apart.
STAGE_RULES: tuple[tuple[Stage, tuple[tuple[str, str, str | int], ...]], ...] = (
    (Stage.NEW, (("joined_at", ">", "new_since"), ("orders", "<", 2))),
    (Stage.CHURNED, (("reference", "<=", "churned_before"),)),
    (Stage.DORMANT, (("reference", "<=", "dormant_before"),)),
    (Stage.MATURE, (("orders_year", ">=", "mature_orders"),)),
)
STAGE_OTHERWISE = Stage.GROWING

_OPERATORS = {">": operator.gt, "<": operator.lt, ">=": operator.ge, "<=": operator.le}

# Each figure in CHUNK_SQL's terms: ``m`` the member, ``o`` their aggregated counted orders.
# "reference" is the last order, or joining for a member who never ordered.
_STAGE_FIGURES_SQL = {
    "joined_at": "m.joined_at",
    "orders": "coalesce(o.n, 0)",
    "reference": "coalesce(o.last_at, m.joined_at)",
    "orders_year": "coalesce(o.n_year, 0)",
}


def stage_case_sql() -> str:
    """The ``CASE`` expression of :data:`STAGE_RULES` for CHUNK_SQL (limits as ``%(name)s`` parameters)."""
    whens = []
    for stage, conditions in STAGE_RULES:
        test = " AND ".join(
            f"{_STAGE_FIGURES_SQL[figure]} {op} {f'%({limit})s' if isinstance(limit, str) else int(limit)}"
            for figure, op, limit in conditions
        )
        whens.append(f"WHEN {test} THEN '{stage.value}'")
    return f"CASE {' '.join(whens)} ELSE '{STAGE_OTHERWISE.value}' END"


# --- the thresholds of one run ---------------------------------------------------------


class _Run:
    """The instants and cut points one run decides against (all derived from ``now``)."""

    def __init__(self, now: dt.datetime):
        self.now = now
        self.new_since = now - dt.timedelta(days=settings.LOYALTY_STAGE_NEW_DAYS)
        self.dormant_before = now - dt.timedelta(days=settings.LOYALTY_STAGE_DORMANT_DAYS)
        self.churned_before = now - dt.timedelta(days=settings.LOYALTY_STAGE_CHURNED_DAYS)
        self.year_ago = now - dt.timedelta(days=365)
        self.window_since = now - dt.timedelta(days=settings.LOYALTY_RFM_WINDOW_DAYS)
        self.mature_orders = settings.LOYALTY_STAGE_MATURE_ORDERS
        self.base = 0
        # Cut points of recency in whole days, orders and spend in the window.
        self.cuts: dict[str, list[float]] = {"r": [0.0] * 4, "f": [0.0] * 4, "m": [0.0] * 4}

    def params(self, lo: int, hi: int) -> dict:
        params = {
            "lo": lo,
            "hi": hi,
            "now": self.now,
            "new_since": self.new_since,
            "dormant_before": self.dormant_before,
            "churned_before": self.churned_before,
            "year_ago": self.year_ago,
            "window_since": self.window_since,
            "mature_orders": self.mature_orders,
        }
        for key, cuts in self.cuts.items():
            for i, cut in enumerate(cuts, start=1):
                params[f"{key}{i}"] = float(cut)
        return params

    def stage(self, *, joined_at: dt.datetime, orders: int, last_order_at, orders_year: int) -> str:
        """The member's stage by :data:`STAGE_RULES`, the first rule that holds."""
        figures = {
            "joined_at": joined_at,
            "orders": orders,
            "reference": last_order_at or joined_at,
            "orders_year": orders_year,
        }
        for stage, conditions in STAGE_RULES:
            if all(
                _OPERATORS[op](figures[figure], getattr(self, limit) if isinstance(limit, str) else limit)
                for figure, op, limit in conditions
            ):
                return stage.value
        return STAGE_OTHERWISE.value

    def recency_days(self, last: dt.datetime) -> int:
        return int((self.now - last).total_seconds() // 86400)

    def scores(self, *, days: int, orders: int, spend: Decimal) -> tuple[int, int, int]:
        r = 5 - sum(days > cut for cut in self.cuts["r"])
        f = 1 + sum(orders > cut for cut in self.cuts["f"])
        m = 1 + sum(float(spend) > cut for cut in self.cuts["m"])
        return r, f, m


_SPEND = ExpressionWrapper(
    F("amount") - F("refunded_amount"), output_field=DecimalField(max_digits=14, decimal_places=2)
)


def percentile_cont(values: Sequence[float], fraction: float) -> float:
    """PostgreSQL's ``percentile_cont`` over sorted ``values``: linear interpolation between ranks."""
    if not values:
        return 0.0
    position = fraction * (len(values) - 1)
    below = int(position)
    above = min(below + 1, len(values) - 1)
    return values[below] + (values[above] - values[below]) * (position - below)


CUTS_SQL = f"""
WITH base AS (
    SELECT floor(extract(epoch FROM (%(now)s - max(o.occurred_at))) / 86400) AS r_days,
           count(*) AS f, sum(o.amount - o.refunded_amount) AS m
    FROM loyalty_order o
    WHERE {ORDERS_COUNTING_SQL} AND o.occurred_at > %(window_since)s AND o.occurred_at <= %(now)s
    GROUP BY o.member_id
)
SELECT count(*),
       percentile_cont(%(q)s::float8[]) WITHIN GROUP (ORDER BY r_days),
       percentile_cont(%(q)s::float8[]) WITHIN GROUP (ORDER BY f),
       percentile_cont(%(q)s::float8[]) WITHIN GROUP (ORDER BY m)
FROM base
"""


def _cuts_sql(run: _Run) -> None:
    """Set the run's base size and quintile cut points: one pass over the window's orders."""
    with connection.cursor() as cursor:
        cursor.execute(CUTS_SQL, {"now": run.now, "window_since": run.window_since, "q": list(QUANTILES)})
        base, r_cuts, f_cuts, m_cuts = cursor.fetchone()
    run.base = base
    if base:
        run.cuts = {"r": list(r_cuts), "f": list(f_cuts), "m": list(m_cuts)}


def _cuts_portable(run: _Run) -> None:
    """The same as :func:`_cuts_sql`, with the percentiles taken in Python (small databases)."""
    rows = list(
        Order.objects.counting()
        .filter(occurred_at__gt=run.window_since, occurred_at__lte=run.now)
        .values("member_id")
        .annotate(last=Max("occurred_at"), f=Count("id"), m=Sum(_SPEND))
        .values_list("last", "f", "m")
    )
    run.base = len(rows)
    if rows:
        columns = {
            "r": sorted(run.recency_days(last) for last, _f, _m in rows),
            "f": sorted(float(f) for _l, f, _m in rows),
            "m": sorted(float(m) for _l, _f, m in rows),
        }
        run.cuts = {key: [percentile_cont(values, q) for q in QUANTILES] for key, values in columns.items()}


# --- one chunk, PostgreSQL ---------------------------------------------------------------

_SEGMENT_VALUES = ", ".join(f"({r}, {fm}, '{name}')" for (r, fm), name in sorted(SEGMENTS.items()))

CHUNK_SQL = f"""
WITH ord AS (
    SELECT o.member_id,
           count(*) AS n,
           sum(o.amount - o.refunded_amount) AS spend,
           min(o.occurred_at) AS first_at,
           max(o.occurred_at) AS last_at,
           count(*) FILTER (WHERE o.occurred_at > %(year_ago)s) AS n_year,
           count(*) FILTER (WHERE o.occurred_at > %(window_since)s) AS n_win,
           sum(o.amount - o.refunded_amount) FILTER (WHERE o.occurred_at > %(window_since)s) AS spend_win
    FROM loyalty_order o
    WHERE o.member_id >= %(lo)s AND o.member_id < %(hi)s
      AND {ORDERS_COUNTING_SQL} AND o.occurred_at <= %(now)s
    GROUP BY o.member_id
),
calc AS (
    SELECT m.id, m.stage AS old_stage,
           coalesce(o.n, 0) AS n, coalesce(o.spend, 0) AS spend, o.first_at, o.last_at,
           {stage_case_sql()} AS stage,
           floor(extract(epoch FROM (%(now)s - o.last_at)) / 86400) AS r_days,
           coalesce(o.n_win, 0) AS n_win, o.spend_win::float8 AS spend_win
    FROM members_member m
    LEFT JOIN ord o ON o.member_id = m.id
    WHERE m.id >= %(lo)s AND m.id < %(hi)s
),
scored AS (
    SELECT c.*,
           CASE WHEN c.n_win > 0 THEN 5 - (c.r_days > %(r1)s)::int - (c.r_days > %(r2)s)::int
                                        - (c.r_days > %(r3)s)::int - (c.r_days > %(r4)s)::int END AS r,
           CASE WHEN c.n_win > 0 THEN 1 + (c.n_win > %(f1)s)::int + (c.n_win > %(f2)s)::int
                                        + (c.n_win > %(f3)s)::int + (c.n_win > %(f4)s)::int END AS f,
           CASE WHEN c.n_win > 0 THEN 1 + (c.spend_win > %(m1)s)::int + (c.spend_win > %(m2)s)::int
                                        + (c.spend_win > %(m3)s)::int + (c.spend_win > %(m4)s)::int END AS mo
    FROM calc c
),
named AS (
    SELECT s.*,
           CASE WHEN s.r IS NOT NULL THEN seg.name WHEN s.n > 0 THEN 'lost' ELSE '' END AS segment
    FROM scored s
    LEFT JOIN (VALUES {_SEGMENT_VALUES}) seg(r, fm, name) ON seg.r = s.r AND seg.fm = (s.f + s.mo + 1) / 2
),
changes AS (
    INSERT INTO members_stagechange (member_id, from_stage, to_stage, changed_at)
    SELECT id, old_stage, stage, %(now)s FROM named WHERE stage <> old_stage ORDER BY id
    RETURNING from_stage, to_stage
),
updated AS (
    UPDATE members_member m
    SET order_count = n.n, spend_total = n.spend, first_order_at = n.first_at, last_order_at = n.last_at,
        stage = n.stage,
        stage_since = CASE WHEN n.stage <> n.old_stage THEN %(now)s ELSE m.stage_since END,
        rfm_recency = n.r, rfm_frequency = n.f, rfm_monetary = n.mo, rfm_segment = n.segment,
        profile_refreshed_at = %(now)s
    FROM named n
    -- The range again, so the planner probes the chunk's ids instead of merging from id 1.
    WHERE m.id = n.id AND m.id >= %(lo)s AND m.id < %(hi)s
    RETURNING n.segment
)
SELECT 'move', from_stage || '->' || to_stage, count(*) FROM changes GROUP BY 2
UNION ALL
SELECT 'segment', segment, count(*) FROM updated GROUP BY 2
"""


def _chunk_sql(run: _Run, lo: int, hi: int, moves: Counter, segments: Counter) -> None:
    with connection.cursor() as cursor:
        cursor.execute(CHUNK_SQL, run.params(lo, hi))
        for kind, key, count in cursor.fetchall():
            (moves if kind == "move" else segments)[key] += count


# --- one chunk, portable (SQLite) ----------------------------------------------------------

_PROFILE_FIELDS = [
    "order_count",
    "spend_total",
    "first_order_at",
    "last_order_at",
    "stage",
    "stage_since",
    "rfm_recency",
    "rfm_frequency",
    "rfm_monetary",
    "rfm_segment",
    "profile_refreshed_at",
]


def _chunk_portable(run: _Run, lo: int, hi: int, moves: Counter, segments: Counter) -> None:
    in_year = Q(occurred_at__gt=run.year_ago)
    in_window = Q(occurred_at__gt=run.window_since)
    figures = {
        row["member_id"]: row
        for row in Order.objects.counting()
        .filter(member_id__gte=lo, member_id__lt=hi, occurred_at__lte=run.now)
        .values("member_id")
        .annotate(
            n=Count("id"),
            spend=Sum(_SPEND),
            first_at=Min("occurred_at"),
            last_at=Max("occurred_at"),
            n_year=Count("id", filter=in_year),
            n_win=Count("id", filter=in_window),
            spend_win=Sum(_SPEND, filter=in_window),
        )
    }
    members = list(Member.objects.filter(id__gte=lo, id__lt=hi).only("id", "joined_at", "stage", "stage_since"))
    changes = []
    for member in members:
        row = figures.get(member.pk, {})
        n = row.get("n", 0)
        stage = run.stage(
            joined_at=member.joined_at, orders=n, last_order_at=row.get("last_at"), orders_year=row.get("n_year", 0)
        )
        if stage != member.stage:
            changes.append(
                StageChange(member_id=member.pk, from_stage=member.stage, to_stage=stage, changed_at=run.now)
            )
            moves[f"{member.stage}->{stage}"] += 1
            member.stage, member.stage_since = stage, run.now
        if row.get("n_win"):
            r, f, m = run.scores(days=run.recency_days(row["last_at"]), orders=row["n_win"], spend=row["spend_win"])
        else:
            r = f = m = None
        member.rfm_recency, member.rfm_frequency, member.rfm_monetary = r, f, m
        member.rfm_segment = rfm_segment(r, f, m, ever_ordered=n > 0)
        segments[member.rfm_segment] += 1
        member.order_count, member.spend_total = n, row.get("spend") or Decimal(0)
        member.first_order_at, member.last_order_at = row.get("first_at"), row.get("last_at")
        member.profile_refreshed_at = run.now
    StageChange.objects.bulk_create(changes)
    Member.objects.bulk_update(members, _PROFILE_FIELDS, batch_size=500)


# --- the job -------------------------------------------------------------------------------


def members_refresh_profiles(*, now: dt.datetime | None = None, chunk_size: int = 5000) -> dict:
    """Recompute every member's order figures, lifecycle stage and RFM scores and segment.

    One transaction per chunk of ``chunk_size`` member ids. A member whose stage changes
    gets one ``StageChange`` (from, to, ``now``) and ``stage_since = now``; the others get
    none, so a second run with the same ``now`` writes no stage changes. Returns counts:
    members, the active RFM base, stage moves per ``from->to`` (``""`` is "not computed
    yet"), members per segment (``""``: never ordered), chunks, the longest chunk and the
    run's duration in seconds. It takes no lock itself: the celery task holds the job lock.
    """
    started = time.monotonic()
    run = _Run(now or timezone.now())
    if is_postgresql():
        cuts, chunk = _cuts_sql, _chunk_sql
    else:
        cuts, chunk = _cuts_portable, _chunk_portable
    cuts(run)
    moves: Counter = Counter()
    segments: Counter = Counter()
    bounds = Member.objects.aggregate(lo=Min("id"), hi=Max("id"), n=Count("id"))
    chunks, longest = 0, 0.0
    if bounds["lo"] is not None:
        for lo in range(bounds["lo"], bounds["hi"] + 1, chunk_size):
            chunk_started = time.monotonic()
            with transaction.atomic():
                chunk(run, lo, lo + chunk_size, moves, segments)
            chunks += 1
            longest = max(longest, time.monotonic() - chunk_started)
    return {
        "members": bounds["n"],
        "active_base": run.base,
        "cuts": {key: [round(float(c), 2) for c in cuts] for key, cuts in run.cuts.items()},
        "stage_changes": dict(sorted(moves.items())),
        "segments": dict(sorted(segments.items())),
        "chunks": chunks,
        "longest_chunk_s": round(longest, 3),
        "duration_s": round(time.monotonic() - started, 3),
    }


# --- selectors -----------------------------------------------------------------------------


def stage_counts() -> dict[str, int]:
    """Members per lifecycle stage, every stage present (members never computed are left out)."""
    counts = dict(
        Member.objects.exclude(stage="").values_list("stage").annotate(n=Count("id")).values_list("stage", "n")
    )
    return {stage: counts.get(stage, 0) for stage in Stage.values}


def rfm_grid() -> dict:
    """Counts for the RFM views: ``cells[R-1][F-1]`` members with those R and F scores,
    ``segments`` members per segment (every segment present), ``unscored`` members without
    scores (outside the active base or never computed)."""
    cells = [[0] * 5 for _ in range(5)]
    rows = (
        Member.objects.filter(rfm_recency__isnull=False)
        .values_list("rfm_recency", "rfm_frequency")
        .annotate(n=Count("id"))
        .values_list("rfm_recency", "rfm_frequency", "n")
    )
    for r, f, n in rows:
        cells[r - 1][f - 1] = n
    per_segment = dict(
        Member.objects.exclude(rfm_segment="")
        .values_list("rfm_segment")
        .annotate(n=Count("id"))
        .values_list("rfm_segment", "n")
    )
    return {
        "cells": cells,
        "segments": {segment: per_segment.get(segment, 0) for segment in RfmSegment.values},
        "unscored": Member.objects.filter(rfm_recency__isnull=True).count(),
    }


def stage_moves(*, days: int = 30, now: dt.datetime | None = None) -> list[dict]:
    """Stage changes per local day over the last ``days`` days (today included), per from -> to.

    Rows ``{"day": date, "from": stage, "to": stage, "count": n}`` ordered by day, then
    from and to; ``from`` is ``""`` for a member's first computed stage. One query.
    """
    today = timezone.localdate(now or timezone.now())
    first_day = today - dt.timedelta(days=days - 1)
    start = timezone.make_aware(dt.datetime.combine(first_day, dt.time.min))
    rows = (
        StageChange.objects.filter(changed_at__gte=start)
        .annotate(day=TruncDate("changed_at"))
        .values("day", "from_stage", "to_stage")
        .annotate(n=Count("id"))
        .order_by("day", "from_stage", "to_stage")
    )
    return [{"day": r["day"], "from": r["from_stage"], "to": r["to_stage"], "count": r["n"]} for r in rows]
