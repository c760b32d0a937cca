"""Coupon jobs: once per period, run twice = once, stopped halfway then rerun, two runs at once = once."""

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from core import jobs as core_jobs
from loyalty.models import Benefit, BenefitGrant, MemberTier, Tier
from loyalty.tests.factories import MemberFactory
from loyalty.tests.test_concurrency import run_concurrently
from members import jobs as member_jobs
from members.models import Member, Notification
from rewards import jobs
from rewards.models import Coupon

from .factories import CouponFactory

SHANGHAI = ZoneInfo("Asia/Shanghai")
JUNE_15 = dt.datetime(2026, 6, 15, 8, 5, tzinfo=SHANGHAI)


@pytest.fixture(autouse=True)
def postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("the job tests need PostgreSQL (advisory locks)")


@pytest.fixture
def gold():
    tier = Tier.objects.create(code="gold", name="Gold", rank=1)
    Benefit.objects.create(
        tier=tier, kind=Benefit.Kind.BIRTHDAY_COUPON, value=Decimal("50"), title="50 off", coupon_valid_days=14
    )
    Benefit.objects.create(
        tier=tier,
        kind=Benefit.Kind.MONTHLY_COUPON,
        value=Decimal("0"),
        title="Free coffee",
        coupon_kind=Coupon.Kind.GIFT,
    )
    Benefit.objects.create(tier=tier, kind=Benefit.Kind.BIRTHDAY_POINTS, value=Decimal("88"), title="88 points")
    return tier


def member_in(tier, birthday: dt.date | None = None) -> Member:
    member = MemberFactory(birthday=birthday)
    now = timezone.now()
    MemberTier.objects.create(member=member, tier=tier, started_at=now, review_at=now + dt.timedelta(days=365))
    return member


class Interrupted(Exception):
    pass


def first_range_only(monkeypatch):
    original = member_jobs.member_id_ranges

    def ranges(*, size):
        iterator = original(size=size)
        yield next(iterator)
        raise Interrupted

    monkeypatch.setattr(member_jobs, "member_id_ranges", ranges)
    return lambda: monkeypatch.setattr(member_jobs, "member_id_ranges", original)


# --- birthday coupons -------------------------------------------------------------------------


@pytest.mark.django_db
def test_birthday_coupons_are_issued_once_a_year(gold):
    born_today = member_in(gold, dt.date(1990, 6, 15))
    member_in(gold, dt.date(1990, 6, 16))
    MemberFactory(birthday=dt.date(1991, 6, 15))  # no tier, no benefit

    assert jobs.issue_birthday_coupons(now=JUNE_15)["coupons"] == 1
    assert jobs.issue_birthday_coupons(now=JUNE_15)["coupons"] == 0
    assert jobs.issue_birthday_coupons(now=JUNE_15 + dt.timedelta(hours=10))["coupons"] == 0

    coupon = Coupon.objects.get()
    benefit = Benefit.objects.get(kind=Benefit.Kind.BIRTHDAY_COUPON)
    assert (coupon.member, coupon.benefit, coupon.period, coupon.source) == (born_today, benefit, "2026", "benefit")
    assert (coupon.kind, coupon.value, coupon.title) == (Coupon.Kind.AMOUNT_OFF, Decimal("50"), "50 off")
    assert coupon.valid_from == dt.datetime(2026, 6, 15, tzinfo=SHANGHAI)
    assert coupon.expires_at == dt.datetime(2026, 6, 29, tzinfo=SHANGHAI)  # the benefit's 14 days
    grant = BenefitGrant.objects.get()
    assert (grant.member, grant.benefit, grant.period) == (born_today, benefit, "2026")
    notice = Notification.objects.get()
    assert notice.kind == Notification.Kind.BIRTHDAY_GIFT
    assert notice.dedupe_key == f"birthday-coupon:{benefit.pk}:2026:{born_today.pk}"
    assert notice.data["coupon"] == coupon.pk and "2026-06-28" in notice.body

    assert jobs.issue_birthday_coupons(now=JUNE_15.replace(year=2027))["coupons"] == 1
    assert sorted(Coupon.objects.values_list("period", flat=True)) == ["2026", "2027"]


@pytest.mark.django_db
def test_birthday_coupon_is_once_a_year_even_after_a_tier_change(gold):
    member = member_in(gold, dt.date(1990, 6, 15))
    assert jobs.issue_birthday_coupons(now=JUNE_15)["coupons"] == 1
    platinum = Tier.objects.create(code="platinum", name="Platinum", rank=2)
    Benefit.objects.create(tier=platinum, kind=Benefit.Kind.BIRTHDAY_COUPON, value=100, title="100 off")
    MemberTier.objects.filter(member=member).update(tier=platinum)
    assert jobs.issue_birthday_coupons(now=JUNE_15 + dt.timedelta(hours=1))["coupons"] == 0


