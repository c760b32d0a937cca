"""The scheduled jobs: what celery-beat runs, each guarded by a lock and split into chunks.

Every job here is

- *guarded*: :func:`job_lock` lets one process at a time run a given job, so two beat
  processes, or a task redelivered while its first copy still runs, cannot overlap. The
  loser logs and returns :data:`SKIPPED`;
- *chunked*: work is split into member-id ranges (:func:`member_id_ranges`), one
  transaction per range, so a job stopped halfway keeps what it committed and a rerun
  picks up the rest;
- *idempotent*: each chunk decides from what is in the database under its locks (lots
  still due, notices and grants not yet written), so running a job twice does the work once.

The jobs return counts (JSON-friendly dicts) that the celery tasks pass on as results.
Names: ``services.lots_expire_due`` and ``services.lots_release_matured`` are the ledger
steps (ORM, any database); ``lots_expire_due_sql`` and ``lots_release_matured_sql`` here are
their set-based PostgreSQL twins; ``lots_expire_due_job`` and ``lots_release_matured_job``
are the guarded jobs that run one or the other (celery tasks ``loyalty.expire_due_points``
and ``loyalty.release_matured_points``). Birthday and monthly coupons and coupon expiry
are the rewards app's jobs (``rewards.jobs``).
"""

import calendar
import datetime as dt
import functools
import logging
from collections import defaultdict

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from core.db import is_postgresql
from core.errors import LoyaltyError
from core.jobs import guarded
from members.jobs import (
    MEMBER_CHUNK,
    chunk_params_now,
    job_period_done,
    job_periods,
    member_id_ranges,
    run_in_member_chunks,
)
from members.models import Member, Notification
from members.notifications import Notice, in_languages, notices_enqueue, notify

from . import services, tiers
from .models import Benefit, BenefitGrant, Currency, LedgerEntry, Lot, MemberTier

logger = logging.getLogger(__name__)

# Member ids per chunk of the set-based release (and of the expiry when asked for member
# ranges): about 1000 accounts with due lots and 7000 lots a chunk, a transaction of
# 0.5-1.4 s under load (bench/jobs.py). Their row locks are what a member paying at the
# till would wait on, so these chunks are smaller than other jobs'.
LEDGER_CHUNK = 1000

# Due lots per chunk of the expiry: its work (and how long it holds its accounts' locks)
# is in proportion to the lots it expires, not to the member ids it covers, so its ranges
# are cut by due lots (:func:`due_lot_ranges`). bench/jobs.py at 200 000 members on the
# 2-core machine at load 10-17: 1000 lots a chunk took 0.17 s on average (longest 0.78 s,
# the load's spikes), 2000 lots 0.29 s (longest 0.75 s); both within 1.1-1.3x of the
# hand-written batched SQL's total time.
EXPIRY_CHUNK_LOTS = 1000


# --- release and expiry -------------------------------------------------------------------


@guarded("release_matured_points")
def lots_release_matured_job(*, now: dt.datetime | None = None, chunk_size: int = 1000, workers: int = 1) -> dict:
    """Release pending lots whose return window has ended.

    PostgreSQL: the set-based :func:`lots_release_matured_sql` over member-id ranges;
    elsewhere the ORM path ``services.lots_release_matured``. Both write the same rows.
    """
    if is_postgresql():
        stats = lots_release_matured_sql(now=now, workers=workers)
        return {"entries": stats["count"], "chunks": stats["chunks"], "longest_chunk_s": stats["longest_chunk_s"]}
    return {"entries": services.lots_release_matured(now=now, chunk_size=chunk_size)}


@guarded("expire_due_points")
def lots_expire_due_job(*, now: dt.datetime | None = None, chunk_size: int = 1000, workers: int = 1) -> dict:
    """Expire what is left of lots past their expiry.

    PostgreSQL: the set-based :func:`lots_expire_due_sql` over member-id ranges of about
    :data:`EXPIRY_CHUNK_LOTS` due lots each (``workers`` connections side by side);
    elsewhere the ORM path ``services.lots_expire_due``. Both write the same rows.
    """
    if is_postgresql():
        stats = lots_expire_due_sql(now=now, workers=workers)
        return {"entries": stats["count"], "chunks": stats["chunks"], "longest_chunk_s": stats["longest_chunk_s"]}
    return {"entries": services.lots_expire_due(now=now, chunk_size=chunk_size)}


