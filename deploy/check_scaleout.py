"""Scale-out check: two web processes and two workers against one PostgreSQL and one Redis.

    .venv/bin/python deploy/check_scaleout.py            # about 30-50 s on 2 cores
    .venv/bin/python deploy/check_scaleout.py --members 60 --due 200   # a bigger burst

1. Makes (or reuses) the database SCALEOUT_DATABASE_URL (default: DATABASE_URL's server,
   database ``loyalty_scaleout``), migrated; refuses one with members it did not make.
2. Starts two gunicorn processes (config/gunicorn.py, 2 workers x 4 threads each) on
   ports 8100 and 8101 and two celery workers (w1, w2; queues ledger, contact, bulk and
   the default) on CELERY_BROKER_URL.
3. A burst over both web processes, spread request by request: each member earns for an
   order, resends it, pays with points at checkout and refunds half the order; and the same
   second order is sent to both web processes at the same moment.
4. The nightly jobs, each sent twice (as two beats would), over both workers; members
   with points past their return window wait to be released.
5. Checks: ``loyalty.selectors.ledger_violations()`` empty; one earn per order and
   currency (the duplicate and the resends added nothing); each due lot released once;
   every job ran to success; both workers ran some. Prints the figures; exit 1 on a failure.
"""

import argparse
import datetime as dt
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PORTS = (8100, 8101)
JOBS = [
    "loyalty.release_matured_points",
    "loyalty.expire_due_points",
    "loyalty.evaluate_tiers",
    "loyalty.send_expiry_notices",
    "loyalty.issue_birthday_benefits",
    "rewards.expire_coupons",
    "rewards.issue_birthday_coupons",
    "rewards.issue_monthly_benefits",
    "members.refresh_lifecycle",
    "engagement.reward_referrals",
]
SUCCEEDED = re.compile(r"Task ([\w.]+)\[([0-9a-f-]+)\] succeeded")


def fail(message: str) -> None:
    print(f"FAILED: {message}", flush=True)
    raise SystemExit(1)


def database_url() -> str:
    url = os.environ.get("SCALEOUT_DATABASE_URL")
    if url:
        return url
    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/loyalty")
    return urlunsplit(urlsplit(base)._replace(path="/loyalty_scaleout"))


