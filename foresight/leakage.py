"""The leakage monitor: set-based scans that find where points may leak, one case per
pattern and subject (docs/foresight.md, "Leakage monitor").

Each detector is one ``SELECT`` producing rows ``(key, member_id, store_id, points,
detail)``; :func:`leakage_scan` inserts them into ``foresight_leakagecase`` in one
statement per detector, deduplicated by ``key`` (``ON CONFLICT``): an open case is
refreshed (last seen, points, detail), a resolved one stays resolved. Running it twice
writes nothing new. Only what the data records is used: the programme keeps no device
identifier or postal address, so "many accounts on one address" is many accounts on one
email address.
"""

import datetime as dt

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from core.cleaners import clean_reason
from core.errors import LoyaltyError
from core.jobs import guarded
from loyalty.models import ORDERS_COUNTING_SQL
from members.scoping import require_staff, staff_stores

from .models import LeakageCase
from .selectors import postgresql_available, postgresql_required

Kind = LeakageCase.Kind

# How far back the scans that look at events (refunds, transfers, referrals, adjustments) read.
LOOKBACK_DAYS = 30
# Thresholds of the patterns; docs/foresight.md explains each.
CHECKIN_FARM_GIVERS = 3  # distinct givers without a purchase, sending to one receiver
REFERRAL_BURST = 5  # referrals rewarded for one referrer within the lookback
SHARED_EMAIL_ACCOUNTS = 3  # accounts on one email address
PINGPONG_DAYS = 7  # a transfer answered by one the other way within these days
NEAR_LIMIT_SHARE = 0.9  # an adjustment of at least this share of the staff member's limit
NEAR_LIMIT_COUNT = 2  # ... at least this many on one day

