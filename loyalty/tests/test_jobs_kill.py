"""Fault tests on real processes: the expiry, a chunked job, survives every fault exactly once.

Each test starts what it breaks, so nothing else on the machine is disturbed: a
``redis-server`` of its own (port 6390 + the xdist worker's number, no persistence), a
celery worker (prefork, one child) on a queue of its own, and for the database outage a
PostgreSQL cluster of its own (on a free port) loaded with a copy of
this test's database.

*Mid-job* is made, not waited for: the test holds the row locks of the third member's
accounts from a session of its own, so the third chunk task blocks with two chunks done
and two still queued. Then it kills the pool child, or the whole worker, restarts the
broker, or stops PostgreSQL with ``-m immediate``, lets go of the lock, and waits (bounded
by :data:`WAIT`) until the run is finished. Every test asserts that each due account
expired exactly once, no lot is still due, every chunk is done once, and the ledger
invariants hold; it prints the recovery time it measured (docs/jobs.md has them).

Sizes are small on purpose: five members, one chunk each (their ids are 1000 apart, the
chunk size). The broker's visibility timeout is 2 s here (600 s in production) and the
worker looks for tasks of dead workers every second.
"""

import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from config.celery import app
from loyalty import tasks
from loyalty.models import Lot
from loyalty.selectors import ledger_violations
from members import jobs as member_jobs

from .factories import MemberFactory, StoreFactory
from .test_beat_e2e import database_url
from .test_jobs import earn

ROOT = Path(__file__).resolve().parents[2]
PG_BIN = Path("/usr/lib/postgresql/15/bin")
EXPIRY = "loyalty.expire_due_points"
MEMBERS = 5
LOCKED = 2  # the index of the member whose chunk is held mid-job
# Seconds any one wait may take before the test fails: the worker's start (a few seconds
# on a busy machine), the outage, the retries (2 s, then 4 s, ...).
WAIT = 45

pytestmark = [pytest.mark.django_db(transaction=True)]


def worker_number() -> int:
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(name[2:]) if name[2:].isdigit() else 0


@pytest.fixture(autouse=True)
def postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("the fault tests run the processes against PostgreSQL")
    if not shutil.which("redis-server"):
        pytest.skip("the fault tests start a redis-server of their own")


# --- the processes -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Redis:
    """A redis-server of the test's own, without persistence: a restart loses every queued task."""

    def __init__(self, port: int, folder: Path):
        self.port, self.folder, self.process = port, folder, None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=self.folder,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: self.ping(), "redis-server to start")

    def ping(self) -> bool:
        import redis

        try:
            return redis.Redis(port=self.port, socket_timeout=0.5).ping()
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def redis_server():
    folder = Path(tempfile.mkdtemp(prefix="fault-redis-"))
    server = Redis(6390 + worker_number(), folder)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


class Worker:
    def __init__(self, env: dict, log: Path):
        self.env, self.log, self.process = env, log, None

    def start(self) -> None:
        celery = Path(sys.executable).with_name("celery")
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [
                    str(celery),
                    "-A",
                    "config",
                    "worker",
                    "--pool=prefork",
                    "--concurrency=1",
                    "-Q",
                    self.env["FAULT_QUEUE"],
                    "-n",
                    f"fault-{uuid.uuid4().hex[:8]}@%h",
                    "--loglevel=INFO",
                    "--without-heartbeat",
                    "--without-gossip",
                    "--without-mingle",
                ],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def children(self) -> list[int]:
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.process.pid:
                found.append(int(stat.parent.name))
        return found

    def kill_group(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill_group()


def wait_for(condition, what: str, timeout: float = WAIT) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"waited {timeout} s for {what}")