@pytest.mark.django_db
def test_birthday_is_local_and_29_february_falls_on_28_february(gold):
    leapling = member_in(gold, dt.date(2000, 2, 29))
    # 27 Feb 17:00 UTC is already 28 Feb in Shanghai.
    assert jobs.issue_birthday_coupons(now=dt.datetime(2027, 2, 27, 17, 0, tzinfo=dt.UTC))["coupons"] == 1
    assert Coupon.objects.get().member == leapling
    # In a leap year the coupon waits for 29 February.
    assert jobs.issue_birthday_coupons(now=dt.datetime(2028, 2, 28, 9, 0, tzinfo=SHANGHAI))["coupons"] == 0
    assert jobs.issue_birthday_coupons(now=dt.datetime(2028, 2, 29, 9, 0, tzinfo=SHANGHAI))["coupons"] == 1


@pytest.mark.django_db
def test_inactive_benefits_and_members_get_no_birthday_coupon(gold):
    frozen = member_in(gold, dt.date(1990, 6, 15))
    Member.objects.filter(pk=frozen.pk).update(status=Member.Status.FROZEN)
    silver = Tier.objects.create(code="silver", name="Silver", rank=2)
    Benefit.objects.create(tier=silver, kind=Benefit.Kind.BIRTHDAY_COUPON, value=10, title="x", is_active=False)
    member_in(silver, dt.date(1990, 6, 15))
    assert jobs.issue_birthday_coupons(now=JUNE_15)["coupons"] == 0
    assert not BenefitGrant.objects.exists() and not Notification.objects.exists()


@pytest.mark.django_db
def test_birthday_coupons_stopped_after_a_chunk_finish_on_rerun(gold, monkeypatch):
    members = [member_in(gold, dt.date(1990, 6, 15)) for _ in range(3)]
    restore = first_range_only(monkeypatch)
    with pytest.raises(Interrupted):
        jobs.issue_birthday_coupons(now=JUNE_15, size=1)
    assert Coupon.objects.count() == 1
    restore()
    assert jobs.issue_birthday_coupons(now=JUNE_15, size=1)["coupons"] == 2
    assert sorted(Coupon.objects.values_list("member_id", flat=True)) == sorted(m.pk for m in members)
    assert Notification.objects.count() == BenefitGrant.objects.count() == 3


@pytest.mark.django_db(transaction=True)
def test_two_birthday_coupon_runs_at_once_issue_once(gold):
    members = [member_in(gold, dt.date(1990, 6, 15)) for _ in range(3)]
    outcomes = run_concurrently(*[lambda: jobs.issue_birthday_coupons(now=JUNE_15, size=1)] * 3)
    done = [outcome for outcome in outcomes if outcome != core_jobs.SKIPPED]
    assert all(isinstance(outcome, dict) for outcome in done), outcomes
    assert sum(outcome["coupons"] for outcome in done) == 3
    assert sorted(Coupon.objects.values_list("member_id", flat=True)) == sorted(m.pk for m in members)
    assert Notification.objects.count() == BenefitGrant.objects.count() == 3


@pytest.mark.django_db(transaction=True)
def test_chunks_racing_without_the_lock_still_issue_once(gold):
    """Even two chunk steps side by side (no job lock) write each coupon and notice once."""
    members = [member_in(gold, dt.date(1990, 6, 15)) for _ in range(4)]
    lo, hi = members[0].pk, members[-1].pk + 1

    def step():
        from django.db import transaction

        with transaction.atomic():
            return jobs._issue_benefit_coupons(
                lo,
                hi,
                kind=Benefit.Kind.BIRTHDAY_COUPON,
                period="2026",
                now=JUNE_15,
                valid_from=JUNE_15,
                expires_at=lambda days: JUNE_15 + dt.timedelta(days=days),
                notice_kind=Notification.Kind.BIRTHDAY_GIFT,
                dedupe_prefix="birthday-coupon",
            )

    outcomes = run_concurrently(step, step)
    assert not [outcome for outcome in outcomes if isinstance(outcome, Exception)], outcomes
    assert sum(outcomes) == 4
    assert Coupon.objects.count() == Notification.objects.count() == BenefitGrant.objects.count() == 4
    coupons = set(Coupon.objects.values_list("pk", flat=True))
    assert {notice.data["coupon"] for notice in Notification.objects.all()} == coupons