def database_ensure(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    out = open(log, "wb")  # noqa: SIM115 (kept open for the process's life)
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def wait_ready(base: str, seconds: float) -> None:
    import requests

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    fail(f"{base} did not answer /healthz within {seconds} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=20, help="members driven through the API flow")
    parser.add_argument("--due", type=int, default=60, help="members with points waiting to be released")
    parser.add_argument("--threads", type=int, default=8, help="client threads of the burst")
    options = parser.parse_args()
    started = time.monotonic()

    url = database_url()
    broker = os.environ.get("CELERY_BROKER_URL") or os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    if not broker.startswith("redis://"):
        fail("CELERY_BROKER_URL must be redis://...")
    database_ensure(url)
    os.environ.update(
        DATABASE_URL=url, CELERY_BROKER_URL=broker, CACHE_URL=broker, DJANGO_ENV="development", DJANGO_DEBUG="false"
    )
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.utils import timezone

    from config.celery import app
    from config.tests.member_flow import flow_member, flow_setup
    from loyalty import services
    from loyalty.models import LedgerEntry, Lot, Order
    from loyalty.selectors import ledger_violations
    from members.models import Member, Store
    from operations.actions import member_create

    call_command("migrate", verbosity=0)
    call_command("setup_periodic_tasks", verbosity=0, stdout=open(os.devnull, "w"))  # noqa: SIM115
    from django.db.models import Q

    if Member.objects.exclude(
        Q(home_store__code__startswith="flow-") | Q(home_store__code__startswith="due-")
    ).exists():
        fail(f"{url} holds members this check did not make; point SCALEOUT_DATABASE_URL at a database of its own")
    tag = uuid.uuid4().hex[:6]
    key, numbers = flow_setup(options.members, tag=tag)
    # Points past their return window, waiting for the release job.
    store = Store.objects.create(code=f"due-{tag}", name=f"Due {tag}", city="Shanghai")
    for n in range(options.due):
        member = member_create(phone=f"+86135{int(tag, 16) % 1000:03d}{n:05d}", home_store=store, source="scaleout")
        services.order_earn(member=member, store=store, number=f"P-{tag}-{n}", amount="20.00")
    # Time passes: the return window of those orders ends (only the date moves; the
    # entries and amounts are the services' own).
    Lot.objects.filter(member__home_store=store, pending=True).update(
        available_at=timezone.now() - dt.timedelta(hours=1)
    )
    due_lots = Lot.objects.filter(pending=True, available_at__lte=timezone.now()).count()
    if due_lots < options.due:
        fail(f"expected at least {options.due} lots waiting for release, found {due_lots}")
    releases_before = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.RELEASE).count()
    prepared = time.monotonic()

    folder = Path(tempfile.mkdtemp(prefix="loyalty-scaleout-"))
    queue_env = {**os.environ, "LOYALTY_PENDING_DAYS": "0", "DJANGO_LOG_FORMAT": "text", "GUNICORN_ACCESS_LOG": ""}
    processes: list[subprocess.Popen] = []
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    celery = str(Path(sys.executable).with_name("celery"))
    try:
        for port in PORTS:
            env = {
                **queue_env,
                "GUNICORN_BIND": f"127.0.0.1:{port}",
                "GUNICORN_WORKERS": "2",
                "GUNICORN_THREADS": "4",
                "PROMETHEUS_MULTIPROC_DIR": str(folder / f"metrics-{port}"),
            }
            processes.append(
                start([gunicorn, "-c", "config/gunicorn.py", "config.wsgi"], env, folder / f"web-{port}.log")
            )
        for name in ("w1", "w2"):
            processes.append(
                start(
                    [
                        celery,
                        "-A",
                        "config",
                        "worker",
                        "--queues=ledger,contact,bulk,celery",
                        f"--hostname={name}@scaleout",
                        "--concurrency=1",
                        "--loglevel=INFO",
                        "--without-gossip",
                        "--without-mingle",
                    ],
                    queue_env,
                    folder / f"{name}.log",
                )
            )
        for port in PORTS:
            wait_ready(f"http://127.0.0.1:{port}", 40)
        booted = time.monotonic()

        # --- the burst over both web processes -------------------------------------------
        import requests

        local = threading.local()
        latencies: list[float] = []
        per_port = dict.fromkeys(PORTS, 0)
        counter = iter(range(10**9))
        lock = threading.Lock()

        def post(path: str, body: dict) -> tuple[int, dict]:
            session = getattr(local, "session", None)
            if session is None:
                session = local.session = requests.Session()
                session.headers["Authorization"] = f"Api-Key {key}"
            with lock:
                port = PORTS[next(counter) % 2]
                per_port[port] += 1
            begun = time.perf_counter()
            response = session.post(f"http://127.0.0.1:{port}{path}", json=body, timeout=30)
            with lock:
                latencies.append(time.perf_counter() - begun)
            return response.status_code, response.json()

        def duplicate(number: str, n: int) -> list[int]:
            # The same order to both web processes at the same moment.
            barrier = threading.Barrier(2)
            results: list[int] = []

            def send(port: int) -> None:
                session = requests.Session()
                barrier.wait()
                begun = time.perf_counter()
                response = session.post(
                    f"http://127.0.0.1:{port}/api/v1/pos/orders/",
                    json={"member_number": number, "number": f"D-{tag}-{n}", "amount": "40.00"},
                    headers={"Authorization": f"Api-Key {key}"},
                    timeout=30,
                )
                with lock:
                    latencies.append(time.perf_counter() - begun)
                    per_port[port] += 1
                    results.append(response.status_code)

            threads = [threading.Thread(target=send, args=(port,)) for port in PORTS]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            return sorted(results)

        burst_started = time.monotonic()
        with ThreadPoolExecutor(options.threads) as pool:
            flows = list(pool.map(lambda pair: flow_member(post, pair[1], f"{tag}-{pair[0]}"), enumerate(numbers)))
            duplicates = list(pool.map(lambda pair: duplicate(pair[1], pair[0]), enumerate(numbers)))
        burst_seconds = time.monotonic() - burst_started
        expected = {"earn": 201, "resend": 200, "resend_replayed": 1, "checkout": 201, "refund": 201}
        bad_flows = [flow for flow in flows if flow != expected]
        if bad_flows:
            fail(f"{len(bad_flows)} member flows went wrong, e.g. {bad_flows[0]}")
        # The duplicate: one earned (201); the other is the replay (200) or, while the first
        # was still running, refused as in progress (409) and would be retried.
        bad_duplicates = [d for d in duplicates if d not in ([200, 201], [201, 409])]
        if bad_duplicates:
            fail(f"the same order sent to both web processes gave {bad_duplicates[0]}")

        # --- the nightly jobs over both workers, each sent twice --------------------------
        jobs_started = time.monotonic()
        task_ids = [app.send_task(job).id for job in JOBS for _copy in range(2)]
        deadline = time.monotonic() + 45
        done: dict[str, str] = {}
        while time.monotonic() < deadline:
            done = {}
            for name in ("w1", "w2"):
                for _task, task_id in SUCCEEDED.findall((folder / f"{name}.log").read_text(errors="replace")):
                    done[task_id] = name
            if all(task_id in done for task_id in task_ids):
                break
            time.sleep(0.3)
        jobs_seconds = time.monotonic() - jobs_started
        missing = [task_id for task_id in task_ids if task_id not in done]
        if missing:
            fail(f"{len(missing)} of {len(task_ids)} job tasks did not succeed within 45 s (logs in {folder})")
        by_worker = {name: sum(1 for task_id in task_ids if done[task_id] == name) for name in ("w1", "w2")}
        if min(by_worker.values()) == 0:
            fail(f"one worker ran no job: {by_worker}")

        # --- the ledger -------------------------------------------------------------------
        violations = ledger_violations()
        if violations:
            fail(f"{len(violations)} ledger violations, e.g. {violations[0]}")
        orders = Order.objects.filter(store__code=f"flow-{tag}")
        earns = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.EARN, order__in=orders, account__currency="points")
        if earns.count() != orders.count() or orders.count() != 3 * options.members:
            fail(f"{orders.count()} orders and {earns.count()} point earns for {3 * options.members} orders sent")
        releases = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.RELEASE).count() - releases_before
        still_due = Lot.objects.filter(pending=True, available_at__lte=timezone.now() - dt.timedelta(minutes=1)).count()
        if releases != due_lots or still_due:
            fail(f"{due_lots} lots were due, {releases} release entries written, {still_due} still pending")

        latencies.sort()
        figures = {
            "web_processes": len(PORTS),
            "workers": 2,
            "requests": len(latencies),
            "requests_per_web_process": {str(port): n for port, n in per_port.items()},
            "burst_seconds": round(burst_seconds, 2),
            "requests_per_second": round(len(latencies) / burst_seconds, 1),
            "latency_ms_p50": round(statistics.median(latencies) * 1000, 1),
            "latency_ms_p95": round(latencies[int(len(latencies) * 0.95) - 1] * 1000, 1),
            "duplicate_orders": {json.dumps(d): duplicates.count(d) for d in map(list, {tuple(d) for d in duplicates})},
            "job_tasks": len(task_ids),
            "job_tasks_by_worker": by_worker,
            "jobs_seconds": round(jobs_seconds, 2),
            "lots_released": releases,
            "ledger_violations": 0,
            "prepare_seconds": round(prepared - started, 1),
            "boot_seconds": round(booted - prepared, 1),
            "total_seconds": round(time.monotonic() - started, 1),
        }
        print(json.dumps(figures, indent=2))
        print("OK: exact ledger, no double effect, both web processes and both workers did part of the work.")
        stop(processes)
        shutil.rmtree(folder, ignore_errors=True)  # on a failure the logs stay there
    finally:
        stop(processes)


if __name__ == "__main__":
    main()
