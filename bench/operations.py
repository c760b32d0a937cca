"""Nightly consumer operations at scale: lifecycle stage + RFM refresh, then journeys, over N members.

Builds N members (default 100 000) with orders spread over two years straight in SQL
(INSERT ... SELECT generate_series), in a database of its own, then times
``operations.lifecycle.members_refresh_profiles`` the way the nightly task runs it:

1. the first run (every member gets a stage: one stage change per member),
2. the next night's run (24 hours later: only members crossing a boundary move),
3. ``operations.journeys.journeys_run`` when it exists, with two bench journeys
   (entered the dormant stage -> add a tag; no order for 60 days -> notification).

It also times the RFM cut points alone (one ``percentile_cont`` pass over the active base)
against the alternative, one ``NTILE(5)`` window query over the same base. Prints wall
seconds, members per second, the longest chunk (one transaction) and the peak memory
of this Python process.

Per member (id i): i*7 mod 11 orders (0-10, about 5 on average), the newest
(i*31 mod 1000)^2 * 0.00073 days ago (0-730 days, half of them within 180) and the
others 7 + i mod 53 days apart, amounts 20-499 yuan; one order in 20 fully refunded,
one in 20 partly. Members joined 0-799 days ago.

    python bench/operations.py                    # 100 000 members
    python bench/operations.py --members 1000000  # a million (about 5 million orders)

DATABASE_URL defaults to postgres://postgres@127.0.0.1:5432/loyalty_bench_ops; it is
created if missing, migrated, emptied of bench data, and dropped at the end unless
``--keep``. The bench refuses a database holding members it did not create.
"""

import argparse
import datetime as dt
import os
import resource
import sys
import time

from common import copy_database, database_exists, ensure_database, setup_django  # bench/ is on sys.path as a script

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/loyalty_bench_ops"
PHONE_PREFIX = "+86134"  # bench members only
STORE_CODE = "bench-ops"


# Member columns without a database default are listed here: a new NOT NULL column on
# Member needs adding.
BUILD_SQL = [
    """
    INSERT INTO members_member (phone, member_number, name, gender, email, joined_at, status, home_store_id,
        order_count, spend_total, stage, rfm_segment)
    SELECT %(prefix)s || lpad(g::text, 8, '0'), 'O' || lpad(g::text, 11, '0'), '', 'unknown', '',
           %(now)s - ((g::bigint * 7919) %% 800) * interval '1 day' - (g %% 1440) * interval '1 minute',
           'active', %(store)s, 0, 0, '', ''
    FROM generate_series(1, %(members)s) g
    """,
    """
    INSERT INTO loyalty_order (member_id, store_id, number, amount, points_paid_amount, refunded_amount, status,
        occurred_at, created_at, request_hash)
    SELECT id, %(store)s, 'O' || id || '-' || k, amount, 0,
           CASE WHEN (id + k) %% 20 = 0 THEN amount WHEN (id + k) %% 20 = 1 THEN round(amount / 3, 2) ELSE 0 END,
           CASE WHEN (id + k) %% 20 = 0 THEN 'refunded' WHEN (id + k) %% 20 = 1 THEN 'partially_refunded'
                ELSE 'completed' END,
           occurred_at, %(now)s, ''
    FROM (
        SELECT m.id, k, (20 + (m.id * k * 13) %% 480)::numeric(12, 2) AS amount,
               %(now)s - (((m.id * 31) %% 1000) ^ 2 * 0.00073 + (k - 1) * (7 + m.id %% 53)) * interval '1 day'
                       - ((m.id * k) %% 600) * interval '1 minute' AS occurred_at
        FROM members_member m
        CROSS JOIN LATERAL generate_series(1, (m.id * 7) %% 11) k
        WHERE m.phone LIKE %(prefix)s || '%%'
    ) o
    """,
]


def build(members: int, now: dt.datetime) -> None:
    from django.conf import settings
    from django.db import connection, transaction

    from members.models import Member, Store

    if settings.PRODUCTION:
        sys.exit("The bench writes made-up members; it refuses to run with DJANGO_ENV=production.")
    foreign = Member.objects.exclude(phone__startswith=PHONE_PREFIX).count()
    if foreign:
        sys.exit(f"This database holds {foreign} members the bench did not create; use a database of its own.")
    store, _ = Store.objects.get_or_create(code=STORE_CODE, defaults={"name": "压测门店", "city": "上海"})
    started = time.monotonic()
    with connection.cursor() as cursor:
        # Only bench rows live here (checked above): CASCADE empties orders, stage changes, runs.
        cursor.execute("TRUNCATE members_member, loyalty_order CASCADE")
    with transaction.atomic(), connection.cursor() as cursor:
        for statement in BUILD_SQL:
            cursor.execute(statement, {"prefix": PHONE_PREFIX, "store": store.pk, "members": members, "now": now})
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
        cursor.execute("SELECT count(*) FROM loyalty_order")
        orders = cursor.fetchone()[0]
    print(f"built {members} members, {orders} orders in {time.monotonic() - started:.1f} s", flush=True)


