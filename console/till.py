"""The till screen's reads and its two one-step actions (docs/till.md).

- ``till_lookup``: what a clerk typed or scanned (a phone number, a member number or a
  coupon code) to the member and, for a code, the coupon. Membership is brand-wide, so an
  exact match finds any member; the card shows only what the till needs.
- ``till_order_record`` and ``till_coupon_verify``: the action and its audit row
  (``members.StaffAction``) in one transaction, always at one of the staff user's stores.

Both refuse with ``LoyaltyError`` and write nothing when they refuse.
"""

import datetime as dt
import re
from dataclasses import dataclass, field
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from core.errors import LoyaltyError
from loyalty.checkout import CheckoutBenefits, checkout_benefits, order_checkout, points_value
from loyalty.models import Currency, MemberTier, Order
from loyalty.selectors import Balance, member_balances
from loyalty.services import EarnResult, RefundResult, order_earn, order_refund
from members.member_code import looks_like_member_code, member_code_verify
from members.models import Member, StaffAction, Store
from members.phone import normalize_phone
from members.scoping import require_staff, staff_stores
from members.services import is_valid_member_number, staff_action_record
from rewards.models import CODE_ALPHABET, CODE_LENGTH, Coupon, normalise_code
from rewards.services import coupon_verify

# The card lists at most this many usable coupons (soonest to expire first).
COUPONS_SHOWN = 10
THOUSANDS = re.compile(r"\d{1,3}(,\d{3})+(\.\d+)?")
# A till types at most this much; anything longer is not a phone, number or code.
QUERY_MAX = 40


@dataclass
class TillCard:
    """What the till shows of a member: enough to serve them, no more."""

    member: Member
    tier: str
    points: Balance
    growth: Balance
    coupons: list[Coupon] = field(default_factory=list)
    coupons_more: bool = False
    # The coupon whose code was typed, if the lookup was by code (any status).
    coupon: Coupon | None = None
    # Member discount and free shipping the checkout applies (tier and paid plan).
    benefits: CheckoutBenefits | None = None

    @property
    def masked_phone(self) -> str:
        return mask_phone(self.member.phone)

    @property
    def is_active(self) -> bool:
        return self.member.status == Member.Status.ACTIVE


@dataclass
class TillVerifyResult:
    coupon: Coupon
    replayed: bool = False


def _plain(value) -> str:
    """Typed or scanned text without control characters (a scanner's stray ones, or a NUL
    that the database would refuse), trimmed."""
    return "".join(ch for ch in str(value or "") if ch.isprintable()).strip()


def mask_phone(phone: str) -> str:
    """``+8613800138000`` -> ``138****8000``: enough to confirm with the customer, no more."""
    national = phone[3:] if phone.startswith("+86") else phone
    if len(national) < 8:
        return national[:2] + "*" * max(len(national) - 2, 0)
    return national[:3] + "****" + national[-4:]


def till_stores(user: AbstractBaseUser) -> QuerySet[Store]:
    """The active stores ``user`` may record orders and verify coupons at, by code."""
    stores = Store.objects.filter(is_active=True).order_by("code")
    scope = staff_stores(user)
    return stores if scope is None else stores.filter(pk__in=scope)


def _require_store(user: AbstractBaseUser, store: Store | None) -> Store:
    if store is None or not till_stores(user).filter(pk=store.pk).exists():
        raise LoyaltyError(
            "store_forbidden",
            _("You cannot record orders or verify coupons at this store; choose one of your stores."),
        )
    return store


def _members() -> QuerySet[Member]:
    return Member.objects.filter(erased_at__isnull=True).select_related("tier_state__tier", "home_store")


def _not_found(query: str) -> LoyaltyError:
    return LoyaltyError(
        "till_not_found",
        _("Nothing matches “%(query)s”. Enter a phone number, a member number or a coupon code.") % {"query": query},
    )


def _looks_like_code(compact: str) -> bool:
    return len(compact) == CODE_LENGTH and all(ch in CODE_ALPHABET for ch in compact)


