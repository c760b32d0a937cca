"""The tier-policy simulator: replay every member's real growth history under a proposed
tier policy (thresholds, review period, growth window, soft landing) and under the
policy in force, and compare: who would move up or down, and what the tiers' benefits
would cost (docs/foresight.md, "Tier-policy simulator").

One read-only SQL statement over the growth entries (no row is written; nothing about
the programme changes until staff edit the tiers themselves). Growth is bucketed by
local month; a member's windowed growth at a month is what they earned in the last
``window`` months (entries net of refunds and cancellations; expiry is the window
itself). The replay covers the last two review periods, aligned to the current month:

1. the tier held going into the last review: the best tier whose *qualify* threshold the
   windowed growth reached at any month of the period before (upgrades are immediate);
2. the review at the start of the current period keeps the best tier whose *retain*
   threshold the growth met then, never above the tier held, and with soft landing at
   most one step below it;
3. the tier now: the better of the review's and the best tier whose qualify threshold
   the growth reached at any month of the current period.

Running the same replay under the policy in force gives the baseline, so the comparison
shows what the proposal changes, not where the replay's alignment of review dates differs
from each member's own.
"""

import datetime as dt
import time
from dataclasses import asdict, dataclass
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count
from django.utils import timezone
from django.utils.translation import gettext as _

from core.errors import LoyaltyError
from loyalty.models import Benefit, CouponKind, MemberTier, Tier
from loyalty.policies import ExpiryPolicy
from members.models import Member

from .models import SimulationRun
from .selectors import postgresql_required

# A growth window that never ends, for the "never" expiry policy.
NEVER_MONTHS = 1200
SAMPLE_MEMBERS = 10
WORK_MEM = "256MB"


@dataclass(frozen=True)
class TierRule:
    code: str
    name: str
    rank: int
    qualify: int
    retain: int


@dataclass(frozen=True)
class Policy:
    tiers: tuple[TierRule, ...]  # by rank, lowest first
    review_months: int
    window_months: int
    soft_landing: bool

    def as_dict(self) -> dict:
        return asdict(self)


def _window_months() -> int:
    policy = ExpiryPolicy.parse(settings.LOYALTY_GROWTH_EXPIRY)
    if policy.kind == "rolling":
        return policy.months_or_years
    if policy.kind == "calendar":
        return 12 * (policy.months_or_years + 1)
    return NEVER_MONTHS


def current_policy() -> Policy:
    """The tier policy in force: the tiers' thresholds and the settings."""
    return Policy(
        tiers=tuple(
            TierRule(t.code, t.name, t.rank, t.qualify_threshold, t.retain_threshold)
            for t in Tier.objects.order_by("rank")
        ),
        review_months=settings.LOYALTY_TIER_REVIEW_MONTHS,
        window_months=_window_months(),
        soft_landing=settings.LOYALTY_TIER_SOFT_LANDING,
    )


def policy_build(
    *, changes: dict[str, tuple[int, int]], review_months: int, window_months: int, soft_landing: bool
) -> Policy:
    """The policy in force with ``changes`` ({tier code: (qualify, retain)}) and the rules.

    Refuses: an unknown tier code (``unknown_tier``); a negative threshold or a retain
    threshold above the qualify one (``invalid_threshold``); qualify thresholds that do
    not rise with the tiers' rank (``thresholds_not_rising``); review or window outside 1-36
    months (``invalid_period``).
    """
    current = current_policy()
    known = {tier.code for tier in current.tiers}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise LoyaltyError("unknown_tier", _("No tier has the code %(codes)s.") % {"codes": ", ".join(unknown)})
    for months in (review_months, window_months):
        if not isinstance(months, int) or not 1 <= months <= 36:
            raise LoyaltyError("invalid_period", _("Review period and window are 1 to 36 months."))
    tiers = []
    for tier in current.tiers:
        qualify, retain = changes.get(tier.code, (tier.qualify, tier.retain))
        if qualify < 0 or retain < 0 or retain > qualify:
            raise LoyaltyError(
                "invalid_threshold",
                _("%(tier)s: thresholds are not negative and keeping the tier needs no more than reaching it.")
                % {"tier": tier.name},
            )
        tiers.append(TierRule(tier.code, tier.name, tier.rank, qualify, retain))
    if any(lower.qualify > higher.qualify for lower, higher in zip(tiers, tiers[1:], strict=False)):
        raise LoyaltyError("thresholds_not_rising", _("A higher tier cannot be easier to reach than a lower one."))
    return Policy(tuple(tiers), review_months, window_months, bool(soft_landing))


