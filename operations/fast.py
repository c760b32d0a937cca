"""The FAST panel and new vs. returning customers (issue 20; docs/fast.md).

FAST is how a brand's operations team reads its member base, month by month:

- **F**, reachable base: active members (status active, not erased) we may send
  marketing to on a channel: consent on that channel, an address on it (SMS: the phone;
  email: an address; WeChat: a mini-program openid), and the channel among
  ``settings.LOYALTY_MARKETING_CHANNELS`` (the channels this deployment has a sender for).
  "any" is reachable on at least one of them.
- **A**, conversion between lifecycle stages, per month: of the members in a stage at the
  start of the month, the share in a target stage at its end (:data:`CONVERSIONS`). Stages
  at an instant are replayed from ``StageChange`` rows (the last change at or before it).
- **S**, super users: members (not erased) whose RFM segment is one of
  :data:`SUPER_SEGMENTS`, or who referred someone whose referral was rewarded. The RFM
  segment at a past instant is replayed with the nightly run's rule
  (operations.lifecycle: quintile cut points over the brand-wide active base, the same
  R/FM grid), so a month's figure is what the nightly run would have said then.
- **T**, the share of super users with a counted order in the 30 days before the instant.

All figures are for the members whose home store is in scope (a list of store ids, or
None for the whole brand); the RFM cut points are always brand-wide, like the nightly run.
A month's snapshot figure is taken at the month's end (for the current month: ``now``).

New vs. returning: counted orders (``Order.objects.counting()``, ``ORDERS_COUNTING_SQL``)
per month, split by whether the order is the member's first counted order ever (in any
store) or a repeat; revenue is ``amount - refunded_amount``; scoped by the order's store,
like the dashboard's sales figures.

Every figure is one set-based statement over the whole period (PostgreSQL only); each
has a member-id twin (:func:`figure_member_ids`) the page lists as the figure's members.
"""

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from core.db import is_postgresql
from core.errors import LoyaltyError
from loyalty.models import ORDERS_COUNTING_SQL
from members.models import RfmSegment, Stage
from operations.lifecycle import QUANTILES, SEGMENTS

MONTHS = 12
ACTIVE_DAYS = 30
CHANNELS = ("sms", "email", "wechat")
CHANNEL_LABELS = {"sms": _("SMS"), "email": _("email"), "wechat": _("WeChat"), "any": _("any channel")}
SUPER_SEGMENTS = (RfmSegment.CHAMPIONS.value, RfmSegment.LOYAL.value)
# (code, from stage, target stages): "dormant -> active" is back to growing or mature.
CONVERSIONS = (
    ("new_growing", Stage.NEW.value, (Stage.GROWING.value, Stage.MATURE.value)),
    ("growing_mature", Stage.GROWING.value, (Stage.MATURE.value,)),
    ("dormant_active", Stage.DORMANT.value, (Stage.GROWING.value, Stage.MATURE.value)),
)
CONVERSION_LABELS = {
    "new_growing": _("new → growing or mature"),
    "growing_mature": _("growing → mature"),
    "dormant_active": _("dormant → growing or mature"),
}
CENT = Decimal("0.01")

# The address each channel needs, in members_member's columns.
_ADDRESS_SQL = {"sms": "TRUE", "email": "m.email <> ''", "wechat": "m.wechat_openid IS NOT NULL"}
_SCOPE_SQL = "(%(stores)s::bigint[] IS NULL OR m.home_store_id = ANY(%(stores)s::bigint[]))"
_ORDER_SCOPE_SQL = "(%(stores)s::bigint[] IS NULL OR o.store_id = ANY(%(stores)s::bigint[]))"


def marketing_channels() -> tuple[str, ...]:
    """The channels with a sender in this deployment (``LOYALTY_MARKETING_CHANNELS``), in a fixed order."""
    configured = set(settings.LOYALTY_MARKETING_CHANNELS)
    return tuple(channel for channel in CHANNELS if channel in configured)


