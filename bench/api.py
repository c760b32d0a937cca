"""REST API throughput: earn-for-order and balance endpoints under gunicorn on PostgreSQL.

Starts gunicorn (2 x cores + 1 sync workers, or gthread ones with ``--threads``) on a free
local port, then drives it with 8 and 32 concurrent clients (threads, a new HTTP
connection per request, as sync workers close theirs) for a fixed time per scenario:

- earn:    POST /api/v1/pos/orders/ with a store key, a new order number each time,
           random members out of 500;
- balance: GET /api/v1/me/balances/ with random members' access tokens.

It prints requests per second and the p50/p95/p99 latency of each, then runs
``pgbench -b tpcb-like`` against the same PostgreSQL server for the same time as a
yardstick (a write transaction of five statements) and prints earn req/s over pgbench tps.
Afterwards the ledger invariants must hold over the whole database.

    python bench/api.py                   # 8 s per scenario
    python bench/api.py --seconds 20 --clients 8 32 64

DATABASE_URL defaults to postgres://postgres@127.0.0.1:5432/loyalty_bench_api (created and
migrated if missing; it refuses a database with members it did not create). The load
generator runs on the same machine: on a small machine it takes CPU from the server, so
compare figures taken the same way.
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from common import ensure_database, load_average, pgbench_tps  # bench/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/loyalty_bench_api"
STORE = "bench-api"


def setup_django(database_url: str) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


def prepare(members: int) -> tuple[str, list[str], list[str]]:
    """Bench store, members, a store key and an access token per member."""
    from django.conf import settings
    from django.core.management import call_command

    from api.services import store_key_create, tokens_issue
    from members.models import Member, Store
    from operations.actions import member_create

    if settings.PRODUCTION:
        sys.exit("The bench writes made-up members and orders; it refuses to run with DJANGO_ENV=production.")
    call_command("migrate", verbosity=0)
    store = Store.objects.get_or_create(code=STORE, defaults={"name": "API 压测门店", "city": "上海"})[0]
    if Member.objects.exclude(home_store=store).exists():
        sys.exit("This database holds members the bench did not create; point DATABASE_URL at a bench database.")
    have = Member.objects.count()
    for n in range(have, members):
        member_create(phone=f"+86136{n:08d}", home_store=store, source="bench")
    bench_members = list(Member.objects.filter(home_store=store).order_by("pk")[:members])
    _key, raw = store_key_create(store=store, name=f"bench {uuid.uuid4().hex[:6]}", actions=["earn"])
    tokens = [tokens_issue(member=m).access for m in bench_members]
    return raw, [m.member_number for m in bench_members], tokens


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(
    database_url: str, workers: int, port: int, conn_max_age: int, threads: int = 1
) -> tuple[subprocess.Popen, str]:
    port = port or free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DJANGO_DEBUG": "false",
        "DJANGO_LOG_LEVEL": "WARNING",
        # Each worker keeps its connection: no connect + authentication per request.
        "DATABASE_CONN_MAX_AGE": str(conn_max_age),
    }
    # Throttles do not apply to these endpoints; a shared cache is not needed.
    gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent)) or "gunicorn"
    process = subprocess.Popen(
        [gunicorn, "config.wsgi", "-w", str(workers), "-b", f"127.0.0.1:{port}", "--log-level", "warning"]
        + (["-k", "gthread", "--threads", str(threads)] if threads > 1 else []),
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    import requests

    for _ in range(150):
        try:
            requests.get(f"{base}/api/schema/", timeout=5)
            return process, base
        except requests.RequestException:  # not listening yet, or a worker still booting
            time.sleep(0.2)
    os.killpg(process.pid, signal.SIGTERM)
    sys.exit("gunicorn did not start")


def http_call(base: str, method: str, path: str, headers: dict, body: dict | None = None) -> int:
    """One request on a new connection (sync gunicorn workers close theirs after each
    response); its status. ``http.client``: a few times less client CPU per request than
    ``requests``, whose threads, sharing this process's GIL with 31 others, added their own
    wait to the latencies measured at 32 clients."""
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        payload = None if body is None else json.dumps(body)
        headers = {**headers, "Content-Type": "application/json"} if body is not None else headers
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def run_load(make_request, clients: int, seconds: float) -> dict:
    """``clients`` threads calling ``make_request`` (which returns a status) until time is up."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    deadline = time.perf_counter() + seconds
    barrier = threading.Barrier(clients)

    def worker(index: int) -> None:
        barrier.wait()
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            status = make_request()
            latencies[index].append(time.perf_counter() - started)
            if status >= 300:
                errors[index] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    every = sorted(x for one in latencies for x in one)
    quantiles = statistics.quantiles(every, n=100) if len(every) > 1 else [every[0] if every else 0] * 99
    return {
        "requests": len(every),
        "errors": sum(errors),
        "rps": len(every) / wall,
        "p50": quantiles[49] * 1000,
        "p95": quantiles[94] * 1000,
        "p99": quantiles[98] * 1000,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--clients", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--members", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1) + 1)
    parser.add_argument("--port", type=int, default=0, help="gunicorn's port (default: a free one)")
    parser.add_argument("--conn-max-age", type=int, default=60, help="DATABASE_CONN_MAX_AGE of the workers")
    parser.add_argument("--threads", type=int, default=1, help="threads per worker (more than 1: gthread workers)")
    options = parser.parse_args()

    database_url = os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)
    ensure_database(database_url)
    setup_django(database_url)
    key, numbers, tokens = prepare(options.members)
    from django.db import connections

    connections.close_all()

    process, base = start_gunicorn(database_url, options.workers, options.port, options.conn_max_age, options.threads)
    import random

    def earn() -> int:
        body = {
            "member_number": random.choice(numbers),
            "number": uuid.uuid4().hex[:20],
            "amount": f"{random.randint(1, 500)}.00",
        }
        return http_call(base, "POST", "/api/v1/pos/orders/", {"Authorization": f"Api-Key {key}"}, body)

    def balance() -> int:
        return http_call(base, "GET", "/api/v1/me/balances/", {"Authorization": f"Bearer {random.choice(tokens)}"})

    print(
        f"gunicorn {options.workers} workers x {options.threads} threads, {os.cpu_count()} cores, "
        f"{options.seconds:g} s per scenario, "
        f"CONN_MAX_AGE {options.conn_max_age}; load average {load_average()}"
    )
    header = ("scenario", "clients", "requests", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms")
    print(f"{header[0]:<10}{header[1]:>8}{header[2]:>10}" + "".join(f"{h:>9}" for h in header[3:]))
    results = {}
    failed = False
    try:
        for name, call in (("earn", earn), ("balance", balance)):
            for clients in options.clients:
                r = run_load(call, clients, options.seconds)
                results[(name, clients)] = r
                failed |= r["errors"] > 0
                print(
                    f"{name:<10}{clients:>8}{r['requests']:>10}{r['errors']:>8}{r['rps']:>9.1f}"
                    f"{r['p50']:>9.1f}{r['p95']:>9.1f}{r['p99']:>9.1f}"
                )
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)

    tps = pgbench_tps(database_url, 8, int(options.seconds))
    print(f"load average after: {load_average()}")
    if tps:
        print(f"pgbench tpcb-like, 8 clients: {tps:.0f} tps")
        for name, target in (("earn", 0.06), ("balance", 0.15)):
            for clients in options.clients:
                rps = results[(name, clients)]["rps"]
                print(f"{name} req/s at {clients} clients / pgbench tps = {rps / tps:.3f} (target >= {target})")
    if (("earn", 32)) in results:
        worst = max(results[(name, 32)]["p99"] for name in ("earn", "balance"))
        print(f"p99 at 32 clients: {worst:.0f} ms (target <= 150)")

    from loyalty.selectors import ledger_violations

    violations = ledger_violations()
    print(f"ledger violations: {len(violations)}")
    return 1 if failed or violations else 0


if __name__ == "__main__":
    sys.exit(main())
