"""Paid membership state changes: buy or renew a plan, take a payment notification, turn
auto-renew on or off, cancel, refund inside the cool-off period.

Rules every function here keeps:

- A membership becomes active, or longer, only when a payment notification verified by
  its adapter says the order was paid (:func:`payment_notification_handle`), once per
  payment id: a repeated notification returns the paid order and changes nothing.
- Locks in one order everywhere: the plan order row, then the membership row, then the
  member's ledger accounts (inside ``loyalty.services``), then coupons.
- Points go through ``loyalty.services``, coupons through ``rewards.services``, notices
  through ``members.notifications.notices_enqueue``; refusals are ``LoyaltyError``.
- Slow calls to the payment platform happen outside transactions.
"""

import datetime as dt
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from core.cleaners import clean_reason
from core.errors import LoyaltyError
from loyalty import services as ledger
from loyalty.models import Currency, texts_in_languages
from loyalty.policies import ExpiryPolicy
from members.models import Member, Notification
from members.notifications import Notice, notices_enqueue
from members.scoping import require_staff
from rewards import services as coupons
from rewards.models import Coupon

from .models import Membership, Plan, PlanGrant, PlanOrder
from .payments import FakeAdapter, PaymentNotice, get_adapter

PERIOD_MONTHS = {Plan.Period.MONTH: 1, Plan.Period.QUARTER: 3, Plan.Period.YEAR: 12}
REFUND_PERMISSION = "programme.refund_planorder"


@dataclass(frozen=True)
class Checkout:
    """A plan order waiting for payment and what the member's client needs to pay it."""

    order: PlanOrder
    payment: dict


def period_end(start: dt.datetime, period: str) -> dt.datetime:
    """The end of a paid period starting at ``start``: 1, 3 or 12 calendar months later."""
    return ExpiryPolicy("rolling", PERIOD_MONTHS[period]).expires_at(start)


def _order_number() -> str:
    return f"PM{timezone.localtime():%Y%m%d}{secrets.token_hex(5).upper()}"


def _refuse_inactive(member: Member) -> None:
    if member.status != Member.Status.ACTIVE or member.erased_at is not None:
        raise LoyaltyError(
            "member_inactive", _("This member is not active and cannot buy a paid membership. Ask our staff.")
        )


def _notice(member_id: int, key: str, title, body, params: dict) -> Notice:
    return Notice(
        member_id=member_id,
        kind=Notification.Kind.OTHER,
        title=title,
        body=body,
        params=params,
        dedupe_key=f"programme:{key}",
        data={"programme": key.split(":")[0]},
    )


# --- buying -----------------------------------------------------------------------------------


def plan_purchase_start(
    *,
    member: Member,
    plan: Plan,
    auto_renew: bool = False,
    consent: bool = False,
    adapter: str | None = None,
    now: dt.datetime | None = None,
) -> Checkout:
    """Open an order for ``plan`` (a first purchase, or a renewal by hand while the same
    plan is active) and ask the payment adapter how the member pays it. Nothing is
    active until the payment's notification comes (:func:`payment_notification_handle`).

    An order of the same plan still waiting for payment is reused. Refuses: a plan not on
    sale (``plan_unavailable``), a member who is not active (``member_inactive``), a
    different plan while one is active (``plan_change_unsupported``), auto-renew on a
    plan without it (``auto_renew_unavailable``) or without the member's consent
    (``consent_required``), an unknown adapter (``payment_adapter_unknown``); and what
    the adapter refuses (``payments_not_configured`` before anything is written,
    ``payment_unavailable``, ``wechat_openid_required``).
    """
    now = now or timezone.now()
    payment = get_adapter(adapter)
    payment.check_ready()
    if not plan.is_active:
        raise LoyaltyError("plan_unavailable", _("The plan “%(plan)s” is not on sale.") % {"plan": plan.name})
    _refuse_inactive(member)
    if auto_renew and not plan.auto_renew:
        raise LoyaltyError("auto_renew_unavailable", _("This plan does not renew automatically."))
    if auto_renew and not consent:
        raise LoyaltyError(
            "consent_required", _("Agree to be charged for each new period to turn on automatic renewal.")
        )
    with transaction.atomic():
        Member.objects.select_for_update().filter(pk=member.pk).first()  # one open order at a time
        current = Membership.objects.filter(member=member).select_related("plan").first()
        if current is not None and current.is_active_at(now) and current.plan_id != plan.pk:
            raise LoyaltyError(
                "plan_change_unsupported",
                _("You have %(plan)s until %(date)s. A different plan can be bought when it ends.")
                % {"plan": current.plan.name, "date": f"{timezone.localtime(current.ends_at):%Y-%m-%d}"},
            )
        kind = PlanOrder.Kind.RENEWAL if current is not None and current.is_active_at(now) else PlanOrder.Kind.PURCHASE
        order = PlanOrder.objects.filter(
            member=member, plan=plan, status=PlanOrder.Status.PENDING, adapter=payment.name, renews_from=None
        ).first()
        if order is None:
            order = PlanOrder(member=member, plan=plan, number=_order_number(), amount=plan.price, adapter=payment.name)
        order.kind = kind
        order.amount = plan.price
        order.auto_renew = auto_renew
        order.auto_renew_consent_at = now if auto_renew else None
        order.save()
    return Checkout(order=order, payment=payment.start(order))