def worker_env(tmp_path: Path, *, database: str, broker: str) -> dict:
    return {
        **os.environ,
        "DATABASE_URL": database,
        "CELERY_BROKER_URL": broker,
        "DJANGO_ENV": "development",
        "LOYALTY_VAR_DIR": str(tmp_path),
        "CELERY_VISIBILITY_TIMEOUT": "2",
        "CELERY_UNACKED_RESTORE_INTERVAL": "1",
        "CELERY_UNACKED_RESTORE_THROTTLE": "1",
        "FAULT_QUEUE": f"fault-{uuid.uuid4().hex[:12]}",
    }


def send(task, broker: str, queue: str, args: list | None = None) -> None:
    with app.connection_for_write(broker) as conn:
        task.apply_async(args=args or [], queue=queue, connection=conn)


# --- the data and what must hold after recovery -------------------------------------------


def due_members() -> list[int]:
    """Five members, 1000 ids apart (a chunk each), with due points and growth lots."""
    store = StoreFactory()
    base = 7_000_000
    members = [MemberFactory(id=base + index * 1000) for index in range(MEMBERS)]
    for index, member in enumerate(members):
        earn(member, store, f"K{index}", "30", days_ago=10)
    Lot.objects.update(expires_at=timezone.now() - dt.timedelta(hours=1))
    return [member.pk for member in members]


