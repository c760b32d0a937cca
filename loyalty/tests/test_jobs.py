"""The scheduled jobs: run twice = once, stopped halfway then rerun = no duplicates, one at a time."""

import datetime as dt
import threading
from collections import Counter
from decimal import Decimal
from unittest.mock import ANY
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from core import jobs as core_jobs
from loyalty import jobs, services
from loyalty.models import Account, Allocation, Benefit, BenefitGrant, Currency, LedgerEntry, Lot, MemberTier, Tier
from loyalty.selectors import ledger_violations
from members import jobs as member_jobs
from members.models import Member, Notification
from members.notifications import LogSender, notifications_send_pending, notify

from .factories import MemberFactory, StoreFactory
from .test_concurrency import run_concurrently

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture(autouse=True)
def postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("the job tests need PostgreSQL (advisory locks, the set-based expiry)")


@pytest.fixture(autouse=True)
def invariants_hold_after_each_test(request):
    yield
    if request.node.get_closest_marker("django_db"):
        assert ledger_violations() == []


@pytest.fixture
def store():
    return StoreFactory()


def earn(member, store, number: str, amount: str, *, days_ago: float, recorded_late: bool = True) -> None:
    """An order ``days_ago`` days old, expiring 12 months after it.

    Recorded now (``recorded_late``), its points are available at once; recorded when it
    happened, they are pending and due for release after 7 days.
    """
    occurred_at = timezone.now() - dt.timedelta(days=days_ago)
    recorded_at = None if recorded_late else occurred_at + dt.timedelta(minutes=1)
    services.order_earn(
        member=member, store=store, number=number, amount=amount, occurred_at=occurred_at, now=recorded_at
    )


def points(member) -> tuple[int, int]:
    account = Account.objects.get(member=member, currency=Currency.POINTS)
    return account.balance, account.pending


class Interrupted(Exception):
    pass


def first_range_only(monkeypatch):
    """Make the member-id chunking stop with an error after its first chunk committed."""
    original = member_jobs.member_id_ranges

    def ranges(*, size):
        iterator = original(size=size)
        yield next(iterator)
        raise Interrupted

    monkeypatch.setattr(member_jobs, "member_id_ranges", ranges)
    return lambda: monkeypatch.setattr(member_jobs, "member_id_ranges", original)


# --- release and expiry ---------------------------------------------------------------------


@pytest.mark.django_db
def test_release_job_run_twice_releases_once(store):
    members = MemberFactory.create_batch(3)
    for index, member in enumerate(members):
        earn(member, store, f"R{index}", "20", days_ago=8, recorded_late=False)
    assert points(members[0]) == (0, 20)

    assert jobs.lots_release_matured_job()["entries"] == 6  # points and growth per member
    assert jobs.lots_release_matured_job()["entries"] == 0
    assert [points(member) for member in members] == [(20, 0)] * 3
    assert LedgerEntry.objects.filter(kind=LedgerEntry.Kind.RELEASE).count() == 6
    assert not Lot.objects.filter(pending=True).exists()


@pytest.mark.django_db
def test_release_job_stopped_after_a_chunk_finishes_on_rerun(store, monkeypatch):
    members = MemberFactory.create_batch(3)
    for index, member in enumerate(members):
        earn(member, store, f"R{index}", "20", days_ago=8, recorded_late=False)
    restore = first_range_only(monkeypatch)

    with pytest.raises(Interrupted):
        jobs.lots_release_matured_sql(size=1)
    assert LedgerEntry.objects.filter(kind=LedgerEntry.Kind.RELEASE).count() == 2  # member 0's two accounts
    assert ledger_violations() == []

    restore()
    assert jobs.lots_release_matured_job()["entries"] == 4
    per_account = Counter(LedgerEntry.objects.filter(kind=LedgerEntry.Kind.RELEASE).values_list("account", flat=True))
    assert set(per_account.values()) == {1} and len(per_account) == 6
    assert [points(member) for member in members] == [(20, 0)] * 3


@pytest.mark.django_db
def test_the_orm_release_still_works_in_chunks(store):
    """The path SQLite runs (``services.lots_release_matured``), here on PostgreSQL."""
    members = MemberFactory.create_batch(3)
    for index, member in enumerate(members):
        earn(member, store, f"R{index}", "20", days_ago=8, recorded_late=False)
    assert services.lots_release_matured(chunk_size=2) == 6
    assert services.lots_release_matured(chunk_size=2) == 0
    assert [points(member) for member in members] == [(20, 0)] * 3


