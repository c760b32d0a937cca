"""Helpers the benchmarks share."""

import os
import sys
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent


def setup_django() -> None:
    """Make the project importable and set Django up (DATABASE_URL set by the caller)."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


def ensure_database(url: str) -> str:
    """Create the bench database if it does not exist; return its name."""
    import psycopg
    from psycopg import sql

    parsed = urlparse(url)
    if parsed.scheme not in ("postgres", "postgresql"):
        sys.exit(f"DATABASE_URL={url} is not PostgreSQL; the bench measures PostgreSQL only.")
    name = parsed.path.lstrip("/")
    maintenance = parsed._replace(path="/postgres").geturl()
    try:
        with psycopg.connect(maintenance, autocommit=True, connect_timeout=5) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                print(f"created database {name}")
    except psycopg.OperationalError as exc:
        sys.exit(f"PostgreSQL at {parsed.hostname}:{parsed.port or 5432} is unreachable: {str(exc).strip()}")
    return name


def database_exists(url: str, name: str) -> bool:
    import psycopg

    maintenance = urlparse(url)._replace(path="/postgres").geturl()
    with psycopg.connect(maintenance, autocommit=True, connect_timeout=5) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None


def copy_database(url: str, source: str, target: str) -> None:
    """Make ``target`` a fresh copy of ``source`` (a file-level copy: seconds, not a rebuild).

    Nobody may be connected to ``source`` meanwhile; ``target`` is dropped first.
    """
    import psycopg
    from psycopg import sql

    maintenance = urlparse(url)._replace(path="/postgres").geturl()
    with psycopg.connect(maintenance, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(target)))
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(target), sql.Identifier(source)))


# --- the yardsticks: pgbench TPC-B on the same server, and PostgreSQL's CPU time -------


def backend_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a PostgreSQL backend has used so far, from /proc (same machine)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pgbench_args(url: str) -> tuple[list[str], dict]:
    parsed = urlparse(url)
    args = ["-h", parsed.hostname or "127.0.0.1", "-p", str(parsed.port or 5432), "-U", parsed.username or "postgres"]
    return args, {**os.environ, "PGPASSWORD": parsed.password or ""}


PGBENCH_DATABASE = "loyalty_bench_pgbench"


def pgbench_prepare(url: str) -> str | None:
    """Create and fill pgbench's own database on the same server (scale 5); its URL, or None without pgbench."""
    import shutil
    import subprocess

    binary = shutil.which("pgbench")
    if binary is None:
        print("pgbench not found; skipping the yardstick")
        return None
    yardstick = urlparse(url)._replace(path=f"/{PGBENCH_DATABASE}").geturl()
    ensure_database(yardstick)
    args, env = _pgbench_args(url)
    subprocess.run([binary, *args, "-i", "-q", "-s", "5", PGBENCH_DATABASE], env=env, check=True, capture_output=True)
    return yardstick


def pgbench_tps(url: str, clients: int, seconds: int) -> float | None:
    """tps of ``pgbench -b tpcb-like`` with ``clients`` clients on its own database of the same server."""
    import re
    import shutil
    import subprocess

    if pgbench_prepare(url) is None:
        return None
    args, env = _pgbench_args(url)
    out = subprocess.run(
        [shutil.which("pgbench"), *args, "-b", "tpcb-like", "-c", str(clients), "-j", "2", "-T", str(seconds)]
        + [PGBENCH_DATABASE],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    match = re.search(r"tps = ([\d.]+)", out)
    return float(match.group(1)) if match else None


TPCB = [
    "UPDATE pgbench_accounts SET abalance = abalance + %(delta)s WHERE aid = %(aid)s",
    "SELECT abalance FROM pgbench_accounts WHERE aid = %(aid)s",
    "UPDATE pgbench_tellers SET tbalance = tbalance + %(delta)s WHERE tid = %(tid)s",
    "UPDATE pgbench_branches SET bbalance = bbalance + %(delta)s WHERE bid = %(bid)s",
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (%(tid)s, %(bid)s, %(aid)s, %(delta)s, now())",
]


def tpcb_cpu_per_transaction(url: str, clients: int, seconds: float) -> float | None:
    """PostgreSQL's CPU seconds per TPC-B transaction (pgbench's tpcb-like script, run from
    ``clients`` threads), measured from /proc like the earn's, so the two divide."""
    import random
    import threading
    import time

    import psycopg

    yardstick = pgbench_prepare(url)
    if yardstick is None:
        return None
    totals = {"cpu": 0.0, "transactions": 0}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(seed: int) -> None:
        rng = random.Random(seed)
        with psycopg.connect(yardstick, autocommit=True) as conn:
            pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
            before, done = backend_cpu_seconds(pid), 0
            while time.monotonic() < deadline:
                values = {
                    "aid": rng.randint(1, 500_000),
                    "tid": rng.randint(1, 50),
                    "bid": rng.randint(1, 5),
                    "delta": rng.randint(-5000, 5000),
                }
                with conn.transaction():
                    for statement in TPCB:
                        conn.execute(statement, values)
                done += 1
            spent = backend_cpu_seconds(pid) - before
        with lock:
            totals["cpu"] += spent
            totals["transactions"] += done

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return totals["cpu"] / totals["transactions"] if totals["transactions"] else None


def load_average() -> str:
    with open("/proc/loadavg") as loadavg:
        return " ".join(loadavg.read().split()[:3])