# The set-based expiry, one statement per table per chunk. It does what services.lots_expire_due
# does for the accounts of one member-id range: lock the accounts holding due lots (id
# order), one EXPIRE entry per account with balance_after computed in SQL, one
# allocation per due lot, the lots emptied and the accounts debited.
_EXPIRE_SQL = """
WITH due_accounts AS (
    SELECT a.id, a.member_id, a.currency, a.balance, a.pending
    FROM loyalty_account a
    WHERE a.member_id >= %(lo)s AND a.member_id < %(hi)s
      AND a.id IN (
        SELECT l.account_id FROM loyalty_lot l
        WHERE l.member_id >= %(lo)s AND l.member_id < %(hi)s
          AND NOT l.pending AND l.remaining > 0 AND l.expires_at <= %(now)s
      )
    ORDER BY a.id
    FOR UPDATE
),
due_lots AS (
    -- Read after the accounts are locked: what a concurrent spend left is what expires.
    -- Each lot carries its account's figures, so no step below joins two CTEs (whose row
    -- counts the planner cannot guess: it took 1 for 2000 and compared every lot with
    -- every entry, 0.2 s a chunk).
    SELECT l.id, l.account_id, l.remaining, l.expires_at, a.member_id, a.currency, a.balance, a.pending
    FROM loyalty_lot l JOIN due_accounts a ON a.id = l.account_id
    WHERE l.member_id >= %(lo)s AND l.member_id < %(hi)s
      AND NOT l.pending AND l.remaining > 0 AND l.expires_at <= %(now)s
    ORDER BY l.id
    FOR UPDATE OF l
),
totals AS (
    -- One EXPIRE entry per account, its id drawn here so that the allocations need no join;
    -- the lots in allocation order (expiry, then id).
    SELECT nextval(pg_get_serial_sequence('loyalty_ledgerentry', 'id')) AS entry_id, g.*
    FROM (
        SELECT account_id, member_id, currency, balance, pending, SUM(remaining) AS total,
               array_agg(id ORDER BY expires_at, id) AS lots, array_agg(remaining ORDER BY expires_at, id) AS amounts
        FROM due_lots
        GROUP BY account_id, member_id, currency, balance, pending
        ORDER BY account_id
    ) g
),
entries AS (
    INSERT INTO loyalty_ledgerentry (
        id, account_id, member_id, currency, kind, amount, pending_amount, balance_after, pending_after,
        idempotency_key, request_hash, reason, created_at, detail
    )
    SELECT t.entry_id, t.account_id, t.member_id, t.currency, 'expire', -t.total, 0, t.balance - t.total, t.pending,
           NULL, '', '', %(now)s, '{}'::jsonb
    FROM totals t
    ORDER BY t.account_id
    RETURNING id, account_id, amount
),
allocations AS (
    INSERT INTO loyalty_allocation (entry_id, lot_id, amount)
    SELECT t.entry_id, u.lot_id, u.amount FROM totals t, unnest(t.lots, t.amounts) AS u(lot_id, amount)
),
-- "= ANY(ARRAY(...))": look the lots up by primary key instead of hashing the whole table.
-- The accounts below are joined plainly: the planner then probes the primary key per entry
-- (an ANY(ARRAY) there made it compare every entry with every account, 1000 x 1000).
emptied AS (
    UPDATE loyalty_lot SET remaining = 0 WHERE id = ANY(ARRAY(SELECT id FROM due_lots))
)
UPDATE loyalty_account a SET balance = a.balance + e.amount, updated_at = %(now)s
FROM entries e
WHERE a.id = e.account_id
"""