def expiring_members(store, count: int = 3) -> list[Member]:
    members = MemberFactory.create_batch(count)
    for index, member in enumerate(members):
        earn(member, store, f"OLD-{index}", "40", days_ago=300)  # expires in about 65 days
        earn(member, store, f"OLDER-{index}", str(10 + index), days_ago=310)
        earn(member, store, f"NEW-{index}", "5", days_ago=10)
    return members


@pytest.mark.django_db
def test_expire_job_run_twice_expires_once(store):
    members = expiring_members(store)
    later = timezone.now() + dt.timedelta(days=70)

    first = jobs.lots_expire_due_job(now=later)
    assert first["entries"] == 6  # points and growth of each member
    assert jobs.lots_expire_due_job(now=later)["entries"] == 0
    for index, member in enumerate(members):
        account = Account.objects.get(member=member, currency=Currency.POINTS)
        assert account.balance == 5
        entry = LedgerEntry.objects.get(account=account, kind=LedgerEntry.Kind.EXPIRE)
        assert (entry.amount, entry.balance_after, entry.pending_after) == (-(50 + index), 5, 0)
        assert entry.allocations.count() == 2


@pytest.mark.django_db
def test_expire_job_stopped_after_a_chunk_finishes_on_rerun(store, monkeypatch):
    members = expiring_members(store)
    later = timezone.now() + dt.timedelta(days=70)
    restore = first_range_only(monkeypatch)

    with pytest.raises(Interrupted):
        jobs.lots_expire_due_sql(now=later, size=1)
    assert LedgerEntry.objects.filter(kind=LedgerEntry.Kind.EXPIRE).count() == 2  # member 0's two accounts
    assert ledger_violations() == []

    restore()
    assert jobs.lots_expire_due_job(now=later)["entries"] == 4
    per_account = Counter(LedgerEntry.objects.filter(kind=LedgerEntry.Kind.EXPIRE).values_list("account", flat=True))
    assert len(per_account) == 6 and set(per_account.values()) == {1}
    assert [points(member)[0] for member in members] == [5, 5, 5]


def ledger_rows(kind: str = LedgerEntry.Kind.EXPIRE, *, after: int = 0) -> dict:
    """What the expiry (or release) wrote, keyed by things both paths share (not the generated ids).

    Entries of ``kind`` with ids above ``after``, their allocations, every lot and account.
    """
    entries = {
        entry.pk: (entry.account_id, entry.member_id, entry.currency, entry.amount, entry.pending_amount)
        + (entry.balance_after, entry.pending_after, entry.idempotency_key, entry.request_hash, entry.reason)
        + (entry.created_at, entry.detail, entry.order_id, entry.store_id, entry.operator_id, entry.reverses_id)
        for entry in LedgerEntry.objects.filter(kind=kind, pk__gt=after)
    }
    allocations = sorted(
        (entries[entry_id], lot_id, amount)
        for entry_id, lot_id, amount in Allocation.objects.filter(entry__kind=kind, entry__pk__gt=after).values_list(
            "entry_id", "lot_id", "amount"
        )
    )
    return {
        "entries": sorted(entries.values()),
        "allocations": allocations,
        "lots": sorted(Lot.objects.values_list("id", "remaining", "pending")),
        "accounts": sorted(Account.objects.values_list("id", "balance", "pending", "updated_at")),
    }


@pytest.mark.django_db
def test_set_based_expiry_writes_exactly_what_the_service_writes(store, adjuster):
    members = expiring_members(store, count=4)
    # Some spending first, so lots are partly used and balances differ.
    services.points_spend(member=members[1], amount=12, idempotency_key="s1", reason="gift")
    services.points_adjust(member=members[2], currency=Currency.POINTS, amount=7, reason="fix", actor=adjuster)
    later = timezone.now() + dt.timedelta(days=70)

    with connection.cursor() as cursor:
        cursor.execute("SAVEPOINT before_expiry")
    services.lots_expire_due(now=later, chunk_size=2)
    by_service = ledger_rows()
    with connection.cursor() as cursor:
        cursor.execute("ROLLBACK TO SAVEPOINT before_expiry")
    assert not LedgerEntry.objects.filter(kind=LedgerEntry.Kind.EXPIRE).exists()
    jobs.lots_expire_due_sql(now=later, size=2)
    by_sql = ledger_rows()

    assert by_service["entries"] and by_sql == by_service


