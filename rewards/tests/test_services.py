"""Coupon services: issue once per benefit period, verify once, void with a reason, expire in bulk."""

import datetime as dt
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from core.errors import LoyaltyError
from loyalty.models import Benefit, Tier
from loyalty.tests.factories import MemberFactory, StoreFactory
from loyalty.tests.test_concurrency import refusals, run_concurrently
from rewards import selectors, services
from rewards.models import CODE_ALPHABET, CODE_LENGTH, Coupon

from .factories import CouponFactory


@pytest.fixture
def store():
    return StoreFactory()


@pytest.fixture
def benefit():
    tier = Tier.objects.create(code="gold", name="Gold", rank=1)
    return Benefit.objects.create(tier=tier, kind=Benefit.Kind.MONTHLY_COUPON, value=Decimal("20"), title="20 off")


def issue(member, **kwargs):
    defaults = {
        "title": "20 yuan off",
        "kind": Coupon.Kind.AMOUNT_OFF,
        "value": "20",
        "expires_at": timezone.now() + dt.timedelta(days=30),
        "source": Coupon.Source.STAFF,
    }
    return services.coupon_issue(member=member, **{**defaults, **kwargs})


@pytest.mark.django_db
def test_issue_draws_an_unguessable_code():
    member = MemberFactory()
    first, second = issue(member), issue(member)
    assert first.pk != second.pk and first.code != second.code
    assert len(first.code) == CODE_LENGTH and set(first.code) <= set(CODE_ALPHABET)
    assert first.status == Coupon.Status.ISSUED


@pytest.mark.django_db
def test_issue_for_a_benefit_period_returns_the_first_coupon(benefit):
    member = MemberFactory()
    first = issue(member, source=Coupon.Source.BENEFIT, benefit=benefit, period="2026-11")
    again = issue(member, source=Coupon.Source.BENEFIT, benefit=benefit, period="2026-11")
    assert again.pk == first.pk and Coupon.objects.count() == 1
    other_month = issue(member, source=Coupon.Source.BENEFIT, benefit=benefit, period="2026-12")
    assert other_month.pk != first.pk


@pytest.mark.django_db
def test_the_database_refuses_a_second_coupon_for_a_benefit_period(benefit):
    coupon = CouponFactory(source=Coupon.Source.BENEFIT, benefit=benefit, period="2026")
    with pytest.raises(IntegrityError), transaction.atomic():
        CouponFactory(member=coupon.member, source=Coupon.Source.BENEFIT, benefit=benefit, period="2026")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "fields",
    [
        {"status": "lost"},
        {"status": Coupon.Status.USED},  # used without a time
        {"kind": Coupon.Kind.DISCOUNT_PERCENT, "value": 120},
        {"source": Coupon.Source.BENEFIT},  # without the benefit
    ],
)
def test_the_database_refuses_inconsistent_coupons(fields):
    with pytest.raises(IntegrityError), transaction.atomic():
        CouponFactory(**fields)


@pytest.mark.django_db
def test_issue_refuses_a_window_that_ends_before_it_starts():
    with pytest.raises(LoyaltyError) as refused:
        issue(MemberFactory(), expires_at=timezone.now() - dt.timedelta(days=1))
    assert refused.value.code == "coupon_window_invalid"


@pytest.mark.django_db
def test_verify_marks_the_coupon_used_with_store_staff_and_time(store, staff_user):
    coupon = CouponFactory()
    now = timezone.now()
    used = services.coupon_verify(
        code=f" {coupon.code.lower()[:6]}-{coupon.code[6:]} ", store=store, actor=staff_user, now=now
    )
    coupon.refresh_from_db()
    assert used.pk == coupon.pk
    assert (coupon.status, coupon.used_store, coupon.used_by, coupon.used_at) == ("used", store, staff_user, now)


@pytest.mark.django_db
def test_verify_refuses_a_used_coupon(store, staff_user):
    coupon = CouponFactory()
    services.coupon_verify(code=coupon.code, store=store, actor=staff_user)
    with pytest.raises(LoyaltyError) as refused:
        services.coupon_verify(code=coupon.code, store=store, actor=staff_user)
    assert refused.value.code == "coupon_used"
    coupon.refresh_from_db()
    used_at = timezone.localtime(coupon.used_at).strftime("%Y-%m-%d %H:%M")
    assert str(refused.value.message) == f"This coupon was already used on {used_at}."  # the minute, for the till


