"""The FAST panel and new vs. returning customers at scale (operations.fast, docs/fast.md).

Builds N members (default 20 000) over four stores with orders spread over two years,
straight in SQL, marketing consent on some channels, rewarded referrals, and a stage
history made by the real nightly lifecycle run at a few past month ends. Then it times
``operations.fast.fast_panel`` brand-wide and for one store, and one drill-down page
(``figure_members_page``), and prints the figures of the current month.

Per member (id i): i*7 mod 11 orders (about 5 on average) like bench/operations.py,
amounts 20-499 yuan, one order in 20 fully refunded, one in 20 partly; home store
i mod 4; SMS consent for i mod 3 = 0, email (with an address) for i mod 5 = 0, WeChat
(with an openid) for i mod 7 = 0, each given 0-700 days ago; one member in 40 referred
the next one, rewarded 0-300 days ago.

    python bench/fast.py                    # 20 000 members
    python bench/fast.py --members 1000000  # a million
    python bench/fast.py --members 5000 --history-runs 2   # a quick look

DATABASE_URL defaults to postgres://postgres@127.0.0.1:5432/loyalty_bench_fast; it is
created if missing, migrated, emptied of bench data, and dropped at the end unless
``--keep``. The bench refuses a database holding members it did not create.
"""

import argparse
import datetime as dt
import os
import sys
import time

from common import ensure_database, setup_django  # bench/ is on sys.path as a script

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/loyalty_bench_fast"
PHONE_PREFIX = "+86133"  # bench members only
STORES = 4

BUILD_SQL = [
    """
    INSERT INTO members_member (phone, member_number, name, gender, email, joined_at, status, home_store_id,
        order_count, spend_total, stage, rfm_segment, sms_consent_at, email_consent_at, wechat_consent_at,
        wechat_openid, rejoined_after_erasure)
    SELECT %(prefix)s || lpad(g::text, 8, '0'), 'F' || lpad(g::text, 11, '0'), '', 'unknown',
           CASE WHEN g %% 5 = 0 THEN 'm' || g || '@example.com' ELSE '' END,
           %(now)s - ((g::bigint * 7919) %% 800) * interval '1 day', 'active', (%(stores)s)[1 + g %% 4], 0, 0, '', '',
           CASE WHEN g %% 3 = 0 THEN %(now)s - ((g * 13) %% 700) * interval '1 day' END,
           CASE WHEN g %% 5 = 0 THEN %(now)s - ((g * 17) %% 700) * interval '1 day' END,
           CASE WHEN g %% 7 = 0 THEN %(now)s - ((g * 19) %% 700) * interval '1 day' END,
           CASE WHEN g %% 7 = 0 THEN 'bench-openid-' || g END, false
    FROM generate_series(1, %(members)s) g
    """,
    """
    INSERT INTO loyalty_order (member_id, store_id, number, amount, points_paid_amount, refunded_amount, status,
        occurred_at, created_at, request_hash)
    SELECT id, store, 'F' || id || '-' || k, amount, 0,
           CASE WHEN (id + k) %% 20 = 0 THEN amount WHEN (id + k) %% 20 = 1 THEN round(amount / 3, 2) ELSE 0 END,
           CASE WHEN (id + k) %% 20 = 0 THEN 'refunded' WHEN (id + k) %% 20 = 1 THEN 'partially_refunded'
                ELSE 'completed' END,
           occurred_at, %(now)s, ''
    FROM (
        SELECT m.id, k, m.home_store_id AS store, (20 + (m.id * k * 13) %% 480)::numeric(12, 2) AS amount,
               %(now)s - (((m.id * 31) %% 1000) ^ 2 * 0.00073 + (k - 1) * (7 + m.id %% 53)) * interval '1 day'
                       - ((m.id * k) %% 600) * interval '1 minute' AS occurred_at
        FROM members_member m
        CROSS JOIN LATERAL generate_series(1, (m.id * 7) %% 11) k
        WHERE m.phone LIKE %(prefix)s || '%%'
    ) o
    """,
    """
    INSERT INTO engagement_referral (referrer_id, referee_id, code, status, reason, created_at, decided_at)
    SELECT m.id, n.id, 'BENCH', 'rewarded', '', %(now)s - ((m.id * 23) %% 300) * interval '1 day',
           %(now)s - ((m.id * 23) %% 300) * interval '1 day'
    FROM members_member m JOIN members_member n ON n.id = m.id + 1
    WHERE m.id %% 40 = 0 AND m.phone LIKE %(prefix)s || '%%'
    """,
]


