"""Coupon reads shared by member pages, the API and the admin."""

from django.db.models import QuerySet

from members.models import Member

from .models import Coupon, normalise_code


def coupons_for_member(*, member: Member, status: str | None = Coupon.Status.ISSUED) -> QuerySet[Coupon]:
    """A member's coupons, newest first; only the usable (issued) ones unless ``status`` says otherwise."""
    coupons = Coupon.objects.filter(member=member).select_related("benefit", "used_store")
    if status is not None:
        coupons = coupons.filter(status=status)
    return coupons.order_by("-issued_at", "-id")


def coupon_by_code(*, code: str) -> Coupon | None:
    """The coupon with this code (as typed at a till), or None."""
    return Coupon.objects.select_related("member", "used_store").filter(code=normalise_code(code)).first()