def trial_start(*, member: Member, plan: Plan, consent: bool, now: dt.datetime | None = None) -> Membership:
    """Start a plan's free trial: active at once, no payment, charged at its end by the
    renewal job. Needs auto-renew consent (that is what a trial is).

    Refuses: a plan without a trial or not on sale (``trial_unavailable``), a member who
    is not active, who has or had a paid membership (``trial_used``), no consent
    (``consent_required``).
    """
    now = now or timezone.now()
    if not plan.is_active or plan.trial_days == 0 or not plan.auto_renew:
        raise LoyaltyError("trial_unavailable", _("The plan “%(plan)s” has no free trial.") % {"plan": plan.name})
    _refuse_inactive(member)
    if not consent:
        raise LoyaltyError("consent_required", _("Agree to be charged when the trial ends to start the free trial."))
    with transaction.atomic():
        Member.objects.select_for_update().filter(pk=member.pk).first()
        if Membership.objects.filter(member=member).exists() or PlanOrder.objects.filter(member=member).exists():
            raise LoyaltyError("trial_used", _("The free trial is for members who never had a paid membership."))
        membership = Membership.objects.create(
            member=member,
            plan=plan,
            started_at=now,
            ends_at=now + dt.timedelta(days=plan.trial_days),
            on_trial=True,
            auto_renew=True,
            auto_renew_consent_at=now,
        )
        _monthly_coupons_give(membership, order=None, now=now)
        notices_enqueue(
            [
                _notice(
                    member.pk,
                    f"trial:{membership.pk}",
                    gettext_lazy("Your %(plan)s trial has started"),
                    gettext_lazy("Enjoy %(plan)s until %(date)s. We charge %(price)s yuan then, unless you cancel."),
                    {
                        "plan": plan.name,
                        "date": f"{timezone.localtime(membership.ends_at):%Y-%m-%d}",
                        "price": plan.price,
                    },
                )
            ],
            now=now,
        )
    return membership


# --- payment ----------------------------------------------------------------------------------


def payment_notification_handle(
    *, adapter: str, headers: Mapping[str, str], body: bytes, now: dt.datetime | None = None
) -> PlanOrder:
    """Verify a payment platform's notification and record what it says.

    Refuses, changing nothing: a notification whose signature, age or body does not verify
    (``payment_signature_invalid``), and what :func:`plan_order_paid` refuses.
    """
    notice = get_adapter(adapter).verify(headers=headers, body=body)
    if not notice.paid:
        return plan_order_failed(order_number=notice.order_number, reason=_("The payment was not completed."))
    return plan_order_paid(notice=notice, adapter=adapter, now=now)


@transaction.atomic
def plan_order_failed(*, order_number: str, reason: str) -> PlanOrder:
    """Mark a waiting order failed (its payment did not go through); a paid one stays paid."""
    order = _locked_order(order_number)
    if order.status == PlanOrder.Status.PENDING:
        order.status = PlanOrder.Status.FAILED
        order.failure = reason[:200]
        order.save(update_fields=["status", "failure"])
    return order


def _locked_order(number: str) -> PlanOrder:
    order = PlanOrder.objects.select_for_update().filter(number=number).first()
    if order is None:
        raise LoyaltyError(
            "plan_order_not_found", _("No paid membership order has the number “%(n)s”.") % {"n": number}
        )
    return order


