"""Scheduled jobs at scale: expiry, release, tier evaluation and notices over N members.

Builds N members (default 100 000) with 10 points lots and one growth lot each straight in
SQL (INSERT ... SELECT generate_series, with their earn entries and account figures), in
a database of its own, then times each job as the worker runs it (``loyalty.jobs``) and
prints rows per second and the longest chunk: how long one transaction held its row
locks, which is what members waiting on their account would feel.

Per member: 7 available points lots already past their expiry, 2 pending lots whose
return window has ended, 1 available lot expiring in 10 days; 1 growth lot. So N members
give 7N due lots for the expiry, 2N lots for the release, N members for the tier sweep
(placement: nobody has a tier yet), N members for the tier review (every member then gets
a tier row whose review date has passed, a third each bronze/silver/gold) and N expiry
notices.

    python bench/jobs.py                     # 100 000 members, set-based expiry and release
    python bench/jobs.py --members 1000000 --jobs expire,release
    python bench/jobs.py --expiry orm --release orm   # the ORM paths (services.lots_*)

DATABASE_URL defaults to postgres://postgres@127.0.0.1:5432/loyalty_bench_jobs; it is
created if missing, migrated, and emptied of bench data before every run. The bench
refuses a database holding members it did not create.
"""

import argparse
import os
import sys
import time

from common import (  # bench/ is on sys.path as a script
    copy_database,
    database_exists,
    ensure_database,
    load_average,
    pgbench_tps,
    setup_django,
)

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/loyalty_bench_jobs"
PHONE_PREFIX = "+86135"  # bench members only
STORE_CODE = "bench-jobs"
TIMES: dict[str, float] = {}  # job -> wall seconds, for the ratios printed later in the run


BUILD_SQL = [
    # Members and their two accounts.
    """
    INSERT INTO members_member (phone, member_number, name, gender, email, joined_at, status, home_store_id,
        order_count, spend_total, stage, rfm_segment, rejoined_after_erasure, language)
    SELECT %(prefix)s || lpad(g::text, 8, '0'), 'J' || lpad(g::text, 11, '0'), '', 'unknown', '',
           now() - interval '2 years', 'active', %(store)s, 0, 0, '', '', false, ''
    FROM generate_series(1, %(members)s) g
    """,
    """
    INSERT INTO loyalty_account (member_id, currency, balance, pending, lifetime_earned, lifetime_spent, owed,
        updated_at)
    SELECT m.id, c.currency, 0, 0, 0, 0, 0, now()
    FROM members_member m CROSS JOIN (VALUES ('points'), ('growth')) c(currency)
    WHERE m.phone LIKE %(prefix)s || '%%'
    """,
    # The plan of every lot: lot 1-7 expired, 8-9 pending and due for release, 10 live;
    # growth: one live lot. Entry ids are drawn up front so lots can point at them.
    """
    CREATE TEMP TABLE bench_plan ON COMMIT DROP AS
    SELECT nextval(pg_get_serial_sequence('loyalty_ledgerentry', 'id')) AS entry_id, a.id AS account_id,
           a.member_id, a.currency, k,
           CASE WHEN a.currency = 'growth' THEN 1 + (a.member_id * 37) %% 5000
                ELSE 10 + (a.member_id * 7 + k * 13) %% 90 END::bigint AS amount,
           (a.currency = 'points' AND k IN (8, 9)) AS pending,
           CASE WHEN a.currency = 'points' AND k <= 7 THEN now() - interval '400 days'
                WHEN a.currency = 'points' AND k <= 9 THEN now() - interval '8 days'
                ELSE now() - interval '355 days' END AS earned_at,
           CASE WHEN a.currency = 'points' AND k <= 7 THEN now() - (k || ' days')::interval
                WHEN a.currency = 'points' AND k <= 9 THEN now() + interval '357 days'
                ELSE now() + interval '10 days' END AS expires_at
    FROM loyalty_account a
    JOIN members_member m ON m.id = a.member_id AND m.phone LIKE %(prefix)s || '%%'
    CROSS JOIN generate_series(1, 10) k
    WHERE a.currency = 'points' OR k = 10
    ORDER BY a.id, k
    """,
    """
    INSERT INTO loyalty_ledgerentry (id, account_id, member_id, currency, kind, amount, pending_amount,
        balance_after, pending_after, idempotency_key, request_hash, reason, created_at, detail, store_id)
    SELECT entry_id, account_id, member_id, currency, 'earn',
           CASE WHEN pending THEN 0 ELSE amount END, CASE WHEN pending THEN amount ELSE 0 END,
           SUM(CASE WHEN pending THEN 0 ELSE amount END) OVER w, SUM(CASE WHEN pending THEN amount ELSE 0 END) OVER w,
           NULL, '', '', earned_at, '{}'::jsonb, %(store)s
    FROM bench_plan
    WINDOW w AS (PARTITION BY account_id ORDER BY entry_id)
    """,
    """
    INSERT INTO loyalty_lot (account_id, member_id, currency, entry_id, amount, remaining, pending,
        available_at, expires_at, created_at)
    SELECT account_id, member_id, currency, entry_id, amount, amount, pending,
           earned_at + interval '7 days', expires_at, earned_at
    FROM bench_plan ORDER BY entry_id
    """,
    """
    UPDATE loyalty_account a SET balance = t.balance, pending = t.pending, lifetime_earned = t.earned
    FROM (SELECT account_id, SUM(CASE WHEN pending THEN 0 ELSE amount END) AS balance,
                 SUM(CASE WHEN pending THEN amount ELSE 0 END) AS pending, SUM(amount) AS earned
          FROM bench_plan GROUP BY account_id) t
    WHERE a.id = t.account_id
    """,
]


