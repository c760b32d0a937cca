"""Coupon state changes: issue, verify (核销) at a till, void, expire.

Every refusal is a ``loyalty.errors.LoyaltyError`` with a stable code. Verify and void
lock the coupon row first, so two tills verifying one code at once cannot both succeed.
"""

import datetime as dt
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from loyalty.errors import LoyaltyError
from loyalty.models import Benefit
from members.models import Member, Store

from .models import Coupon, new_code, normalise_code


def coupon_issue(
    *,
    member: Member,
    title: str,
    kind: str,
    value: Decimal | int | str,
    expires_at: dt.datetime,
    source: str,
    benefit: Benefit | None = None,
    period: str = "",
    description: str = "",
    valid_from: dt.datetime | None = None,
    now: dt.datetime | None = None,
) -> Coupon:
    """Issue a coupon to ``member`` with a fresh unguessable code.

    A benefit's coupon is issued once per member and period: asking again returns the
    coupon issued first and writes nothing. Refuses a window that ends before it starts.
    """
    now = now or timezone.now()
    valid_from = valid_from or now
    if expires_at <= valid_from:
        raise LoyaltyError("coupon_window_invalid", _("A coupon must expire after it becomes valid."))
    if benefit is not None:
        existing = Coupon.objects.filter(member=member, benefit=benefit, period=period).first()
        if existing is not None:
            return existing
    for _attempt in range(3):
        try:
            # A savepoint: a lost race (same benefit period, or a code collision) leaves
            # the caller's transaction usable.
            with transaction.atomic():
                return Coupon.objects.create(
                    member=member,
                    code=new_code(),
                    title=title[:100],
                    description=description,
                    kind=kind,
                    value=Decimal(value),
                    source=source,
                    benefit=benefit,
                    period=period,
                    issued_at=now,
                    valid_from=valid_from,
                    expires_at=expires_at,
                )
        except IntegrityError:
            if benefit is not None:
                existing = Coupon.objects.filter(member=member, benefit=benefit, period=period).first()
                if existing is not None:
                    return existing
            # Otherwise the random code collided: draw another.
    raise LoyaltyError("coupon_code_exhausted", _("Could not draw a free coupon code; try again."))


def _locked(code: str) -> Coupon:
    try:
        return Coupon.objects.select_for_update().get(code=normalise_code(code))
    except Coupon.DoesNotExist:
        raise LoyaltyError("coupon_not_found", _("No coupon has this code.")) from None


def _refuse_unusable(coupon: Coupon, now: dt.datetime) -> None:
    if coupon.status == Coupon.Status.USED:
        raise LoyaltyError(
            "coupon_used", _("This coupon was already used on %(date)s.") % {"date": timezone.localtime(coupon.used_at)}
        )
    if coupon.status == Coupon.Status.VOID:
        raise LoyaltyError("coupon_void", _("This coupon was voided."))
    if coupon.status == Coupon.Status.EXPIRED or coupon.expires_at <= now:
        raise LoyaltyError("coupon_expired", _("This coupon has expired."))


@transaction.atomic
def coupon_verify(*, code: str, store: Store, staff: AbstractBaseUser, now: dt.datetime | None = None) -> Coupon:
    """Use a coupon at a till: mark it used with the store, the staff member and the time.

    Refuses an unknown code (``coupon_not_found``), a used (``coupon_used``), voided
    (``coupon_void``) or expired (``coupon_expired``) coupon and one not yet valid
    (``coupon_not_yet_valid``). The row is locked first, so of two tills verifying the
    same code at once exactly one succeeds and the other gets ``coupon_used``.
    """
    now = now or timezone.now()
    coupon = _locked(code)
    _refuse_unusable(coupon, now)
    if coupon.valid_from > now:
        raise LoyaltyError(
            "coupon_not_yet_valid",
            _("This coupon is valid from %(date)s.") % {"date": timezone.localtime(coupon.valid_from)},
        )
    coupon.status = Coupon.Status.USED
    coupon.used_at = now
    coupon.used_store = store
    coupon.used_by = staff
    coupon.save(update_fields=["status", "used_at", "used_store", "used_by"])
    return coupon


@transaction.atomic
def coupon_void(*, coupon: Coupon, staff: AbstractBaseUser, reason: str, now: dt.datetime | None = None) -> Coupon:
    """Void an unused coupon, recording who did it, when and why.

    Refuses without a reason (``reason_required``) and a coupon that is used
    (``coupon_used``), already void (``coupon_void``) or expired (``coupon_expired``).
    """
    now = now or timezone.now()
    reason = (reason or "").strip()
    if not reason:
        raise LoyaltyError("reason_required", _("Give a reason for voiding the coupon."))
    coupon = Coupon.objects.select_for_update().get(pk=coupon.pk)
    if coupon.status == Coupon.Status.USED:
        raise LoyaltyError("coupon_used", _("A used coupon cannot be voided."))
    if coupon.status == Coupon.Status.VOID:
        raise LoyaltyError("coupon_void", _("This coupon was voided."))
    if coupon.status == Coupon.Status.EXPIRED:
        raise LoyaltyError("coupon_expired", _("This coupon has expired."))
    coupon.status = Coupon.Status.VOID
    coupon.voided_at = now
    coupon.voided_by = staff
    coupon.void_reason = reason[:200]
    coupon.save(update_fields=["status", "voided_at", "voided_by", "void_reason"])
    return coupon


def coupons_expire(*, now: dt.datetime | None = None, member_ids: tuple[int, int] | None = None) -> int:
    """Mark issued coupons past their expiry as expired; returns how many.

    One ``UPDATE ... WHERE status = 'issued' AND expires_at <= now``, limited to the
    member-id range ``[lo, hi)`` when given (the job's chunks). Safe to rerun: an expired
    coupon no longer matches, and a coupon a till verified meanwhile is no longer issued.
    """
    now = now or timezone.now()
    due = Coupon.objects.filter(status=Coupon.Status.ISSUED, expires_at__lte=now)
    if member_ids is not None:
        due = due.filter(member_id__gte=member_ids[0], member_id__lt=member_ids[1])
    return due.update(status=Coupon.Status.EXPIRED)
