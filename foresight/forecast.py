"""The liability and breakage forecast (docs/foresight.md, "Liability forecast").

Fitted on the points earned in the last ``HISTORY_MONTHS`` months, by earning cohort
(the local month a lot was earned in): for every age (months since earning) the share of
what a cohort still held at the start of that age which was redeemed during it (spends,
less reversals). Projected over the next 12 months, starting with the current one, for
the points outstanding now (open lots, pending ones included), grouped by cohort and
expiry month: each month a group loses its age's redemption share, and what is left in
its expiry month expires (breakage). Liability is what is outstanding at each month's
end, in yuan at ``LOYALTY_POINT_VALUE``. Under another expiry policy the same groups
expire when that policy says (from their cohort month); redemption is assumed to follow
the same curve.

``fit`` and ``project`` are plain functions over the rows the two queries return, so the
tests check them against figures computed by hand.
"""

import datetime as dt
import time
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import connection
from django.utils import timezone
from django.utils.translation import gettext as _

from core.errors import LoyaltyError
from loyalty.policies import ExpiryPolicy, expiry_policy

from .models import ForecastRun
from .selectors import postgresql_required

HISTORY_MONTHS = 24
HORIZON = 12


def parse_policy(text: str) -> ExpiryPolicy:
    """An expiry policy from its text; refuses anything else (``invalid_policy``)."""
    try:
        return ExpiryPolicy.parse(text)
    except ValueError as error:
        raise LoyaltyError("invalid_policy", _("Write the expiry policy as rolling:N, calendar:N or never.")) from error


def month_index(moment: dt.datetime) -> int:
    local = timezone.localtime(moment)
    return local.year * 12 + local.month - 1


def month_label(index: int) -> str:
    year, month = divmod(index, 12)
    return f"{year}-{month + 1:02d}"