def build(members: int) -> None:
    from django.conf import settings
    from django.db import connection, transaction

    from loyalty.models import Tier
    from members.models import Member, Store

    if settings.PRODUCTION:
        sys.exit("The bench writes made-up members; it refuses to run with DJANGO_ENV=production.")
    foreign = Member.objects.exclude(phone__startswith=PHONE_PREFIX).count()
    if foreign:
        sys.exit(f"This database holds {foreign} members the bench did not create; use a database of its own.")
    store, _ = Store.objects.get_or_create(code=STORE_CODE, defaults={"name": "压测门店", "city": "上海"})
    for rank, (code, qualify, retain) in enumerate([("bronze", 0, 0), ("silver", 1000, 500), ("gold", 3000, 2000)]):
        Tier.objects.get_or_create(
            code=code,
            defaults={
                "name": code.title(),
                "rank": rank,
                "qualify_threshold": qualify,
                "retain_threshold": retain,
                "is_default": rank == 0,
            },
        )
    started = time.monotonic()
    with connection.cursor() as cursor:
        # Start clean: every bench table, in one statement (the tables reference each other).
        # CASCADE empties whatever else points at members (notifications, tiers, orders):
        # only bench rows live here, checked above.
        cursor.execute(
            "TRUNCATE members_member, loyalty_account, loyalty_ledgerentry, loyalty_lot, loyalty_allocation CASCADE"
        )
    with transaction.atomic(), connection.cursor() as cursor:
        for statement in BUILD_SQL:
            cursor.execute(statement, {"prefix": PHONE_PREFIX, "store": store.pk, "members": members})
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
        cursor.execute("SELECT count(*) FROM loyalty_lot")
        lots = cursor.fetchone()[0]
    print(f"built {members} members, {lots} lots in {time.monotonic() - started:.1f} s", flush=True)