# Each detector: the SQL of its rows. Parameters: %(since)s, %(now)s, %(tz)s, %(month)s
# and the thresholds above; the case's key starts with its kind.
DETECTORS: dict[str, str] = {
    Kind.REFUND_SHORTFALL: """
        SELECT 'refund_shortfall:' || r.id, o.member_id, o.store_id,
               r.points_shortfall - r.points_settled,
               jsonb_build_object('refund', r.number, 'order', o.number,
                                  'shortfall', r.points_shortfall, 'settled', r.points_settled)
        FROM loyalty_refund r JOIN loyalty_order o ON o.id = r.order_id
        WHERE r.points_shortfall > r.points_settled
    """,
    Kind.LATE_REFUND: """
        SELECT 'late_refund:' || r.id, o.member_id, o.store_id,
               r.points_shortfall - r.points_settled,
               jsonb_build_object('refund', r.number, 'order', o.number, 'amount', r.amount::text,
                                  'days_after_order', extract(day FROM r.created_at - o.occurred_at)::int)
        FROM loyalty_refund r JOIN loyalty_order o ON o.id = r.order_id
        WHERE r.created_at >= %(since)s AND r.created_at <= %(now)s
          AND r.created_at > o.occurred_at + make_interval(days => %(pending_days)s)
    """,
    Kind.CHECKIN_FARM: f"""
        SELECT 'checkin_farm:' || t.receiver_id || ':' || %(month)s, t.receiver_id, m.home_store_id,
               sum(t.points),
               jsonb_build_object('givers', count(DISTINCT t.giver_id),
                                  'giver_ids', (array_agg(DISTINCT t.giver_id))[1:20])
        FROM programme_transfer t JOIN members_member m ON m.id = t.receiver_id
        WHERE t.status = 'completed' AND t.created_at >= %(since)s AND t.created_at <= %(now)s
          AND EXISTS (SELECT 1 FROM engagement_checkin c WHERE c.member_id = t.giver_id)
          AND NOT EXISTS (SELECT 1 FROM loyalty_order o WHERE o.member_id = t.giver_id AND {ORDERS_COUNTING_SQL})
        GROUP BY t.receiver_id, m.home_store_id
        HAVING count(DISTINCT t.giver_id) >= %(checkin_givers)s
    """,
    Kind.REFERRAL_BURST: """
        SELECT 'referral_burst:' || r.referrer_id || ':' || %(month)s, r.referrer_id, m.home_store_id,
               count(*) * %(referral_points)s,
               jsonb_build_object('referrals', count(*), 'referee_ids', (array_agg(r.referee_id ORDER BY r.id))[1:20])
        FROM engagement_referral r JOIN members_member m ON m.id = r.referrer_id
        WHERE r.status = 'rewarded' AND r.decided_at >= %(since)s AND r.decided_at <= %(now)s
        GROUP BY r.referrer_id, m.home_store_id
        HAVING count(*) >= %(referral_burst)s
    """,
    Kind.REFERRAL_RING: """
        SELECT 'referral_ring:' || r.id, r.referrer_id, m.home_store_id, sum(t.points),
               jsonb_build_object('referee_id', r.referee_id, 'transfers', count(*))
        FROM engagement_referral r
        JOIN programme_transfer t
          ON t.giver_id = r.referee_id AND t.receiver_id = r.referrer_id AND t.status = 'completed'
        JOIN members_member m ON m.id = r.referrer_id
        WHERE r.status = 'rewarded'
        GROUP BY r.id, r.referrer_id, r.referee_id, m.home_store_id
    """,
    Kind.SHARED_EMAIL: """
        SELECT 'shared_email:' || md5(lower(m.email)), min(m.id), (array_agg(m.home_store_id ORDER BY m.id))[1],
               0,
               jsonb_build_object('accounts', count(*), 'member_ids', (array_agg(m.id ORDER BY m.id))[1:20])
        FROM members_member m
        WHERE m.email <> '' AND m.erased_at IS NULL
        GROUP BY lower(m.email)
        HAVING count(*) >= %(shared_email)s
    """,
    Kind.REJOIN: """
        SELECT 'rejoin:' || m.id, m.id, m.home_store_id,
               coalesce((SELECT sum(c.points) FROM engagement_checkin c WHERE c.member_id = m.id), 0),
               jsonb_build_object(
                   'check_ins', (SELECT count(*) FROM engagement_checkin c WHERE c.member_id = m.id),
                   'referrals', (SELECT count(*) FROM engagement_referral r WHERE r.referrer_id = m.id))
        FROM members_member m
        WHERE m.rejoined_after_erasure AND m.erased_at IS NULL
          AND (EXISTS (SELECT 1 FROM engagement_checkin c WHERE c.member_id = m.id)
               OR EXISTS (SELECT 1 FROM engagement_referral r WHERE r.referrer_id = m.id))
    """,
    Kind.TRANSFER_PINGPONG: """
        SELECT 'transfer_pingpong:' || least(a.giver_id, a.receiver_id) || ':'
                   || greatest(a.giver_id, a.receiver_id) || ':' || %(month)s,
               least(a.giver_id, a.receiver_id), min(m.home_store_id), sum(a.points + b.points),
               jsonb_build_object('pairs', count(*),
                                  'other_member_id', greatest(a.giver_id, a.receiver_id))
        FROM programme_transfer a
        JOIN programme_transfer b
          ON b.giver_id = a.receiver_id AND b.receiver_id = a.giver_id AND b.status = 'completed'
         AND b.created_at >= a.created_at AND b.created_at <= a.created_at + make_interval(days => %(pingpong_days)s)
        JOIN members_member m ON m.id = least(a.giver_id, a.receiver_id)
        WHERE a.status = 'completed' AND a.created_at >= %(since)s AND a.created_at <= %(now)s
        GROUP BY least(a.giver_id, a.receiver_id), greatest(a.giver_id, a.receiver_id)
    """,
    Kind.ADJUST_NEAR_LIMIT: """
        SELECT 'adjust_near_limit:' || e.operator_id || ':' || ((e.created_at AT TIME ZONE %(tz)s)::date)::text,
               NULL::bigint, min(e.store_id), sum(abs(e.amount + e.pending_amount)),
               jsonb_build_object('operator_id', e.operator_id, 'limit', min(p.adjust_limit),
                                  'adjustments', count(*),
                                  'day', ((e.created_at AT TIME ZONE %(tz)s)::date)::text,
                                  'entry_ids', (array_agg(e.id ORDER BY e.id))[1:20])
        FROM loyalty_ledgerentry e
        JOIN members_staffprofile p ON p.user_id = e.operator_id AND p.adjust_limit IS NOT NULL
        WHERE e.kind = 'adjust' AND e.operator_id IS NOT NULL
          AND e.created_at >= %(since)s AND e.created_at <= %(now)s
          AND abs(e.amount + e.pending_amount) >= ceil(p.adjust_limit * %(near_share)s)
        GROUP BY e.operator_id, (e.created_at AT TIME ZONE %(tz)s)::date
        HAVING count(*) >= %(near_count)s
    """,
}

_UPSERT = """
    INSERT INTO foresight_leakagecase
        (kind, key, member_id, store_id, points, detail, status, first_seen_at, last_seen_at, outcome, resolution)
    SELECT %(kind)s, found.key, found.member_id, found.store_id, found.points, found.detail, 'open',
           %(now)s, %(now)s, '', ''
    FROM ({select}) AS found (key, member_id, store_id, points, detail)
    ON CONFLICT (key) DO UPDATE
        SET last_seen_at = EXCLUDED.last_seen_at, points = EXCLUDED.points, detail = EXCLUDED.detail
        WHERE foresight_leakagecase.status = 'open'
    RETURNING (xmax = 0)
"""