def till_card(member: Member, *, coupon: Coupon | None = None, now: dt.datetime | None = None) -> TillCard:
    """The card of ``member`` (loaded through ``_members()``): a fixed number of queries."""
    now = now or timezone.now()
    balances = member_balances(member, now=now)
    usable = list(
        Coupon.objects.filter(
            member=member, status=Coupon.Status.ISSUED, valid_from__lte=now, expires_at__gt=now
        ).order_by("expires_at", "id")[: COUPONS_SHOWN + 1]
    )
    try:
        tier = member.tier_state.tier.name
    except MemberTier.DoesNotExist:
        tier = ""
    return TillCard(
        member=member,
        tier=tier,
        points=balances[Currency.POINTS],
        growth=balances[Currency.GROWTH],
        coupons=usable[:COUPONS_SHOWN],
        coupons_more=len(usable) > COUPONS_SHOWN,
        coupon=coupon,
        benefits=checkout_benefits(member, now=now),
    )


def till_lookup(*, query: str, now: dt.datetime | None = None) -> TillCard:
    """The member (and coupon) for what was typed or scanned at the till.

    Tries, in this order: the member card's rotating code (``members.member_code``;
    ``member_code_expired`` or ``member_code_invalid`` when it is stale or altered), a
    member number (10 digits with a valid check digit), a coupon code (12 letters and
    digits of the code alphabet; spaces and dashes ignored), a phone
    number in any spelling ``normalize_phone`` accepts. Refuses empty or overlong input
    (``till_query_invalid``) and input that matches nothing (``till_not_found``); erased
    members are not found.
    """
    text = _plain(query)
    if not text or len(text) > QUERY_MAX:
        raise LoyaltyError(
            "till_query_invalid", _("Enter a phone number, a member number or a coupon code, or scan one.")
        )
    compact = "".join(text.split()).replace("-", "")
    if looks_like_member_code(compact):
        # The card's rotating code: refused when expired or altered, never read as a phone.
        member = _members().filter(member_number=member_code_verify(compact, now=now)).first()
        if member is None:
            raise _not_found(text)
        return till_card(member, now=now)
    if compact.isdigit() and is_valid_member_number(compact):
        member = _members().filter(member_number=compact).first()
        if member is not None:
            return till_card(member, now=now)
    if _looks_like_code(compact.upper()):
        coupon = Coupon.objects.select_related("used_store").filter(code=normalise_code(compact)).first()
        if coupon is not None:
            member = _members().filter(pk=coupon.member_id).first()
            if member is not None:
                return till_card(member, coupon=coupon, now=now)
    try:
        phone = normalize_phone(text)
    except LoyaltyError:
        raise _not_found(text) from None
    member = _members().filter(phone=phone).first()
    if member is None:
        raise _not_found(text)
    return till_card(member, now=now)


def _till_member(member_number: str) -> Member:
    member_number = _plain(member_number)
    member = _members().filter(member_number=member_number).first() if is_valid_member_number(member_number) else None
    if member is None:
        raise LoyaltyError("member_not_found", _("No member has the number “%(number)s”.") % {"number": member_number})
    return member


def _amount(raw: str | Decimal) -> Decimal | str:
    """Refuse an amount of zero or less here; ``order_earn`` refuses what is not money.

    A comma is read only as a thousands separator in its place (1,280.50); anything else
    with a comma (12,50 meant as 12.50, 1,,2) is refused rather than read as 1250 or 12.
    """
    text = str(raw).strip().lstrip("¥")
    if "," in text:
        if not THOUSANDS.fullmatch(text):
            return raw  # order_earn names the bad value in its message
        text = text.replace(",", "")
    try:
        value = Decimal(text)
    except ArithmeticError:
        return raw  # order_earn names the bad value in its message
    if value.is_finite() and value <= 0:
        raise LoyaltyError("invalid_amount", _("Enter the amount paid for the order, more than 0 yuan."))
    return value if value.is_finite() else raw