def month_bounds(now: dt.datetime) -> list[dt.datetime]:
    """13 instants: the local starts of the last 12 months (the current one last), then ``now``."""
    local = timezone.localtime(now)
    year, month = local.year, local.month
    starts = []
    for back in range(MONTHS - 1, -1, -1):
        y, m = divmod(year * 12 + month - 1 - back, 12)
        starts.append(timezone.make_aware(dt.datetime(y, m + 1, 1)))
    return [*starts, now]


def _require_postgresql() -> None:
    if not is_postgresql():
        raise LoyaltyError("unsupported", str(_("The FAST panel needs PostgreSQL.")))


def _rows(sql: str, params: dict) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _ratio(part: int, whole: int) -> float | None:
    return None if not whole else float(Decimal(part) / Decimal(whole))


# --- F: reachable base ----------------------------------------------------------------------


def _reach_at_sql(channel: str, channels: tuple[str, ...]) -> str:
    """When a member became reachable on ``channel`` (NULL: not reachable now)."""
    if channel == "any":
        parts = [_reach_at_sql(c, channels) for c in channels]
        return f"LEAST({', '.join(parts)})" if parts else "NULL::timestamptz"
    return (
        f"CASE WHEN m.{channel}_consent_at IS NOT NULL AND {_ADDRESS_SQL[channel]} "
        f"THEN GREATEST(m.joined_at, m.{channel}_consent_at) END"
    )


_MEMBER_BASE_SQL = f"FROM members_member m WHERE m.status = 'active' AND m.erased_at IS NULL AND {_SCOPE_SQL}"


def _reach_sql(channels: tuple[str, ...]) -> str:
    columns = []
    for channel in (*channels, "any"):
        reach = _reach_at_sql(channel, channels)
        columns += [f"count(*) FILTER (WHERE {reach} <= %(p{i})s)" for i in range(MONTHS)]
    return f"SELECT {', '.join(columns)} {_MEMBER_BASE_SQL}"


# --- A: stage conversion --------------------------------------------------------------------

_SNAPSHOT_CTE = f"""
b AS (SELECT at, i FROM unnest(%(bounds)s::timestamptz[]) WITH ORDINALITY t(at, i)),
iv AS (
    SELECT sc.member_id, sc.to_stage AS stage, sc.changed_at AS since,
           lead(sc.changed_at) OVER (PARTITION BY sc.member_id ORDER BY sc.changed_at, sc.id) AS until
    FROM members_stagechange sc JOIN members_member m ON m.id = sc.member_id
    WHERE sc.changed_at <= %(last)s AND m.erased_at IS NULL AND {_SCOPE_SQL}
),
snap AS (
    SELECT b.i, iv.member_id, iv.stage
    FROM iv JOIN b ON iv.since <= b.at AND (iv.until IS NULL OR iv.until > b.at)
),
moves AS (
    SELECT s0.i - 1 AS month, s0.member_id, s0.stage AS from_stage, s1.stage AS to_stage
    FROM snap s0 JOIN snap s1 ON s1.member_id = s0.member_id AND s1.i = s0.i + 1
)
"""

CONVERSION_SQL = f"WITH {_SNAPSHOT_CTE} SELECT month, from_stage, to_stage, count(*) FROM moves GROUP BY 1, 2, 3"


# --- S and T: super users -------------------------------------------------------------------

_SUPER_CELLS = ", ".join(f"({r}, {fm})" for (r, fm), name in sorted(SEGMENTS.items()) if name in SUPER_SEGMENTS)


def _cut_sql(column: str, key: str, sign: str) -> str:
    return f" {sign} ".join(f"(w.{column} > c.{key}[{k}])::int" for k in range(1, len(QUANTILES) + 1))