@pytest.mark.django_db
def test_set_based_release_writes_exactly_what_the_service_writes(store, adjuster):
    members = MemberFactory.create_batch(5)
    earlier = timezone.now() - dt.timedelta(days=30)
    for index, member in enumerate(members):
        earn(member, store, f"P{index}", str(20 + index), days_ago=8, recorded_late=False)  # matured
        earn(member, store, f"Q{index}", "30", days_ago=9, recorded_late=False)  # matured
        earn(member, store, f"N{index}", "15", days_ago=2, recorded_late=False)  # still in its window
    # An available lot next to the pending ones (released when P0 was recorded), an adjustment.
    earn(members[0], store, "A0", "40", days_ago=20, recorded_late=False)
    services.points_adjust(
        member=members[1], currency=Currency.POINTS, amount=7, reason="fix", actor=adjuster, now=earlier
    )
    # Refunds inside the window: one pending lot emptied (released without points), one halved.
    for number, amount in (("Q2", "30"), ("P3", "11")):
        order = members[int(number[1])].orders.get(number=number)
        services.order_refund(order=order, amount=amount, number=f"RF-{number}", now=order.occurred_at)
    # Member 4's matured lots are all emptied: lots released, no entry, account untouched.
    for number in ("P4", "Q4"):
        order = members[4].orders.get(number=number)
        services.order_refund(order=order, amount=order.amount, number=f"RF-{number}", now=order.occurred_at)
    later = timezone.now() + dt.timedelta(minutes=1)

    last = LedgerEntry.objects.latest("pk").pk
    with connection.cursor() as cursor:
        cursor.execute("SAVEPOINT before_release")
    assert services.lots_release_matured(now=later, chunk_size=2) > 0
    by_service = ledger_rows(LedgerEntry.Kind.RELEASE, after=last)
    with connection.cursor() as cursor:
        cursor.execute("ROLLBACK TO SAVEPOINT before_release")
    assert not LedgerEntry.objects.filter(pk__gt=last).exists()
    stats = jobs.lots_release_matured_sql(now=later, size=2)
    by_sql = ledger_rows(LedgerEntry.Kind.RELEASE, after=last)

    assert by_service["entries"] and by_sql == by_service
    assert stats["count"] == len(by_sql["entries"])
    assert ledger_violations() == []
    assert Lot.objects.filter(pending=True).count() == 2 * len(members)  # the N lots (points and growth)
    assert jobs.lots_release_matured_sql(now=later, size=2)["count"] == 0


@pytest.mark.django_db(transaction=True)
def test_set_based_release_racing_refunds_keeps_the_ledger_exact(store):
    members = MemberFactory.create_batch(4)
    for index, member in enumerate(members):
        earn(member, store, f"R{index}", "20", days_ago=8, recorded_late=False)
    later = timezone.now()

    def refund(member):
        order = member.orders.get()
        return services.order_refund(order=order, amount="10", number="RF", now=later)

    outcomes = run_concurrently(
        lambda: jobs.lots_release_matured_sql(now=later, size=1),
        *[lambda member=member: refund(member) for member in members],
        lambda: jobs.lots_release_matured_sql(now=later, size=3),
    )
    assert not [outcome for outcome in outcomes if isinstance(outcome, Exception)], outcomes
    per_account = Counter(LedgerEntry.objects.filter(kind=LedgerEntry.Kind.RELEASE).values_list("account", flat=True))
    assert set(per_account.values()) <= {1}
    assert [points(member) for member in members] == [(10, 0)] * 4
    assert not Lot.objects.filter(pending=True).exists()
    assert ledger_violations() == []


@pytest.mark.django_db(transaction=True)
def test_set_based_expiry_on_parallel_connections_expires_everything_once(store):
    members = expiring_members(store, count=5)
    later = timezone.now() + dt.timedelta(days=70)
    assert jobs.lots_expire_due_sql(now=later, size=1, workers=3) == {"count": 10, "chunks": 5, "longest_chunk_s": ANY}
    assert jobs.lots_expire_due_job(now=later, workers=3)["entries"] == 0
    assert [points(member)[0] for member in members] == [5] * 5
    assert Allocation.objects.filter(entry__kind=LedgerEntry.Kind.EXPIRE).count() == 20