def add_journeys() -> list[str]:
    """Two journeys that read what the refresh writes; none if the journey model has changed."""
    try:
        from engagement.models import Journey
        from members.models import Tag

        tag, _ = Tag.objects.get_or_create(name="bench-dormant")
        Journey.objects.get_or_create(
            name="bench: entered dormant",
            defaults={"trigger": "dormant", "action": "add_tag", "tag": tag, "is_marketing": False},
        )
        Journey.objects.get_or_create(
            name="bench: no order for 60 days",
            defaults={
                "trigger": "no_order",
                "trigger_days": 60,
                "action": "notify",
                "message_title": "We miss you",
                "is_marketing": False,
            },
        )
    except Exception as error:  # the journey model belongs to another module; time what exists
        print(f"could not add bench journeys: {error}")
        return []
    return list(Journey.objects.filter(name__startswith="bench:").values_list("name", flat=True))


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def report(label: str, rows: int, seconds: float, longest: float | None, detail) -> None:
    rate = rows / seconds if seconds else 0.0
    longest_text = f"{longest:.3f}" if longest is not None else "-"
    print(
        f"{label:<30}{rows:>10}{seconds:>9.2f}{rate:>11.0f}{longest_text:>11}{peak_mb():>9.0f}   {detail}", flush=True
    )


# ``{counting}``: loyalty.models.ORDERS_COUNTING_SQL, filled in after Django is set up.
NTILE_SQL = """
WITH base AS (
    SELECT o.member_id, max(o.occurred_at) AS last_at, count(*) AS f, sum(o.amount - o.refunded_amount) AS m
    FROM loyalty_order o
    WHERE {counting} AND o.occurred_at > %(window_since)s AND o.occurred_at <= %(now)s
    GROUP BY o.member_id
)
SELECT count(*), sum(r + f + m) FROM (
    SELECT ntile(5) OVER (ORDER BY last_at) AS r, ntile(5) OVER (ORDER BY f) AS f, ntile(5) OVER (ORDER BY m) AS m
    FROM base
) scored
"""


def time_cuts(now: dt.datetime) -> None:
    from django.db import connection

    from loyalty.models import ORDERS_COUNTING_SQL
    from operations import lifecycle

    run = lifecycle._Run(now)
    started = time.monotonic()
    lifecycle._cuts_sql(run)
    report("RFM cut points (percentile)", run.base, time.monotonic() - started, None, run.cuts)
    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute(NTILE_SQL.format(counting=ORDERS_COUNTING_SQL), {"now": now, "window_since": run.window_since})
        base, _checksum = cursor.fetchone()
    report("RFM NTILE(5) (alternative)", base, time.monotonic() - started, None, "read only, for comparison")


def time_refresh(label: str, members: int, now: dt.datetime, chunk: int) -> None:
    from operations.lifecycle import members_refresh_profiles

    result = members_refresh_profiles(now=now, chunk_size=chunk)
    moved = sum(result["stage_changes"].values())
    detail = {"moved": moved, "base": result["active_base"], "chunks": result["chunks"]}
    report(label, members, result["duration_s"], result["longest_chunk_s"], detail)
    return result


def time_journeys(members: int, now: dt.datetime) -> None:
    try:
        from operations.journeys import journeys_run
    except ImportError:
        print("operations.journeys.journeys_run does not exist yet: not timed")
        return
    started = time.monotonic()
    result = journeys_run(now=now)
    longest = max((r.get("longest_chunk_s", 0.0) for r in result.values() if isinstance(r, dict)), default=0.0)
    report("journeys_run", members, time.monotonic() - started, longest, result)


def drop_database(url: str, name: str) -> None:
    from urllib.parse import urlparse

    import psycopg
    from psycopg import sql

    maintenance = urlparse(url)._replace(path="/postgres").geturl()
    with psycopg.connect(maintenance, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=5000, help="Member ids per chunk (one transaction).")
    parser.add_argument("--no-journeys", action="store_true", help="Time the refresh only.")
    parser.add_argument("--keep", action="store_true", help="Keep the bench database at the end (default: drop it).")
    parser.add_argument(
        "--snapshot",
        action="store_true",
        help="Keep the built data as the database <name>_snapshot_<members> and start later --snapshot runs "
        "from a copy of it (drop it yourself when done).",
    )
    args = parser.parse_args()

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

    # Build and runs share one "now", so a snapshot taken on another day reads the same.
    now = timezone.now().replace(microsecond=0)
    call_command("migrate", verbosity=0)
    try:
        if reuse:
            with connection.cursor() as cursor:
                cursor.execute("SELECT max(created_at) FROM loyalty_order")
                now = cursor.fetchone()[0] or now
        else:
            build(args.members, now)
            if args.snapshot:
                connection.close()
                copy_database(url, name, snapshot)
                print(f"kept the built data as {snapshot}")
        journeys = [] if args.no_journeys else add_journeys()
        server = connection.cursor().connection.info.parameter_status("server_version")
        print(
            f"nightly operations over {args.members} members, PostgreSQL {server} ({name}), chunk {args.chunk}; "
            f"journeys: {journeys or 'none'}"
        )
        print(f"{'step':<30}{'members':>10}{'wall s':>9}{'per s':>11}{'longest s':>11}{'peak MB':>9}   detail")
        time_cuts(now)
        first = time_refresh("refresh, first run", args.members, now, args.chunk)
        next_night = now + dt.timedelta(days=1)
        second = time_refresh("refresh, next night", args.members, next_night, args.chunk)
        if not args.no_journeys:
            time_journeys(args.members, next_night)
        from operations.lifecycle import stage_counts

        print(f"stages after the next night: {stage_counts()}")
        print(f"segments: {second['segments']}")
        print(f"moves the next night: {second['stage_changes']}")
        print(f"first run moves: {sum(first['stage_changes'].values())} members")
    finally:
        connection.close()
        if not args.keep:
            drop_database(url, name)
            print(f"dropped {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