def _points(raw) -> int:
    """The points typed to pay with: 0 when left empty; a clear refusal for anything else
    than a whole number (thousands separators allowed)."""
    text = _plain(raw).replace(",", "")
    if not text:
        return 0
    if not text.isdigit():
        raise LoyaltyError("invalid_amount", _("Enter the points to pay with as a whole number, or leave it empty."))
    return int(text)


def _points_refusal(member: Member, asked: int, most: int) -> LoyaltyError:
    """The till's words for points it cannot take: not enough of them, or more than the
    checkout lets pay for this order (both with thousands separators)."""
    balance = member_balances(member)[Currency.POINTS].balance
    if asked > balance:
        message = _("Not enough points: %(balance)s available, %(asked)s asked for.") % {
            "balance": f"{balance:,}",
            "asked": f"{asked:,}",
        }
    else:
        message = _("At most %(max)s points can pay for this order (%(value)s).") % {
            "max": f"{most:,}",
            "value": f"¥{points_value(most):,.2f}",
        }
    return LoyaltyError("points_over_limit", message, max_points=most, balance=balance)


@transaction.atomic
def till_order_record(
    *,
    actor: AbstractBaseUser,
    member_number: str,
    store: Store | None,
    number: str,
    amount: str | Decimal,
    points: str | int = "",
    now: dt.datetime | None = None,
) -> EarnResult:
    """Record an order at the till and earn for it (``loyalty.services.order_earn``), with
    its ``RECORD_ORDER`` audit row in the same transaction. With ``points``, the member
    pays that many points towards it first (积分抵扣, ``loyalty.checkout.order_checkout``,
    the service behind the API's checkout): the part paid with points earns nothing.
    Orders from the till are in the ``store`` channel (``Order.Channel.STORE``).

    Refuses a store outside the staff user's stores (``store_forbidden``), an unknown
    member, an amount of zero or less, points that are not a whole number or more than
    the checkout rules allow, and whatever ``order_earn`` refuses (frozen member, bad
    amount, the order number already used here for a different order). The same order
    sent again (a double submit) returns the first result, marked replayed, and writes
    nothing, not even a second audit row.
    """
    store = _require_store(actor, store)
    member = _till_member(member_number)
    paid_points = _points(points)
    number, amount = _plain(number), _amount(_plain(amount))
    if paid_points:
        try:
            result, _value = order_checkout(
                member=member,
                store=store,
                number=number,
                amount=amount,
                points=paid_points,
                now=now,
                channel=Order.Channel.STORE,
            )
        except LoyaltyError as error:
            if error.code != "points_over_limit":
                raise
            raise _points_refusal(member, paid_points, error.extra.get("max_points", 0)) from None
    else:
        result = order_earn(
            member=member, store=store, number=number, amount=amount, now=now, channel=Order.Channel.STORE
        )
    if not result.replayed:
        order = result.order
        staff_action_record(
            actor=actor,
            action=StaffAction.Action.RECORD_ORDER,
            member=member,
            detail={
                "order": order.pk,
                "number": order.number,
                "store": store.code,
                "amount": str(order.amount),
                "points_paid": paid_points,
                "earned": {c: e.amount + e.pending_amount for c, e in result.entries.items()},
            },
        )
    return result


TILL_ORDERS_SHOWN = 5


def till_recent_orders(member: Member, store: Store | None) -> list[Order]:
    """The member's latest orders at ``store`` that still have something to refund."""
    if store is None:
        return []
    orders = list(
        Order.objects.filter(member=member, store=store)
        .exclude(status=Order.Status.REFUNDED)
        .order_by("-occurred_at", "-id")[:TILL_ORDERS_SHOWN]
    )
    for order in orders:
        order.left = order.amount - order.refunded_amount  # what a full refund gives back now
    return orders