# A shortfall paid since the scan found it: the case clears itself.
_CLEAR_SETTLED = """
    UPDATE foresight_leakagecase c
    SET status = 'resolved', outcome = 'cleared', resolved_at = %(now)s,
        resolution = 'The shortfall was settled.'
    FROM loyalty_refund r
    WHERE c.kind = 'refund_shortfall' AND c.status = 'open'
      AND c.key = 'refund_shortfall:' || r.id AND r.points_shortfall <= r.points_settled
"""


def _params(now: dt.datetime) -> dict:
    local = timezone.localtime(now)
    return {
        "now": now,
        "since": now - dt.timedelta(days=LOOKBACK_DAYS),
        "month": local.strftime("%Y-%m"),
        "tz": settings.TIME_ZONE,
        "pending_days": settings.LOYALTY_PENDING_DAYS,
        "checkin_givers": CHECKIN_FARM_GIVERS,
        "referral_burst": REFERRAL_BURST,
        "referral_points": settings.LOYALTY_REFERRAL_POINTS,
        "shared_email": SHARED_EMAIL_ACCOUNTS,
        "pingpong_days": PINGPONG_DAYS,
        "near_share": NEAR_LIMIT_SHARE,
        "near_count": NEAR_LIMIT_COUNT,
    }


def leakage_detect(*, now: dt.datetime | None = None, kinds: list[str] | None = None) -> dict[str, dict[str, int]]:
    """Run the detectors (all, or ``kinds``) and file their cases; per kind, how many
    cases were new and how many open ones were seen again. Clears shortfall cases whose
    refund has been settled. Writes only ``foresight_leakagecase``. PostgreSQL only."""
    postgresql_required()
    now = now or timezone.now()
    params = _params(now)
    report: dict[str, dict[str, int]] = {}
    with transaction.atomic(), connection.cursor() as cursor:
        for kind, select in DETECTORS.items():
            if kinds is not None and kind not in kinds:
                continue
            cursor.execute(_UPSERT.format(select=select), {**params, "kind": str(kind)})
            inserted = [row[0] for row in cursor.fetchall()]
            report[str(kind)] = {"new": sum(inserted), "seen_again": len(inserted) - sum(inserted)}
        cursor.execute(_CLEAR_SETTLED, params)
        report["cleared"] = {"cases": cursor.rowcount}
    return report


@guarded("foresight.leakage_scan")
def leakage_scan(*, now: dt.datetime | None = None) -> dict:
    """The nightly scan (``foresight.tasks.leakage_scan``): every detector, once; on SQLite
    (the embedded default) it reports that it was skipped."""
    if not postgresql_available():
        return {"skipped": "needs PostgreSQL"}
    return leakage_detect(now=now)


def _in_scope(actor, case: LeakageCase) -> bool:
    stores = staff_stores(actor)
    if stores is None:
        return True
    return case.store_id is not None and stores.filter(pk=case.store_id).exists()


def case_resolve(*, case: LeakageCase, actor, outcome: str, reason: str) -> LeakageCase:
    """Close an open case with its outcome (confirmed or dismissed) and the staff's reason.

    Refuses: an actor without ``foresight.resolve_leakagecase`` (``permission_denied``)
    or outside the case's store (``out_of_scope``: a case with no store is for brand
    admins); no reason (``reason_required``); an outcome other than confirmed or dismissed
    (``invalid_outcome``); a case already resolved (``case_resolved``).
    """
    require_staff(actor, "foresight.resolve_leakagecase", members=[case.member_id] if case.member_id else ())
    if not _in_scope(actor, case):
        raise LoyaltyError("out_of_scope", _("You can resolve only cases of your stores."))
    reason = clean_reason(reason)
    if outcome not in (LeakageCase.Outcome.CONFIRMED, LeakageCase.Outcome.DISMISSED):
        raise LoyaltyError("invalid_outcome", _("The outcome is confirmed or dismissed."))
    now = timezone.now()
    closed = LeakageCase.objects.filter(pk=case.pk, status=LeakageCase.Status.OPEN).update(
        status=LeakageCase.Status.RESOLVED, outcome=outcome, resolution=reason, resolved_by=actor, resolved_at=now
    )
    if closed != 1:
        raise LoyaltyError("case_resolved", _("This case is already resolved."))
    case.refresh_from_db()
    return case
