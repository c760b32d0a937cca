"""Journeys at scale: one hourly run of every trigger over N members (operations.journeys).

Builds N members (default 100 000) straight in SQL (INSERT ... SELECT generate_series) in
a database of its own, with what the triggers look at:

- joined: members join evenly over two years (about 0.4% in the three-day look-back);
- orders: three per member over two years (first, second, last), so about 0.4% have a
  first order 30 days old with nothing since, and some a last order exactly 60 days old;
- tier changes: 1% of members changed tier yesterday;
- birthdays: spread over the year (about 1/365 a day);
- stage changes: 2% of members entered the dormant stage last night;
- points: 2% of members hold a lot expiring within 7 days;
- marketing consent: half of the members (WeChat).

Then it times ``journeys_run`` with one active journey per trigger (the four shipped
defaults plus tier changed, birthday and no order for 60 days) at 10:30 local time, and a
second run at 11:30 (nothing new: the pure cost of evaluating every trigger for every
member, which is what most hourly runs are).

    python bench/journeys.py                 # 100 000 members
    python bench/journeys.py --members 1000000

DATABASE_URL defaults to postgres://postgres@127.0.0.1:5432/loyalty_bench_journeys; it is
created if missing, migrated, and emptied of bench data before every run. The bench
refuses a database holding members it did not create.
"""

import argparse
import datetime as dt
import os
import sys
import time

from common import ensure_database, setup_django  # bench/ is on sys.path as a script

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/loyalty_bench_journeys"
PHONE_PREFIX = "+86134"  # bench members only
STORE_CODE = "bench-journeys"


BUILD_SQL = [
    """
    INSERT INTO members_member (phone, member_number, name, gender, email, joined_at, status, home_store_id,
        birthday, wechat_consent_at, order_count, spend_total, stage, rfm_segment, rejoined_after_erasure, language)
    SELECT %(prefix)s || lpad(g::text, 8, '0'), 'Y' || lpad(g::text, 11, '0'), '', 'unknown', '',
           %(now)s - (g %% 730) * interval '1 day' - interval '2 hours', 'active', %(store)s,
           date '1990-01-01' + (g::bigint * 7919 %% 365)::int,
           CASE WHEN g %% 2 = 0 THEN %(now)s - interval '500 days' END,
           3, 300, '', '', false, ''
    FROM generate_series(1, %(members)s) g
    """,
    # Three orders per member: first (joined + 1 h), second, last. A member with
    # id %% 250 = 0 has only the first, 30 days ago; id %% 97 = 0 last ordered 60 days ago.
    """
    INSERT INTO loyalty_order (member_id, store_id, number, amount, points_paid_amount, refunded_amount, status,
        occurred_at, created_at, request_hash, benefits, member_discount)
    SELECT m.id, %(store)s, 'B' || m.id || '-' || k, 100, 0, 0, 'completed',
           CASE WHEN m.id %% 250 = 0 THEN %(now)s - interval '30 days 2 hours'
                WHEN k = 1 THEN m.joined_at + interval '1 hour'
                WHEN m.id %% 97 = 0 THEN %(now)s - interval '60 days 3 hours' - (3 - k) * interval '1 day'
                ELSE m.joined_at + (k * 20) * interval '1 hour' END,
           %(now)s, '', '{}'::jsonb, 0
    FROM members_member m CROSS JOIN generate_series(1, 3) k
    WHERE m.phone LIKE %(prefix)s || '%%' AND (k = 1 OR m.id %% 250 <> 0)
    """,
    """
    INSERT INTO members_stagechange (member_id, from_stage, to_stage, changed_at)
    SELECT m.id, 'growing', 'dormant', %(now)s - interval '6 hours'
    FROM members_member m WHERE m.phone LIKE %(prefix)s || '%%' AND m.id %% 100 IN (7, 8)
    """,
    """
    INSERT INTO loyalty_tierchange (member_id, from_tier_id, to_tier_id, reason, growth, note, created_at)
    SELECT m.id, %(bronze)s, %(silver)s, 'upgrade', 1000, '', %(now)s - interval '20 hours'
    FROM members_member m WHERE m.phone LIKE %(prefix)s || '%%' AND m.id %% 100 = 11
    """,
    # Points for 2% of members: an account, one earn entry, one lot expiring in 5 days.
    """
    INSERT INTO loyalty_account (member_id, currency, balance, pending, lifetime_earned, lifetime_spent, owed,
        updated_at)
    SELECT m.id, 'points', 120, 0, 120, 0, 0, %(now)s
    FROM members_member m WHERE m.phone LIKE %(prefix)s || '%%' AND m.id %% 50 = 3
    """,
    """
    INSERT INTO loyalty_ledgerentry (account_id, member_id, currency, kind, amount, pending_amount, balance_after,
        pending_after, idempotency_key, request_hash, reason, created_at, detail)
    SELECT a.id, a.member_id, 'points', 'earn', 120, 0, 120, 0, NULL, '', '', %(now)s - interval '360 days', '{}'
    FROM loyalty_account a JOIN members_member m ON m.id = a.member_id AND m.phone LIKE %(prefix)s || '%%'
    """,
    """
    INSERT INTO loyalty_lot (account_id, member_id, currency, entry_id, amount, remaining, pending, available_at,
        expires_at, created_at)
    SELECT e.account_id, e.member_id, 'points', e.id, 120, 120, false, e.created_at, %(now)s + interval '5 days',
           e.created_at
    FROM loyalty_ledgerentry e JOIN members_member m ON m.id = e.member_id AND m.phone LIKE %(prefix)s || '%%'
    """,
]


