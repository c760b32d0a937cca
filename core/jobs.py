"""Job helpers every app's scheduled jobs use: a lock per job, and the guard that takes it.

A guarded job runs in one process at a time: two beat processes, or a task redelivered while
its first copy still runs, cannot overlap; the loser logs and returns :data:`SKIPPED`.
Chunking over member ids is ``members.jobs``.

Every scheduled job's celery task uses :class:`JobTask`: a copy that finds the lock taken
is retried later instead of being acknowledged as done, and a database outage (restart,
failover) is retried with backoff for more than ten minutes (:func:`retry_delay`).
"""

import contextlib
import fcntl
import functools
import hashlib
import logging
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection

from .db import is_postgresql

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
    if is_postgresql():
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


# --- the celery task base: retry on a held lock and through a database outage ------------

# Retries of a job task, each after retry_delay(n): together between 14 and 29 minutes
# (core/tests/test_jobs.py), longer than a PostgreSQL crash recovery or a failover.
JOB_MAX_RETRIES = 12
JOB_RETRY_BACKOFF_MAX = 300


class LockBusy(Exception):
    """A job task found its job's lock held by another process (it retries later)."""


def retry_delay(retries: int) -> float:
    """Seconds before retry number ``retries`` + 1: doubling from 2 s, at most 300 s, jittered.

    The jitter only takes off up to half ("equal jitter"), so workers that failed together
    spread out but the total wait keeps a known lower bound; celery's ``retry_jitter``
    draws from zero to the full delay, which could sum to seconds.
    """
    ceiling = min(JOB_RETRY_BACKOFF_MAX, 2 ** (retries + 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


class JobTask(Task):
    """Base class of the scheduled jobs' tasks (``@shared_task(base=JobTask)``).

    - The job returned :data:`SKIPPED` (its lock is held: a second copy, or the dying
      connection of a killed worker): the task is retried later, so it never reports
      success with its work left undone. The job function itself still returns
      ``"skipped"`` to a direct caller (``manage.py shell``).
    - ``OperationalError``/``InterfaceError`` (the database restarted or failed over): retried.
    - ``SoftTimeLimitExceeded``: the job ran longer than its limit (kept under the broker's
      visibility timeout); its committed chunks stay and the retry continues after them.
    All up to :data:`JOB_MAX_RETRIES` times after :func:`retry_delay`; a rerun is safe, the
    jobs commit chunk by chunk and re-read what is still due.
    """

    abstract = True
    max_retries = JOB_MAX_RETRIES
    retry_on = (OperationalError, InterfaceError)
    # A dispatcher of chunk tasks (members.jobs.chunked_run_start): its own success is not
    # the job's; the last chunk records that.
    chunked = False

    def __call__(self, *args, **kwargs):
        try:
            result = super().__call__(*args, **kwargs)
        except SoftTimeLimitExceeded as error:
            logger.warning("task %s: over its time limit; continuing in a retry", self.name)
            raise self.retry(exc=error, countdown=retry_delay(0)) from error
        except self.retry_on as error:
            # The broken connection must not be reused by the retry in this process (inside
            # an outer transaction, a test's, closing is not ours to do).
            if not connection.in_atomic_block:
                connection.close_if_unusable_or_obsolete()
            logger.warning("task %s: database unavailable (%s); retrying", self.name, error)
            raise self.retry(exc=error, countdown=retry_delay(self.request.retries)) from error
        if result == SKIPPED:
            raise self.retry(exc=LockBusy(self.name), countdown=retry_delay(self.request.retries))
        return result


# The options of every scheduled job's task: the base above, and more time than the default
# task limits. Both limits stay under the Redis broker's visibility_timeout (600 s,
# config/settings.py), so Redis never hands a still-running task to a second worker: a
# job that needs longer is cut by the soft limit and continues in its retry: after its
# committed chunks where it skips what it did (birthdays, monthly coupons), from the start
# where it re-reads everything (the tier sweep, about 185 s at 1M members: docs/jobs.md).
# The biggest jobs (expiry, release) are chunk tasks of about a second each
# (members.jobs.chunked_run_start).
JOB_OPTIONS = {"base": JobTask, "soft_time_limit": 8 * 60, "time_limit": 9 * 60}
# A chunk task: one member-id range, about a second; the same retries.
CHUNK_OPTIONS = {"base": JobTask, "soft_time_limit": 2 * 60, "time_limit": 3 * 60}
