"""Member-id chunking for the scheduled jobs: one transaction per range of member ids.

A job split this way keeps what it committed when it is stopped halfway, and a rerun picks
up the rest. The lock that keeps two copies of a job apart is ``core.jobs``.
"""

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

from django.db import connection, transaction
from django.db.models import Max, Min

from .models import Member

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