def build(members: int, now: dt.datetime) -> None:
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
    tiers = {}
    for rank, (code, qualify, retain) in enumerate([("bronze", 0, 0), ("silver", 1000, 500)]):
        tiers[code], _ = Tier.objects.get_or_create(
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
        # Only bench rows live here (checked above): empty every table the bench fills.
        cursor.execute(
            "TRUNCATE members_member, loyalty_account, loyalty_ledgerentry, loyalty_lot, loyalty_order, "
            "members_stagechange, loyalty_tierchange, engagement_journeyrun, rewards_coupon CASCADE"
        )
    params = {
        "prefix": PHONE_PREFIX,
        "store": store.pk,
        "members": members,
        "now": now,
        "bronze": tiers["bronze"].pk,
        "silver": tiers["silver"].pk,
    }
    with transaction.atomic(), connection.cursor() as cursor:
        for statement in BUILD_SQL:
            cursor.execute(statement, params)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    print(f"built {members} members in {time.monotonic() - started:.1f} s", flush=True)


def journeys_setup() -> None:
    """The four shipped journeys plus one for each other trigger, all active, no audience."""
    from engagement.models import Journey, JourneyStep

    Journey.objects.update(is_active=True)
    for name, trigger, days in (
        ("bench: tier changed", Journey.Trigger.TIER_CHANGED, None),
        ("bench: birthday", Journey.Trigger.BIRTHDAY, None),
        ("bench: no order for 60 days", Journey.Trigger.NO_ORDER, 60),
    ):
        journey, _ = Journey.objects.update_or_create(
            name=name,
            defaults={
                "trigger": trigger,
                "trigger_days": days,
                "is_marketing": trigger != Journey.Trigger.TIER_CHANGED,
                "is_active": True,
            },
        )
        JourneyStep.objects.get_or_create(
            journey=journey, position=1, defaults={"action": Journey.Action.NOTIFY, "message_title": "Hello"}
        )


def timed_run(label: str, now: dt.datetime) -> None:
    from operations import journeys

    started = time.monotonic()
    results = journeys.journeys_run(now=now)
    seconds = time.monotonic() - started
    done = sum(r.get("done", 0) for r in results.values())
    skipped = sum(r.get("skipped", 0) for r in results.values())
    longest = max((r.get("longest_chunk_s", 0) for r in results.values()), default=0)
    print(f"{label:<26}{seconds:>9.2f} s   done {done:>7}   skipped {skipped:>7}   longest chunk {longest:.3f} s")
    for name, result in results.items():
        print(
            f"    {name:<30}{result.get('duration_s', 0):>8.2f} s   done {result.get('done', 0):>6}"
            f"   skipped {result.get('skipped', 0):>6}   longest chunk {result.get('longest_chunk_s', 0):.3f} s"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=100_000)
    args = parser.parse_args()

    os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    name = ensure_database(os.environ["DATABASE_URL"])
    setup_django()
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    call_command("migrate", verbosity=0)
    local = timezone.localtime(timezone.now())
    now = local.replace(hour=10, minute=30, second=0, microsecond=0)  # outside the default quiet hours
    build(args.members, now)
    journeys_setup()
    server = connection.cursor().connection.info.parameter_status("server_version")
    print(f"journeys over {args.members} members, PostgreSQL {server} ({name})")
    timed_run("first run (acts)", now)
    timed_run("second run (nothing new)", now + dt.timedelta(hours=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