# The expiry's chunks: runs of about %(lots)s due lots in member-id order, none wider than
# %(span)s member ids (the statement finds its accounts and lots by member-id range: a
# wide range of few due lots would read every account in it). A member is never split:
# one with more due lots is a chunk alone. Each range ends after its last due member.
_DUE_LOT_RANGES_SQL = """
WITH per_member AS (
    SELECT member_id, count(*) AS n
    FROM loyalty_lot
    WHERE NOT pending AND remaining > 0 AND expires_at <= %(now)s
    GROUP BY member_id
),
running AS (
    SELECT member_id, (sum(n) OVER (ORDER BY member_id))::bigint - n AS before FROM per_member
),
cut AS (
    SELECT member_id, before / %(lots)s AS by_lots FROM running
)
SELECT min(member_id) AS lo, max(member_id) + 1 AS hi
FROM cut
GROUP BY by_lots, member_id / %(span)s
ORDER BY lo
"""


def due_lot_ranges(*, now: dt.datetime | None = None, lots: int | None = None) -> list[tuple[int, int]]:
    """Member-id ranges ``[lo, hi)`` for the expiry, each holding about ``lots`` lots due at
    ``now`` (default :data:`EXPIRY_CHUNK_LOTS`) and at most :data:`LEDGER_CHUNK` member ids.

    PostgreSQL only (one query over the due lots). The ranges hold every member with lots
    due at ``now``; a lot that falls due after this read is the next run's.
    """
    now = now or timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            _DUE_LOT_RANGES_SQL, {"now": now, "lots": max(1, lots or EXPIRY_CHUNK_LOTS), "span": LEDGER_CHUNK}
        )
        return [(lo, hi) for lo, hi in cursor.fetchall()]


def lots_expire_due_sql(
    *,
    now: dt.datetime | None = None,
    size: int | None = None,
    lots: int | None = None,
    workers: int = 1,
) -> dict[str, float]:
    """PostgreSQL only: expire due lots with one statement per chunk.

    Chunks hold about ``lots`` due lots each (:func:`due_lot_ranges`, default
    :data:`EXPIRY_CHUNK_LOTS`), or ``size`` member
    ids each when ``size`` is given. Writes exactly what ``services.lots_expire_due``
    writes (entries, allocations, lots, accounts), so the ledger invariants hold after
    every chunk. Safe to rerun: a chunk reads the due lots after locking their accounts,
    and emptied lots are no longer due.
    """
    now = now or timezone.now()

    def step(lo: int, hi: int) -> int:
        with connection.cursor() as cursor:
            cursor.execute(_EXPIRE_SQL, {"lo": lo, "hi": hi, "now": now})
            return cursor.rowcount

    ranges = None if size is not None else due_lot_ranges(now=now, lots=lots)
    return run_in_member_chunks(step, size=size or LEDGER_CHUNK, workers=workers, ranges=ranges)


# The set-based release, one statement per chunk. It does what services.lots_release_matured does for
# the accounts of one member-id range: lock the accounts holding matured pending lots (id
# order), then those lots (id order); every such lot becomes available (even an emptied
# one), and each account whose lots still hold points gets one RELEASE entry (amount +n,
# pending -n, balance_after/pending_after computed in SQL, detail {"lots": [ids]}) and is
# credited. No allocations: a release moves points between the two figures of one account.
_RELEASE_SQL = """
WITH due_accounts AS (
    SELECT a.id, a.member_id, a.currency, a.balance, a.pending
    FROM loyalty_account a
    WHERE a.member_id >= %(lo)s AND a.member_id < %(hi)s
      -- An account with an open refund debt is released by the ORM path, whose released
      -- points pay the debt first (see _release_range).
      AND a.owed = 0
      AND a.id IN (
        SELECT l.account_id FROM loyalty_lot l
        WHERE l.member_id >= %(lo)s AND l.member_id < %(hi)s AND l.pending AND l.available_at <= %(now)s
      )
    ORDER BY a.id
    FOR UPDATE
),
due_lots AS (
    -- Read after the accounts are locked: a refund that cancelled pending points first is seen.
    SELECT l.id, l.account_id, l.remaining
    FROM loyalty_lot l
    WHERE l.member_id >= %(lo)s AND l.member_id < %(hi)s
      AND l.account_id IN (SELECT id FROM due_accounts)
      AND l.pending AND l.available_at <= %(now)s
    ORDER BY l.id
    FOR UPDATE
),
released AS (
    UPDATE loyalty_lot SET pending = false WHERE id = ANY(ARRAY(SELECT id FROM due_lots))
),
totals AS (
    SELECT account_id, SUM(remaining) AS total, jsonb_agg(id ORDER BY id) AS lots
    FROM due_lots GROUP BY account_id
),
entries AS (
    INSERT INTO loyalty_ledgerentry (
        account_id, member_id, currency, kind, amount, pending_amount, balance_after, pending_after,
        idempotency_key, request_hash, reason, created_at, detail
    )
    SELECT a.id, a.member_id, a.currency, 'release', t.total, -t.total, a.balance + t.total, a.pending - t.total,
           NULL, '', '', %(now)s, jsonb_build_object('lots', t.lots)
    FROM due_accounts a JOIN totals t ON t.account_id = a.id
    WHERE t.total > 0
    ORDER BY a.id
    RETURNING account_id, amount
)
UPDATE loyalty_account a
SET balance = a.balance + e.amount, pending = a.pending - e.amount, updated_at = %(now)s
FROM entries e
WHERE a.id = e.account_id
"""


