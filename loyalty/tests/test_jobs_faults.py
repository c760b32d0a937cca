"""Job tasks under faults: a lock held by another session, a database error mid-job, missed birthdays.

PostgreSQL only. The lock is held by a real second connection (raw psycopg), as the dying
connection of a killed worker would hold it.
"""

import datetime as dt
from collections import Counter

import psycopg
import pytest
from celery.signals import task_retry
from django.db import OperationalError, connection
from django.utils import timezone

from core import jobs as core_jobs
from loyalty import jobs, tasks
from loyalty.models import Benefit, BenefitGrant, LedgerEntry, Lot, MemberTier, Tier
from loyalty.selectors import ledger_violations
from members.models import JobRun

from .factories import MemberFactory, StoreFactory
from .test_jobs import earn


@pytest.fixture(autouse=True)
def postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("advisory locks and the set-based expiry need PostgreSQL")


@pytest.fixture(autouse=True)
def invariants_hold_after_each_test(request):
    yield
    if request.node.get_closest_marker("django_db"):
        assert ledger_violations() == []


@pytest.fixture
def other_session():
    """A second PostgreSQL session (not Django's), closed after the test."""
    params = connection.get_connection_params()
    session = psycopg.connect(
        dbname=params["dbname"],
        user=params.get("user"),
        host=params.get("host"),
        port=params.get("port"),
        password=params.get("password"),
        autocommit=True,
    )
    yield session
    session.close()


def hold_lock(session, name: str) -> None:
    session.execute("SELECT pg_advisory_lock(%s)", [core_jobs.lock_key(name)])


def release_lock(session, name: str) -> None:
    session.execute("SELECT pg_advisory_unlock(%s)", [core_jobs.lock_key(name)])


def due_lots(members, store) -> None:
    """Points and growth lots of each member, past their expiry (the tasks run at the real now)."""
    for index, member in enumerate(members):
        earn(member, store, f"E{index}", "30", days_ago=10)
    Lot.objects.update(expires_at=timezone.now() - dt.timedelta(hours=1))


def expired_per_account() -> Counter:
    return Counter(LedgerEntry.objects.filter(kind=LedgerEntry.Kind.EXPIRE).values_list("account", flat=True))


@pytest.fixture
def retries():
    """The retries celery reports (eager ``apply()`` reruns a retried task at once), with a hook."""
    seen = []
    hooks = []

    def on_retry(sender=None, reason=None, **kwargs):
        seen.append(reason.exc)
        for hook in hooks:
            hook()

    task_retry.connect(on_retry, weak=False)
    yield seen, hooks
    task_retry.disconnect(on_retry)


def birthday_today():
    """A gold member born today (local date) whose tier gives 88 birthday points."""
    from .test_jobs import member_in

    gold = Tier.objects.create(code="gold", name="Gold", rank=1)
    Benefit.objects.create(tier=gold, kind=Benefit.Kind.BIRTHDAY_POINTS, value=88, title="88 points")
    return member_in(gold, timezone.localdate().replace(year=1990))


@pytest.mark.django_db
def test_a_held_lock_makes_the_task_retry_not_succeed(other_session, retries):
    seen, _hooks = retries
    birthday_today()
    hold_lock(other_session, "issue_birthday_benefits")

    # The job function itself still answers a direct caller with "skipped".
    assert jobs.issue_birthday_benefits() == core_jobs.SKIPPED

    result = tasks.issue_birthday_benefits.apply()
    assert result.state == "FAILURE"  # never "SUCCESS" with the work undone
    assert isinstance(result.result, core_jobs.LockBusy)
    assert len(seen) == core_jobs.JOB_MAX_RETRIES  # bounded
    assert all(isinstance(reason, core_jobs.LockBusy) for reason in seen)
    assert not BenefitGrant.objects.exists()


@pytest.mark.django_db
def test_the_retry_after_the_lock_is_released_does_the_work(other_session, retries):
    seen, hooks = retries
    member = birthday_today()
    hold_lock(other_session, "issue_birthday_benefits")
    # The other session lets go while the first attempt's retry is being scheduled.
    hooks.append(lambda: release_lock(other_session, "issue_birthday_benefits"))

    result = tasks.issue_birthday_benefits.apply()
    assert result.state == "SUCCESS"
    assert len(seen) == 1 and isinstance(seen[0], core_jobs.LockBusy)
    assert result.result["birthday_points"] == 1
    assert list(BenefitGrant.objects.values_list("member_id", flat=True)) == [member.pk]
    # The task's start and success are recorded for the watchdog.
    run = JobRun.objects.get(name="loyalty.issue_birthday_benefits")
    assert run.last_success_at >= run.started_at


