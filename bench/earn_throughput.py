"""Earn throughput: orders per second through ``loyalty.services.order_earn`` from N processes.

Two scenarios on PostgreSQL, each process a separate interpreter with its own connection,
the way several gunicorn workers call the service:

- spread: every process earns for random members out of 2000, so row locks rarely meet;
- hot: every process earns for the same 8 members, so the calls queue on those members'
  account locks (a flash sale, or one POS replaying a backlog for a few cards).

Then it checks the ledger invariants over the whole database; any violation is a failure.

    make bench
    python bench/earn_throughput.py --processes 8 --orders-per-process 500

DATABASE_URL defaults to postgres://postgres@127.0.0.1:5432/loyalty_bench; the database
is created if missing and migrated. The bench refuses a database holding members it did
not create, so it cannot write into a development or production database by mistake.
"""

import argparse
import multiprocessing as mp
import os
import random
import statistics
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

from common import (  # bench/ is on sys.path when run as a script
    backend_cpu_seconds,
    ensure_database,
    load_average,
    pgbench_tps,
    tpcb_cpu_per_transaction,
)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/loyalty_bench"
BENCH_STORES = ("bench-1", "bench-2", "bench-3")


def setup_django() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    import django

    django.setup()


def ensure_members(count: int) -> tuple[list[int], list[int]]:
    """The bench stores and ``count`` bench members (created once, reused by later runs)."""
    from django.conf import settings

    from loyalty.models import Account, Currency
    from members.models import Member, Store
    from operations.actions import member_create

    if settings.PRODUCTION:
        sys.exit("The bench writes made-up members and orders; it refuses to run with DJANGO_ENV=production.")
    stores = [
        Store.objects.get_or_create(code=code, defaults={"name": f"压测门店 {n}", "city": "上海"})[0]
        for n, code in enumerate(BENCH_STORES, start=1)
    ]
    foreign = Member.objects.exclude(home_store__in=stores).count()
    if foreign:
        sys.exit(
            f"This database holds {foreign} members the bench did not create. Point DATABASE_URL at a database "
            f"of its own (the default is {DEFAULT_DATABASE_URL})."
        )
    existing = Member.objects.filter(home_store__in=stores).count()
    if existing < count:
        print(f"creating {count - existing} bench members ...", flush=True)
    for n in range(existing, count):
        member_create(phone=f"+86137{n:08d}", name=f"压测会员{n}", home_store=stores[n % len(stores)], source="import")
    member_ids = list(Member.objects.filter(home_store__in=stores).order_by("id").values_list("id", flat=True)[:count])
    # Members who have bought before, as nearly every earn's member is: their accounts open.
    # (A member's first earn opens them, two statements more; loyalty/tests/test_earn_statements.py.)
    Account.objects.bulk_create(
        [Account(member_id=member_id, currency=currency) for member_id in member_ids for currency in Currency.values],
        ignore_conflicts=True,
    )
    return member_ids, [store.pk for store in stores]


def worker(
    proc: int,
    label: str,
    run_id: str,
    member_ids,
    store_ids,
    orders: int,
    seed: int,
    barrier,
    results,
    server_side_binding,
):
    """One process: earn ``orders`` orders for random members out of ``member_ids``, timing each call."""
    setup_django()
    from django.db import connection

    if server_side_binding:
        # psycopg then prepares a statement on the server once it ran five times on the connection.
        connection.settings_dict.setdefault("OPTIONS", {})["server_side_binding"] = True
    from loyalty.services import OrderLineInput, order_earn
    from members.models import Member, Store

    members = list(Member.objects.filter(pk__in=member_ids))
    stores = list(Store.objects.filter(pk__in=store_ids))
    rng = random.Random(seed)
    connection.ensure_connection()  # connect before the clock starts
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    barrier.wait()
    cpu_before = backend_cpu_seconds(backend)
    latencies, errors, first_error = [], 0, ""
    started = time.monotonic()
    for n in range(orders):
        amount = Decimal(rng.randint(1_000, 300_000)) / 100
        lines = [OrderLineInput(sku="BENCH-1", name="压测商品", category="服饰", amount=amount)]
        call_started = time.perf_counter()
        try:
            order_earn(
                member=rng.choice(members),
                store=rng.choice(stores),
                number=f"{run_id}-{label}-{proc}-{n}",
                amount=amount,
                lines=lines,
            )
        except Exception as exc:  # counted and reported: the bench must show failures, not stop at one
            errors += 1
            first_error = first_error or f"{type(exc).__name__}: {exc}"
            continue
        latencies.append(time.perf_counter() - call_started)
    finished = time.monotonic()
    results.put((started, finished, latencies, errors, first_error, backend_cpu_seconds(backend) - cpu_before))
    connection.close()