@pytest.mark.django_db(transaction=True)
def test_set_based_expiry_racing_members_spending_keeps_the_ledger_exact(store):
    members = expiring_members(store, count=4)
    later = timezone.now() + dt.timedelta(days=70)

    def spend(member):
        # The spend settles the account first, expiring the same lots the job is after.
        return services.points_spend(member=member, amount=5, idempotency_key="race", reason="r", now=later)

    outcomes = run_concurrently(
        lambda: jobs.lots_expire_due_sql(now=later, size=1),
        *[lambda member=member: spend(member) for member in members],
        lambda: jobs.lots_expire_due_sql(now=later, size=2),
    )
    assert not [outcome for outcome in outcomes if isinstance(outcome, Exception)], outcomes
    per_account = Counter(LedgerEntry.objects.filter(kind=LedgerEntry.Kind.EXPIRE).values_list("account", flat=True))
    assert len(per_account) == 8 and set(per_account.values()) == {1}
    assert [points(member) for member in members] == [(0, 0)] * 4
    assert ledger_violations() == []


# --- one run at a time ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_runs_at_once_do_the_work_once_and_the_second_skips(store, monkeypatch):
    members = MemberFactory.create_batch(2)
    for index, member in enumerate(members):
        earn(member, store, f"R{index}", "20", days_ago=8, recorded_late=False)
    holding, second_done = threading.Event(), threading.Event()
    original = jobs.lots_release_matured_sql

    def slow_release(**kwargs):
        holding.set()
        second_done.wait(timeout=20)  # keep the lock until the other run has tried
        return original(**kwargs)

    monkeypatch.setattr(jobs, "lots_release_matured_sql", slow_release)

    def second():
        holding.wait(timeout=20)
        try:
            return jobs.lots_release_matured_job()
        finally:
            second_done.set()

    outcomes = run_concurrently(jobs.lots_release_matured_job, second)
    assert outcomes == [{"entries": 4, "chunks": ANY, "longest_chunk_s": ANY}, core_jobs.SKIPPED]
    assert LedgerEntry.objects.filter(kind=LedgerEntry.Kind.RELEASE).count() == 4
    # The lock was released: the next run takes it again.
    assert jobs.lots_release_matured_job()["entries"] == 0


@pytest.mark.django_db(transaction=True)
def test_two_expiry_runs_at_once_expire_once(store):
    members = expiring_members(store, count=4)
    later = timezone.now() + dt.timedelta(days=70)
    outcomes = run_concurrently(*[lambda: jobs.lots_expire_due_job(now=later)] * 3)
    done = [outcome for outcome in outcomes if outcome != core_jobs.SKIPPED]
    assert all(isinstance(outcome, dict) for outcome in done), outcomes
    assert sum(outcome["entries"] for outcome in done) == 8
    assert LedgerEntry.objects.filter(kind=LedgerEntry.Kind.EXPIRE).count() == 8
    assert [points(member)[0] for member in members] == [5] * 4


def test_the_file_lock_lets_one_holder_in(settings, tmp_path, monkeypatch):
    settings.VAR_DIR = tmp_path
    monkeypatch.setattr(connection, "vendor", "sqlite")
    lock = core_jobs.job_lock
    with lock("demo") as first, lock("demo") as second, lock("other") as other:
        assert (first, second, other) == (True, False, True)
    with core_jobs.job_lock("demo") as again:
        assert again is True


def test_lock_keys_are_stable_64_bit_numbers():
    assert core_jobs.lock_key("expire_due_points") == core_jobs.lock_key("expire_due_points")
    assert core_jobs.lock_key("expire_due_points") != core_jobs.lock_key("release_matured_points")
    assert -(2**63) <= core_jobs.lock_key("x") < 2**63


@pytest.mark.django_db
def test_member_id_ranges_cover_every_member_once():
    members = MemberFactory.create_batch(7)
    ids = sorted(member.pk for member in members)
    ranges = list(member_jobs.member_id_ranges(size=3))
    assert ranges[0][0] == ids[0] and ranges[-1][1] == ids[-1] + 1
    covered = [member_id for lo, hi in ranges for member_id in ids if lo <= member_id < hi]
    assert covered == ids