@transaction.atomic
def plan_order_paid(*, notice: PaymentNotice, adapter: str, now: dt.datetime | None = None) -> PlanOrder:
    """Activate or extend the membership an order paid for, once per payment id.

    A new membership starts now; one that is active (a trial, or the same plan) is
    extended from its end. The first purchase gives the plan's welcome points; the
    month's coupon pack is given if not given yet. The same payment again returns the
    order with ``replayed`` set and changes nothing. Refuses: an unknown order
    (``plan_order_not_found``), another adapter's order, a payment id already recorded
    for another order or a paid order with another payment id (``payment_conflict``),
    an amount other than the order's (``payment_amount_mismatch``), a cancelled order
    (``plan_order_cancelled``).
    """
    now = now or timezone.now()
    order = _locked_order(notice.order_number)
    if order.payment_id is not None:
        if order.payment_id != notice.payment_id:
            raise LoyaltyError("payment_conflict", _("This order was paid by another payment already."))
        order.replayed = True
        return order
    if order.adapter != adapter or PlanOrder.objects.filter(payment_id=notice.payment_id).exists():
        raise LoyaltyError("payment_conflict", _("This payment does not belong to this order."))
    if notice.amount != order.amount:
        raise LoyaltyError(
            "payment_amount_mismatch",
            _("The payment of %(paid)s yuan does not match the order's %(amount)s yuan.")
            % {"paid": notice.amount, "amount": order.amount},
        )
    if order.status == PlanOrder.Status.CANCELLED:
        raise LoyaltyError("plan_order_cancelled", _("This order was cancelled; the payment should be refunded."))

    plan = order.plan
    membership = Membership.objects.select_for_update().filter(member_id=order.member_id).first()
    extends = membership is not None and membership.is_active_at(now) and membership.plan_id == plan.pk
    start = membership.ends_at if extends else now
    end = period_end(start, plan.period)
    if membership is None:
        membership = Membership(member_id=order.member_id, started_at=now)
    elif not extends:
        membership.started_at = now
        membership.cancelled_at = None
    membership.plan = plan
    membership.status = Membership.Status.ACTIVE
    membership.ends_at = end
    membership.on_trial = False
    membership.ended_at = None
    if order.kind == PlanOrder.Kind.PURCHASE or order.auto_renew:
        membership.auto_renew = order.auto_renew
        membership.auto_renew_consent_at = order.auto_renew_consent_at if order.auto_renew else None
    membership.save()

    order.status = PlanOrder.Status.PAID
    order.payment_id = notice.payment_id
    order.paid_at = now
    order.period_start, order.period_end = start, end
    order.failure = ""
    order.save()

    if order.kind == PlanOrder.Kind.PURCHASE and plan.welcome_points > 0:
        entry = ledger.points_award(
            member=order.member,
            currency=Currency.POINTS,
            amount=plan.welcome_points,
            reason=_("Welcome gift of %(plan)s") % {"plan": plan.name},
            idempotency_key=f"programme:welcome:{order.pk}",
            detail={"plan_order": order.number},
            now=now,
        )
        PlanGrant.objects.create(
            order=order,
            member_id=order.member_id,
            kind=PlanGrant.Kind.WELCOME_POINTS,
            period=f"#{order.pk}",
            entry=entry,
            points=plan.welcome_points,
            created_at=now,
        )
    _monthly_coupons_give(membership, order=order, now=now)
    title = gettext_lazy("Welcome to %(plan)s") if not extends else gettext_lazy("%(plan)s renewed")
    notices_enqueue(
        [
            _notice(
                order.member_id,
                f"paid:{order.pk}",
                title,
                gettext_lazy("Paid %(amount)s yuan. Your %(plan)s benefits last until %(date)s."),
                {"plan": plan.name, "amount": order.amount, "date": f"{timezone.localtime(end):%Y-%m-%d}"},
            )
        ],
        now=now,
    )
    return order


def _month(moment: dt.datetime) -> str:
    return f"{timezone.localtime(moment):%Y-%m}"


