"""Job helpers every app's scheduled jobs use: a lock per job, and the guard that takes it.

A guarded job runs in one process at a time: two beat processes, or a task redelivered while
its first copy still runs, cannot overlap; the loser logs and returns :data:`SKIPPED`.
Chunking over member ids is ``members.jobs``.
"""

import contextlib
import fcntl
import functools
import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from django.conf import settings
from django.db import connection

logger = logging.getLogger(__name__)

SKIPPED = "skipped"


# --- the lock -----------------------------------------------------------------------------


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for ``name`` (the same in every process and release)."""
    return int.from_bytes(hashlib.sha256(f"loyalty.job:{name}".encode()).digest()[:8], "big", signed=True)


@contextlib.contextmanager
def job_lock(name: str) -> Iterator[bool]:
    """Hold the lock of job ``name`` while the block runs; yields False when another holds it.

    PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``), held across the
    job's many chunk transactions and released in ``finally``; if the process dies the
    server drops it with the connection. (It needs a real session: not through a
    transaction-pooling pgbouncer.) SQLite, the one-machine embedded default: an
    exclusive ``flock`` on a file in ``VAR_DIR/locks``, dropped by the OS with the process.
    """
    if connection.vendor == "postgresql":
        key = lock_key(name)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
            acquired = cursor.fetchone()[0]
        try:
            yield acquired
        finally:
            if acquired:
                try:
                    with connection.cursor() as cursor:
                        cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
                except Exception:
                    # A broken connection has lost the lock already; close it to be sure.
                    logger.exception("releasing the lock of job %s failed; closing the connection", name)
                    connection.close()
        return

    folder = Path(settings.VAR_DIR) / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{name}.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def guarded(name: str) -> Callable:
    """Run the decorated job under :func:`job_lock`; return :data:`SKIPPED` when it is taken."""

    def decorate(job: Callable[..., dict]) -> Callable[..., dict | str]:
        @functools.wraps(job)
        def run(*args, **kwargs) -> dict | str:
            with job_lock(name) as acquired:
                if not acquired:
                    logger.info("job %s is running elsewhere; skipped", name)
                    return SKIPPED
                started = time.monotonic()
                result = job(*args, **kwargs)
                logger.info("job %s done in %.1f s: %s", name, time.monotonic() - started, result)
                return result

        return run

    return decorate