def build(members: int, now: dt.datetime, history_runs: int) -> list[int]:
    from django.conf import settings
    from django.db import connection, transaction

    from members.models import Member, Store
    from operations.fast import month_bounds
    from operations.lifecycle import members_refresh_profiles

    if settings.PRODUCTION:
        sys.exit("The bench writes made-up members; it refuses to run with DJANGO_ENV=production.")
    foreign = Member.objects.exclude(phone__startswith=PHONE_PREFIX).count()
    if foreign:
        sys.exit(f"This database holds {foreign} members the bench did not create; use a database of its own.")
    stores = [
        Store.objects.get_or_create(code=f"bench-fast-{i}", defaults={"name": f"压测门店 {i}", "city": "上海"})[0].pk
        for i in range(1, STORES + 1)
    ]
    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE members_member, loyalty_order CASCADE")
    with transaction.atomic(), connection.cursor() as cursor:
        for statement in BUILD_SQL:
            cursor.execute(statement, {"prefix": PHONE_PREFIX, "stores": stores, "members": members, "now": now})
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
        cursor.execute("SELECT count(*) FROM loyalty_order")
        orders = cursor.fetchone()[0]
    print(f"built {members} members, {orders} orders in {time.monotonic() - started:.1f} s", flush=True)
    # The stage history the conversion figures read: the nightly run at past month starts.
    bounds = month_bounds(now)
    instants = [*bounds[-1 - history_runs : -1], now] if history_runs else [now]
    started = time.monotonic()
    for instant in instants:
        members_refresh_profiles(now=instant, chunk_size=10_000)
    print(f"lifecycle history: {len(instants)} nightly runs in {time.monotonic() - started:.1f} s", flush=True)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE members_member; ANALYZE members_stagechange")
    return stores


def timed(label: str, call):
    started = time.monotonic()
    result = call()
    print(f"{label:<40}{time.monotonic() - started:>9.2f} s", flush=True)
    return result


def show(panel) -> None:
    last = -1
    print(f"  months: {panel.months[0]:%Y-%m} .. {panel.months[last]:%Y-%m}")
    print(f"  F reachable now: { ({channel: row[last] for channel, row in panel.reachable.items()}) }")
    for c in panel.conversions:
        rates = [f"{r * 100:.0f}%" if r is not None else "-" for r in c.rates[-3:]]
        print(f"  A {c.code}: last 3 months base {c.base[-3:]} converted {c.converted[-3:]} rates {rates}")
    share = panel.super_active_share[last]
    print(
        f"  S super users by month: {panel.super_users}; T now: "
        f"{panel.super_active[last]} active ({'-' if share is None else f'{share * 100:.1f}%'})"
    )
    row = panel.returning[last]
    print(
        f"  this month: first {row.first.orders} orders ¥{row.first.revenue} AOV {row.first.aov}; "
        f"repeat {row.repeat.orders} orders ¥{row.repeat.revenue} AOV {row.repeat.aov}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=20_000)
    parser.add_argument("--history-runs", type=int, default=3, help="Nightly runs at past month starts (0-11).")
    parser.add_argument("--keep", action="store_true", help="Keep the bench database at the end (default: drop it).")
    args = parser.parse_args()

    os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    url = os.environ["DATABASE_URL"]
    name = ensure_database(url)
    setup_django()
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from operations import fast

    now = timezone.now().replace(microsecond=0)
    call_command("migrate", verbosity=0)
    try:
        stores = build(args.members, now, max(0, min(11, args.history_runs)))
        server = connection.cursor().connection.info.parameter_status("server_version")
        print(f"FAST panel over {args.members} members, PostgreSQL {server} ({name})")
        params = fast._params(now, None)
        for label, statement in (
            ("  F reachable (one scan of members)", fast._reach_sql(fast.marketing_channels())),
            ("  A conversion (stage changes)", fast.CONVERSION_SQL),
            ("  S and T (RFM replayed 12 times)", fast.SUPER_SQL),
            ("  new vs. returning (orders)", fast.RETURNING_SQL),
        ):
            timed(label, lambda statement=statement: fast._rows(statement, params))
        brand = timed("fast_panel, brand-wide (4 statements)", lambda: fast.fast_panel(now=now))
        show(brand)
        one = timed("fast_panel, one store", lambda: fast.fast_panel(now=now, stores=[stores[0]]))
        print(f"  store 1: F any now {one.reachable['any'][-1]}, S now {one.super_users[-1]}")
        total, _ids = timed(
            "drill-down: super users now, page 1",
            lambda: fast.figure_members_page("super", month=11, now=now, stores=None),
        )
        print(f"  {total} super users now")
    finally:
        connection.close()
        if not args.keep:
            from urllib.parse import urlparse

            import psycopg
            from psycopg import sql

            maintenance = urlparse(url)._replace(path="/postgres").geturl()
            with psycopg.connect(maintenance, autocommit=True, connect_timeout=5) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            print(f"dropped {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
