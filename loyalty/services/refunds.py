"""Refunds: taking back what an order earned, giving back points that paid for it.

A refund takes back the proportional points and growth of its order (``orders.order_earn``
wrote them), gives back points that paid part of the order (``spending._give_back``) and
records what it could not take as a debt (``settling._debt_collect`` pays it later).
"""

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from core.cleaners import clean_money, clean_reason, clean_text
from core.errors import LoyaltyError

from ..models import Account, Allocation, Currency, LedgerEntry, Lot, Order, Refund
from ..tiers import tier_review_after_refund
from .entries import (
    _consume,
    _fingerprint,
    _lock_accounts,
    _lock_members_accounts,
    _new_entry,
    _open_lots,
    _save_entry,
)
from .merge import merged_points_forward
from .settling import _settle
from .spending import _give_back


@dataclass
class RefundResult:
    refund: Refund
    # What the refund took back (``refund`` or ``cancel`` entries), by currency.
    entries: dict[str, LedgerEntry] = field(default_factory=dict)
    replayed: bool = False
    # The ``reverse`` entry giving back points that paid part of the order, if any.
    returned: LedgerEntry | None = None


# --- refunds --------------------------------------------------------------------------


def _proportional(earned: int, part: Decimal, whole: Decimal) -> int:
    """Points owed back for ``part`` of ``whole``, rounded down, so refunds add up to the earn."""
    if whole <= 0:
        return 0
    return int(earned * part // whole)


def _lock_for_refund(order: Order) -> tuple[dict[str, Account], Order]:
    """Lock the accounts of every member a refund of ``order`` may write to, in member-id
    order, then the order; return the order's member's accounts and the locked order.

    Those members are the order's and, when a merge moved the order, the merged records
    that hold its entries (and the checkout spend): the refund takes back from and gives
    back into their lots. Locking them all first, in the order merges and transfers use
    (``_lock_members_accounts``), is what keeps a refund and a merge undo from waiting on
    each other's accounts (a deadlock). Should a merge or its undo move the order between the
    read of its member and the lock, the locks are taken again for the new member."""
    member_id = order.member_id
    for _attempt in range(3):
        locked = _lock_members_accounts([member_id, *order.entries.values_list("member_id", flat=True).distinct()])
        order = Order.objects.select_for_update().get(pk=order.pk)
        if order.member_id in locked:
            return locked[order.member_id], order
        member_id = order.member_id
    raise LoyaltyError(
        "order_busy", _("This order is being moved between member records right now. Try the refund again.")
    )


@transaction.atomic
def order_refund(
    *,
    order: Order,
    amount: Decimal | int | str,
    number: str,
    reason: str = "",
    now: dt.datetime | None = None,
) -> RefundResult:
    """Refund all or part of an order and take back the proportional points and growth.

    Inside the return window the pending points are cancelled and the balance is not
    touched. After it, the points are taken back from the balance (the order's own lot
    first), never below zero: what cannot be taken is recorded as a shortfall. Points of
    the order that already expired are not taken a second time from other lots.
    Refuses more than the order has left to refund; a replay (same refund number and
    amount) returns the first result.

    Points that paid part of the order at checkout (``loyalty.checkout.order_checkout``)
    come back proportionally, before the take-back: after refunds totalling R of an order
    of amount A paid partly with p points, ``floor(p × R / A)`` have been given back in
    all (one ``reverse`` entry per refund, see :func:`_give_back`); given back, they pay
    the member's open shortfalls first, oldest first.

    A shortfall becomes the member's debt (``Account.owed``). When the refund takes back
    growth and ``LOYALTY_TIER_REEVALUATE_ON_REFUND`` is on, the tier is reviewed at once
    (``loyalty.tiers.tier_review_after_refund``).
    """
    now = now or timezone.now()
    number = clean_text(number, field_name=_("Refund number"), max_length=64)
    reason = clean_reason(reason, required=False)
    amount = clean_money(amount, field_name=_("Refund amount"))
    request_hash = _fingerprint({"amount": str(amount)})

    accounts, order = _lock_for_refund(order)
    existing = Refund.objects.filter(order=order, number=number).first()
    if existing is not None:
        if existing.request_hash != request_hash:
            raise LoyaltyError(
                "refund_number_taken",
                _("Refund %(number)s of this order was already recorded with a different amount.") % {"number": number},
            )
        result = RefundResult(refund=existing, replayed=True)
        for entry in existing.entries.all():
            if entry.kind == LedgerEntry.Kind.REVERSE:
                result.returned = entry
            else:
                result.entries[entry.currency] = entry
        return result
    refundable = order.amount - order.refunded_amount
    if amount <= 0 or amount > refundable:
        raise LoyaltyError(
            "refund_too_large",
            _("A refund must be more than 0 and at most the %(refundable)s yuan left on this order.")
            % {"refundable": refundable},
        )
    _settle(list(accounts.values()), now)

    refund = Refund.objects.create(
        order=order, number=number, amount=amount, reason=reason, created_at=now, request_hash=request_hash
    )
    refunded_after = order.refunded_amount + amount
    result = RefundResult(refund=refund)
    # The points the member paid with come back first, so that taking back the earned
    # points can use them: a member who already spent the earned points then owes less.
    result.returned = _return_points_paid(accounts[Currency.POINTS], refund, refunded_after=refunded_after, now=now)
    earns = {e.currency: e for e in order.entries.filter(kind=LedgerEntry.Kind.EARN).select_related("lot")}
    for currency, earn in earns.items():
        account, lot = accounts[currency], Lot.objects.select_for_update().get(pk=earn.lot.pk)
        earned = lot.amount
        owed_after = _proportional(earned, refunded_after, order.amount)
        entry = _take_back(account, _live_lot(account, lot), refund, owed_after=owed_after, now=now, origin=lot)
        if entry is not None:
            result.entries[currency] = entry

    order.refunded_amount = refunded_after
    order.status = Order.Status.REFUNDED if refunded_after == order.amount else Order.Status.PARTIALLY_REFUNDED
    order.save(update_fields=["refunded_amount", "status"])
    if Currency.GROWTH in result.entries and settings.LOYALTY_TIER_REEVALUATE_ON_REFUND:
        growth = accounts[Currency.GROWTH]
        tier_review_after_refund(
            member_id=order.member_id, growth=growth.balance + growth.pending, order=order, now=now
        )
    return result


def _return_points_paid(
    account: Account, refund: Refund, *, refunded_after: Decimal, now: dt.datetime
) -> LedgerEntry | None:
    """Give back the points that paid part of ``refund``'s order, in proportion to what is refunded.

    ``account`` is the member's points account, locked and settled. The order's checkout
    spend (key ``checkout:<store id>:<order number>``) is what paid; after this refund the
    order owes back ``floor(paid × refunded_after / amount)`` in all, less what earlier
    refunds of the order gave back. A full reversal of the spend counts too: a spend is
    never given back more than it took (:func:`_give_back` caps each lot).
    """
    order = refund.order
    if order.points_paid_amount <= 0:
        return None
    key = f"checkout:{order.store_id}:{order.number}"
    spend = LedgerEntry.objects.filter(account=account, kind=LedgerEntry.Kind.SPEND, idempotency_key=key).first()
    source = account
    if spend is None:
        # A member merge moved the order here: its checkout spend is on the merged record's
        # account. The points go back into that spend's lots there, then move on here.
        spend = LedgerEntry.objects.filter(
            kind=LedgerEntry.Kind.SPEND,
            currency=Currency.POINTS,
            idempotency_key=key,
            member__merged_into__isnull=False,
        ).first()
        if spend is None:  # paid with points outside our checkout: nothing of ours to give back
            return None
        source = _lock_accounts(spend.member_id, (Currency.POINTS,))[Currency.POINTS]
        _settle([source], now)
    paid = -spend.amount
    returned = (
        LedgerEntry.objects.filter(reverses=spend, kind=LedgerEntry.Kind.REVERSE, refund__isnull=False).aggregate(
            t=Sum("amount")
        )["t"]
        or 0
    )
    owed_after = _proportional(paid, refunded_after, order.amount)
    due = owed_after - returned
    if due <= 0:
        return None
    given = _give_back(
        source,
        spend,
        up_to=due,
        now=now,
        idempotency_key=f"reverse:{spend.pk}:refund:{refund.pk}",
        request_hash=_fingerprint({"kind": "reverse", "entry": spend.pk, "refund": refund.pk}),
        order=order,
        refund=refund,
        store=order.store,
        reason=(
            _("Points paid for order %(order)s given back for refund %(refund)s")
            % {"order": order.number, "refund": refund.number}
        )[:200],
        detail={"points_paid": paid, "owed": owed_after, "returned_before": returned},
    )
    if given is not None and source is not account:
        merged_points_forward(source=source, target=account, step=f"refund{refund.pk}", now=now)
    return given


def _live_lot(account: Account, lot: Lot) -> Lot:
    """Where the order's earn lot ``lot`` lives now in ``account``: itself, or, when a member
    merge moved the order's points (``loyalty.services.merge``), the newest lot a merge
    opened from it in this account (locked). ``lot`` itself when none is left here."""
    if lot.account_id == account.pk:
        return lot
    moved = (
        Lot.objects.select_for_update()
        .filter(account=account, entry__kind=LedgerEntry.Kind.MERGE, entry__detail__origin_lot=lot.pk)
        .order_by("-id")
        .first()
    )
    return moved or lot


def _take_back(
    account: Account, lot: Lot, refund: Refund, *, owed_after: int, now: dt.datetime, origin: Lot | None = None
) -> LedgerEntry | None:
    """Charge the member what this order owes back in ``account``'s currency after ``refund``.

    ``owed_after`` is what all refunds of the order owe so far. Points of the order that
    expired are gone already and count against it first; what earlier refunds cancelled,
    took or recorded as shortfall counts too. Inside the return window the pending lot
    is cancelled; after it, points are taken from the balance, the order's lot first.
    ``lot`` is where the order's points are now (``_live_lot``), ``origin`` the earn's own
    lot when a merge moved them: expiries of either count.
    """
    origin = origin or lot
    common = {
        "order": refund.order,
        "refund": refund,
        "store": refund.order.store,
        "reverses": lot.entry,
        "reason": refund.reason,
    }
    # The earn's own lot and every lot a merge opened from it (in whichever account).
    order_lots = Q(lot=origin) | Q(lot__entry__kind=LedgerEntry.Kind.MERGE, lot__entry__detail__origin_lot=origin.pk)
    expired = Allocation.objects.filter(order_lots, entry__kind=LedgerEntry.Kind.EXPIRE).aggregate(t=Sum("amount"))["t"]
    charged = LedgerEntry.objects.filter(
        order=refund.order, currency=account.currency, kind__in=[LedgerEntry.Kind.REFUND, LedgerEntry.Kind.CANCEL]
    ).aggregate(t=Sum(F("amount") + F("pending_amount")))["t"]
    shortfalls = Refund.objects.filter(order=refund.order).aggregate(t=Sum(f"{account.currency}_shortfall"))["t"]
    owed = max(0, owed_after - (expired or 0)) - (-(charged or 0) + (shortfalls or 0))
    if owed <= 0:
        return None
    if lot.pending and lot.account_id == account.pk:
        entry = _save_entry(
            account,
            _new_entry(
                account, kind=LedgerEntry.Kind.CANCEL, now=now, pending_amount=-owed, detail={"owed": owed}, **common
            ),
        )
        _consume(entry, [lot], owed)
        return entry

    taken = min(owed, account.balance)
    shortfall = owed - taken
    if shortfall:
        # The shortfall is a debt: what comes back to the member later pays it (_debt_collect).
        setattr(refund, f"{account.currency}_shortfall", shortfall)
        refund.save(update_fields=[f"{account.currency}_shortfall"])
        account.owed += shortfall
        if taken == 0:
            account.updated_at = now
            account.save(update_fields=["owed", "updated_at"])
    if taken == 0:
        return None
    entry = _save_entry(
        account,
        _new_entry(
            account,
            kind=LedgerEntry.Kind.REFUND,
            now=now,
            amount=-taken,
            detail={
                "owed": owed,
                "taken": taken,
                "shortfall": shortfall,
            },
            **common,
        ),
    )
    _consume(entry, _open_lots(account, first=lot), taken)
    return entry
