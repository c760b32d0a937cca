"""End to end: a real celery beat schedules a job, a real worker runs it, the ledger changes.

Both run as subprocesses (the commands `make run` and production use) against the local
Redis broker and this test's PostgreSQL database. They get a queue of their own, so
workers of other test runs sharing the Redis cannot take the task.
"""

import datetime as dt
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from loyalty import services
from loyalty.models import Account, Currency

from .factories import MemberFactory, StoreFactory

ROOT = Path(__file__).resolve().parents[2]
WAIT = 40  # seconds for beat and worker to start and run the task; it takes about 10


def database_url() -> str:
    """DATABASE_URL of the database this test runs in (pytest-django's test database)."""
    db = connection.settings_dict
    credentials = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        credentials += ":" + quote(db["PASSWORD"], safe="")
    host = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
    return f"postgres://{credentials}@{host}/{db['NAME']}"


def start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    celery = Path(sys.executable).with_name("celery")
    with open(log, "wb") as out:
        return subprocess.Popen(
            [str(celery), "-A", "config", *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stopping it stops its children
        )


def stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@pytest.mark.django_db(transaction=True)
def test_beat_schedules_the_release_and_a_worker_runs_it(tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("the end-to-end test runs the processes against PostgreSQL")
    broker = os.environ.get("CELERY_BROKER_URL") or os.environ.get("REDIS_URL", "")
    if not broker.startswith("redis://"):
        pytest.skip("the end-to-end test needs CELERY_BROKER_URL or REDIS_URL pointing at Redis")

    member = MemberFactory()
    occurred_at = timezone.now() - dt.timedelta(days=9)
    services.order_earn(
        member=member,
        store=StoreFactory(),
        number="E2E-1",
        amount="42",
        occurred_at=occurred_at,
        now=occurred_at + dt.timedelta(minutes=1),
    )
    account = Account.objects.get(member=member, currency=Currency.POINTS)
    assert (account.balance, account.pending) == (0, 42)

    queue = f"e2e-{uuid.uuid4().hex[:12]}"
    every_2s, _ = IntervalSchedule.objects.get_or_create(every=2, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(
        name="e2e release", task="loyalty.release_matured_points", interval=every_2s, queue=queue
    )

    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": broker,
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        "DJANGO_ENV": "development",
        "LOYALTY_VAR_DIR": str(tmp_path),
    }
    processes = []
    try:
        processes.append(
            start(
                [
                    "worker",
                    "--pool=solo",
                    "-Q",
                    queue,
                    "--loglevel=INFO",
                    "--without-heartbeat",
                    "--without-gossip",
                    "--without-mingle",
                ],
                env,
                tmp_path / "worker.log",
            )
        )
        processes.append(
            start(
                [
                    "beat",
                    "--loglevel=INFO",
                    "--pidfile=",
                    "--scheduler",
                    "django_celery_beat.schedulers:DatabaseScheduler",
                    "--max-interval=1",
                ],
                env,
                tmp_path / "beat.log",
            )
        )
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            account.refresh_from_db()
            if account.balance == 42 or any(p.poll() is not None for p in processes):
                break
            time.sleep(0.5)
    finally:
        for process in processes:
            stop(process)
        # Let the processes' connections close before the test database is flushed.
        connection.close()

    logs = "\n".join(
        f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}" for path in sorted(tmp_path.glob("*.log"))
    )
    account.refresh_from_db()
    assert (account.balance, account.pending) == (42, 0), logs
    assert "loyalty.release_matured_points" in logs