@pytest.mark.django_db
def test_a_database_error_in_a_chunk_is_retried_and_the_job_completes_once(monkeypatch, retries):
    seen, _hooks = retries
    store = StoreFactory()
    due_lots(MemberFactory.create_batch(4), store)
    monkeypatch.setattr(jobs, "LEDGER_CHUNK", 1)  # a chunk per member
    monkeypatch.setattr(jobs, "EXPIRY_CHUNK_LOTS", 1)  # the expiry's chunks are cut by due lots
    step = tasks.CHUNK_STEPS["loyalty.expire_due_points"]
    calls = {"n": 0}

    def failing_third_chunk(lo, hi, params):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OperationalError("server closed the connection unexpectedly")
        return step(lo, hi, params)

    monkeypatch.setitem(tasks.CHUNK_STEPS, "loyalty.expire_due_points", failing_third_chunk)
    result = tasks.expire_due_points.apply()

    assert result.state == "SUCCESS"
    assert len(seen) == 1 and isinstance(seen[0], OperationalError)
    assert (result.result["entries"], result.result["chunks"]) == (8, 4)
    per_account = expired_per_account()
    assert set(per_account.values()) == {1} and len(per_account) == 8
    run = JobRun.objects.get(name="loyalty.expire_due_points")
    assert run.finished_at is not None and run.last_success_at == run.finished_at


def test_the_retries_outlast_a_ten_minute_outage(monkeypatch):
    monkeypatch.setattr(core_jobs.random, "uniform", lambda lo, hi: lo)
    shortest = sum(core_jobs.retry_delay(n) for n in range(core_jobs.JOB_MAX_RETRIES))
    monkeypatch.setattr(core_jobs.random, "uniform", lambda lo, hi: hi)
    longest = sum(core_jobs.retry_delay(n) for n in range(core_jobs.JOB_MAX_RETRIES))
    assert 600 <= shortest <= longest <= 1800
    assert core_jobs.retry_delay(30) <= core_jobs.JOB_RETRY_BACKOFF_MAX
    for task in (tasks.expire_due_points, tasks.release_matured_points, tasks.issue_birthday_benefits):
        assert isinstance(task, core_jobs.JobTask)


# --- a missed day: the birthday job catches up --------------------------------------------


@pytest.mark.django_db
def test_birthdays_of_skipped_days_are_given_on_the_next_run_exactly_once():
    from zoneinfo import ZoneInfo

    from .test_jobs import member_in

    gold = Tier.objects.create(code="gold", name="Gold", rank=1)
    Benefit.objects.create(tier=gold, kind=Benefit.Kind.BIRTHDAY_POINTS, value=88, title="88 points")
    shanghai = ZoneInfo("Asia/Shanghai")
    born = {day: member_in(gold, dt.date(1990, 12, day)) for day in (30, 31)}
    born[1] = member_in(gold, dt.date(1991, 1, 1))
    born[2] = member_in(gold, dt.date(1992, 1, 2))
    member_in(gold, dt.date(1990, 12, 28))  # before the last run: not this job's to give

    assert jobs.issue_birthday_benefits(now=dt.datetime(2026, 12, 29, 8, 0, tzinfo=shanghai))["birthday_points"] == 0
    # 30 and 31 December and 1 January are missed (the job did not run); it runs on 2 January.
    result = jobs.issue_birthday_benefits(now=dt.datetime(2027, 1, 2, 8, 0, tzinfo=shanghai))
    assert (result["birthday_points"], result["days"]) == (4, 4)
    grants = {(grant.member_id, grant.period) for grant in BenefitGrant.objects.all()}
    assert grants == {
        (born[30].pk, "2026"),
        (born[31].pk, "2026"),
        (born[1].pk, "2027"),
        (born[2].pk, "2027"),
    }
    assert JobRun.objects.get(name="issue_birthday_benefits").last_period == dt.date(2027, 1, 2)

    again = jobs.issue_birthday_benefits(now=dt.datetime(2027, 1, 2, 20, 0, tzinfo=shanghai))
    assert again["birthday_points"] == 0 and BenefitGrant.objects.count() == 4
    assert LedgerEntry.objects.filter(kind=LedgerEntry.Kind.EARN, detail__has_key="benefit").count() == 4


@pytest.mark.django_db
def test_a_long_outage_catches_up_on_a_bounded_number_of_days():
    start = dt.datetime(2026, 1, 1, 8, 0, tzinfo=dt.UTC)
    jobs.issue_birthday_benefits(now=start)
    assert jobs.issue_birthday_benefits(now=start + dt.timedelta(days=400))["days"] == jobs.CATCH_UP_DAYS
    assert MemberTier.objects.count() == 0
