"""Paid membership: buying, activation on a verified notification only, idempotency,
cancellation, refund in the cool-off period, the earn multiplier."""

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from core.errors import LoyaltyError
from loyalty import services as ledger
from loyalty.models import Account, LedgerEntry
from loyalty.selectors import ledger_violations
from loyalty.tests.factories import MemberFactory, StoreFactory
from members.models import Member, Notification
from programme import services
from programme.models import Membership, Plan, PlanGrant, PlanOrder
from programme.payments import FakeAdapter
from rewards.models import Coupon

from .conftest import DAY, pay

pytestmark = pytest.mark.django_db


def _points(member) -> int:
    return Account.objects.filter(member=member, currency="points").values_list("balance", flat=True).first() or 0


def test_purchase_opens_an_order_and_activates_nothing_until_paid(member, plan):
    checkout = services.plan_purchase_start(member=member, plan=plan)
    assert checkout.order.status == PlanOrder.Status.PENDING and checkout.order.amount == Decimal("99.00")
    assert checkout.payment["order_number"] == checkout.order.number
    assert not Membership.objects.filter(member=member).exists()
    assert _points(member) == 0


def test_verified_payment_activates_gives_welcome_points_coupons_and_a_notice(paid, member, plan):
    membership = Membership.objects.get(member=member)
    assert membership.is_active_at(timezone.now()) and membership.plan == plan and membership.auto_renew
    assert membership.auto_renew_consent_at is not None
    assert paid.status == PlanOrder.Status.PAID and paid.period_end == membership.ends_at
    assert (membership.ends_at - membership.started_at).days in (365, 366)
    assert _points(member) == 500
    assert Coupon.objects.filter(member=member, status=Coupon.Status.ISSUED).count() == 2
    assert Notification.objects.filter(member=member, dedupe_key=f"programme:paid:{paid.pk}").exists()


def test_the_same_notification_twice_changes_nothing(paid, member):
    again = pay(paid, payment_id=paid.payment_id)
    assert again.replayed and again.pk == paid.pk
    assert _points(member) == 500 and PlanGrant.objects.filter(member=member).count() == 3
    assert Membership.objects.get(member=member).ends_at == paid.period_end


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"payment_id": "another-payment"}, "payment_conflict"),
        ({"amount": Decimal("1.00")}, "payment_amount_mismatch"),
    ],
)
def test_refused_notifications_change_nothing(member, plan, change, code):
    order = services.plan_purchase_start(member=member, plan=plan).order
    if code == "payment_conflict":
        pay(order)
    with pytest.raises(LoyaltyError) as refused:
        pay(order, **change)
    assert refused.value.code == code
    if code == "payment_amount_mismatch":
        order.refresh_from_db()
        assert order.status == PlanOrder.Status.PENDING and not Membership.objects.exists()


def test_a_payment_id_cannot_pay_two_orders(plan):
    first, second = MemberFactory(), MemberFactory()
    pay(services.plan_purchase_start(member=first, plan=plan).order, payment_id="p1")
    other = services.plan_purchase_start(member=second, plan=plan).order
    with pytest.raises(LoyaltyError, match="payment_conflict"):
        pay(other, payment_id="p1")
    assert not Membership.objects.filter(member=second).exists()


@pytest.mark.parametrize("tamper", ["body", "signature", "old"])
def test_a_notification_that_does_not_verify_is_refused(member, plan, tamper):
    order = services.plan_purchase_start(member=member, plan=plan).order
    signed = FakeAdapter().sign(order_number=order.number, payment_id="p", amount=order.amount)
    headers, body = dict(signed.headers), signed.body
    if tamper == "body":
        body = body.replace(b"99.00", b"9.00")
    elif tamper == "signature":
        headers["X-Fake-Signature"] = "0" * 64
    else:
        headers["X-Fake-Timestamp"] = str(int(headers["X-Fake-Timestamp"]) - 3600)
    with pytest.raises(LoyaltyError, match="payment_signature_invalid"):
        services.payment_notification_handle(adapter="fake", headers=headers, body=body)
    order.refresh_from_db()
    assert order.status == PlanOrder.Status.PENDING and not Membership.objects.exists()


def test_purchase_refusals(member, plan):
    other = Plan.objects.create(code="premium", name="Premium", rank=2, price=Decimal("199"))
    off = Plan.objects.create(code="off", name="Off", rank=4, price=Decimal("9"), is_active=False)
    cases = [({"plan": off}, "plan_unavailable")]
    cases.append(({"plan": plan, "auto_renew": True}, "consent_required"))
    cases.append(({"plan": plan, "adapter": "cash"}, "payment_adapter_unknown"))
    no_renew = Plan.objects.create(code="once", name="Once", rank=3, price=Decimal("9"), auto_renew=False)
    cases.append(({"plan": no_renew, "auto_renew": True, "consent": True}, "auto_renew_unavailable"))
    for kwargs, code in cases:
        with pytest.raises(LoyaltyError) as refused:
            services.plan_purchase_start(member=member, **kwargs)
        assert refused.value.code == code
    pay(services.plan_purchase_start(member=member, plan=plan).order)
    with pytest.raises(LoyaltyError, match="plan_change_unsupported"):
        services.plan_purchase_start(member=member, plan=other)
    frozen = MemberFactory(status=Member.Status.FROZEN)
    with pytest.raises(LoyaltyError, match="member_inactive"):
        services.plan_purchase_start(member=frozen, plan=plan)
    assert PlanOrder.objects.count() == 1


