"""manage.py seed_demo: a demo that shows every situation on an exact ledger, seeded once."""

import datetime as dt
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import transaction
from django.test import override_settings
from django.utils import timezone, translation

from loyalty.models import Currency, LedgerEntry, Lot, Order
from loyalty.selectors import ledger_violations
from members.models import Member, Store
from operations.management.commands.seed_demo import DEMO_STAFF_USERNAME, DEMO_STORE_CODES

pytestmark = pytest.mark.django_db

MEMBERS = 30  # fewer than the default 200, to keep the test quick; the guarantees hold anyway


def seed() -> str:
    out = StringIO()
    call_command("seed_demo", members=MEMBERS, stdout=out)
    return out.getvalue()


def row_counts() -> tuple[int, int, int, int]:
    return Member.objects.count(), Order.objects.count(), LedgerEntry.objects.count(), Lot.objects.count()


def test_seed_demo_refuses_to_run_in_production(settings):
    # First in the module: it needs the empty database, before the shared demo below exists.
    settings.PRODUCTION = True

    with pytest.raises(CommandError, match="production"):
        seed()
    assert row_counts() == (0, 0, 0, 0)


@pytest.fixture(scope="module")
def seeded(django_db_setup, django_db_blocker):
    """One demo for the tests of this module (seeding takes 10-20 s): it is seeded inside a
    transaction that stays open while they run, each in its own savepoint as usual, and is
    rolled back after the last. They read it within seconds of the seed, as they would their own.
    In English, as the tests' own seeds were (conftest.english_by_default)."""
    english = override_settings(LANGUAGE_CODE="en"), translation.override("en")
    with django_db_blocker.unblock(), english[0], english[1], transaction.atomic():
        seed()
        yield
        transaction.set_rollback(True)


def test_seed_demo_shows_pending_expiring_and_expired_points_on_an_exact_ledger(seeded):
    now = timezone.now()

    assert sorted(Store.objects.values_list("code", flat=True)) == sorted(DEMO_STORE_CODES)
    assert Member.objects.count() == MEMBERS + 1  # and the fan, who has not bought yet
    assert ledger_violations() == []
    points = Lot.objects.filter(currency=Currency.POINTS, remaining__gt=0)
    assert points.filter(pending=True).exists(), "some orders are still inside their return window"
    assert points.filter(pending=False, expires_at__gt=now, expires_at__lte=now + dt.timedelta(days=30)).exists()
    assert LedgerEntry.objects.filter(kind=LedgerEntry.Kind.EXPIRE).exists()
    # It looks as if the jobs had been running all along: nothing overdue is left behind.
    assert not Lot.objects.filter(pending=True, available_at__lte=now).exists()
    assert not points.filter(pending=False, expires_at__lte=now).exists()
    assert LedgerEntry.objects.filter(created_at__lt=now - dt.timedelta(days=365)).exists()


def test_seed_demo_adjustments_are_by_a_staff_user_who_cannot_sign_in(seeded):
    staff = get_user_model().objects.get(username=DEMO_STAFF_USERNAME)
    assert staff.is_staff and not staff.is_superuser and not staff.has_usable_password()
    adjustments = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.ADJUST)
    assert adjustments.exists()
    assert set(adjustments.values_list("operator", flat=True)) == {staff.pk}
    assert all(adjustments.values_list("reason", flat=True))


def test_seed_demo_run_twice_adds_nothing(seeded):
    before = row_counts()

    output = seed()

    assert "demo data already present" in output
    assert row_counts() == before


def test_seed_demo_has_a_fan_and_partners_written_in_both_languages(seeded):
    from programme.models import Partner, PartnerOffer

    fan = Member.objects.get(phone="+8613700137000")
    assert not fan.orders.exists() and fan.contributions.exists()
    for row, field in [(p, "name") for p in Partner.objects.all()] + [(o, "name") for o in PartnerOffer.objects.all()]:
        chinese, english = getattr(row, f"{field}_zh_hans"), getattr(row, f"{field}_en")
        assert chinese and english and chinese != english
        assert not any("\u4e00" <= ch <= "\u9fff" for ch in english), english
        with translation.override("en"):
            assert getattr(row, field) == english
        with translation.override("zh-hans"):
            assert getattr(row, field) == chinese