_SUPER_CTE = f"""
p AS (SELECT at, i - 1 AS i FROM unnest(%(points)s::timestamptz[]) WITH ORDINALITY t(at, i)),
win AS (
    SELECT p.i, o.member_id,
           floor(extract(epoch FROM (p.at - max(o.occurred_at))) / 86400) AS r_days,
           count(*) AS f, sum(o.amount - o.refunded_amount) AS mo
    FROM p JOIN loyalty_order o
      ON o.occurred_at > p.at - %(window_days)s * interval '1 day' AND o.occurred_at <= p.at
    WHERE {ORDERS_COUNTING_SQL}
    GROUP BY p.i, p.at, o.member_id
),
cuts AS (
    SELECT i, percentile_cont(%(q)s::float8[]) WITHIN GROUP (ORDER BY r_days) AS rc,
              percentile_cont(%(q)s::float8[]) WITHIN GROUP (ORDER BY f) AS fc,
              percentile_cont(%(q)s::float8[]) WITHIN GROUP (ORDER BY mo) AS mc
    FROM win GROUP BY i
),
scored AS (
    SELECT w.i, w.member_id,
           5 - {_cut_sql("r_days", "rc", "-")} AS r,
           1 + {_cut_sql("f", "fc", "+")} AS f,
           1 + {_cut_sql("mo::float8", "mc", "+")} AS mo
    FROM win w JOIN cuts c USING (i)
),
super AS (
    SELECT s.i, s.member_id FROM scored s
    JOIN (VALUES {_SUPER_CELLS}) cell(r, fm) ON cell.r = s.r AND cell.fm = (s.f + s.mo + 1) / 2
    UNION
    SELECT p.i, r.referrer_id FROM p JOIN engagement_referral r ON r.status = 'rewarded' AND r.decided_at <= p.at
),
scoped AS (
    SELECT su.i, su.member_id, EXISTS (
               SELECT 1 FROM loyalty_order o
               WHERE o.member_id = su.member_id AND {ORDERS_COUNTING_SQL}
                 AND o.occurred_at > p.at - %(active_days)s * interval '1 day' AND o.occurred_at <= p.at
           ) AS active
    FROM super su JOIN p ON p.i = su.i JOIN members_member m ON m.id = su.member_id
    WHERE m.erased_at IS NULL AND {_SCOPE_SQL}
)
"""

SUPER_SQL = f"WITH {_SUPER_CTE} SELECT i, count(*), count(*) FILTER (WHERE active) FROM scoped GROUP BY i"


# --- new vs. returning ----------------------------------------------------------------------

_RETURNING_CTE = f"""
ranked AS (
    SELECT o.id, o.store_id, o.member_id, o.occurred_at, o.amount - o.refunded_amount AS net,
           row_number() OVER (PARTITION BY o.member_id ORDER BY o.occurred_at, o.id) = 1 AS first
    FROM loyalty_order o
    WHERE {ORDERS_COUNTING_SQL} AND o.occurred_at < %(end)s
      AND o.member_id IN (SELECT DISTINCT o2.member_id FROM loyalty_order o2
                          WHERE o2.occurred_at >= %(start)s AND o2.occurred_at < %(end)s)
),
b AS (SELECT at, lead(at) OVER (ORDER BY at) AS until, i - 1 AS month
      FROM unnest(%(bounds)s::timestamptz[]) WITH ORDINALITY t(at, i)),
monthly AS (
    SELECT b.month, o.member_id, o.first, o.net
    FROM ranked o JOIN b ON o.occurred_at >= b.at AND o.occurred_at < b.until
    WHERE {_ORDER_SCOPE_SQL}
)
"""

RETURNING_SQL = f"""WITH {_RETURNING_CTE}
SELECT month, first, count(*), coalesce(sum(net), 0), count(DISTINCT member_id) FROM monthly GROUP BY 1, 2"""


# --- the panel --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Conversion:
    code: str
    from_stage: str
    targets: tuple[str, ...]
    base: list[int]  # per month: members in the from stage at its start
    converted: list[int]  # ... in a target stage at its end

    @property
    def rates(self) -> list[float | None]:
        return [_ratio(c, b) for c, b in zip(self.converted, self.base, strict=True)]