def _monthly_coupons_give(membership: Membership, *, order: PlanOrder | None, now: dt.datetime) -> int:
    """This month's coupon pack of an active membership, unless given already; returns how
    many coupons were new. The coupons last to the month's end (or the membership's)."""
    plan = membership.plan
    if plan.monthly_coupon_count == 0 or plan.monthly_coupon_value <= 0:
        return 0
    order = order or PlanOrder.objects.filter(member_id=membership.member_id, status=PlanOrder.Status.PAID).first()
    if order is None:
        return 0  # a trial's pack waits for the first payment
    period = _month(now)
    local = timezone.localtime(now)
    month_end = (local.replace(day=1) + dt.timedelta(days=32)).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    expires = min(month_end, membership.ends_at)
    if expires <= now:
        return 0
    given = set(
        PlanGrant.objects.filter(
            member_id=membership.member_id, kind=PlanGrant.Kind.MONTHLY_COUPON, period=period
        ).values_list("seq", flat=True)
    )
    new = 0
    for seq in range(plan.monthly_coupon_count):
        if seq in given:
            continue
        try:
            with transaction.atomic():
                grant = PlanGrant.objects.create(
                    order=order,
                    member_id=membership.member_id,
                    kind=PlanGrant.Kind.MONTHLY_COUPON,
                    period=period,
                    seq=seq,
                    created_at=now,
                )
        except IntegrityError:
            continue  # another run gave it
        names = texts_in_languages(plan, "name")
        grant.coupon = coupons.coupon_issue(
            member=membership.member,
            title=coupons.texts_by_language(
                lambda code, names=names: _("%(plan)s monthly coupon") % {"plan": names[code]}
            ),
            kind=plan.monthly_coupon_kind,
            value=plan.monthly_coupon_value,
            expires_at=expires,
            source=Coupon.Source.PROGRAMME,
            description=coupons.texts_by_language(
                lambda code, names=names: _("Part of your %(plan)s monthly coupon pack.") % {"plan": names[code]}
            ),
            now=now,
        )
        grant.save(update_fields=["coupon"])
        new += 1
    return new


# --- auto-renew and cancellation -----------------------------------------------------------------


def _active_membership_locked(member: Member, now: dt.datetime) -> Membership:
    membership = Membership.objects.select_for_update().select_related("plan").filter(member=member).first()
    if membership is None or not membership.is_active_at(now):
        raise LoyaltyError("membership_not_found", _("You have no active paid membership."))
    return membership


@transaction.atomic
def membership_auto_renew_set(
    *, member: Member, on: bool, consent: bool = False, now: dt.datetime | None = None
) -> Membership:
    """Turn automatic renewal on (with the member's consent, recorded with its time) or off.

    Refuses: no active membership (``membership_not_found``), a plan that does not renew
    (``auto_renew_unavailable``), turning it on without consent (``consent_required``).
    """
    now = now or timezone.now()
    membership = _active_membership_locked(member, now)
    if on:
        if not membership.plan.auto_renew:
            raise LoyaltyError("auto_renew_unavailable", _("This plan does not renew automatically."))
        if not consent:
            raise LoyaltyError(
                "consent_required", _("Agree to be charged for each new period to turn on automatic renewal.")
            )
        membership.auto_renew, membership.auto_renew_consent_at, membership.cancelled_at = True, now, None
    else:
        membership.auto_renew, membership.cancelled_at = False, now
    membership.save(update_fields=["auto_renew", "auto_renew_consent_at", "cancelled_at"])
    return membership


@transaction.atomic
def membership_cancel(*, member: Member, now: dt.datetime | None = None) -> Membership:
    """Cancel: no further renewal; the benefits last to the end of the period paid for (a
    trial ends with no charge). A renewal order still waiting for payment is cancelled.

    Refuses: no active membership (``membership_not_found``), already cancelled
    (``membership_cancelled``).
    """
    now = now or timezone.now()
    membership = _active_membership_locked(member, now)
    if membership.cancelled_at is not None and not membership.auto_renew:
        raise LoyaltyError(
            "membership_cancelled",
            _("Your membership is cancelled already; it ends on %(date)s.")
            % {"date": f"{timezone.localtime(membership.ends_at):%Y-%m-%d}"},
        )
    membership.auto_renew, membership.cancelled_at = False, now
    membership.save(update_fields=["auto_renew", "cancelled_at"])
    PlanOrder.objects.filter(member=member, status=PlanOrder.Status.PENDING).update(status=PlanOrder.Status.CANCELLED)
    return membership


# --- refund ---------------------------------------------------------------------------------------


def _refund_check(order: PlanOrder, now: dt.datetime) -> None:
    if order.status == PlanOrder.Status.REFUNDED:
        raise LoyaltyError("plan_order_refunded", _("This order was refunded already."))
    if order.status != PlanOrder.Status.PAID:
        raise LoyaltyError("plan_order_not_paid", _("Only a paid order can be refunded."))
    if now > order.paid_at + dt.timedelta(days=settings.PROGRAMME_COOL_OFF_DAYS):
        raise LoyaltyError(
            "cool_off_over",
            _("The %(days)s days in which a paid membership can be refunded are over.")
            % {"days": settings.PROGRAMME_COOL_OFF_DAYS},
        )
    latest = (
        PlanOrder.objects.filter(member_id=order.member_id, status=PlanOrder.Status.PAID)
        .order_by("-paid_at", "-id")
        .values_list("pk", flat=True)
        .first()
    )
    if latest != order.pk:
        raise LoyaltyError("refund_not_latest", _("Refund the latest paid order of this membership first."))