# --- monthly benefits ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_monthly_benefits_are_issued_once_a_month_valid_to_the_months_end(gold):
    members = [member_in(gold) for _ in range(2)]
    MemberFactory()  # no tier
    first_of_month = dt.datetime(2026, 11, 1, 8, 10, tzinfo=SHANGHAI)

    assert jobs.issue_monthly_benefits(now=first_of_month)["coupons"] == 2
    assert jobs.issue_monthly_benefits(now=first_of_month)["coupons"] == 0
    assert jobs.issue_monthly_benefits(now=first_of_month + dt.timedelta(days=20))["coupons"] == 0
    coupon = Coupon.objects.get(member=members[0])
    assert (coupon.period, coupon.kind, coupon.title) == ("2026-11", Coupon.Kind.GIFT, "Free coffee")
    assert coupon.valid_from == dt.datetime(2026, 11, 1, tzinfo=SHANGHAI)
    assert coupon.expires_at == dt.datetime(2026, 12, 1, tzinfo=SHANGHAI)
    notices = Notification.objects.filter(kind=Notification.Kind.MONTHLY_BENEFIT)
    assert notices.count() == 2 and "2026-11-30" in notices.first().body

    december = dt.datetime(2026, 12, 1, 8, 10, tzinfo=SHANGHAI)
    assert jobs.issue_monthly_benefits(now=december)["coupons"] == 2
    coupon = Coupon.objects.get(member=members[0], period="2026-12")
    assert coupon.expires_at == dt.datetime(2027, 1, 1, tzinfo=SHANGHAI)
    assert BenefitGrant.objects.count() == 4


@pytest.mark.django_db(transaction=True)
def test_two_monthly_runs_at_once_issue_once(gold):
    for _ in range(3):
        member_in(gold)
    now = dt.datetime(2026, 11, 1, 8, 10, tzinfo=SHANGHAI)
    outcomes = run_concurrently(*[lambda: jobs.issue_monthly_benefits(now=now)] * 3)
    done = [outcome for outcome in outcomes if outcome != core_jobs.SKIPPED]
    assert all(isinstance(outcome, dict) for outcome in done), outcomes
    assert sum(outcome["coupons"] for outcome in done) == 3
    assert Coupon.objects.count() == Notification.objects.count() == 3


# --- expiry -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_expire_job_run_twice_expires_once():
    now = timezone.now()
    due = CouponFactory.create_batch(3, expires_at=now - dt.timedelta(hours=1), valid_from=now - dt.timedelta(days=9))
    fresh = CouponFactory()
    assert jobs.expire_coupons(now=now, size=1)["expired"] == 3
    assert jobs.expire_coupons(now=now, size=1)["expired"] == 0
    assert set(Coupon.objects.filter(status=Coupon.Status.EXPIRED)) == set(due)
    fresh.refresh_from_db()
    assert fresh.status == Coupon.Status.ISSUED


@pytest.mark.django_db(transaction=True)
def test_two_expiry_runs_at_once_expire_once():
    now = timezone.now()
    CouponFactory.create_batch(4, expires_at=now - dt.timedelta(hours=1), valid_from=now - dt.timedelta(days=9))
    outcomes = run_concurrently(*[lambda: jobs.expire_coupons(now=now)] * 3)
    done = [outcome for outcome in outcomes if outcome != core_jobs.SKIPPED]
    assert sum(outcome["expired"] for outcome in done) == 4, outcomes
    assert Coupon.objects.filter(status=Coupon.Status.EXPIRED).count() == 4


# --- tasks and schedules ------------------------------------------------------------------------


@pytest.mark.django_db
def test_tasks_run_the_jobs():
    from rewards import tasks

    for task in (tasks.issue_birthday_coupons, tasks.issue_monthly_benefits, tasks.expire_coupons):
        assert isinstance(task.apply().get(), dict)
        assert task.retry_on  # core.jobs.JobTask retries database errors and a held lock


@pytest.mark.django_db
def test_coupon_schedules_are_written_in_local_time(settings):
    call_command("setup_periodic_tasks")
    call_command("setup_periodic_tasks")
    expected = {
        "rewards.issue_birthday_coupons": ("5", "8", "*"),
        "rewards.issue_monthly_benefits": ("10", "8", "*"),
        "rewards.expire_coupons": ("40", "0", "*"),
    }
    for task, (minute, hour, day) in expected.items():
        periodic = PeriodicTask.objects.get(task=task)
        crontab = periodic.crontab
        assert (crontab.minute, crontab.hour, crontab.day_of_month, crontab.day_of_week) == (minute, hour, day, "*")
        assert str(crontab.timezone) == settings.TIME_ZONE
    assert PeriodicTask.objects.filter(task__startswith="rewards.").count() == 3


@pytest.mark.django_db
def test_a_percent_off_benefit_coupon_above_100_is_refused_by_the_database(gold):
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        Benefit.objects.create(
            tier=gold, kind=Benefit.Kind.MONTHLY_COUPON, value=150, title="x", coupon_kind=Coupon.Kind.DISCOUNT_PERCENT
        )
    benefit = Benefit.objects.create(
        tier=gold, kind=Benefit.Kind.MONTHLY_COUPON, value=15, title="15% off", coupon_kind=Coupon.Kind.DISCOUNT_PERCENT
    )
    member = member_in(gold)
    jobs.issue_monthly_benefits(now=dt.datetime(2026, 11, 1, 8, 10, tzinfo=SHANGHAI))
    coupon = Coupon.objects.get(member=member, benefit=benefit)
    assert (coupon.kind, coupon.value) == (Coupon.Kind.DISCOUNT_PERCENT, Decimal("15"))