def lots_release_matured_sql(
    *, now: dt.datetime | None = None, size: int = LEDGER_CHUNK, workers: int = 1
) -> dict[str, float]:
    """PostgreSQL only: release matured pending lots with one statement per member-id chunk.

    Writes exactly what ``services.lots_release_matured`` writes (entries, lots, accounts). Safe to
    rerun: a chunk reads the matured lots after locking their accounts, and a released
    lot is no longer pending.
    """
    now = now or timezone.now()

    def step(lo: int, hi: int) -> int:
        return _release_range(lo, hi, now)

    return run_in_member_chunks(step, size=size, workers=workers)


def _release_range(lo: int, hi: int, now: dt.datetime) -> int:
    """Release members ``[lo, hi)``: set-based for accounts without a debt, then the few
    that owe through ``services.lots_release_matured``, so that their released points
    settle the debt as everywhere else (``LOYALTY_SHORTFALL_SETTLE_FROM_EARNS``)."""
    with connection.cursor() as cursor:
        cursor.execute(_RELEASE_SQL, {"lo": lo, "hi": hi, "now": now})
        written = cursor.rowcount
    return written + services.lots_release_matured(now=now, members=(lo, hi), owing_only=True)


# --- the chunk steps of the chunked tasks (loyalty.tasks, members.jobs.chunked_dispatch) ----

# SQLite (one machine, the ORM paths): the whole job is one chunk.
WHOLE = 10**15


def ledger_chunk_size() -> int:
    return LEDGER_CHUNK if is_postgresql() else WHOLE


def expiry_ranges() -> list[tuple[int, int]]:
    """The expiry task's chunks: by due lots on PostgreSQL (:func:`due_lot_ranges`), else one."""
    if not is_postgresql():
        return list(member_id_ranges(size=WHOLE))
    return due_lot_ranges()


def expire_chunk(lo: int, hi: int, params: dict) -> int:
    """Expire the due lots of members ``[lo, hi)``: one EXPIRE entry per account; returns entries."""
    now = chunk_params_now(params)
    if not is_postgresql():
        return services.lots_expire_due(now=now)
    with connection.cursor() as cursor:
        cursor.execute(_EXPIRE_SQL, {"lo": lo, "hi": hi, "now": now})
        return cursor.rowcount


def release_chunk(lo: int, hi: int, params: dict) -> int:
    """Release the matured pending lots of members ``[lo, hi)``: one RELEASE entry per account; returns entries."""
    now = chunk_params_now(params)
    if not is_postgresql():
        return services.lots_release_matured(now=now)
    return _release_range(lo, hi, now)


def expiry_notices_chunk(lo: int, hi: int, params: dict) -> int:
    """Write the pre-expiry notices of members ``[lo, hi)``; returns notices written."""
    now = chunk_params_now(params)
    horizon = now + dt.timedelta(days=settings.LOYALTY_EXPIRY_NOTICE_DAYS)
    return _expiry_notices(lo, hi, now=now, horizon=horizon)


# --- tiers ------------------------------------------------------------------------------


