"""Daily check-in: streak days and points, one per day (also when two come at once), frozen refused."""

import datetime as dt
import threading

import pytest
from django.db import connection
from django.utils import timezone

from core.errors import LoyaltyError
from engagement.checkin import check_in_status, checkin_points_for, local_day, member_check_in
from engagement.models import CheckIn
from loyalty.models import Account, Currency, LedgerEntry
from loyalty.selectors import ledger_violations
from loyalty.tests.factories import MemberFactory
from members.models import Member
from members.services import member_set_status

# Noon in Shanghai on 1 March 2026: far from midnight, so "today" is unambiguous.
NOON = dt.datetime(2026, 3, 1, 4, 0, tzinfo=dt.UTC)


def days_later(n: int) -> dt.datetime:
    return NOON + dt.timedelta(days=n)


def balance(member) -> int:
    account = Account.objects.filter(member=member, currency=Currency.POINTS).first()
    return account.balance if account else 0


@pytest.fixture
def member(db):
    return MemberFactory()


@pytest.mark.django_db
def test_streak_days_earn_the_configured_points_and_the_last_value_after_the_list(member, settings):
    settings.LOYALTY_CHECKIN_POINTS = ["1", "2", "3"]
    earned = [member_check_in(member=member, now=days_later(n)).points for n in range(5)]
    assert earned == [1, 2, 3, 3, 3]
    assert list(CheckIn.objects.filter(member=member).order_by("day").values_list("streak", flat=True)) == [
        1,
        2,
        3,
        4,
        5,
    ]
    assert balance(member) == 12
    assert ledger_violations() == []


@pytest.mark.django_db
def test_default_table_gives_30_from_day_7(member):
    assert [checkin_points_for(n) for n in range(1, 10)] == [5, 5, 10, 10, 10, 10, 30, 30, 30]


@pytest.mark.django_db
def test_a_missed_day_starts_the_streak_again(member):
    member_check_in(member=member, now=days_later(0))
    member_check_in(member=member, now=days_later(1))
    again = member_check_in(member=member, now=days_later(3))
    assert (again.streak, again.points) == (1, 5)


@pytest.mark.django_db
def test_the_day_is_the_local_day_of_the_programme(member, settings):
    settings.TIME_ZONE = "Asia/Shanghai"
    # 23:30 UTC on 1 March is 07:30 on 2 March in Shanghai.
    late = dt.datetime(2026, 3, 1, 23, 30, tzinfo=dt.UTC)
    assert member_check_in(member=member, now=late).day == dt.date(2026, 3, 2)
    assert local_day(late) == dt.date(2026, 3, 2)


@pytest.mark.django_db
def test_the_award_is_a_ledger_entry_with_the_check_in_key(member):
    check_in = member_check_in(member=member, now=NOON)
    entry = LedgerEntry.objects.get(member=member)
    assert check_in.entry == entry
    assert entry.idempotency_key == f"checkin:{member.pk}:2026-03-01"
    assert entry.amount == 5 and entry.kind == LedgerEntry.Kind.EARN
    assert "check-in" in entry.reason


@pytest.mark.django_db
def test_a_second_check_in_the_same_day_is_refused_and_changes_nothing(member):
    member_check_in(member=member, now=NOON)
    with pytest.raises(LoyaltyError) as refused:
        member_check_in(member=member, now=NOON + dt.timedelta(hours=5))
    assert refused.value.code == "already_checked_in"
    assert "already checked in today" in str(refused.value.message)
    assert CheckIn.objects.filter(member=member).count() == 1
    assert LedgerEntry.objects.filter(member=member).count() == 1
    assert balance(member) == 5


@pytest.mark.django_db
def test_a_frozen_member_cannot_check_in(member):
    member_set_status(member=member, status=Member.Status.FROZEN)
    with pytest.raises(LoyaltyError) as refused:
        member_check_in(member=member, now=NOON)
    assert refused.value.code == "member_inactive"
    assert not CheckIn.objects.exists()
    assert not LedgerEntry.objects.exists()


@pytest.mark.django_db
def test_a_zero_point_day_is_a_check_in_without_an_entry(member, settings):
    settings.LOYALTY_CHECKIN_POINTS = ["0", "10"]
    first = member_check_in(member=member, now=NOON)
    assert (first.points, first.entry) == (0, None)
    assert member_check_in(member=member, now=days_later(1)).points == 10
    assert balance(member) == 10


@pytest.mark.django_db
def test_a_broken_setting_is_refused_clearly(member, settings):
    settings.LOYALTY_CHECKIN_POINTS = ["five"]
    with pytest.raises(LoyaltyError) as refused:
        member_check_in(member=member, now=NOON)
    assert refused.value.code == "misconfigured"
    assert not CheckIn.objects.exists()


@pytest.mark.django_db
def test_status_before_and_after_checking_in(member, django_assert_max_num_queries):
    member_check_in(member=member, now=days_later(0))
    member_check_in(member=member, now=days_later(1))
    with django_assert_max_num_queries(1):
        before = check_in_status(member, days_later(2))
    assert (before.checked_in_today, before.streak, before.next_streak, before.next_points) == (False, 2, 3, 10)
    assert before.next_day == dt.date(2026, 3, 3)
    assert [mark.checked_in for mark in before.week] == [False] * 4 + [True, True, False]
    member_check_in(member=member, now=days_later(2))
    after = check_in_status(member, days_later(2))
    assert (after.checked_in_today, after.streak, after.points_today, after.next_points) == (True, 3, 10, 10)
    assert after.next_day == dt.date(2026, 3, 4)


@pytest.mark.django_db
def test_status_counts_no_streak_after_a_gap(member):
    member_check_in(member=member, now=days_later(0))
    status = check_in_status(member, days_later(2))
    assert (status.streak, status.next_streak, status.next_points) == (0, 1, 5)


@pytest.mark.django_db
def test_status_runs_one_query_whatever_the_history(member, django_assert_num_queries):
    CheckIn.objects.bulk_create(
        CheckIn(member=member, day=dt.date(2025, 1, 1) + dt.timedelta(days=i), streak=i + 1, points=5)
        for i in range(400)
    )
    with django_assert_num_queries(1):
        check_in_status(member, timezone.now())


@pytest.mark.django_db(transaction=True)
def test_two_check_ins_at_once_give_one_check_in_and_one_entry():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL and its unique index locks")
    member = MemberFactory()
    barrier = threading.Barrier(2)
    outcomes: list[object] = [None, None]

    def worker(index: int) -> None:
        try:
            connection.ensure_connection()
            barrier.wait(timeout=30)
            outcomes[index] = member_check_in(member=member, now=NOON)
        except Exception as error:  # noqa: BLE001 - every outcome is checked below
            outcomes[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads), "a check-in did not finish: deadlock?"

    made = [o for o in outcomes if isinstance(o, CheckIn)]
    refused = [o for o in outcomes if isinstance(o, LoyaltyError)]
    assert len(made) == 1, outcomes
    assert [error.code for error in refused] == ["already_checked_in"]
    assert CheckIn.objects.filter(member=member).count() == 1
    assert LedgerEntry.objects.filter(member=member).count() == 1
    assert balance(member) == 5
    assert ledger_violations() == []
