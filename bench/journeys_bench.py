"""The hourly journey run with nothing to do, over N members (issue 18: <= 5 s at 1M).

Builds the members, orders, tier and stage changes, birthdays and expiring points of
``bench/journeys.py`` (its ``build``), activates one journey per trigger (the four shipped
ones, plus tier changed, birthday and no order for 60 days) and one multi-step journey with
a holdout, then makes "nothing to do" true the way the hourly run leaves it: every event in
the look-back window already has its run (written here in SQL, as an earlier run would
have), and 20% of the members stand in the multi-step journey waiting at a step due in two
days. Then it times ``journeys_run`` an hour later, and prints pgbench's TPC-B tps on the
same server right after, so the figure can be read against the machine's speed.

    python bench/journeys_bench.py                   # 100 000 members
    python bench/journeys_bench.py --members 1000000

DATABASE_URL defaults to postgres://postgres@127.0.0.1:5432/loyalty_bench_journeys_hourly;
created if missing, migrated, emptied of bench data before every run; it refuses a
database holding members it did not create.
"""

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

from common import ensure_database, pgbench_tps, setup_django  # bench/ is on sys.path as a script
from journeys import build  # bench/journeys.py: the same members, orders and events

# bench/operations.py would shadow the project's operations package: take bench/ off the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/loyalty_bench_journeys_hourly"

WAITING_SQL = [
    # 20% of members entered the multi-step journey yesterday and wait at step 2 (due in 2 days).
    """
    INSERT INTO engagement_journeyrun (journey_id, member_id, event_key, status, reason, detail, created_at)
    SELECT %(journey)s, m.id, 'bench', 'done', 'bench', '{}'::jsonb, %(now)s - interval '1 day'
    FROM members_member m WHERE m.id %% 5 = 0
    """,
    """
    INSERT INTO engagement_journeyposition (run_id, journey_id, member_id, step, waiting, since, due_at, state,
        variants, entered_at, updated_at)
    SELECT r.id, r.journey_id, r.member_id, 2, true, r.created_at, r.created_at + interval '3 days', 'active',
           '{}'::jsonb, r.created_at, r.created_at
    FROM engagement_journeyrun r WHERE r.journey_id = %(journey)s
    """,
]


def journeys_setup() -> list:
    """Every trigger once, all active, plus a three-step journey with a 10% holdout."""
    from engagement.models import Journey, JourneyStep

    Journey.objects.update(is_active=True)
    for name, trigger, days in (
        ("bench: tier changed", Journey.Trigger.TIER_CHANGED, None),
        ("bench: birthday", Journey.Trigger.BIRTHDAY, None),
        ("bench: no order for 60 days", Journey.Trigger.NO_ORDER, 60),
    ):
        journey, _ = Journey.objects.update_or_create(
            name=name,
            defaults={"trigger": trigger, "trigger_days": days, "is_marketing": True, "is_active": True},
        )
        JourneyStep.objects.get_or_create(
            journey=journey, position=1, defaults={"action": "notify", "message_title": "Hello"}
        )
    steps, _ = Journey.objects.update_or_create(
        name="bench: welcome series",
        defaults={"trigger": Journey.Trigger.JOINED, "holdout_percent": 10, "is_marketing": True, "is_active": True},
    )
    for position, fields in (
        (1, {"action": "notify", "message_title": "Welcome"}),
        (2, {"kind": "wait", "wait_days": 3, "wait_until": "order"}),
        (3, {"kind": "branch", "condition": "bought"}),
        (4, {"action": "award_points", "points": 20}),
    ):
        JourneyStep.objects.get_or_create(journey=steps, position=position, defaults=fields)
    return list(Journey.objects.filter(is_active=True).order_by("id"))


def mark_events_run(journeys: list, now: dt.datetime) -> int:
    """A run row for every event now in the look-back window: what an earlier hourly run leaves."""
    from operations import journeys as engine

    written = 0
    for journey in journeys:
        events = engine.TRIGGERS[journey.trigger](journey, 0, 2**62, now, now - engine.LOOKBACK)
        for event in events:
            event.status, event.reason = "skipped", "bench: run earlier"
        written += len(engine._insert_runs(journey, events, now))
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3, help="How many hourly runs to time (the best and all shown).")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="Keep the data an earlier run of the same day built for the same --members (skips the build).",
    )
    args = parser.parse_args()

    os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    url = os.environ["DATABASE_URL"]
    name = ensure_database(url)
    # Celery's loader puts the working directory on sys.path, where bench/operations.py
    # would shadow the operations package: work from the project root.
    os.chdir(Path(__file__).resolve().parent.parent)
    setup_django()
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.utils import timezone

    from operations import journeys as engine

    call_command("migrate", verbosity=0)
    now = timezone.localtime(timezone.now()).replace(hour=10, minute=30, second=0, microsecond=0)
    from engagement.models import JourneyPosition, JourneyRun
    from members.models import Member

    # The events are placed relative to today's 10:30: data of an earlier day is rebuilt.
    reusable = (
        args.reuse
        and Member.objects.count() == args.members
        and JourneyRun.objects.filter(created_at=now).exists()
        and JourneyPosition.objects.exists()
    )
    if reusable:
        active = journeys_setup()
        print(f"reusing the {args.members} members, their events and runs built earlier today")
    else:
        build(args.members, now)
        active = journeys_setup()
        started = time.monotonic()
        written = mark_events_run(active, now)
        series = next(j for j in active if j.name == "bench: welcome series")
        with transaction.atomic(), connection.cursor() as cursor:
            for statement in WAITING_SQL:
                cursor.execute(statement, {"journey": series.pk, "now": now})
            cursor.execute("SELECT count(*) FROM engagement_journeyposition")
            waiting = cursor.fetchone()[0]
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
        print(f"marked {written} events as run and {waiting} members waiting in {time.monotonic() - started:.1f} s")
    server = connection.cursor().connection.info.parameter_status("server_version")
    print(f"hourly journey run over {args.members} members, {len(active)} journeys, PostgreSQL {server} ({name})")

    times = []
    for k in range(args.runs):
        at = now + dt.timedelta(hours=1 + k)
        started = time.monotonic()
        results = engine.journeys_run(now=at)
        seconds = time.monotonic() - started
        times.append(seconds)
        acted = sum(r.get("done", 0) + r.get("skipped", 0) + r.get("steps", 0) for r in results.values())
        errors = {n: r["error"] for n, r in results.items() if "error" in r}
        print(f"run {k + 1} (nothing to do): {seconds:.2f} s, acted on {acted}, errors {errors or 'none'}")
        if k == 0:
            for journey_name, result in results.items():
                print(f"    {journey_name:<32}{result.get('duration_s', 0):>7.3f} s")
    connection.close()
    tps = pgbench_tps(url, clients=8, seconds=10)
    print(f"best of {args.runs}: {min(times):.2f} s; pgbench tpcb-like, 8 clients, same server: {tps} tps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
