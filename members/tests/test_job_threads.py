"""``run_in_member_chunks`` on several threads: every range once, one connection a thread
(not one a range), and a failing range stops the others from taking more."""

import threading

import pytest
from django.db import connection

from members.jobs import run_in_member_chunks

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("the jobs' threads are PostgreSQL's")


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def test_threads_take_every_range_once_on_one_connection_each():
    ranges = [(lo, lo + 10) for lo in range(0, 400, 10)]
    seen, pids, guard = [], set(), threading.Lock()

    def step(lo: int, hi: int) -> int:
        with guard:
            seen.append((lo, hi))
            pids.add((threading.get_ident(), backend_pid()))
        return hi - lo

    result = run_in_member_chunks(step, workers=3, ranges=ranges)

    assert sorted(seen) == ranges
    assert result["count"] == 400 and result["chunks"] == 40
    threads = {thread for thread, _pid in pids}
    assert 1 <= len(threads) <= 3
    assert len(pids) == len(threads)  # one backend a thread, kept for all its ranges


def test_a_failing_range_stops_the_others_and_raises():
    taken, guard = [], threading.Lock()

    def step(lo: int, hi: int) -> int:
        with guard:
            taken.append(lo)
        if lo == 3:
            raise ValueError("range 3 failed")
        return 1

    with pytest.raises(ValueError, match="range 3 failed"):
        run_in_member_chunks(step, workers=2, ranges=[(lo, lo + 1) for lo in range(1000)])
    assert 3 in taken and len(taken) < 1000
