"""Throwaway PostgreSQL clusters for the deployment tests: a primary and a streaming replica.

Each cluster lives in a temporary folder on a port of its own, started with
fsync off (nothing here must survive a crash) and removed by ``stop``.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
# The server refuses to run as root (CI runs as root): then it runs as the postgres user.
SERVER_USER = "postgres" if os.geteuid() == 0 else None


def free_port() -> int:
    """A TCP port nothing listens on now (a fixed port may be held by another run's server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _folder(port: int) -> Path:
    folder = Path(tempfile.mkdtemp(prefix=f"loyalty-pg-{port}-"))
    if SERVER_USER:
        shutil.chown(folder, SERVER_USER, SERVER_USER)
    return folder


def _run(*args: str, timeout: float = 30, server: bool = False, **kwargs) -> subprocess.CompletedProcess:
    if server and SERVER_USER:
        kwargs["user"] = SERVER_USER
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, **kwargs)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:3])} failed: {done.stderr.strip()[-2000:]}")
    return done


@dataclass
class Cluster:
    folder: Path
    port: int

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        """Start the server; on a busy machine the first try may time out, so it gets a second.

        A failure says what the server's own log says (pg_ctl only says "examine the log").
        """
        for attempt in (1, 2):
            try:
                _run(
                    str(BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.folder / "log"), "-w", "-t", "60",
                    "-o", f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1", "start",
                    timeout=90, server=True,
                )  # fmt: skip
                return
            except (RuntimeError, subprocess.TimeoutExpired) as error:
                log = self.folder / "log"
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
                if attempt == 2:
                    raise RuntimeError(f"{error}\nserver log:\n{tail}") from error
                self.stop()
                if "could not bind" in tail or "already in use" in tail:
                    self.port = free_port()
                time.sleep(1)

    def psql(self, database: str, sql: str) -> str:
        return _run(
            str(BIN / "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(self.port),
            "-U", "postgres", "-d", database, "-c", sql,
        ).stdout.strip()  # fmt: skip

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                [str(BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "-t", "20", "stop"],
                capture_output=True,
                timeout=30,
                user=SERVER_USER,
            )


def primary_create(port: int) -> Cluster:
    folder = _folder(port)
    cluster = Cluster(folder, port)
    _run(
        str(BIN / "initdb"), "-D", str(cluster.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
        "--locale=C.UTF-8", "--no-sync", timeout=60, server=True,
    )  # fmt: skip
    with open(cluster.data / "postgresql.conf", "a") as conf:
        conf.write(
            "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nshared_buffers = 32MB\n"
            "wal_level = replica\nmax_wal_senders = 4\nmax_connections = 60\n"
        )
    cluster.start()
    return cluster


def replica_create(primary: Cluster, port: int) -> Cluster:
    """A streaming replica of ``primary`` (pg_basebackup -R), started and accepting reads."""
    folder = _folder(port)
    cluster = Cluster(folder, port)
    _run(
        str(BIN / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
        "-D", str(cluster.data), "-R", "-X", "stream", "--checkpoint=fast", "--no-sync", timeout=60, server=True,
    )  # fmt: skip
    cluster.start()
    deadline = time.monotonic() + 15
    while cluster.psql("postgres", "SELECT pg_is_in_recovery()") != "t":
        if time.monotonic() > deadline:
            raise RuntimeError("the replica did not come up in recovery")
        time.sleep(0.1)
    return cluster


def database_copy(source_url_args: list[str], target: Cluster, database: str) -> None:
    """Create ``database`` on ``target`` from a pg_dump of another database (schema and rows)."""
    target.psql("postgres", f'CREATE DATABASE "{database}"')
    dump = subprocess.Popen([str(BIN / "pg_dump"), "--no-owner", *source_url_args], stdout=subprocess.PIPE)
    _run(
        str(BIN / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(target.port),
        "-U", "postgres", "-d", database, stdin=dump.stdout, timeout=120,
    )  # fmt: skip
    if dump.wait(timeout=60) != 0:
        raise RuntimeError("pg_dump failed")


def remove(*clusters: Cluster) -> None:
    for cluster in clusters:
        cluster.stop()
        shutil.rmtree(cluster.folder, ignore_errors=True)
