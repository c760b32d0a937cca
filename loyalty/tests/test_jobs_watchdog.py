"""Chunked runs and the watchdog, in one process: two dispatches of one tick, lost chunks, lost tasks.

The chunk tasks run eagerly here (``apply``); ``test_jobs_kill.py`` runs them on real
workers that are killed, on a broker that restarts and on a database that stops.
"""

import datetime as dt
from collections import Counter

import pytest
from celery import current_app
from django.db import connection
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from loyalty import jobs, tasks
from loyalty.models import LedgerEntry, Lot
from loyalty.selectors import ledger_violations
from members import jobs as member_jobs
from members.models import JobChunk, JobRun

from .factories import MemberFactory, StoreFactory
from .test_jobs import earn

pytestmark = pytest.mark.django_db

EXPIRY = "loyalty.expire_due_points"


@pytest.fixture(autouse=True)
def postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("the set-based expiry needs PostgreSQL")


@pytest.fixture(autouse=True)
def invariants_hold_after_each_test():
    yield
    assert ledger_violations() == []


@pytest.fixture
def due(monkeypatch):
    """Four members with due points and growth lots, one chunk each (chunk size 1)."""
    monkeypatch.setattr(jobs, "LEDGER_CHUNK", 1)
    monkeypatch.setattr(jobs, "EXPIRY_CHUNK_LOTS", 1)  # the expiry's chunks are cut by due lots
    store = StoreFactory()
    members = MemberFactory.create_batch(4)
    for index, member in enumerate(members):
        earn(member, store, f"W{index}", "30", days_ago=10)
    Lot.objects.update(expires_at=timezone.now() - dt.timedelta(hours=1))
    return members


def expired_per_account() -> Counter:
    return Counter(LedgerEntry.objects.filter(kind=LedgerEntry.Kind.EXPIRE).values_list("account", flat=True))


def run_now(name: str, args: list, queue: str | None) -> None:
    """The watchdog's ``send``, but the task runs here and now."""
    current_app.tasks[name].apply(args=args)


def start_run() -> tuple[JobRun, list[JobChunk]]:
    run, chunks, started = member_jobs.chunked_run_start(EXPIRY, chunk_task="loyalty.job_chunk", size=1)
    assert started
    return run, chunks


def test_two_dispatches_of_one_tick_start_one_run_and_expire_once(due):
    run, chunks = start_run()
    assert len(chunks) == 4
    # The second beat's copy of the tick: the run is in progress, nothing new is sent.
    again, more, started = member_jobs.chunked_run_start(EXPIRY, chunk_task="loyalty.job_chunk", size=1)
    assert (again.run, more, started) == (run.run, [], False)
    assert JobChunk.objects.filter(job=run).count() == 4

    for chunk in chunks:  # every chunk delivered twice
        tasks.job_chunk.apply(args=[EXPIRY, run.run, chunk.lo])
        assert tasks.job_chunk.apply(args=[EXPIRY, run.run, chunk.lo]).get() is None
    per_account = expired_per_account()
    assert len(per_account) == 8 and set(per_account.values()) == {1}
    run.refresh_from_db()
    assert run.finished_at is not None and run.last_success_at == run.finished_at
    assert member_jobs.run_totals(EXPIRY, run.run)["count"] == 8


def test_a_run_is_done_only_when_its_last_chunk_is(due):
    run, chunks = start_run()
    for chunk in chunks[:3]:
        tasks.job_chunk.apply(args=[EXPIRY, run.run, chunk.lo])
    run.refresh_from_db()
    assert run.finished_at is None and run.last_success_at is None
    tasks.job_chunk.apply(args=[EXPIRY, run.run, chunks[3].lo])
    run.refresh_from_db()
    assert run.finished_at is not None


def test_the_watchdog_sends_the_lost_chunks_of_a_stalled_run_again(due):
    run, chunks = start_run()
    tasks.job_chunk.apply(args=[EXPIRY, run.run, chunks[0].lo])  # the other three were lost

    # Still progressing recently: the watchdog leaves it alone.
    assert member_jobs.jobs_watch(send=run_now)["chunks_resent"] == 0
    later = timezone.now() + member_jobs.STALE_AFTER + dt.timedelta(seconds=1)
    assert member_jobs.jobs_watch(now=later, send=run_now)["chunks_resent"] == 3

    per_account = expired_per_account()
    assert len(per_account) == 8 and set(per_account.values()) == {1}
    run.refresh_from_db()
    assert run.finished_at is not None
    assert member_jobs.jobs_watch(now=later + member_jobs.STALE_AFTER * 2, send=run_now)["chunks_resent"] == 0


def test_the_next_dispatch_also_sends_the_chunks_of_a_stalled_run(due):
    run, chunks = start_run()
    JobRun.objects.filter(pk=run.pk).update(progress_at=timezone.now() - member_jobs.STALE_AFTER * 2)
    again, pending, started = member_jobs.chunked_run_start(EXPIRY, chunk_task="loyalty.job_chunk", size=1)
    assert (again.run, started) == (run.run, False)
    assert [chunk.lo for chunk in pending] == [chunk.lo for chunk in chunks]


def schedule(task: str, *, sent_ago: dt.timedelta) -> PeriodicTask:
    crontab, _ = CrontabSchedule.objects.get_or_create(minute="30", hour="0", timezone="Asia/Shanghai")
    return PeriodicTask.objects.create(
        name=f"test {task}", task=task, crontab=crontab, last_run_at=timezone.now() - sent_ago
    )