def policy_from_form(*, thresholds: str, review_months: int, window_months: int, soft_landing: bool) -> Policy:
    """:func:`policy_build` from the admin form's lines ``code qualify retain``."""
    changes = {}
    for number, line in enumerate((thresholds or "").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
            raise LoyaltyError(
                "invalid_threshold",
                _("Line %(n)s: write 'code qualify retain', e.g. 'gold 5000 4000'.") % {"n": number},
            )
        changes[parts[0]] = (int(parts[1]), int(parts[2]))
    return policy_build(
        changes=changes, review_months=review_months, window_months=window_months, soft_landing=soft_landing
    )


def _month_index(moment: dt.datetime) -> int:
    local = timezone.localtime(moment)
    return local.year * 12 + local.month - 1


def _month_start(index: int) -> dt.datetime:
    year, month = divmod(index, 12)
    return timezone.make_aware(dt.datetime(year, month + 1, 1), timezone.get_current_timezone())


def _position(column: str, thresholds: list[int]) -> str:
    """SQL: the position (0 = lowest tier) of the best tier whose threshold ``column`` meets."""
    branches = " ".join(
        f"WHEN {column} >= {int(value)} THEN {pos}" for pos, value in reversed(list(enumerate(thresholds))) if pos > 0
    )
    return f"(CASE {branches} ELSE 0 END)" if branches else "0"


def _replay(policy: Policy, now_index: int, suffix: str) -> tuple[str, str]:
    """The aggregate columns and the final tier position of ``policy``'s replay."""
    r, w = policy.review_months, policy.window_months
    review = now_index - r
    before = now_index - 2 * r
    aggregates = f"""
        greatest(max(w_{suffix}) FILTER (WHERE idx > {before} AND idx <= {review}),
                 coalesce(sum(s) FILTER (WHERE idx > {before} - {w} AND idx <= {before}), 0)::bigint) AS p1_{suffix},
        coalesce(sum(s) FILTER (WHERE idx > {review} - {w} AND idx <= {review}), 0)::bigint AS gr_{suffix},
        max(w_{suffix}) FILTER (WHERE idx > {review} AND idx <= {now_index}) AS p2_{suffix}"""
    qualify = [tier.qualify for tier in policy.tiers]
    retain = [tier.retain for tier in policy.tiers]
    held = _position(f"coalesce(p1_{suffix}, 0)", qualify)
    kept = f"least({held}, {_position(f'gr_{suffix}', retain)})"
    if policy.soft_landing:
        kept = f"greatest({kept}, {held} - 1)"
    reached = _position(f"greatest(coalesce(p2_{suffix}, 0), gr_{suffix})", qualify)
    return aggregates, f"greatest({kept}, {reached})"


def _replay_sql(current: Policy, proposal: Policy, now: dt.datetime, store_ids: list[int] | None) -> tuple[str, dict]:
    now_index = _month_index(now)
    longest = max(2 * p.review_months + p.window_months for p in (current, proposal))
    since = _month_start(now_index - longest + 1)
    cur_aggs, cur_pos = _replay(current, now_index, "c")
    new_aggs, new_pos = _replay(proposal, now_index, "p")
    scope = ""
    params: dict = {"since": since, "now": now, "tz": settings.TIME_ZONE, "sample": SAMPLE_MEMBERS}
    if store_ids is not None:
        scope = "AND e.member_id IN (SELECT id FROM members_member WHERE home_store_id = ANY(%(stores)s))"
        params["stores"] = store_ids
    sql = f"""
        WITH buckets AS (
            SELECT e.member_id,
                   (date_part('year', e.created_at AT TIME ZONE %(tz)s)::int * 12
                    + date_part('month', e.created_at AT TIME ZONE %(tz)s)::int - 1) AS idx,
                   sum(e.amount + e.pending_amount)::bigint AS s
            FROM loyalty_ledgerentry e
            WHERE e.currency = 'growth' AND e.kind <> 'expire'
              AND e.created_at >= %(since)s AND e.created_at <= %(now)s {scope}
            GROUP BY 1, 2
        ), windowed AS (
            SELECT member_id, idx, s,
                   sum(s) OVER (PARTITION BY member_id ORDER BY idx
                                RANGE BETWEEN {current.window_months - 1} PRECEDING AND CURRENT ROW)::bigint AS w_c,
                   sum(s) OVER (PARTITION BY member_id ORDER BY idx
                                RANGE BETWEEN {proposal.window_months - 1} PRECEDING AND CURRENT ROW)::bigint AS w_p
            FROM buckets
        ), members AS (
            SELECT member_id, {cur_aggs}, {new_aggs},
                   coalesce(sum(s) FILTER (WHERE idx > {now_index - 12}), 0) AS growth_12
            FROM windowed GROUP BY member_id
        ), placed AS (
            SELECT member_id, growth_12, {cur_pos} AS cur, {new_pos} AS new FROM members
        )
        SELECT cur, new, count(*), sum(growth_12),
               (array_agg(member_id ORDER BY member_id))[1:%(sample)s]
        FROM placed GROUP BY cur, new ORDER BY cur, new
    """
    return sql, params


def _benefit_costs(tiers: tuple[TierRule, ...]) -> tuple[list[Decimal], list[Decimal]]:
    """Per tier position: the yearly fixed benefit cost of one member in yuan, and the
    yuan cost of one growth point through the tier's earn multiplier.

    Counted: birthday points, birthday and monthly amount-off coupons (face value; twelve
    monthly ones), and the extra points of an earn multiplier on what the member earned
    (growth earned over the last 12 months, converted to points by the settings' rates).
    Percent-off, free-shipping, gift and text benefits have no value the programme knows.
    """
    value = Decimal(settings.LOYALTY_POINT_VALUE)
    points_per_growth = Decimal(settings.LOYALTY_POINTS_PER_YUAN) / Decimal(settings.LOYALTY_GROWTH_PER_YUAN or 1)
    position = {tier.code: pos for pos, tier in enumerate(tiers)}
    fixed = [Decimal(0)] * len(tiers)
    per_growth = [Decimal(0)] * len(tiers)
    for benefit in Benefit.objects.filter(is_active=True).select_related("tier"):
        pos = position.get(benefit.tier.code)
        if pos is None:
            continue
        if benefit.kind == Benefit.Kind.BIRTHDAY_POINTS:
            fixed[pos] += benefit.value * value
        elif benefit.kind == Benefit.Kind.BIRTHDAY_COUPON and benefit.coupon_kind == CouponKind.AMOUNT_OFF:
            fixed[pos] += benefit.value
        elif benefit.kind == Benefit.Kind.MONTHLY_COUPON and benefit.coupon_kind == CouponKind.AMOUNT_OFF:
            fixed[pos] += benefit.value * 12
        elif benefit.kind == Benefit.Kind.EARN_MULTIPLIER and benefit.value > 1:
            per_growth[pos] += (benefit.value - 1) * points_per_growth * value
    return fixed, per_growth


def _member_count(store_ids: list[int] | None) -> int:
    members = Member.objects.filter(erased_at__isnull=True)
    if store_ids is not None:
        members = members.filter(home_store_id__in=store_ids)
    return members.count()


def simulate(proposal: Policy, *, now: dt.datetime | None = None, store_ids: list[int] | None = None) -> dict:
    """Replay the growth of every member (of ``store_ids``, or all) under the policy in force
    and under ``proposal``; the figures as a JSON-ready dict. Writes nothing. PostgreSQL only."""
    postgresql_required()
    now = now or timezone.now()
    current = current_policy()
    if [t.code for t in current.tiers] != [t.code for t in proposal.tiers]:
        raise LoyaltyError("tiers_changed", _("The tiers changed since the proposal was made; start again."))
    sql, params = _replay_sql(current, proposal, now, store_ids)
    with transaction.atomic(), connection.cursor() as cursor:
        # The buckets of a million members sort in memory rather than on disk.
        cursor.execute(f"SET LOCAL work_mem = '{WORK_MEM}'")
        cursor.execute(sql, params)
        cells = cursor.fetchall()
    n = len(proposal.tiers)
    matrix = [[0] * n for _ in range(n)]
    growth = [[0] * n for _ in range(n)]
    samples: dict[str, list[int]] = {"up": [], "down": []}
    for cur, new, count, growth_12, sample in cells:
        matrix[cur][new] += count
        growth[cur][new] += int(growth_12 or 0)
        direction = "up" if new > cur else "down" if new < cur else None
        if direction and len(samples[direction]) < SAMPLE_MEMBERS:
            samples[direction].extend(sample[: SAMPLE_MEMBERS - len(samples[direction])])
    # Members without growth in the replayed months sit in the lowest tier either way.
    matrix[0][0] += max(0, _member_count(store_ids) - sum(map(sum, matrix)))
    actual = _actual_counts(proposal.tiers, store_ids)
    fixed_cur, rate_cur = _benefit_costs(current.tiers)
    fixed_new, rate_new = _benefit_costs(proposal.tiers)
    cost_cur = sum(
        matrix[c][p] * fixed_cur[c] + growth[c][p] * rate_cur[c] for c in range(n) for p in range(n)
    ) or Decimal(0)
    cost_new = sum(
        matrix[c][p] * fixed_new[p] + growth[c][p] * rate_new[p] for c in range(n) for p in range(n)
    ) or Decimal(0)
    tiers = [
        {
            "code": tier.code,
            "name": tier.name,
            "actual": actual.get(tier.code, 0),
            "baseline": sum(matrix[pos]),
            "proposed": sum(row[pos] for row in matrix),
        }
        for pos, tier in enumerate(proposal.tiers)
    ]
    return {
        "as_of": timezone.localtime(now).date().isoformat(),
        "current": current.as_dict(),
        "proposal": proposal.as_dict(),
        "tiers": tiers,
        "matrix": matrix,
        "moved_up": sum(matrix[c][p] for c in range(n) for p in range(n) if p > c),
        "moved_down": sum(matrix[c][p] for c in range(n) for p in range(n) if p < c),
        "samples": samples,
        "cost": {
            "baseline": str(Decimal(cost_cur).quantize(Decimal("0.01"))),
            "proposed": str(Decimal(cost_new).quantize(Decimal("0.01"))),
            "change": str(Decimal(cost_new - cost_cur).quantize(Decimal("0.01"))),
        },
        "scoped": store_ids is not None,
    }


def _actual_counts(tiers, store_ids: list[int] | None) -> dict[str, int]:
    states = MemberTier.objects.all()
    if store_ids is not None:
        states = states.filter(member__home_store_id__in=store_ids)
    return dict(states.values_list("tier__code").annotate(n=Count("id")).order_by())


def simulation_record(*, name: str, policy: Policy, actor, stores=None, now: dt.datetime | None = None):
    """Run :func:`simulate` and keep its figures as a :class:`SimulationRun` (the only row written)."""
    started = time.monotonic()
    store_ids = None if stores is None else list(stores.values_list("pk", flat=True))
    result = simulate(policy, now=now, store_ids=store_ids)
    return SimulationRun.objects.create(
        name=name,
        proposal=policy.as_dict(),
        result=result,
        seconds=round(time.monotonic() - started, 3),
        created_by=actor,
    )