@guarded("evaluate_tiers")
def evaluate_tiers(*, now: dt.datetime | None = None, chunk_size: int = 1000, workers: int | None = None) -> dict:
    """The nightly tier sweep (upgrades, reviews, downgrades): ``loyalty.tiers.tiers_sweep``,
    its chunks on ``workers`` connections (default ``LOYALTY_JOB_WORKERS``)."""
    workers = settings.LOYALTY_JOB_WORKERS if workers is None else workers
    return tiers.tiers_sweep(now=now, chunk_size=chunk_size, workers=workers)


# --- pre-expiry notices -------------------------------------------------------------------


def _expiry_notices(lo: int, hi: int, *, now: dt.datetime, horizon: dt.datetime) -> int:
    """Write the expiry notices of members ``[lo, hi)``; returns how many were new.

    One query for the lots expiring inside the notice window, one for the expiry notices
    those members already have (a lot listed in one is never announced again), one
    insert of the new notices. Each notice gathers a member's newly due lots; its
    ``dedupe_key`` names the first of them, so a rerun or a second worker writes nothing.
    """
    lots = (
        Lot.objects.filter(
            member_id__gte=lo,
            member_id__lt=hi,
            currency=Currency.POINTS,
            pending=False,
            remaining__gt=0,
            expires_at__gt=now,
            expires_at__lte=horizon,
            member__status=Member.Status.ACTIVE,
        )
        .order_by("member_id", "expires_at", "id")
        .values_list("member_id", "id", "remaining", "expires_at")
    )
    due: dict[int, list[tuple[int, int, dt.datetime]]] = defaultdict(list)
    for member_id, lot_id, remaining, expires_at in lots:
        due[member_id].append((lot_id, remaining, expires_at))
    if not due:
        return 0
    # A lot can only be in the window for LOYALTY_EXPIRY_NOTICE_DAYS, so older notices
    # cannot list a lot that is still due.
    announced: dict[int, set[int]] = defaultdict(set)
    earlier = Notification.objects.filter(
        member_id__gte=lo,
        member_id__lt=hi,
        kind=Notification.Kind.EXPIRY_WARNING,
        created_at__gte=now - (horizon - now) - dt.timedelta(days=1),
    ).values_list("member_id", "data")
    for member_id, data in earlier:
        announced[member_id].update((data or {}).get("lots", []))

    notices = []
    for member_id, member_lots in due.items():
        new = [lot for lot in member_lots if lot[0] not in announced[member_id]]
        if not new:
            continue
        points = sum(remaining for _id, remaining, _at in new)
        first = timezone.localdate(new[0][2])
        notices.append(
            Notice(
                member_id=member_id,
                kind=Notification.Kind.EXPIRY_WARNING,
                title=gettext_lazy("Your points expire soon"),
                body=gettext_lazy(
                    "%(points)s points expire soon, the first of them on %(date)s. Use them before then."
                ),
                params={"points": points, "date": first.isoformat()},
                data={"lots": [lot_id for lot_id, _r, _at in new], "points": points, "expires_on": first.isoformat()},
                dedupe_key=f"expiry:{new[0][0]}",
            )
        )
    return notices_enqueue(notices, now=now)


@guarded("send_expiry_notices")
def send_expiry_notices(*, now: dt.datetime | None = None, size: int = MEMBER_CHUNK) -> dict:
    """Tell members about points expiring within ``LOYALTY_EXPIRY_NOTICE_DAYS``, once per lot."""
    now = now or timezone.now()
    horizon = now + dt.timedelta(days=settings.LOYALTY_EXPIRY_NOTICE_DAYS)
    stats = run_in_member_chunks(functools.partial(_expiry_notices, now=now, horizon=horizon), size=size)
    return {"notices": stats["count"], "chunks": stats["chunks"], "longest_chunk_s": stats["longest_chunk_s"]}


# --- birthday benefits --------------------------------------------------------------------


def birthday_filter(today: dt.date, *, prefix: str = "") -> Q:
    """Members whose birthday is ``today``; 29 February birthdays fall on 28 February in other years."""
    month, day = f"{prefix}birthday__month", f"{prefix}birthday__day"
    query = Q(**{month: today.month, day: today.day})
    if (today.month, today.day) == (2, 28) and not calendar.isleap(today.year):
        query |= Q(**{month: 2, day: 29})
    return query