@dataclass(frozen=True)
class OrderSplit:
    orders: int = 0
    revenue: Decimal = Decimal(0)
    customers: int = 0

    @property
    def aov(self) -> Decimal | None:
        return None if not self.orders else (self.revenue / self.orders).quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class ReturningMonth:
    month: dt.date
    first: OrderSplit
    repeat: OrderSplit

    @property
    def repeat_revenue_share(self) -> float | None:
        return _ratio(self.repeat.revenue, self.first.revenue + self.repeat.revenue)


@dataclass(frozen=True)
class Panel:
    now: dt.datetime
    stores: list[int] | None
    months: list[dt.date]  # the first day of each of the 12 months, oldest first
    channels: tuple[str, ...]
    reachable: dict[str, list[int]]  # channel (and "any") -> members at each month's end
    conversions: list[Conversion]
    super_users: list[int]  # at each month's end
    super_active: list[int]  # ... with a counted order in the 30 days before
    returning: list[ReturningMonth] = field(default_factory=list)

    @property
    def super_active_share(self) -> list[float | None]:
        return [_ratio(a, s) for a, s in zip(self.super_active, self.super_users, strict=True)]


def _params(now: dt.datetime, stores: list[int] | None) -> dict:
    bounds = month_bounds(now)
    params = {
        "stores": None if stores is None else [int(s) for s in stores],
        "bounds": bounds,
        "points": bounds[1:],
        "last": now,
        "start": bounds[0],
        "end": now,
        "window_days": settings.LOYALTY_RFM_WINDOW_DAYS,
        "active_days": ACTIVE_DAYS,
        "q": list(QUANTILES),
    }
    params.update({f"p{i}": at for i, at in enumerate(bounds[1:])})
    return params


def fast_panel(*, now: dt.datetime | None = None, stores: list[int] | None = None) -> Panel:
    """The FAST figures and new vs. returning, per month over the last 12, for ``stores``
    (store ids; None: the whole brand). Four statements, whatever the number of members."""
    _require_postgresql()
    now = now or timezone.now()
    params = _params(now, stores)
    channels = marketing_channels()

    (reach_row,) = _rows(_reach_sql(channels), params)
    reachable = {
        channel: list(reach_row[k * MONTHS : (k + 1) * MONTHS]) for k, channel in enumerate((*channels, "any"))
    }

    moves: dict[tuple[int, str, str], int] = {}
    for month, before, after, n in _rows(CONVERSION_SQL, params):
        moves[(month, before, after)] = n
    conversions = []
    for code, before, targets in CONVERSIONS:
        base = [sum(n for (m, b, _a), n in moves.items() if m == month and b == before) for month in range(MONTHS)]
        converted = [sum(moves.get((month, before, t), 0) for t in targets) for month in range(MONTHS)]
        conversions.append(Conversion(code, before, targets, base, converted))

    supers, active = [0] * MONTHS, [0] * MONTHS
    for i, n, n_active in _rows(SUPER_SQL, params):
        supers[i], active[i] = n, n_active

    splits: dict[tuple[int, bool], OrderSplit] = {}
    for month, first, n, revenue, customers in _rows(RETURNING_SQL, params):
        splits[(month, first)] = OrderSplit(n, Decimal(revenue), customers)
    months = [timezone.localtime(at).date() for at in params["bounds"][:MONTHS]]
    returning = [
        ReturningMonth(day, splits.get((i, True), OrderSplit()), splits.get((i, False), OrderSplit()))
        for i, day in enumerate(months)
    ]
    return Panel(now, stores, months, channels, reachable, conversions, supers, active, returning)


CACHE_KEY = "operations:fast-panel"