class ChunkTimer:
    """Wrap a per-chunk function to record how long each call (one chunk's transaction) took."""

    def __init__(self, module, name: str):
        self.module, self.name, self.original, self.longest = module, name, getattr(module, name), 0.0

    def __enter__(self):
        def timed(*args, **kwargs):
            started = time.monotonic()
            try:
                return self.original(*args, **kwargs)
            finally:
                self.longest = max(self.longest, time.monotonic() - started)

        setattr(self.module, self.name, timed)
        return self

    def __exit__(self, *exc):
        setattr(self.module, self.name, self.original)


def report(label: str, rows: int, unit: str, seconds: float, longest: float, result) -> None:
    rate = rows / seconds if seconds else 0.0
    print(
        f"{label:<22}{rows:>10} {unit:<9}{seconds:>9.2f}{rate:>12.0f}{longest:>12.3f}   {result}",
        flush=True,
    )


def time_expiry(args, now) -> None:
    from core.jobs import job_lock
    from loyalty import jobs, services
    from loyalty.models import Lot

    due = Lot.objects.filter(pending=False, remaining__gt=0, expires_at__lte=now).count()
    started = time.monotonic()
    if args.expiry == "sql":
        with job_lock("expire_due_points"):  # what jobs.lots_expire_due_job runs on PostgreSQL
            size = args.chunk if args.expiry_chunks == "members" else None
            stats = jobs.lots_expire_due_sql(now=now, size=size, lots=args.lots, workers=args.workers)
        result = {"entries": stats["count"], "chunks": stats["chunks"], "workers": args.workers}
        longest = stats["longest_chunk_s"]
    else:
        with ChunkTimer(services, "_expire") as timer:
            result = {"entries": services.lots_expire_due(now=now)}
        longest = timer.longest
    seconds = time.monotonic() - started
    report(f"expire ({args.expiry})", due, "lots", seconds, longest, result)
    if "expire-by-hand" in TIMES:
        ratio = seconds / TIMES["expire-by-hand"]
        print(f"  expire / by hand = {ratio:.2f} (target <= 1.5); longest chunk target <= 0.25 s", flush=True)


# The yardstick for the expiry: what one would write by hand to expire a chunk, the same
# rows (lots emptied, one EXPIRE entry per account with its balance_after, one allocation
# per lot, accounts debited) in one statement, without the job's explicit account and lot
# locks (the UPDATEs lock what they touch) and without its guard. Each chunk is rolled
# back (its foreign keys checked at once, as a commit would), so the job then expires the
# same lots in the same run.
HAND_EXPIRE_SQL = """
WITH emptied AS (
    UPDATE loyalty_lot l SET remaining = 0
    FROM loyalty_lot o
    WHERE o.id = l.id AND l.member_id >= %(lo)s AND l.member_id < %(hi)s
      AND NOT l.pending AND l.remaining > 0 AND l.expires_at <= %(now)s
    RETURNING l.id, l.account_id, o.remaining AS taken
),
debited AS (
    UPDATE loyalty_account a SET balance = a.balance - t.total, updated_at = %(now)s
    FROM (SELECT account_id, SUM(taken) AS total FROM emptied GROUP BY account_id) t
    WHERE a.id = t.account_id
    RETURNING a.id, a.member_id, a.currency, a.balance, a.pending, t.total
),
entries AS (
    INSERT INTO loyalty_ledgerentry (account_id, member_id, currency, kind, amount, pending_amount, balance_after,
        pending_after, idempotency_key, request_hash, reason, created_at, detail)
    SELECT id, member_id, currency, 'expire', -total, 0, balance, pending, NULL, '', '', %(now)s, '{}'::jsonb
    FROM debited
    RETURNING id, account_id
)
INSERT INTO loyalty_allocation (entry_id, lot_id, amount)
SELECT e.id, l.id, l.taken FROM emptied l JOIN entries e ON e.account_id = l.account_id
"""