def test_renewal_by_hand_extends_from_the_end_without_a_second_welcome_gift(paid, member, plan):
    order = services.plan_purchase_start(member=member, plan=plan).order
    assert order.kind == PlanOrder.Kind.RENEWAL
    pay(order)
    membership = Membership.objects.get(member=member)
    assert membership.ends_at == services.period_end(paid.period_end, plan.period)
    assert _points(member) == 500


def test_cancel_stops_renewal_keeps_benefits_to_the_end(paid, member):
    membership = services.membership_cancel(member=member)
    assert not membership.auto_renew and membership.cancelled_at is not None
    assert membership.is_active_at(timezone.now())
    with pytest.raises(LoyaltyError, match="membership_cancelled"):
        services.membership_cancel(member=member)
    with pytest.raises(LoyaltyError, match="consent_required"):
        services.membership_auto_renew_set(member=member, on=True)
    assert services.membership_auto_renew_set(member=member, on=True, consent=True).auto_renew


def test_cancel_without_membership_is_refused(member):
    with pytest.raises(LoyaltyError, match="membership_not_found"):
        services.membership_cancel(member=member)


def test_refund_in_cool_off_ends_membership_voids_coupons_takes_back_points(paid, member, refunder):
    order = services.plan_order_refund(order=paid, actor=refunder, reason="changed mind")
    assert order.status == PlanOrder.Status.REFUNDED and order.refund_id == f"fake-refund-{paid.number}"
    assert order.points_taken_back == 500 and order.points_not_recovered == 0 and order.coupons_voided == 2
    membership = Membership.objects.get(member=member)
    assert membership.status == Membership.Status.REFUNDED and not membership.is_active_at(timezone.now())
    assert _points(member) == 0
    assert not Coupon.objects.filter(member=member, status=Coupon.Status.ISSUED).exists()
    assert LedgerEntry.objects.get(member=member, kind=LedgerEntry.Kind.REFUND).reverses.kind == "earn"
    assert ledger_violations() == []


def test_refund_takes_back_only_what_is_left_of_spent_welcome_points(paid, member, refunder):
    ledger.points_spend(member=member, amount=300, reason="reward", idempotency_key="spend-1")
    order = services.plan_order_refund(order=paid, actor=refunder, reason="changed mind")
    assert (order.points_taken_back, order.points_not_recovered) == (200, 300)
    assert _points(member) == 0 and ledger_violations() == []


def test_refund_refusals_change_nothing(paid, member, refunder, staff_user):
    scoped = type(staff_user).objects.create_user("scoped", is_staff=True)
    scoped.user_permissions.add(*refunder.user_permissions.all())
    late = paid.paid_at + dt.timedelta(days=8)
    for kwargs, code in [
        ({"actor": staff_user, "reason": "x"}, "permission_denied"),
        ({"actor": scoped, "reason": "x"}, "out_of_scope"),
        ({"actor": refunder, "reason": " "}, "reason_required"),
        ({"actor": refunder, "reason": "x", "now": late}, "cool_off_over"),
    ]:
        with pytest.raises(LoyaltyError) as refused:
            services.plan_order_refund(order=paid, **kwargs)
        assert refused.value.code == code
    paid.refresh_from_db()
    assert paid.status == PlanOrder.Status.PAID and _points(member) == 500
    services.plan_order_refund(order=paid, actor=refunder, reason="x")
    with pytest.raises(LoyaltyError, match="plan_order_refunded"):
        services.plan_order_refund(order=paid, actor=refunder, reason="x")


def test_trial_needs_consent_once_per_member_and_gives_no_welcome_gift(member, plan):
    with pytest.raises(LoyaltyError, match="consent_required"):
        services.trial_start(member=member, plan=plan, consent=False)
    membership = services.trial_start(member=member, plan=plan, consent=True)
    assert membership.on_trial and membership.auto_renew and (membership.ends_at - membership.started_at) == 7 * DAY
    assert _points(member) == 0
    with pytest.raises(LoyaltyError, match="trial_used"):
        services.trial_start(member=member, plan=plan, consent=True)


def _earn(member, amount="100.00", number="A1"):
    return ledger.order_earn(
        member=member, store=StoreFactory(code="s1"), number=number, amount=Decimal(amount), occurred_at=timezone.now()
    )


def test_paid_plan_multiplies_points_earned(paid, member):
    result = _earn(member)
    earn = result.entries["points"]
    assert earn.pending_amount == 200  # base 100 x PLUS 2


@pytest.mark.parametrize(("combine", "expected"), [("best", 300), ("multiply", 600)])
def test_tier_and_plan_multipliers_combine_by_the_setting(paid, member, settings, combine, expected):
    from loyalty.models import Benefit, MemberTier, Tier

    settings.PROGRAMME_MULTIPLIERS = combine
    gold = Tier.objects.create(code="gold", name="Gold", rank=5)
    Benefit.objects.create(tier=gold, kind=Benefit.Kind.EARN_MULTIPLIER, value=Decimal("3"), title="Gold 3x")
    MemberTier.objects.update_or_create(
        member=member, defaults={"tier": gold, "started_at": timezone.now(), "review_at": timezone.now() + 365 * DAY}
    )
    assert _earn(member).entries["points"].pending_amount == expected


def test_no_multiplier_after_the_membership_ended(paid, member, refunder):
    services.plan_order_refund(order=paid, actor=refunder, reason="x")
    assert _earn(member).entries["points"].pending_amount == 100
