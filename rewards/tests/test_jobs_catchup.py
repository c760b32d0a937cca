"""Date-keyed coupon jobs catch up: days and a month's 1st missed are covered by the next run, once."""

import datetime as dt

import pytest
from django.db import connection

from loyalty import jobs as loyalty_jobs
from loyalty.models import BenefitGrant, LedgerEntry
from members.models import JobRun, Notification
from rewards import jobs
from rewards.models import Coupon

from .test_jobs import SHANGHAI, gold, member_in  # noqa: F401 (gold is a fixture)


@pytest.fixture(autouse=True)
def postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("the job tests need PostgreSQL (advisory locks)")


def at(year: int, month: int, day: int, hour: int = 8) -> dt.datetime:
    return dt.datetime(year, month, day, hour, 10, tzinfo=SHANGHAI)


def run_daily_jobs(now: dt.datetime) -> tuple[int, int, int]:
    """What beat runs each morning: birthday points, birthday coupons, monthly coupons."""
    return (
        loyalty_jobs.issue_birthday_benefits(now=now)["birthday_points"],
        jobs.issue_birthday_coupons(now=now)["coupons"],
        jobs.issue_monthly_benefits(now=now)["coupons"],
    )


@pytest.mark.django_db
def test_two_missed_days_and_a_missed_first_of_the_month_are_given_exactly_once(gold):  # noqa: F811
    on_31st = member_in(gold, dt.date(1990, 10, 31))
    on_1st = member_in(gold, dt.date(1985, 11, 1))
    on_2nd = member_in(gold, dt.date(1999, 11, 2))
    no_birthday = member_in(gold)
    everyone = [on_31st, on_1st, on_2nd, no_birthday]

    assert run_daily_jobs(at(2026, 10, 30)) == (0, 0, 4)  # October's coupons, on time
    # 31 October and 1 November pass without a run (worker, database or beat down).
    assert run_daily_jobs(at(2026, 11, 2)) == (3, 3, 4)

    birthday_grants = BenefitGrant.objects.filter(benefit__kind__startswith="birthday")
    assert sorted(birthday_grants.values_list("member_id", "benefit__kind", "period")) == sorted(
        (member.pk, kind, "2026")
        for member in (on_31st, on_1st, on_2nd)
        for kind in ("birthday_coupon", "birthday_points")
    )
    november = Coupon.objects.filter(period="2026-11")
    assert sorted(november.values_list("member_id", flat=True)) == sorted(member.pk for member in everyone)
    assert november.first().expires_at == dt.datetime(2026, 12, 1, tzinfo=SHANGHAI)
    late = Coupon.objects.get(member=on_31st, period="2026")
    # The late birthday coupon is valid from the birthday, for its full 14 days from today.
    assert late.valid_from == dt.datetime(2026, 10, 31, tzinfo=SHANGHAI)
    assert late.expires_at == dt.datetime(2026, 11, 16, tzinfo=SHANGHAI)

    # Run again, the same day and the next: nothing new.
    assert run_daily_jobs(at(2026, 11, 2, 20)) == (0, 0, 0)
    assert run_daily_jobs(at(2026, 11, 3)) == (0, 0, 0)
    assert BenefitGrant.objects.count() == 6 + 8
    assert Coupon.objects.count() == 3 + 8
    assert LedgerEntry.objects.filter(kind=LedgerEntry.Kind.EARN, detail__has_key="benefit").count() == 3
    assert Notification.objects.filter(kind=Notification.Kind.MONTHLY_BENEFIT).count() == 8
    assert Notification.objects.filter(kind=Notification.Kind.BIRTHDAY_GIFT).count() == 6
    assert set(JobRun.objects.values_list("name", "last_period")) == {
        ("issue_birthday_benefits", dt.date(2026, 11, 3)),
        ("rewards.issue_birthday_coupons", dt.date(2026, 11, 3)),
        ("rewards.issue_monthly_benefits", dt.date(2026, 11, 1)),
    }


@pytest.mark.django_db
def test_a_whole_missed_month_gets_coupons_that_have_not_expired_yet(gold):  # noqa: F811
    member = member_in(gold)
    jobs.issue_monthly_benefits(now=at(2026, 9, 1))
    # No run in October at all; the next one is on 3 November.
    assert jobs.issue_monthly_benefits(now=at(2026, 11, 3))["months"] == 2
    october = Coupon.objects.get(member=member, period="2026-10")
    assert october.expires_at == dt.datetime(2026, 12, 1, tzinfo=SHANGHAI)  # not already over
    assert Coupon.objects.get(member=member, period="2026-11").expires_at == dt.datetime(2026, 12, 1, tzinfo=SHANGHAI)
    assert jobs.issue_monthly_benefits(now=at(2026, 11, 4))["coupons"] == 0
    assert Coupon.objects.filter(member=member).count() == 3