class Session:
    """A psycopg session of the test's own on ``dsn`` (autocommit unless it holds the lock)."""

    def __init__(self, dsn: str):
        self.dsn = dsn
        self.conn = psycopg.connect(dsn, autocommit=True)

    def value(self, sql: str, params=()):
        try:
            return self.conn.execute(sql, params).fetchone()[0]
        except psycopg.OperationalError:
            self.conn = psycopg.connect(self.dsn, autocommit=True)  # the database restarted
            return self.conn.execute(sql, params).fetchone()[0]

    def chunks_done(self) -> int:
        return self.value(
            "SELECT count(*) FROM members_jobchunk c JOIN members_jobrun r ON r.id = c.job_id "
            "WHERE r.name = %s AND c.run = r.run AND c.done_at IS NOT NULL",
            [EXPIRY],
        )

    def run_finished(self) -> bool:
        return bool(
            self.value("SELECT count(*) FROM members_jobrun WHERE name = %s AND finished_at IS NOT NULL", [EXPIRY])
        )

    def waiting_on_a_lock(self) -> bool:
        return bool(
            self.value(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )

    def expired_per_account(self) -> Counter:
        rows = self.conn.execute("SELECT account_id FROM loyalty_ledgerentry WHERE kind = 'expire'").fetchall()
        return Counter(account for (account,) in rows)

    def still_due(self) -> int:
        return self.value("SELECT count(*) FROM loyalty_lot WHERE remaining > 0 AND expires_at <= now()")

    def ledger_violations(self) -> int:
        """Accounts whose balance is not the sum of their entries and of their available lots, or negative."""
        return self.value(
            "SELECT count(*) FROM loyalty_account a WHERE a.balance < 0"
            " OR a.balance <> (SELECT coalesce(sum(e.amount), 0) FROM loyalty_ledgerentry e WHERE e.account_id = a.id)"
            " OR a.balance <> (SELECT coalesce(sum(l.remaining), 0) FROM loyalty_lot l"
            "                  WHERE l.account_id = a.id AND NOT l.pending)"
        )

    def close(self) -> None:
        self.conn.close()


class Lock:
    """Holds the row locks of one member's accounts until :meth:`release` (or the server goes)."""

    def __init__(self, dsn: str, member_id: int):
        self.conn = psycopg.connect(dsn)
        self.conn.execute("SELECT id FROM loyalty_account WHERE member_id = %s FOR UPDATE", [member_id])

    def release(self) -> None:
        try:
            self.conn.rollback()
            self.conn.close()
        except psycopg.Error:
            pass  # the server went away, and the lock with it


def dsn_of(url: str) -> str:
    return url.replace("postgres://", "postgresql://", 1)


def assert_done_exactly_once(session: Session) -> None:
    per_account = session.expired_per_account()
    assert len(per_account) == MEMBERS * 2, per_account  # points and growth of every member
    assert set(per_account.values()) == {1}, per_account
    assert session.still_due() == 0
    assert session.chunks_done() == MEMBERS


def logs(tmp_path: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in sorted(tmp_path.glob("*.log")))


def start_mid_job(tmp_path, *, database: str, broker: str, prepare=due_members):
    """A worker running the expiry, held at its third chunk (two done, two queued).

    The worker boots (a few seconds) while ``prepare`` writes the data.
    """
    env = worker_env(tmp_path, database=database, broker=broker)
    worker = Worker(env, tmp_path / "worker.log")
    worker.start()
    member_ids = prepare()
    session = Session(dsn_of(database))
    lock = Lock(dsn_of(database), member_ids[LOCKED])
    send(tasks.expire_due_points, broker, env["FAULT_QUEUE"])
    try:
        wait_for(lambda: session.chunks_done() == LOCKED and session.waiting_on_a_lock(), "the job to reach chunk 3")
    except AssertionError as error:
        lock.release()
        worker.stop()
        session.close()
        raise AssertionError(f"{error}\n{logs(tmp_path)}") from None
    return env, session, lock, worker


# --- the faults ---------------------------------------------------------------------------


def test_a_pool_child_killed_mid_job_leaves_nothing_undone(tmp_path, redis_server, capsys):
    env, session, lock, worker = start_mid_job(tmp_path, database=database_url(), broker=redis_server.url)
    try:
        [child] = worker.children()
        os.kill(child, signal.SIGKILL)
        killed = time.monotonic()
        lock.release()
        # The parent sees its child die and puts the chunk back (late acks, reject on worker lost).
        wait_for(session.run_finished, "the run to finish after the child was killed")
        recovery = time.monotonic() - killed
        assert_done_exactly_once(session)
    finally:
        lock.release()
        worker.stop()
        session.close()
        connection.close()
    assert ledger_violations() == []
    assert "WorkerLostError" in logs(tmp_path)  # the child's death was seen, the chunk put back
    with capsys.disabled():
        print(f"\n[fault] pool child kill -9: done {recovery:.1f} s after the kill")


def test_the_whole_worker_killed_mid_job_is_made_up_by_the_next_worker(tmp_path, redis_server, capsys):
    env, session, lock, worker = start_mid_job(tmp_path, database=database_url(), broker=redis_server.url)
    second = Worker(env, tmp_path / "worker-2.log")
    try:
        worker.kill_group()  # main process and child, kill -9
        killed = time.monotonic()
        lock.release()
        assert session.chunks_done() <= LOCKED + 1
        second.start()  # takes the queued chunks and, after the visibility timeout, the lost one
        wait_for(session.run_finished, "the run to finish on the second worker")
        recovery = time.monotonic() - killed
        assert_done_exactly_once(session)
    finally:
        lock.release()
        second.stop()
        session.close()
        connection.close()
    assert ledger_violations() == []
    with capsys.disabled():
        print(f"\n[fault] whole worker kill -9, a new worker started at once: done {recovery:.1f} s after the kill")


def test_a_broker_restart_that_loses_the_queued_chunks_is_made_up_by_the_watchdog(tmp_path, redis_server, capsys):
    env, session, lock, worker = start_mid_job(tmp_path, database=database_url(), broker=redis_server.url)
    try:
        redis_server.stop()  # no persistence: the two queued chunks are gone
        redis_server.start()
        lock.release()
        # The held chunk finishes; the lost ones never come.
        wait_for(lambda: session.chunks_done() == LOCKED + 1, "the held chunk to finish")
        time.sleep(1)
        assert session.chunks_done() == LOCKED + 1 and not session.run_finished()

        # The watchdog's tick after STALE_AFTER without progress sends them again.
        resend_at = time.monotonic()
        later = timezone.now() + member_jobs.STALE_AFTER + dt.timedelta(seconds=1)
        resent = member_jobs.jobs_watch(
            now=later, send=lambda name, args, queue: send(app.tasks[name], redis_server.url, env["FAULT_QUEUE"], args)
        )
        assert resent["chunks_resent"] == MEMBERS - LOCKED - 1
        wait_for(session.run_finished, "the re-sent chunks to finish")
        recovery = time.monotonic() - resend_at
        assert_done_exactly_once(session)
    finally:
        lock.release()
        worker.stop()
        session.close()
        connection.close()
    assert ledger_violations() == []
    with capsys.disabled():
        print(f"\n[fault] redis restart without persistence: done {recovery:.1f} s after the watchdog re-sent")


# --- PostgreSQL stopped with -m immediate, on a cluster of the test's own -----------------


def as_postgres(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@pytest.fixture
def own_cluster():
    """A PostgreSQL 15 cluster on a free port, holding a copy of the test database.

    The port is asked of the kernel: a fixed one in the ephemeral range (32768-60999) can be
    the local end of one of this run's own client connections, and then the server cannot bind.
    """
    if not (PG_BIN / "initdb").exists():
        pytest.skip("PostgreSQL 15 server binaries are not in /usr/lib/postgresql/15/bin")
    folder = Path(tempfile.mkdtemp(prefix="fault-pg-"))
    os.chmod(folder, 0o777)
    data, port = folder / "data", free_port()
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    subprocess.run(
        as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync"]),
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"

    def pg_ctl(*args: str) -> None:
        subprocess.run(
            as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), *args]),
            check=True,
            capture_output=True,
        )

    pg_ctl("-o", options, "-w", "start")
    url = f"postgres://postgres@127.0.0.1:{port}/postgres"

    def load() -> None:
        """Copy the test database (its schema and the rows the test wrote so far) into the cluster."""
        dump = subprocess.run(
            [str(PG_BIN / "pg_dump"), "--no-owner", "--no-privileges", dsn_of(database_url())],
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(
            [str(PG_BIN / "psql"), "-q", "-v", "ON_ERROR_STOP=1", dsn_of(url)],
            input=dump,
            check=True,
            capture_output=True,
        )

    cluster = {"url": url, "pg_ctl": pg_ctl, "options": options, "load": load}
    yield cluster
    subprocess.run(
        as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]), capture_output=True
    )
    shutil.rmtree(folder, ignore_errors=True)