def time_expiry_by_hand(args, now) -> None:
    """The hand-written batched expiry (``HAND_EXPIRE_SQL``), chunk by chunk, each rolled back."""
    from django.db import connection, transaction

    from loyalty.models import Lot
    from members.jobs import member_id_ranges

    due = Lot.objects.filter(pending=False, remaining__gt=0, expires_at__lte=now).count()
    started, longest, written = time.monotonic(), 0.0, 0
    for lo, hi in member_id_ranges(size=args.chunk):
        chunk_started = time.monotonic()
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the commit's foreign-key checks, paid here
            cursor.execute(HAND_EXPIRE_SQL, {"lo": lo, "hi": hi, "now": now})
            written += cursor.rowcount
            transaction.set_rollback(True)
        longest = max(longest, time.monotonic() - chunk_started)
    seconds = time.monotonic() - started
    TIMES["expire-by-hand"] = seconds
    report("expire, by hand", due, "lots", seconds, longest, {"allocations": written, "rolled back": True})


def time_release(args, now) -> None:
    from core.jobs import job_lock
    from loyalty import jobs, services
    from loyalty.models import Lot

    matured = Lot.objects.filter(pending=True, available_at__lte=now).count()
    started = time.monotonic()
    if args.release == "sql":
        with job_lock("release_matured_points"):  # what jobs.lots_release_matured_job runs on PostgreSQL
            stats = jobs.lots_release_matured_sql(now=now, size=args.chunk, workers=args.workers)
        result = {"entries": stats["count"], "chunks": stats["chunks"], "workers": args.workers}
        longest = stats["longest_chunk_s"]
    else:
        with ChunkTimer(services, "_release") as timer:
            result = {"entries": services.lots_release_matured(now=now)}
        longest = timer.longest
    report(f"release ({args.release})", matured, "lots", time.monotonic() - started, longest, result)


def time_tiers(args, now) -> None:
    """The nightly sweep as it runs: placement of members without a tier, upgrades, reviews."""
    from loyalty import jobs, tiers

    started = time.monotonic()
    with ChunkTimer(tiers, "_sweep_chunk") as sweep, ChunkTimer(tiers, "_place_chunk") as place:
        result = jobs.evaluate_tiers(now=now, workers=args.workers)
    longest = max(sweep.longest, place.longest)
    report("evaluate tiers", args.members, "members", time.monotonic() - started, longest, result)


# Every bench member gets a tier row whose review date has passed: a third gold, a third
# silver, a third bronze (by member id), started 13 months ago. Against the growth lots
# (1-5000, retain gold 2000, silver 500; qualify silver 1000, gold 3000) the sweep then
# downgrades some, keeps some (RETAINED, review date a year on) and upgrades some bronze.
REVIEW_SQL = [
    "DELETE FROM loyalty_membertier",
    """
    INSERT INTO loyalty_membertier (member_id, tier_id, started_at, review_at, pinned_until)
    SELECT m.id, t.id, %(now)s - interval '13 months', %(now)s - interval '1 day', NULL
    FROM members_member m
    JOIN loyalty_tier t ON t.code = (ARRAY['bronze', 'silver', 'gold'])[1 + m.id %% 3]
    WHERE m.phone LIKE %(prefix)s || '%%'
    """,
]


def time_tier_review(args, now) -> None:
    """The sweep's review path: every member's review date has passed (``tiers._sweep_chunk``)."""
    from django.db import connection, transaction

    from loyalty import jobs, tiers

    with transaction.atomic(), connection.cursor() as cursor:
        for statement in REVIEW_SQL:
            cursor.execute(statement, {"prefix": PHONE_PREFIX, "now": now})
        cursor.execute("ANALYZE loyalty_membertier")
    started = time.monotonic()
    # The longest chunk's work after its lock (read, write, notices), on either path.
    with ChunkTimer(tiers, "_sweep_chunk_sql") as sweep:
        result = jobs.evaluate_tiers(now=now, workers=args.workers)
    result["workers"] = args.workers
    report("tier review", args.members, "members", time.monotonic() - started, sweep.longest, result)