def fast_panel_cached(*, stores: list[int] | None = None, refresh: bool = False) -> Panel:
    """:func:`fast_panel` for ``stores`` from the cache (``LOYALTY_DASHBOARD_CACHE_SECONDS``),
    computed when missing or asked for (``refresh``). Each scope has its own entry, so a
    store manager is never served figures computed for another scope."""
    stores = None if stores is None else sorted({int(s) for s in stores})
    key = CACHE_KEY if stores is None else f"{CACHE_KEY}:stores:{','.join(map(str, stores))}"
    if len(key) > 200:  # memcached refuses keys over 250 characters
        key = f"{CACHE_KEY}:stores:{hashlib.sha256(key.encode()).hexdigest()}"
    if not refresh:
        cached = cache.get(key)
        if cached is not None:
            return cached
    panel = fast_panel(stores=stores)
    cache.set(key, panel, settings.LOYALTY_DASHBOARD_CACHE_SECONDS)
    return panel


# --- drill-down -------------------------------------------------------------------------------

FIGURES = ("reachable", "conversion", "converted", "super", "super_active", "first", "repeat")


def figure_member_ids_sql(
    figure: str, *, month: int, channel: str = "any", conversion: str = "", now: dt.datetime, stores: list[int] | None
) -> tuple[str, dict]:
    """The statement listing the member ids behind one figure of :func:`fast_panel`, and its
    parameters. ``month`` is 0 (oldest) to 11 (current). Refuses an unknown figure, month,
    channel or conversion (``invalid``)."""
    _require_postgresql()
    if figure not in FIGURES:
        raise LoyaltyError("invalid", str(_("Unknown figure.")))
    if not 0 <= month < MONTHS:
        raise LoyaltyError("invalid", str(_("The month must be one of the last 12.")))
    params = _params(now, stores)
    params["month"] = month
    if figure == "reachable":
        channels = marketing_channels()
        if channel != "any" and channel not in channels:
            raise LoyaltyError("invalid", str(_("Unknown channel.")))
        return f"SELECT m.id {_MEMBER_BASE_SQL} AND {_reach_at_sql(channel, channels)} <= %(p{month})s", params
    if figure in ("conversion", "converted"):
        found = {code: (before, targets) for code, before, targets in CONVERSIONS}
        if conversion not in found:
            raise LoyaltyError("invalid", str(_("Unknown conversion.")))
        before, targets = found[conversion]
        params.update(before=before, targets=list(targets))
        target = " AND to_stage = ANY(%(targets)s)" if figure == "converted" else ""
        return (
            f"WITH {_SNAPSHOT_CTE} SELECT member_id FROM moves"
            f" WHERE month = %(month)s AND from_stage = %(before)s{target}",
            params,
        )
    if figure in ("super", "super_active"):
        active = " AND active" if figure == "super_active" else ""
        return f"WITH {_SUPER_CTE} SELECT member_id FROM scoped WHERE i = %(month)s{active}", params
    first = "" if figure == "first" else "NOT "
    return (
        f"WITH {_RETURNING_CTE} SELECT DISTINCT member_id FROM monthly WHERE month = %(month)s AND {first}first",
        params,
    )


def figure_member_ids(figure: str, **kwargs) -> list[int]:
    """The member ids behind one figure (see :func:`figure_member_ids_sql`), ascending."""
    sql, params = figure_member_ids_sql(figure, **kwargs)
    return sorted(row[0] for row in _rows(sql, params))


def figure_members_page(figure: str, *, page: int = 1, per_page: int = 100, **kwargs) -> tuple[int, list[int]]:
    """How many members one figure has, and the ids on ``page`` (1-based, ascending): one
    statement, so a figure of a million members costs one count and one page."""
    sql, params = figure_member_ids_sql(figure, **kwargs)
    params.update(page_limit=per_page, page_offset=max(0, page - 1) * per_page)
    rows = _rows(
        f"SELECT count(*) OVER (), id FROM ({sql}) f(id) ORDER BY id LIMIT %(page_limit)s OFFSET %(page_offset)s",
        params,
    )
    if not rows:
        return (_rows(f"SELECT count(*) FROM ({sql}) f(id)", params)[0][0] if page > 1 else 0), []
    return rows[0][0], [row[1] for row in rows]
