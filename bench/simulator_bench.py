"""The tier-policy simulator (``foresight.simulator.simulate``) over N members.

Builds N members (default 1 000 000) straight in SQL, each with two accounts and eight
ledger entries spread over the last 30 months: four growth earns (what the replay reads)
and four points earns (what it must skip), in a database of its own. Then times one
simulation of a proposal that changes every threshold, the review period, the window and
soft landing (so both replays, in force and proposed, are computed), and prints members,
growth entries, wall seconds and the moves found. Target: <= 120 s at 1M members. The
yardstick of the same run: ``pgbench -b tpcb-like`` tps on the same server right after.

    python bench/simulator_bench.py                    # 1 000 000 members
    python bench/simulator_bench.py --members 200000
    python bench/simulator_bench.py --snapshot         # keep the build; later runs start from it

DATABASE_URL defaults to postgres://postgres@127.0.0.1:5432/loyalty_bench_simulator; it
is created if missing, migrated, and emptied of bench data before every build. The bench
refuses a database holding members it did not create.
"""

import argparse
import os
import sys
import time

from common import copy_database, database_exists, ensure_database, load_average, pgbench_tps, setup_django

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/loyalty_bench_simulator"
PHONE_PREFIX = "+86136"  # bench members only
STORE_CODE = "bench-simulator"

BUILD_SQL = [
    """
    INSERT INTO members_member (phone, member_number, name, gender, email, joined_at, status, home_store_id,
        order_count, spend_total, stage, rfm_segment, rejoined_after_erasure)
    SELECT %(prefix)s || lpad(g::text, 8, '0'), 'S' || lpad(g::text, 11, '0'), '', 'unknown', '',
           now() - interval '3 years', 'active', %(store)s, 0, 0, '', '', false
    FROM generate_series(1, %(members)s) g
    """,
    """
    INSERT INTO loyalty_account (member_id, currency, balance, pending, lifetime_earned, lifetime_spent, owed,
        updated_at)
    SELECT m.id, c.currency, 0, 0, 0, 0, 0, now()
    FROM members_member m CROSS JOIN (VALUES ('points'), ('growth')) c(currency)
    WHERE m.phone LIKE %(prefix)s || '%%'
    """,
    # Four earns per account over the last 900 days; growth amounts from 1 to 2000, so
    # every tier has members near its thresholds.
    """
    INSERT INTO loyalty_ledgerentry (account_id, member_id, currency, kind, amount, pending_amount,
        balance_after, pending_after, idempotency_key, request_hash, reason, created_at, detail, store_id)
    SELECT a.id, a.member_id, a.currency, 'earn', 1 + (a.member_id * 37 + k * 101) %% 2000, 0, 0, 0,
           NULL, '', '', now() - (((a.member_id * 13 + k * 229) %% 900) || ' days')::interval, '{}'::jsonb,
           %(store)s
    FROM loyalty_account a
    JOIN members_member m ON m.id = a.member_id AND m.phone LIKE %(prefix)s || '%%'
    CROSS JOIN generate_series(1, 4) k
    """,
]


def build(members: int) -> None:
    from django.conf import settings
    from django.db import connection, transaction

    from loyalty.models import Benefit, Tier
    from members.models import Member, Store

    if settings.PRODUCTION:
        sys.exit("The bench writes made-up members; it refuses to run with DJANGO_ENV=production.")
    foreign = Member.objects.exclude(phone__startswith=PHONE_PREFIX).count()
    if foreign:
        sys.exit(f"This database holds {foreign} members the bench did not create; use a database of its own.")
    store, _ = Store.objects.get_or_create(code=STORE_CODE, defaults={"name": "压测门店", "city": "上海"})
    for rank, (code, qualify, retain) in enumerate([("bronze", 0, 0), ("silver", 1500, 1000), ("gold", 4000, 3000)]):
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
    # Benefits, so the run prints a cost: a birthday gift for silver, coupons and 1.5x for gold.
    for code, kind, value in [
        ("silver", "birthday_points", 500),
        ("gold", "monthly_coupon", 10),
        ("gold", "earn_multiplier", "1.5"),
    ]:
        Benefit.objects.get_or_create(
            tier=Tier.objects.get(code=code), kind=kind, defaults={"value": value, "title": kind}
        )
    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE members_member, loyalty_account, loyalty_ledgerentry CASCADE")
    with transaction.atomic(), connection.cursor() as cursor:
        # The foreign keys are deferred (Django's default): checked one row at a time at
        # commit, they took longer than the inserts. This database holds bench rows only,
        # built consistent by the statements themselves, so the build skips those checks.
        cursor.execute("SET LOCAL session_replication_role = replica")
        for statement in BUILD_SQL:
            cursor.execute(statement, {"prefix": PHONE_PREFIX, "store": store.pk, "members": members})
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE members_member")
        cursor.execute("VACUUM ANALYZE loyalty_ledgerentry")
    print(f"built {members} members, {members * 8} entries in {time.monotonic() - started:.1f} s", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--pgbench-seconds", type=int, default=10)
    parser.add_argument("--snapshot", action="store_true", help="Keep the built data and start later runs from it.")
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

    from foresight import simulator

    call_command("migrate", verbosity=0)
    if not reuse:
        build(args.members)
        if args.snapshot:
            connection.close()
            copy_database(url, name, snapshot)
            print(f"kept the built data as {snapshot}")
    print(f"load average before: {load_average()}")
    proposal = simulator.policy_build(
        changes={"silver": (1200, 900), "gold": (3500, 2500)}, review_months=6, window_months=18, soft_landing=False
    )
    started = time.monotonic()
    result = simulator.simulate(proposal)
    seconds = time.monotonic() - started
    growth = args.members * 4
    print(
        f"simulate: {args.members} members, {growth} growth entries (of {growth * 2}) in {seconds:.1f} s "
        f"(target <= 120 s); moved up {result['moved_up']}, down {result['moved_down']}; "
        f"benefit cost {result['cost']['baseline']} -> {result['cost']['proposed']}"
    )
    print(f"tiers (in force -> proposed): {[(t['code'], t['baseline'], t['proposed']) for t in result['tiers']]}")
    print(f"load average after: {load_average()}")
    tps = pgbench_tps(url, 2, args.pgbench_seconds)
    if tps:
        print(f"pgbench tpcb-like, 2 clients, {args.pgbench_seconds} s, same server right after: {tps:.0f} tps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