def till_order_refund(
    *,
    actor: AbstractBaseUser,
    store: Store | None,
    order_number: str,
    amount: str | Decimal = "",
    submission: str,
    reason: str = "",
    now: dt.datetime | None = None,
) -> RefundResult:
    """Refund an order taken at one of the staff user's stores, in full (``amount`` empty)
    or in part (``loyalty.services.order_refund``: points and growth taken back in
    proportion, any shortfall recorded as the member's debt).

    The refund's number is the form's one-time ``submission`` token, so the same form sent
    twice refunds once. Refuses a staff user without the refund permission (the store
    manager's ``api.pos_refund``; a clerk cannot refund), a store outside their stores, an
    unknown order, and whatever ``order_refund`` refuses (more than is left to refund).
    """
    require_staff(
        actor,
        "api.pos_refund",
        refusal=("permission_denied", _("Your role cannot refund orders; ask a store manager.")),
    )
    store = _require_store(actor, store)
    order_number = _plain(order_number)
    order = Order.objects.filter(store=store, number=order_number).first()
    if order is None:
        raise LoyaltyError(
            "order_not_found",
            _("No order %(number)s at %(store)s.") % {"number": order_number, "store": store.name},
        )
    typed = _plain(amount)
    refundable = order.amount - order.refunded_amount
    value = refundable if not typed else _amount(typed)
    if isinstance(value, Decimal) and value > refundable:
        # order_refund refuses it too (under the lock); the till says it with the yuan sign.
        raise LoyaltyError(
            "refund_too_large",
            _("At most %(refundable)s is left to refund on order %(number)s; nothing was refunded.")
            % {"refundable": f"¥{refundable:,.2f}", "number": order.number},
        )
    token = re.sub(r"[^0-9A-Za-z]", "", _plain(submission))[:32]
    if not token:
        raise LoyaltyError("invalid_request", _("The form has expired; look the member up again."))
    return order_refund(order=order, amount=value, number=f"TILL-{token}", reason=_plain(reason), now=now)


def till_coupon_verify(
    *,
    actor: AbstractBaseUser,
    code: str,
    store: Store | None,
    submission: str = "",
    now: dt.datetime | None = None,
) -> TillVerifyResult:
    """Verify (核销) a coupon at the till (``rewards.services.coupon_verify``), with its
    ``VERIFY_COUPON`` audit row in the same transaction.

    ``submission`` is the till form's one-time token: the same form sent twice (a double
    click, a reload) returns the first verification, marked replayed, instead of
    "already used"; scanning the coupon again on a new form is refused as used.
    Refuses a store outside the staff user's stores (``store_forbidden``), a coupon of a
    frozen or closed member (``member_inactive``), and whatever ``coupon_verify``
    refuses (unknown, used, void, expired, not yet valid).
    """
    store = _require_store(actor, store)
    submission, code = _plain(submission)[:64], _plain(code)
    try:
        with transaction.atomic():
            coupon = coupon_verify(code=code, store=store, actor=actor, now=now)
            member = coupon.member
            if member.status != Member.Status.ACTIVE:
                raise LoyaltyError(
                    "member_inactive",
                    _("This member is %(status)s, so their coupons cannot be used. Reactivate the member first.")
                    % {"status": member.get_status_display()},
                )
            staff_action_record(
                actor=actor,
                action=StaffAction.Action.VERIFY_COUPON,
                member=member,
                detail={
                    "coupon": coupon.pk,
                    "code": coupon.code,
                    "title": coupon.title,
                    "store": store.code,
                    "submission": submission,
                },
            )
    except LoyaltyError as error:
        if error.code != "coupon_used" or not submission:
            raise
        # The coupon row lock made us wait for the first submit of this form; it is committed now.
        first = StaffAction.objects.filter(
            action=StaffAction.Action.VERIFY_COUPON,
            actor_id=actor.pk,
            detail__code=normalise_code(code),
            detail__submission=submission,
        ).first()
        if first is None:
            raise
        coupon = Coupon.objects.select_related("used_store").get(pk=first.detail["coupon"])
        return TillVerifyResult(coupon=coupon, replayed=True)
    return TillVerifyResult(coupon=coupon)