def test_a_scheduled_task_that_beat_sent_and_no_worker_started_is_sent_again(due):
    # Beat sent the expiry 20 minutes ago; the broker lost it: no worker ever started it.
    schedule(EXPIRY, sent_ago=dt.timedelta(minutes=20))
    sent = []
    result = member_jobs.jobs_watch(send=lambda name, args, queue: sent.append(name) or run_now(name, args, queue))
    assert (result["tasks_resent"], sent) == (1, [EXPIRY])
    per_account = expired_per_account()
    assert len(per_account) == 8 and set(per_account.values()) == {1}

    # Started since beat sent it (it was the resend): nothing more to do, even later.
    later = timezone.now() + member_jobs.LOST_AFTER * 2
    assert member_jobs.jobs_watch(now=later, send=run_now)["tasks_resent"] == 0


def test_a_task_sent_recently_or_started_after_beat_sent_it_is_left_alone(due):
    periodic = schedule(EXPIRY, sent_ago=dt.timedelta(minutes=3))
    assert member_jobs.jobs_watch(send=run_now)["tasks_resent"] == 0  # a busy queue: wait
    PeriodicTask.objects.filter(pk=periodic.pk).update(last_run_at=timezone.now() - dt.timedelta(hours=1))
    JobRun.objects.create(name=EXPIRY, started_at=timezone.now() - dt.timedelta(minutes=59))
    assert member_jobs.jobs_watch(send=run_now)["tasks_resent"] == 0
    assert not LedgerEntry.objects.filter(kind=LedgerEntry.Kind.EXPIRE).exists()


def test_a_plain_job_that_died_after_starting_is_sent_again():
    # The tier sweep started two hours ago and never succeeded (worker and message gone).
    schedule("loyalty.evaluate_tiers", sent_ago=dt.timedelta(hours=2))
    JobRun.objects.create(name="loyalty.evaluate_tiers", started_at=timezone.now() - dt.timedelta(hours=2))
    sent = []
    member_jobs.jobs_watch(send=lambda name, args, queue: sent.append(name))
    assert sent == ["loyalty.evaluate_tiers"]
    # Once per LOST_AFTER, not every watchdog tick.
    assert member_jobs.jobs_watch(send=lambda name, args, queue: sent.append(name))["tasks_resent"] == 0


def test_the_watchdog_task_runs_and_reports():
    assert tasks.expire_due_points.apply().get()["started"] is True  # no members: a run of no chunks
    from operations.tasks import watch_jobs

    assert watch_jobs.apply().get() == {"chunks_resent": 0, "tasks_resent": 0, "imports_resumed": 0}


def test_every_task_has_a_queue_of_its_kind_and_make_run_consumes_every_queue(settings):
    from pathlib import Path

    from config.celery import app

    ours = {
        name
        for name in app.tasks
        if name.split(".")[0] in ("loyalty", "rewards", "members", "engagement", "operations")
    }
    assert ours <= set(settings.CELERY_TASK_ROUTES), ours - set(settings.CELERY_TASK_ROUTES)
    assert {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()} == {"ledger", "contact", "bulk"}
    route = app.amqp.router.route({}, "loyalty.expire_due_points")
    assert route["queue"].name == "ledger"
    assert app.amqp.router.route({}, "members.run_import")["queue"].name == "bulk"
    assert app.amqp.router.route({}, "members.send_notifications")["queue"].name == "contact"
    run_sh = (Path(__file__).resolve().parents[2] / "scripts" / "run.sh").read_text()
    assert '-Q "ledger,contact,bulk,${CELERY_TASK_DEFAULT_QUEUE:-celery}"' in run_sh


def test_a_job_sent_an_hour_ago_without_success_since_is_overdue(due):
    schedule(EXPIRY, sent_ago=dt.timedelta(hours=2))
    assert member_jobs.jobs_overdue() == [EXPIRY]
    run, chunks = start_run()
    for chunk in chunks[:3]:
        tasks.job_chunk.apply(args=[EXPIRY, run.run, chunk.lo])
    assert member_jobs.jobs_overdue() == [EXPIRY]  # a run with a chunk left is not a success
    tasks.job_chunk.apply(args=[EXPIRY, run.run, chunks[3].lo])
    assert member_jobs.jobs_overdue() == []


def test_a_run_that_never_finishes_is_given_up_and_a_new_run_covers_every_range(due):
    run, chunks = start_run()
    for chunk in chunks[1:]:
        tasks.job_chunk.apply(args=[EXPIRY, run.run, chunk.lo])  # the first chunk keeps failing
    later = timezone.now() + member_jobs.ABANDON_AFTER + dt.timedelta(minutes=1)
    again, fresh, started = member_jobs.chunked_run_start(EXPIRY, chunk_task="loyalty.job_chunk", size=1, now=later)
    assert (again.run, started, len(fresh)) == (run.run + 1, True, 4)
    for chunk in fresh:
        tasks.job_chunk.apply(args=[EXPIRY, again.run, chunk.lo])
    per_account = expired_per_account()
    assert len(per_account) == 8 and set(per_account.values()) == {1}
    again.refresh_from_db()
    assert again.finished_at is not None