def test_postgresql_stopped_immediately_mid_job_the_retries_finish_the_job(tmp_path, redis_server, own_cluster, capsys):
    def prepare() -> list[int]:
        member_ids = due_members()
        own_cluster["load"]()  # the worker works on the copy in the cluster
        return member_ids

    env, session, lock, worker = start_mid_job(
        tmp_path, database=own_cluster["url"], broker=redis_server.url, prepare=prepare
    )
    try:
        own_cluster["pg_ctl"]("-m", "immediate", "stop")  # a crash: no checkpoint, clients cut off
        stopped = time.monotonic()
        lock.release()
        time.sleep(2)  # two seconds without a database; the chunk task's retries meanwhile fail
        own_cluster["pg_ctl"]("-o", own_cluster["options"], "-w", "start")  # crash recovery from the WAL
        restarted = time.monotonic()
        wait_for(session.run_finished, "the run to finish after the restart")
        recovery = time.monotonic() - stopped
        after_restart = time.monotonic() - restarted
        assert_done_exactly_once(session)
        assert session.ledger_violations() == 0
    finally:
        lock.release()
        worker.stop()
        session.close()
        connection.close()
    assert "database unavailable" in logs(tmp_path)  # the retry path, not luck
    with capsys.disabled():
        print(
            f"\n[fault] PostgreSQL -m immediate for 2 s: done {recovery:.1f} s after the stop, "
            f"{after_restart:.1f} s after the restart"
        )