@pytest.mark.django_db
def test_verify_refuses_an_expired_coupon_even_before_the_expiry_job(store, staff_user):
    past = CouponFactory(
        expires_at=timezone.now() - dt.timedelta(minutes=1), valid_from=timezone.now() - dt.timedelta(days=3)
    )
    marked = CouponFactory(status=Coupon.Status.EXPIRED)
    for coupon in (past, marked):
        with pytest.raises(LoyaltyError) as refused:
            services.coupon_verify(code=coupon.code, store=store, actor=staff_user)
        assert refused.value.code == "coupon_expired"
    past.refresh_from_db()
    assert past.status == Coupon.Status.ISSUED and past.used_at is None


@pytest.mark.django_db
def test_verify_refuses_void_unknown_and_not_yet_valid_coupons(store, staff_user):
    void = services.coupon_void(coupon=CouponFactory(), actor=staff_user, reason="printed twice")
    later = CouponFactory(valid_from=timezone.now() + dt.timedelta(days=1))
    cases = [(void.code, "coupon_void"), ("NOPE2345NOPE", "coupon_not_found"), (later.code, "coupon_not_yet_valid")]
    for code, expected in cases:
        with pytest.raises(LoyaltyError) as refused:
            services.coupon_verify(code=code, store=store, actor=staff_user)
        assert refused.value.code == expected


@pytest.mark.django_db
def test_void_needs_a_reason_and_an_unused_coupon(store, staff_user):
    coupon = CouponFactory()
    with pytest.raises(LoyaltyError) as refused:
        services.coupon_void(coupon=coupon, actor=staff_user, reason="  ")
    assert refused.value.code == "reason_required"
    services.coupon_void(coupon=coupon, actor=staff_user, reason="customer complaint")
    coupon.refresh_from_db()
    assert (coupon.status, coupon.voided_by, coupon.void_reason) == ("void", staff_user, "customer complaint")
    with pytest.raises(LoyaltyError) as refused:
        services.coupon_void(coupon=coupon, actor=staff_user, reason="again")
    assert refused.value.code == "coupon_void"

    used = CouponFactory()
    services.coupon_verify(code=used.code, store=store, actor=staff_user)
    with pytest.raises(LoyaltyError) as refused:
        services.coupon_void(coupon=used, actor=staff_user, reason="too late")
    assert refused.value.code == "coupon_used"


@pytest.mark.django_db
def test_expire_marks_only_issued_coupons_past_their_date(store, staff_user):
    now = timezone.now()
    due = CouponFactory(expires_at=now - dt.timedelta(seconds=1), valid_from=now - dt.timedelta(days=2))
    fresh = CouponFactory()
    used = CouponFactory(expires_at=now + dt.timedelta(hours=1))
    services.coupon_verify(code=used.code, store=store, actor=staff_user)
    assert services.coupons_expire(now=now + dt.timedelta(hours=2)) == 1 + 0  # due; used stays used
    assert services.coupons_expire(now=now + dt.timedelta(hours=2)) == 0
    statuses = dict(Coupon.objects.values_list("pk", "status"))
    assert statuses == {due.pk: "expired", fresh.pk: "issued", used.pk: "used"}


@pytest.mark.django_db
def test_selectors_find_a_members_usable_coupons():
    coupon = CouponFactory()
    CouponFactory(member=coupon.member, status=Coupon.Status.EXPIRED)
    assert list(selectors.coupons_for_member(member=coupon.member)) == [coupon]
    assert len(selectors.coupons_for_member(member=coupon.member, status=None)) == 2


@pytest.mark.django_db(transaction=True)
def test_two_tills_verifying_one_code_at_once_succeed_once(store, staff_user):
    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL")
    coupon = CouponFactory()
    outcomes = run_concurrently(*[lambda: services.coupon_verify(code=coupon.code, store=store, actor=staff_user)] * 2)
    assert sum(isinstance(outcome, Coupon) for outcome in outcomes) == 1, outcomes
    assert refusals(outcomes) == {"coupon_used": 1}
    coupon.refresh_from_db()
    assert coupon.status == Coupon.Status.USED