def time_notices(args, now) -> None:
    from loyalty import jobs

    started = time.monotonic()
    result = jobs.send_expiry_notices(now=now)
    report(
        "expiry notices", result["notices"], "notices", time.monotonic() - started, result["longest_chunk_s"], result
    )


JOBS = {
    "expire-by-hand": time_expiry_by_hand,
    "expire": time_expiry,
    "release": time_release,
    "tiers": time_tiers,
    "tier-review": time_tier_review,
    "notices": time_notices,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--expiry", choices=["sql", "orm"], default="sql", help="Expiry path to time.")
    parser.add_argument("--release", choices=["sql", "orm"], default="sql", help="Release path to time.")
    parser.add_argument("--chunk", type=int, default=1000, help="Member ids per chunk (set-based expiry and release).")
    parser.add_argument(
        "--expiry-chunks",
        choices=["lots", "members"],
        default="lots",
        help="The set-based expiry's chunks: about --lots due lots each (the job's default) or --chunk member ids.",
    )
    parser.add_argument(
        "--lots", type=int, default=1000, help="Due lots per chunk of the set-based expiry (jobs.EXPIRY_CHUNK_LOTS)."
    )
    parser.add_argument("--workers", type=int, default=1, help="Parallel connections for the set-based jobs.")
    parser.add_argument(
        "--pgbench-seconds", type=int, default=10, help="pgbench tpcb-like after the jobs, as a yardstick (0: none)."
    )
    parser.add_argument("--jobs", default=",".join(JOBS), help="Comma-separated jobs to time, in this order.")
    parser.add_argument(
        "--snapshot",
        action="store_true",
        help="Keep a copy of the built data (database <name>_snapshot_<members>) and start later runs with "
        "--snapshot from it instead of building again (the 1M build takes about 13 minutes).",
    )
    args = parser.parse_args()
    unknown = set(args.jobs.split(",")) - set(JOBS)
    if unknown:
        parser.error(f"unknown jobs {sorted(unknown)}; choose from {', '.join(JOBS)}")

    os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    url = os.environ["DATABASE_URL"]
    name = ensure_database(url)
    snapshot = f"{name}_snapshot_{args.members}"
    reuse = args.snapshot and database_exists(url, snapshot)
    if reuse:
        copy_database(url, snapshot, name)
        print(f"started from the snapshot {snapshot} (drop it to build again)")
    setup_django()
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from loyalty.selectors import ledger_violations

    call_command("migrate", verbosity=0)
    if not reuse:
        build(args.members)
        if args.snapshot:
            connection.close()
            copy_database(url, name, snapshot)
            print(f"kept the built data as {snapshot}")
    server = connection.cursor().connection.info.parameter_status("server_version")
    print(
        f"scheduled jobs over {args.members} members, PostgreSQL {server} ({name}), "
        f"release and by-hand expiry chunk {args.chunk} members, expiry chunk "
        + (f"{args.lots} due lots" if args.expiry_chunks == "lots" else f"{args.chunk} members")
    )
    print(f"load average {load_average()}")
    print(f"{'job':<22}{'rows':>10} {'':<9}{'wall s':>9}{'rows/s':>12}{'longest s':>12}   result")
    now = timezone.now()
    for job in args.jobs.split(","):
        JOBS[job](args, now)

    if args.pgbench_seconds:
        tps = pgbench_tps(url, 8, args.pgbench_seconds)
        print(f"pgbench tpcb-like, 8 clients, {args.pgbench_seconds} s, right after: {tps or 0:.0f} tps")
    print(f"load average {load_average()}", flush=True)

    started = time.monotonic()
    violations = ledger_violations()
    print(f"ledger violations: {len(violations)} (checked in {time.monotonic() - started:.1f} s)")
    for violation in violations[:20]:
        print(f"  {violation}")
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
