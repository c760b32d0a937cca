"""Member-id chunking for the scheduled jobs: one transaction per range of member ids.

A job split this way keeps what it committed when it is stopped halfway, and a rerun picks
up the rest. The lock that keeps two copies of a job apart is ``core.jobs``. Date-keyed
jobs (birthdays, monthly coupons) catch up on missed periods through :func:`job_periods`.
"""

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

from django.db import connection, transaction
from django.db.models import Max, Min
from django.utils import timezone

from .models import JobRun, Member

logger = logging.getLogger(__name__)

# Member ids per chunk: small enough that a chunk's transaction (and its row locks) stays
# short, big enough that the per-chunk overhead does not dominate.
MEMBER_CHUNK = 5000


# --- chunking -----------------------------------------------------------------------------


def member_id_ranges(*, size: int = MEMBER_CHUNK) -> Iterator[tuple[int, int]]:
    """Half-open ranges ``[lo, hi)`` of ``size`` member ids covering every member."""
    bounds = Member.objects.aggregate(lo=Min("id"), hi=Max("id"))
    if bounds["lo"] is None:
        return
    for lo in range(bounds["lo"], bounds["hi"] + 1, size):
        yield lo, min(lo + size, bounds["hi"] + 1)


def run_in_member_chunks(
    step: Callable[[int, int], int], *, size: int = MEMBER_CHUNK, workers: int = 1
) -> dict[str, float]:
    """Call ``step(lo, hi)`` for every member-id range, each in its own transaction.

    With ``workers`` > 1 (PostgreSQL), that many threads take ranges side by side, each
    on its own connection; ranges hold disjoint members, so they never wait on each other.
    Returns the summed counts ``step`` returned, the number of chunks and the longest
    chunk in seconds (how long one transaction held its row locks).
    """

    def run(bounds: tuple[int, int]) -> tuple[int, float]:
        started = time.monotonic()
        with transaction.atomic():
            count = step(*bounds)
        return count, time.monotonic() - started

    ranges = member_id_ranges(size=size)
    if workers > 1 and connection.vendor == "postgresql":

        def run_in_thread(bounds: tuple[int, int]) -> tuple[int, float]:
            try:
                return run(bounds)
            finally:
                connection.close()  # this thread's own connection

        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(run_in_thread, ranges))
    else:
        results = [run(bounds) for bounds in ranges]
    longest = max((seconds for _count, seconds in results), default=0.0)
    return {"count": sum(count for count, _s in results), "chunks": len(results), "longest_chunk_s": round(longest, 3)}


# --- catching up on missed periods ----------------------------------------------------------


def job_periods(name: str, *, current: dt.date, following: Callable[[dt.date], dt.date], limit: int) -> list[dt.date]:
    """The periods job ``name`` still owes, oldest first, ending with ``current``.

    Every period after the last one recorded by :func:`job_period_done` (``following`` steps
    from one period's date to the next), at most ``limit`` of them (older ones are logged
    and given up: a job down for longer than that is an incident, not a catch-up). A job
    never run, or a run for a date at or before the last one (by hand), owes ``current``.
    """
    last = JobRun.objects.filter(name=name).values_list("last_period", flat=True).first()
    if last is None or last >= current:
        return [current]
    periods = []
    period = following(last)
    while period <= current:
        periods.append(period)
        period = following(period)
    if len(periods) > limit:
        logger.warning(
            "job %s: %s periods missed since %s; catching up on the last %s", name, len(periods), last, limit
        )
        periods = periods[-limit:]
    return periods


def job_period_done(name: str, *, period: dt.date, now: dt.datetime | None = None) -> None:
    """Record that job ``name`` finished ``period`` (never moves the record back)."""
    now = now or timezone.now()
    with transaction.atomic():
        run, created = JobRun.objects.select_for_update().get_or_create(
            name=name, defaults={"last_period": period, "last_success_at": now}
        )
        if not created and period >= run.last_period:
            run.last_period, run.last_success_at = period, now
            run.save(update_fields=["last_period", "last_success_at"])