# --- expiry notices ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_expiry_notices_tell_each_member_once_per_lot(store):
    soon, later_one, quiet = MemberFactory.create_batch(3)
    earn(soon, store, "A", "40", days_ago=340)  # expires in about 25 days
    earn(soon, store, "B", "15", days_ago=345)  # about 20 days
    earn(later_one, store, "C", "30", days_ago=300)  # about 65 days: not yet
    earn(quiet, store, "D", "30", days_ago=10)

    assert jobs.send_expiry_notices()["notices"] == 1
    assert jobs.send_expiry_notices()["notices"] == 0
    notice = Notification.objects.get()
    lots = list(Lot.objects.filter(member=soon, currency=Currency.POINTS).order_by("expires_at"))
    assert notice.member == soon and notice.kind == Notification.Kind.EXPIRY_WARNING
    assert notice.dedupe_key == f"expiry:{lots[0].pk}"
    assert notice.data["points"] == 55 and notice.data["lots"] == [lot.pk for lot in lots]
    first_day = timezone.localdate(lots[0].expires_at).isoformat()
    assert "55" in notice.body and first_day in notice.body and notice.data["expires_on"] == first_day

    # 40 days on, the third member's lot is due: a notice for it, none again for the others.
    in_40_days = timezone.now() + dt.timedelta(days=40)
    assert jobs.send_expiry_notices(now=in_40_days)["notices"] == 1
    assert Notification.objects.filter(member=later_one).count() == 1
    assert Notification.objects.filter(member=soon).count() == 1


@pytest.mark.django_db
def test_expiry_notices_stopped_after_a_chunk_finish_on_rerun(store, monkeypatch):
    members = MemberFactory.create_batch(3)
    for index, member in enumerate(members):
        earn(member, store, f"A{index}", "40", days_ago=340)
    restore = first_range_only(monkeypatch)
    with pytest.raises(Interrupted):
        jobs.send_expiry_notices(size=1)
    assert Notification.objects.count() == 1
    restore()
    assert jobs.send_expiry_notices(size=1)["notices"] == 2
    assert sorted(Notification.objects.values_list("member_id", flat=True)) == sorted(m.pk for m in members)


@pytest.mark.django_db
def test_expiry_notices_are_written_in_the_site_language(store, settings):
    settings.LANGUAGE_CODE = "zh-hans"
    member = MemberFactory()
    earn(member, store, "A", "40", days_ago=340)
    jobs.send_expiry_notices()
    assert Notification.objects.get(member=member).body  # gettext under zh-hans; text may fall back


# --- tiers ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_tier_job_calls_the_tier_sweep_under_its_lock(monkeypatch):
    from loyalty import tiers

    calls = []

    def sweep(*, now=None, chunk_size=1000, workers=1):
        with core_jobs.job_lock("evaluate_tiers"):
            pass
        calls.append((now, chunk_size))
        return {"upgraded": 0, "downgraded": 0}

    monkeypatch.setattr(tiers, "tiers_sweep", sweep, raising=False)
    assert jobs.evaluate_tiers() == {"upgraded": 0, "downgraded": 0}
    assert calls == [(None, 1000)]


@pytest.mark.django_db
def test_tier_job_runs_the_real_sweep_twice_safely():
    bronze = Tier.objects.create(code="bronze", name="Bronze", rank=0, is_default=True)
    members = MemberFactory.create_batch(2)
    first = jobs.evaluate_tiers()
    assert isinstance(first, dict) and first.get("placed") == 2
    assert jobs.evaluate_tiers().get("placed") == 0
    assert set(MemberTier.objects.values_list("tier", flat=True)) == {bronze.pk}
    assert MemberTier.objects.filter(member__in=members).count() == 2


# --- birthday benefits ---------------------------------------------------------------------


@pytest.fixture
def gold():
    tier = Tier.objects.create(code="gold", name="Gold", rank=1)
    Benefit.objects.create(tier=tier, kind=Benefit.Kind.BIRTHDAY_POINTS, value=Decimal("88"), title="88 points")
    return tier


def member_in(tier, birthday: dt.date) -> Member:
    member = MemberFactory(birthday=birthday)
    now = timezone.now()
    MemberTier.objects.create(member=member, tier=tier, started_at=now, review_at=now + dt.timedelta(days=365))
    return member