def expiry_month(policy: ExpiryPolicy, cohort: int) -> int | None:
    """The month index in which points earned in month ``cohort`` expire under ``policy``."""
    if policy.kind == "never":
        return None
    if policy.kind == "calendar":
        # Lots expire at the first moment of 1 January after the Nth year: January's figures.
        return (cohort // 12 + policy.months_or_years + 1) * 12
    return cohort + policy.months_or_years


@dataclass(frozen=True)
class Fit:
    """Per age: the redemption share, and the points it was fitted on."""

    shares: dict[int, float]
    exposure: dict[int, int]
    redeemed: dict[int, int]

    def share(self, age: int) -> float:
        if age in self.shares:
            return self.shares[age]
        older = [a for a in self.shares if a <= age]
        # Past the oldest age observed: the share of the oldest one.
        return self.shares[max(older)] if older else 0.0


def fit(earned: dict[int, int], consumed: list[tuple[int, int, str, int]], now_index: int) -> Fit:
    """The redemption share per age from cohorts' ``earned`` points ({cohort: points}) and
    the ``consumed`` rows (cohort, age, kind, points): kind ``spend`` redeems, ``reverse``
    gives back, every other kind (expiry, refund, cancellation) only lowers what is held.
    Only whole months count: a cohort is observed at ages before the current month's."""
    by_age: dict[int, dict[int, dict[str, int]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))
    for cohort, age, kind, points in consumed:
        by_age[cohort][age][kind] += points
    exposure: dict[int, int] = defaultdict(int)
    redeemed: dict[int, int] = defaultdict(int)
    for cohort, amount in earned.items():
        held = amount
        for age in range(now_index - cohort):
            moves = by_age[cohort][age]
            net_redeemed = moves.get("spend", 0) - moves.get("reverse", 0)
            exposure[age] += held
            redeemed[age] += net_redeemed
            held -= net_redeemed + sum(v for k, v in moves.items() if k not in ("spend", "reverse"))
    shares = {age: (redeemed[age] / exposure[age]) if exposure[age] > 0 else 0.0 for age in exposure}
    return Fit(shares, dict(exposure), dict(redeemed))


def project(
    groups: list[tuple[int, int | None, int]], fitted: Fit, now_index: int, horizon: int = HORIZON
) -> list[dict]:
    """Per month from ``now_index``: points redeemed, expiring, and outstanding at its end,
    for ``groups`` (cohort, expiry month or None, points outstanding). Fractions are kept
    until the month's figures are rounded."""
    held = {i: float(points) for i, (_c, _e, points) in enumerate(groups)}
    rows = []
    for step in range(horizon):
        month = now_index + step
        redeemed = expired = 0.0
        for i, (cohort, expires, _points) in enumerate(groups):
            if held[i] <= 0:
                continue
            take = held[i] * fitted.share(month - cohort)
            held[i] -= take
            redeemed += take
            # What expired already (the expiry job is due) goes in the current month.
            if expires is not None and expires <= month:
                expired += held[i]
                held[i] = 0.0
        rows.append(
            {
                "month": month_label(month),
                "redeemed": round(redeemed),
                "expired": round(expired),
                "outstanding": round(sum(held.values())),
            }
        )
    return rows


def _scope(store_ids: list[int] | None, alias: str) -> tuple[str, dict]:
    if store_ids is None:
        return "", {}
    return (
        f"AND {alias}.member_id IN (SELECT id FROM members_member WHERE home_store_id = ANY(%(stores)s))",
        {"stores": store_ids},
    )


def _month_sql(column: str) -> str:
    return (
        f"(extract(year FROM {column} AT TIME ZONE %(tz)s) * 12 + extract(month FROM {column} AT TIME ZONE %(tz)s) - 1)"
        "::int"
    )


def _rows(now: dt.datetime, store_ids: list[int] | None):
    now_index = month_index(now)
    year, month = divmod(now_index - HISTORY_MONTHS, 12)
    since = timezone.make_aware(dt.datetime(year, month + 1, 1), timezone.get_current_timezone())
    scope, extra = _scope(store_ids, "l")
    params = {"tz": settings.TIME_ZONE, "since": since, "now": now, **extra}
    cohort = _month_sql("l.created_at")
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT {cohort}, sum(l.amount) FROM loyalty_lot l
                WHERE l.currency = 'points' AND l.created_at >= %(since)s AND l.created_at <= %(now)s {scope}
                GROUP BY 1""",
            params,
        )
        earned = {c: int(points) for c, points in cursor.fetchall()}
        cursor.execute(
            f"""SELECT {cohort}, {_month_sql("e.created_at")} - {cohort}, e.kind, sum(a.amount)
                FROM loyalty_allocation a
                JOIN loyalty_lot l ON l.id = a.lot_id
                JOIN loyalty_ledgerentry e ON e.id = a.entry_id
                WHERE l.currency = 'points' AND l.created_at >= %(since)s AND e.created_at <= %(now)s {scope}
                GROUP BY 1, 2, 3""",
            params,
        )
        consumed = [(c, age, kind, int(points)) for c, age, kind, points in cursor.fetchall()]
        cursor.execute(
            f"""SELECT {cohort}, CASE WHEN l.expires_at IS NULL THEN NULL ELSE {_month_sql("l.expires_at")} END,
                       sum(l.remaining)
                FROM loyalty_lot l
                WHERE l.currency = 'points' AND l.remaining > 0 {scope}
                GROUP BY 1, 2 ORDER BY 1, 2""",
            params,
        )
        groups = [(c, e, int(points)) for c, e, points in cursor.fetchall()]
    return now_index, earned, consumed, groups


def _with_money(rows: list[dict]) -> list[dict]:
    value = Decimal(settings.LOYALTY_POINT_VALUE)
    return [row | {"liability": str((Decimal(row["outstanding"]) * value).quantize(Decimal("0.01")))} for row in rows]


def forecast(
    *, alternative: str | None = None, now: dt.datetime | None = None, store_ids: list[int] | None = None
) -> dict:
    """Fit, project under the policy in force and (given) ``alternative``; a JSON-ready dict.
    PostgreSQL only."""
    postgresql_required()
    now = now or timezone.now()
    alt_policy = parse_policy(alternative) if alternative else None
    now_index, earned, consumed, groups = _rows(now, store_ids)
    fitted = fit(earned, consumed, now_index)
    value = Decimal(settings.LOYALTY_POINT_VALUE)
    outstanding = sum(points for _c, _e, points in groups)
    result = {
        "as_of": timezone.localtime(now).date().isoformat(),
        "policy": expiry_policy("points").describe(),
        "point_value": str(value),
        "outstanding": outstanding,
        "liability": str((Decimal(outstanding) * value).quantize(Decimal("0.01"))),
        "curve": [
            {
                "age": age,
                "exposure": fitted.exposure[age],
                "redeemed": fitted.redeemed[age],
                "share": round(fitted.shares[age], 4),
            }
            for age in sorted(fitted.shares)
        ],
        "cohorts": _cohorts(earned, consumed),
        "months": _with_money(project(groups, fitted, now_index)),
        "scoped": store_ids is not None,
    }
    if alt_policy is not None:
        regrouped: dict[tuple[int, int | None], int] = defaultdict(int)
        for cohort, _expires, points in groups:
            regrouped[(cohort, expiry_month(alt_policy, cohort))] += points
        alt_groups = [
            (c, e, p) for (c, e), p in sorted(regrouped.items(), key=lambda item: (item[0][0], item[0][1] or 0))
        ]
        result["alternative"] = {
            "policy": alt_policy.describe(),
            "text": alternative,
            "months": _with_money(project(alt_groups, fitted, now_index)),
        }
    return result


def _cohorts(earned: dict[int, int], consumed: list[tuple[int, int, str, int]]) -> list[dict]:
    totals: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for cohort, _age, kind, points in consumed:
        totals[cohort][kind] += points
    rows = []
    for cohort in sorted(earned):
        moves = totals[cohort]
        rows.append(
            {
                "month": month_label(cohort),
                "earned": earned[cohort],
                "redeemed": moves.get("spend", 0) - moves.get("reverse", 0),
                "expired": moves.get("expire", 0),
                "other": sum(v for k, v in moves.items() if k not in ("spend", "reverse", "expire")),
            }
        )
    return rows


def forecast_record(*, name: str, alternative: str | None, actor, stores=None, now: dt.datetime | None = None):
    """Run :func:`forecast` and keep it as a :class:`ForecastRun` (the only row written)."""
    started = time.monotonic()
    store_ids = None if stores is None else list(stores.values_list("pk", flat=True))
    result = forecast(alternative=alternative, now=now, store_ids=store_ids)
    return ForecastRun.objects.create(
        name=name,
        alternative_policy=alternative or "",
        result=result,
        seconds=round(time.monotonic() - started, 3),
        created_by=actor,
    )