def run_scenario(label: str, member_ids: list[int], store_ids: list[int], args, run_id: str) -> dict:
    ctx = mp.get_context("spawn")  # fresh interpreters: no connection inherited from the parent
    barrier, results = ctx.Barrier(args.processes), ctx.Queue()
    processes = [
        ctx.Process(
            target=worker,
            args=(
                n,
                label,
                run_id,
                member_ids,
                store_ids,
                args.orders_per_process,
                args.seed + n,
                barrier,
                results,
                args.server_side_binding,
            ),
        )
        for n in range(args.processes)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=3600) for _process in processes]
    for process in processes:
        process.join()
    latencies = sorted(latency for outcome in outcomes for latency in outcome[2])
    wall = max(o[1] for o in outcomes) - min(o[0] for o in outcomes)
    return {
        "earns": len(latencies),
        "errors": sum(o[3] for o in outcomes),
        "first_error": next((o[4] for o in outcomes if o[4]), ""),
        "wall": wall,
        "rate": len(latencies) / wall if wall else 0.0,
        "p50": statistics.median(latencies) * 1000 if latencies else 0.0,
        "p95": statistics.quantiles(latencies, n=20)[18] * 1000 if len(latencies) > 1 else 0.0,
        # PostgreSQL's CPU seconds per earn: the backends' CPU over the run (from /proc).
        "cpu": sum(o[5] for o in outcomes) / len(latencies) if latencies else 0.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--orders-per-process", type=int, default=500)
    parser.add_argument("--members", type=int, default=2000, help="Members the spread scenario picks from.")
    parser.add_argument("--hot-members", type=int, default=8, help="Members every process hammers in the hot one.")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--server-side-binding", action="store_true", help="Django's OPTIONS server_side_binding (prepared statements)"
    )
    args = parser.parse_args()

    database_url = os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    name = ensure_database(database_url)
    setup_django()
    from django.core.management import call_command
    from django.db import connection, connections

    from loyalty.selectors import ledger_violations

    call_command("migrate", verbosity=0)
    member_ids, store_ids = ensure_members(args.members)
    server = connection.cursor().connection.info.parameter_status("server_version")
    connections.close_all()

    print(
        f"order_earn throughput: {args.processes} processes x {args.orders_per_process} orders, "
        f"PostgreSQL {server} ({name})"
    )
    print(f"load average before: {load_average()}")
    print(
        f"{'scenario':<34}{'earns':>7}{'errors':>8}{'wall s':>9}{'earns/s':>10}{'p50 ms':>9}{'p95 ms':>9}"
        f"{'pg cpu ms':>11}"
    )
    run_id = uuid.uuid4().hex[:8]
    scenarios = [
        (f"spread over {len(member_ids)} members", "spread", member_ids),
        (f"same {args.hot_members} members (contention)", "hot", member_ids[: args.hot_members]),
    ]
    failed, rates = False, {}
    for title, label, ids in scenarios:
        figures = run_scenario(label, ids, store_ids, args, run_id)
        rates[label] = figures
        print(
            f"{title:<34}{figures['earns']:>7}{figures['errors']:>8}{figures['wall']:>9.2f}"
            f"{figures['rate']:>10.1f}{figures['p50']:>9.1f}{figures['p95']:>9.1f}{figures['cpu'] * 1000:>11.3f}",
            flush=True,
        )
        if figures["errors"]:
            print(f"  first error: {figures['first_error']}")
            failed = True

    # The yardsticks, in the same run on the same server: pgbench TPC-B with as many clients.
    seconds = max(5, min(15, round(rates["spread"]["wall"])))
    tps = pgbench_tps(database_url, args.processes, seconds)
    tpcb_cpu = tpcb_cpu_per_transaction(database_url, args.processes, seconds)
    spread, hot = rates["spread"]["rate"], rates["hot"]["rate"]
    print(f"load average after: {load_average()}")
    if tps:
        print(f"pgbench tpcb-like, {args.processes} clients, {seconds} s: {tps:.0f} tps")
        print(f"spread earns/s / pgbench tps = {spread / tps:.3f} (target >= 0.10)")
    print(f"contention / spread = {hot / spread:.2f} (target >= 0.50)" if spread else "no earns")
    if tpcb_cpu:
        ratio = rates["spread"]["cpu"] / tpcb_cpu
        print(
            f"PostgreSQL CPU per earn {rates['spread']['cpu'] * 1000:.3f} ms / per TPC-B transaction "
            f"{tpcb_cpu * 1000:.3f} ms = {ratio:.2f}x (target <= 4)"
        )

    violations = ledger_violations()
    print(f"ledger violations: {len(violations)}")
    for violation in violations[:20]:
        print(f"  {violation}")
    return 1 if failed or violations else 0


if __name__ == "__main__":
    sys.exit(main())