def plan_order_refund(
    *, order: PlanOrder, actor: AbstractBaseUser, reason: str, now: dt.datetime | None = None
) -> PlanOrder:
    """Refund a paid order inside the cool-off period (``PROGRAMME_COOL_OFF_DAYS`` after its
    payment): the money back through its adapter, the membership ended at once, the
    unused coupons it gave voided, its welcome points taken back (what is left of them;
    spent ones are recorded as not recovered).

    Refuses, changing nothing: an actor without the "refund paid membership orders"
    permission or outside the member's stores, no reason, an order not paid
    (``plan_order_not_paid``) or refunded already (``plan_order_refunded``), after the
    cool-off period (``cool_off_over``), an order other than the membership's latest
    (``refund_not_latest``), the platform refusing (``payment_refund_failed``,
    ``payment_unavailable``).
    """
    now = now or timezone.now()
    reason = clean_reason(reason, missing=_("Say why the order is refunded: a reason is required."))
    require_staff(actor, REFUND_PERMISSION, members=[order.member_id])
    order = PlanOrder.objects.get(pk=order.pk)
    _refund_check(order, now)
    refund_id = get_adapter(order.adapter).refund(order)  # outside the transaction; idempotent by number
    with transaction.atomic():
        order = _locked_order(order.number)
        _refund_check(order, now)
        membership = Membership.objects.select_for_update().get(member_id=order.member_id)
        membership.status = Membership.Status.REFUNDED
        membership.ends_at = min(membership.ends_at, now)
        membership.ended_at = now
        membership.auto_renew = False
        membership.save(update_fields=["status", "ends_at", "ended_at", "auto_renew"])

        for grant in PlanGrant.objects.filter(order=order, kind=PlanGrant.Kind.WELCOME_POINTS).select_related("entry"):
            took = ledger.points_take_back(
                member=order.member,
                amount=grant.points,
                reason=_("%(plan)s refunded") % {"plan": order.plan.name},
                idempotency_key=f"programme:take-back:{grant.pk}",
                reverses=grant.entry,
                now=now,
            )
            order.points_taken_back += took.taken
            order.points_not_recovered += took.not_recovered
        voided = 0
        for coupon in Coupon.objects.filter(
            pk__in=PlanGrant.objects.filter(order=order, coupon__isnull=False).values("coupon_id"),
            status=Coupon.Status.ISSUED,
        ):
            coupons.coupon_void(coupon=coupon, actor=actor, reason=reason, now=now)
            voided += 1
        order.status = PlanOrder.Status.REFUNDED
        order.refunded_at, order.refund_id, order.refund_reason, order.refunded_by = now, refund_id, reason, actor
        order.coupons_voided = voided
        order.save()
        notices_enqueue(
            [
                _notice(
                    order.member_id,
                    f"refunded:{order.pk}",
                    gettext_lazy("%(plan)s refunded"),
                    gettext_lazy("We refunded %(amount)s yuan. Your %(plan)s membership has ended."),
                    {"plan": order.plan.name, "amount": order.amount},
                )
            ],
            now=now,
        )
    return order


def fake_payment_complete(*, order: PlanOrder, member: Member, now: dt.datetime | None = None) -> PlanOrder:
    """Pay ``order`` with the fake adapter (development and the demo): its signed
    notification goes through :func:`payment_notification_handle` like a real one.

    Refuses another member's order (``plan_order_not_found``), an order of a real adapter
    and any order in production (``payment_adapter_unknown``: only the fake one pays
    without money, and never in production).
    """
    if order.member_id != member.pk:
        raise LoyaltyError(
            "plan_order_not_found", _("No paid membership order has the number “%(n)s”.") % {"n": order.number}
        )
    adapter = get_adapter(order.adapter)
    if not isinstance(adapter, FakeAdapter) or getattr(settings, "PRODUCTION", False):
        raise LoyaltyError(
            "payment_adapter_unknown", _("This order is paid through %(name)s, not here.") % {"name": order.adapter}
        )
    signed = adapter.sign(order_number=order.number, payment_id=f"fake-{order.number}", amount=order.amount)
    return payment_notification_handle(adapter=adapter.name, headers=signed.headers, body=signed.body, now=now)