@pytest.mark.django_db
def test_birthday_benefits_are_given_once_a_year(gold):
    today = dt.datetime(2026, 6, 15, 9, 0, tzinfo=SHANGHAI)
    born_today = member_in(gold, dt.date(1990, 6, 15))
    member_in(gold, dt.date(1990, 6, 16))
    MemberFactory(birthday=dt.date(1991, 6, 15))  # no tier, no benefit

    assert jobs.issue_birthday_benefits(now=today)["birthday_points"] == 1
    assert jobs.issue_birthday_benefits(now=today)["birthday_points"] == 0
    assert jobs.issue_birthday_benefits(now=today + dt.timedelta(hours=10))["birthday_points"] == 0
    grant = BenefitGrant.objects.get()
    assert (grant.member, grant.period) == (born_today, "2026")
    assert Notification.objects.filter(member=born_today, kind=Notification.Kind.BIRTHDAY_GIFT).count() == 1
    assert (grant.entry.kind, grant.entry.amount, grant.entry.idempotency_key) == (
        "earn",
        88,
        f"birthday:{grant.benefit_id}:2026",
    )
    assert points(born_today) == (88, 0)

    next_year = today.replace(year=2027)
    assert jobs.issue_birthday_benefits(now=next_year)["birthday_points"] == 1
    assert sorted(BenefitGrant.objects.values_list("period", flat=True)) == ["2026", "2027"]


@pytest.mark.django_db
def test_birthday_is_local_and_29_february_falls_on_28_february(gold):
    leapling = member_in(gold, dt.date(2000, 2, 29))
    # 27 Feb 17:00 UTC is already 28 Feb in Shanghai.
    assert jobs.issue_birthday_benefits(now=dt.datetime(2027, 2, 27, 17, 0, tzinfo=dt.UTC))["birthday_points"] == 1
    assert BenefitGrant.objects.get().member == leapling
    # In a leap year the gift waits for 29 February.
    assert jobs.issue_birthday_benefits(now=dt.datetime(2028, 2, 28, 9, 0, tzinfo=SHANGHAI))["birthday_points"] == 0
    assert jobs.issue_birthday_benefits(now=dt.datetime(2028, 2, 29, 9, 0, tzinfo=SHANGHAI))["birthday_points"] == 1


@pytest.mark.django_db(transaction=True)
def test_two_birthday_runs_at_once_give_once(gold):
    today = dt.datetime(2026, 6, 15, 9, 0, tzinfo=SHANGHAI)
    members = [member_in(gold, dt.date(1990, 6, 15)) for _ in range(3)]
    outcomes = run_concurrently(*[lambda: jobs.issue_birthday_benefits(now=today)] * 3)
    done = [outcome for outcome in outcomes if outcome != core_jobs.SKIPPED]
    assert all(isinstance(outcome, dict) for outcome in done), outcomes
    assert sum(outcome["birthday_points"] for outcome in done) == 3
    assert [points(member) for member in members] == [(88, 0)] * 3
    assert BenefitGrant.objects.count() == 3


@pytest.mark.django_db
def test_inactive_benefits_and_members_get_nothing(gold):
    today = dt.datetime(2026, 6, 15, 9, 0, tzinfo=SHANGHAI)
    frozen = member_in(gold, dt.date(1990, 6, 15))
    Member.objects.filter(pk=frozen.pk).update(status=Member.Status.FROZEN)
    silver = Tier.objects.create(code="silver", name="Silver", rank=2)
    Benefit.objects.create(tier=silver, kind=Benefit.Kind.BIRTHDAY_POINTS, value=10, title="x", is_active=False)
    member_in(silver, dt.date(1990, 6, 15))
    assert jobs.issue_birthday_benefits(now=today)["birthday_points"] == 0


# --- the outbox sender --------------------------------------------------------------------------


class RecordingSender:
    sent: list[int] = []
    lock = threading.Lock()

    def send(self, notification):
        with self.lock:
            self.sent.append(notification.pk)


@pytest.mark.django_db(transaction=True)
def test_two_senders_at_once_send_each_notification_once(settings):
    settings.LOYALTY_NOTIFICATION_SENDER = f"{__name__}.RecordingSender"
    RecordingSender.sent = []
    members = MemberFactory.create_batch(3)
    for n in range(60):
        notify(member_id=members[n % 3].pk, kind="other", title=f"n{n}", dedupe_key=f"test:{n}")

    outcomes = run_concurrently(*[lambda: notifications_send_pending(limit=100)] * 3)
    assert sum(outcome["sent"] for outcome in outcomes) == 60, outcomes
    assert sorted(RecordingSender.sent) == sorted(Notification.objects.values_list("pk", flat=True))
    assert not Notification.objects.filter(sent_at__isnull=True).exists()
    assert notifications_send_pending()["sent"] == 0