def _birthday_points(lo: int, hi: int, *, now: dt.datetime, today: dt.date) -> int:
    """Grant the birthday-points benefits of members ``[lo, hi)`` born on ``today``; returns grants."""
    period = str(today.year)
    candidates = list(
        MemberTier.objects.filter(
            birthday_filter(today, prefix="member__"),
            member_id__gte=lo,
            member_id__lt=hi,
            member__status=Member.Status.ACTIVE,
            tier__benefits__kind=Benefit.Kind.BIRTHDAY_POINTS,
            tier__benefits__is_active=True,
        )
        .order_by("member_id", "tier__benefits__id")
        .values_list("member_id", "tier__benefits__id", "tier__benefits__value", "tier__benefits__title")
    )
    if not candidates:
        return 0
    # Once per member per year, even if the member changed tier since the first gift.
    done = set(
        BenefitGrant.objects.filter(
            member_id__in={member_id for member_id, *_rest in candidates},
            benefit__kind=Benefit.Kind.BIRTHDAY_POINTS,
            period=period,
        ).values_list("member_id", flat=True)
    )
    granted = 0
    benefits = Benefit.objects.in_bulk({benefit_id for _m, benefit_id, _v, _t in candidates})
    with translation.override(settings.LANGUAGE_CODE):
        for member_id, benefit_id, value, _title in candidates:
            points = int(value)
            if member_id in done or points < 1:
                continue
            reason = _("Birthday gift %(year)s") % {"year": period}
            try:
                # A savepoint per member: one refusal does not undo the chunk's other gifts.
                with transaction.atomic():
                    grant = BenefitGrant.objects.create(
                        member_id=member_id, benefit_id=benefit_id, period=period, created_at=now
                    )
                    grant.entry = services.points_award(
                        member=Member.objects.get(pk=member_id),
                        currency=Currency.POINTS,
                        amount=points,
                        reason=reason,
                        idempotency_key=f"birthday:{benefit_id}:{period}",
                        kind=LedgerEntry.Kind.EARN,
                        detail={"benefit": benefit_id, "period": period},
                        now=now,
                    )
                    grant.save(update_fields=["entry"])
                    notify(
                        member_id=member_id,
                        kind=Notification.Kind.BIRTHDAY_GIFT,
                        title=gettext_lazy("Happy birthday!"),
                        body=gettext_lazy("Happy birthday! %(points)s points are our gift to you: %(benefit)s."),
                        params={"points": points, "benefit": in_languages(benefits[benefit_id], "title")},
                        data={"benefit": benefit_id, "period": period, "points": points, "entry": grant.entry_id},
                        dedupe_key=f"birthday:{member_id}:{benefit_id}:{period}",
                        now=now,
                    )
            except IntegrityError:
                continue  # a concurrent run granted it first
            except LoyaltyError as error:
                logger.warning("birthday gift for member %s refused: %s", member_id, error)
                continue
            granted += 1
    return granted


# A date-keyed job down longer than this catches up on this many days only (logged).
CATCH_UP_DAYS = 62


def next_day(day: dt.date) -> dt.date:
    return day + dt.timedelta(days=1)


@guarded("issue_birthday_benefits")
def issue_birthday_benefits(*, now: dt.datetime | None = None, size: int = MEMBER_CHUNK) -> dict:
    """Give members born today (local date) their tier's birthday points, once per year.

    Catches up: members born on any day since the last finished run (days the job did not
    run, at most :data:`CATCH_UP_DAYS`) get theirs too, each in the year of that birthday.
    """
    now = now or timezone.now()
    days = job_periods(
        "issue_birthday_benefits", current=timezone.localdate(now), following=next_day, limit=CATCH_UP_DAYS
    )
    granted = chunks = 0
    longest = 0.0
    for day in days:
        stats = run_in_member_chunks(functools.partial(_birthday_points, now=now, today=day), size=size)
        granted, chunks = granted + stats["count"], chunks + stats["chunks"]
        longest = max(longest, stats["longest_chunk_s"])
        job_period_done("issue_birthday_benefits", period=day, now=now)
    # Birthday coupons are rewards.jobs.issue_birthday_coupons (a rewards task of their own).
    return {"birthday_points": granted, "days": len(days), "chunks": chunks, "longest_chunk_s": longest}
