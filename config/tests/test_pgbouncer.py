"""Behind pgbouncer in transaction mode (docs/deploy.md, "pgbouncer").

Starts Debian's pgbouncer on port 6437 in front of this run's test database, with two
server connections for the transaction-mode pool, and runs the member flow (earn, resend,
checkout with points, refund) from four threads through it in a process whose settings
say DATABASE_POOLER=transaction. scripts/test.sh installs pgbouncer when it is missing.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
PORT = 6437  # not pgbouncer's default 6432, where a system pgbouncer may listen
PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
RUN_AS = "postgres" if os.geteuid() == 0 else None  # pgbouncer refuses to run as root


def _wait_for_port(port: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"pgbouncer did not listen on {port}")


@pytest.fixture
def pgbouncer(transactional_db):
    assert Path(PGBOUNCER).exists(), "pgbouncer is not installed: apt-get install -y pgbouncer (scripts/test.sh does)"
    db = connection.settings_dict
    folder = Path(tempfile.mkdtemp(prefix="loyalty-pgbouncer-"))
    server = f"host={db['HOST'] or '127.0.0.1'} port={db['PORT'] or 5432} dbname={db['NAME']} user={db['USER']}"
    (folder / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"loyalty = {server} pool_mode=transaction pool_size=2\n"
        f"loyalty_session = {server} pool_mode=session pool_size=2\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {PORT}\nunix_socket_dir =\n"
        "auth_type = any\npool_mode = transaction\nmax_client_conn = 100\n"
        f"logfile = {folder}/pgbouncer.log\npidfile = {folder}/pgbouncer.pid\n"
        "admin_users = postgres\nignore_startup_parameters = extra_float_digits,options\n"
    )
    if RUN_AS:
        shutil.chown(folder, RUN_AS, RUN_AS)
        shutil.chown(folder / "pgbouncer.ini", RUN_AS, RUN_AS)
    process = subprocess.Popen(
        [PGBOUNCER, "-q", str(folder / "pgbouncer.ini")],
        user=RUN_AS,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(PORT, 10)
        # Ours, not another listener on the port.
        assert process.poll() is None, (folder / "pgbouncer.log").read_text(errors="replace")[-2000:]
        yield f"postgres://{db['USER']}@127.0.0.1:{PORT}"
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


def _show(sql: str) -> list[list[str]]:
    done = subprocess.run(
        ["psql", "-X", "-At", "-F", "|", "-h", "127.0.0.1", "-p", str(PORT), "-U", "postgres", "pgbouncer", "-c", sql],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert done.returncode == 0, done.stderr
    return [line.split("|") for line in done.stdout.splitlines()]


def test_member_flow_works_through_pgbouncer_in_transaction_mode(pgbouncer):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "DATABASE_"))}
    env |= {
        "DJANGO_ENV": "development",
        "DATABASE_URL": f"{pgbouncer}/loyalty",
        "DATABASE_POOLER": "transaction",
        "DATABASE_CONN_MAX_AGE": "60",
        "LOYALTY_PENDING_DAYS": "0",
        "CACHE_URL": "",
    }
    done = subprocess.run(
        [sys.executable, "-m", "config.tests.pgbouncer_scenario"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["errors"] == []
    assert len(out["flows"]) == 12
    for flow in out["flows"]:
        assert flow == {"earn": 201, "resend": 200, "resend_replayed": 1, "checkout": 201, "refund": 201}, flow
    assert out["violations"] == []
    assert out["iterated"] == out["entries"] > 0
    assert out["server_side_cursors_disabled"] is True
    # The flow's transactions went through the pool, whose two server connections served
    # more client connections than that.
    pools = {row[0]: row for row in _show("SHOW POOLS") if row[0] == "loyalty"}
    assert pools, "no pool for the loyalty database: the flow did not go through pgbouncer"
    stats = {row[0]: row for row in _show("SHOW STATS")}
    # Columns: database, total_xact_count, ...: at least one transaction per API call.
    assert int(stats["loyalty"][1]) >= 12 * 4, stats["loyalty"]