class FailingSender:
    def send(self, notification):
        raise ConnectionError("gateway down")


@pytest.mark.django_db
def test_a_failed_send_is_tried_again_later(settings):
    member = MemberFactory()
    assert notify(member_id=member.pk, kind="other", title="hello", dedupe_key="k1") is True
    assert notify(member_id=member.pk, kind="other", title="hello again", dedupe_key="k1") is False
    settings.LOYALTY_NOTIFICATION_SENDER = f"{__name__}.FailingSender"
    assert notifications_send_pending() == {"sent": 0, "failed": 1, "taken_by_others": 0}
    assert Notification.objects.get().sent_at is None
    settings.LOYALTY_NOTIFICATION_SENDER = "members.notifications.LogSender"
    assert notifications_send_pending()["sent"] == 1
    assert Notification.objects.get().sent_at is not None


def test_log_sender_logs(caplog):
    caplog.set_level("INFO", logger="members.notifications")
    LogSender().send(Notification(pk=1, member_id=2, kind="other", title="hi", body="there"))
    assert "hi | there" in caplog.text


# --- schedules --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_setup_periodic_tasks_is_idempotent_and_keeps_operator_edits(settings):
    call_command("setup_periodic_tasks")
    names = dict(PeriodicTask.objects.values_list("task", "name"))
    assert set(names) >= {
        "loyalty.release_matured_points",
        "loyalty.expire_due_points",
        "loyalty.send_expiry_notices",
        "loyalty.evaluate_tiers",
        "loyalty.issue_birthday_benefits",
        "members.send_notifications",
    }
    for task in PeriodicTask.objects.exclude(task__startswith="celery."):
        assert str(task.crontab.timezone) == settings.TIME_ZONE == "Asia/Shanghai"
        hour = task.crontab.hour
        assert hour == "*" or not 1 <= int(hour) < 3, f"{task.name} runs in the DST hours"

    expire = PeriodicTask.objects.get(task="loyalty.expire_due_points")
    edited = CrontabSchedule.objects.create(minute="45", hour="4", timezone="Asia/Shanghai")
    expire.crontab, expire.enabled = edited, False
    expire.save()
    count = PeriodicTask.objects.count()

    call_command("setup_periodic_tasks")
    expire.refresh_from_db()
    assert (expire.crontab_id, expire.enabled) == (edited.pk, False)
    assert PeriodicTask.objects.count() == count


def test_every_scheduled_task_is_a_registered_celery_task():
    from config.celery import app
    from loyalty.management.commands.setup_periodic_tasks import SCHEDULES

    app.loader.import_default_modules()
    missing = [task for _name, task, *_rest in SCHEDULES if task not in app.tasks]
    assert missing == []


@pytest.mark.django_db
def test_the_set_based_release_pays_an_open_debt_like_the_orm_path(store):
    """A member owing a refund's shortfall: the nightly release's points pay it first.

    The set-based release once credited them as free points (the debt waited, the member
    could spend them): the exploit of issue 12 through the PostgreSQL job.
    """
    owing, other = MemberFactory.create_batch(2)
    earn(owing, store, "A1", "100", days_ago=30)
    spend = services.points_spend(member=owing, amount=100, idempotency_key="s1", reason="reward")
    assert spend.amount == -100
    order = owing.orders.get(number="A1")
    refund = services.order_refund(order=order, amount="100", number="RF-A1").refund
    assert refund.points_shortfall == 100
    for number, member in (("P1", owing), ("P2", other)):
        earn(member, store, number, "60", days_ago=8, recorded_late=False)
    later = timezone.now() + dt.timedelta(minutes=1)

    for run in (0, 1):  # a rerun finds nothing left
        written = jobs.release_chunk(0, 10**9, {"now": later.isoformat()})
        # A release of points and of growth for each member and the settlement, then nothing.
        assert written == (5 if run == 0 else 0)
    owing_points = Account.objects.get(member=owing, currency=Currency.POINTS)
    assert (owing_points.balance, owing_points.pending, owing_points.owed) == (0, 0, 40)
    refund.refresh_from_db()
    assert refund.points_settled == 60
    settle = LedgerEntry.objects.get(kind=LedgerEntry.Kind.SETTLE)
    assert (settle.amount, settle.refund_id) == (-60, refund.pk)
    assert points(other) == (60, 0)
    assert Lot.objects.filter(pending=True).count() == 0
