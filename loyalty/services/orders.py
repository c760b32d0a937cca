"""Orders: earning for an order.

An order's earn is pending until its return window ends (``loyalty.policies``); what it
earns comes from the earning rules (``loyalty.rules``). Refunds are in ``refunds``.
"""

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from core.cleaners import clean_moment, clean_money, clean_text
from core.errors import LoyaltyError
from members.models import Member, Store

from .. import rules
from ..configuration import programme
from ..models import Currency, LedgerEntry, Order, OrderLine
from ..policies import pending_until
from ..tiers import UNSEEN as _UNSEEN
from ..tiers import tier_upgrade_if_qualified
from .entries import _fingerprint, _lock_for_earn, _new_entry, _new_lot, _require_status_active, _write_credits
from .settling import _debt_collect, _expire, _settle

# A till's clock may run a little ahead of ours; further than this is a mistake.
CLOCK_SKEW = dt.timedelta(minutes=5)


@dataclass
class OrderLineInput:
    sku: str
    amount: Decimal
    category: str = ""
    name: str = ""
    quantity: int = 1


@dataclass
class EarnResult:
    order: Order
    entries: dict[str, LedgerEntry] = field(default_factory=dict)
    replayed: bool = False


# --- earning --------------------------------------------------------------------------


def _order_line(line: OrderLineInput) -> OrderLineInput:
    quantity = line.quantity
    if isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= 100_000:
        raise LoyaltyError("invalid_line", _("Every order line needs a quantity from 1 to 100000."))
    amount = clean_money(line.amount, field_name=_("Line amount"))
    if amount < 0:
        raise LoyaltyError("invalid_line", _("An order line's amount must not be negative."))
    return OrderLineInput(
        sku=clean_text(line.sku, field_name=_("SKU"), max_length=64),
        amount=amount,
        category=clean_text(line.category, field_name=_("Category"), max_length=64, required=False),
        name=clean_text(line.name, field_name=_("Product name"), max_length=200, required=False),
        quantity=quantity,
    )


def _order_result(order: Order, request_hash: str) -> EarnResult:
    if order.request_hash != request_hash:
        raise LoyaltyError(
            "order_number_taken",
            _(
                "Order %(number)s was already recorded at this store with different details. "
                "Use a new order number, or resend exactly the original order."
            )
            % {"number": order.number},
        )
    entries = {e.currency: e for e in order.entries.filter(kind=LedgerEntry.Kind.EARN)}
    return EarnResult(order=order, entries=entries, replayed=True)


def order_earn(
    *,
    member: Member,
    store: Store,
    number: str,
    amount: Decimal | int | str,
    points_paid_amount: Decimal | int | str = 0,
    occurred_at: dt.datetime | None = None,
    lines: Sequence[OrderLineInput] = (),
    now: dt.datetime | None = None,
    channel: str = Order.Channel.STORE,
) -> EarnResult:
    """Record an order and earn points and growth for the part paid with money.

    ``channel`` is where it was placed (``Order.Channel``; the store by default; another
    value is refused, ``invalid_channel``).

    The earn is pending until the order's return window ends. Replaying the same order
    (same store and number, same content) returns the first result and writes nothing.
    Refuses: a frozen or closed member; the order number already used at this store for
    a different order; a bad amount; lines that do not add up; an order in the future.
    What it earns comes from the earning rules (``loyalty.rules.evaluate``); the entries'
    ``detail["lines"]`` keep the breakdown. Growth earned may move the member up a tier.
    """
    now = now or timezone.now()
    number = clean_text(number, field_name=_("Order number"), max_length=64)
    amount = clean_money(amount, field_name=_("Order amount"))
    points_paid_amount = clean_money(points_paid_amount, field_name=_("Amount paid with points"))
    if amount < 0 or not (0 <= points_paid_amount <= amount):
        raise LoyaltyError(
            "invalid_amount",
            _("The order amount must not be negative, and the part paid with points must lie between 0 and it."),
        )
    lines = [_order_line(line) for line in lines]
    lines_total = sum(line.amount for line in lines)
    if lines and lines_total != amount:
        raise LoyaltyError(
            "lines_do_not_add_up",
            _("The order lines add up to %(lines)s but the order amount is %(amount)s.")
            % {"lines": lines_total, "amount": amount},
        )
    if occurred_at is not None:
        occurred_at = clean_moment(occurred_at, field_name=_("Order time"))
        if occurred_at > now + CLOCK_SKEW:
            raise LoyaltyError("order_in_future", _("The order time lies in the future; check the till's clock."))

    payload = {
        "member": member.pk,
        "store": store.pk,
        "number": number,
        "amount": str(amount),
        "points_paid_amount": str(points_paid_amount),
        "occurred_at": occurred_at.astimezone(dt.UTC).isoformat() if occurred_at else None,
        "lines": [[line.sku, line.category, line.quantity, str(line.amount)] for line in lines],
    }
    if channel not in Order.Channel.values:
        raise LoyaltyError(
            "invalid_channel",
            _("The channel is one of %(channels)s.") % {"channels": ", ".join(Order.Channel.values)},
        )
    if channel != Order.Channel.STORE:
        # Only then: the fingerprints of store orders recorded before channels stay the same.
        payload["channel"] = channel
    request_hash = _fingerprint(payload)

    try:
        return _earn(
            member_id=member.pk,
            store=store,
            number=number,
            amount=amount,
            points_paid_amount=points_paid_amount,
            occurred_at=occurred_at or now,
            lines=lines,
            request_hash=request_hash,
            now=now,
            channel=channel,
        )
    except IntegrityError:
        # The order's unique store + number: this order was recorded before (a replay), or
        # another member's transaction recorded the same number first. The earn's
        # transaction is rolled back; the first result is read in a new one.
        existing = Order.objects.filter(store=store, number=number).first()
        if existing is None:
            raise
        return _order_result(existing, request_hash)


@transaction.atomic
def _earn(
    *,
    member_id: int,
    store: Store,
    number: str,
    amount: Decimal,
    points_paid_amount: Decimal,
    occurred_at: dt.datetime,
    lines: list[OrderLineInput],
    request_hash: str,
    now: dt.datetime,
    channel: str = Order.Channel.STORE,
) -> EarnResult:
    """:func:`order_earn` once its input is clean: one transaction.

    On the common path (accounts open, nothing due, no first-purchase or daily-cap rule,
    no tier change) it runs five statements: the account lock (which also reads the
    member, their tier, whether a lot is due and the programme version), the order, its
    lines, the entries with their lots and the accounts' figures (one statement on
    PostgreSQL, ``_write_credits``), and the tier row lock of the upgrade hook. The order
    number's uniqueness is checked by the insert itself: a replay raises IntegrityError,
    which :func:`order_earn` turns into the first result.
    """
    accounts, member, due, version = _lock_for_earn(member_id, now)
    config = programme(version)
    earnable = amount - points_paid_amount
    # Before the order exists, so "first purchase" and the daily caps see only earlier orders.
    breakdown = rules.evaluate(
        member=member,
        store=store,
        occurred_at=occurred_at,
        lines=lines,
        earnable_amount=earnable,
        now=now,
        config=config,
    )
    order = Order(
        member=member,
        store=store,
        number=number,
        amount=amount,
        points_paid_amount=points_paid_amount,
        occurred_at=occurred_at,
        channel=channel,
        created_at=now,
        request_hash=request_hash,
    )
    order_lines = [
        OrderLine(sku=line.sku, name=line.name, category=line.category, quantity=line.quantity, amount=line.amount)
        for line in lines
    ]
    # The common path writes the order and its lines in the statement that writes the
    # entries (``_write_credits``). A member not active, or with lots to settle first, has
    # the order written here: a replay for a member frozen since then still returns the
    # first result (the insert finds the order number taken before the status refuses).
    separate = due or member.status != Member.Status.ACTIVE
    if separate:
        _write_credits([], [], [], order=order, lines=order_lines, config=config)
        _require_status_active(member)
        if due:
            _settle(list(accounts.values()), now)
    available_at = pending_until(occurred_at)
    pending = available_at > now
    eligible = rules.eligible_amount(lines, earnable)
    result = EarnResult(order=order)
    lots = []
    for currency, account in accounts.items():
        rule_lines = breakdown.get(currency, [])
        earned = rules.total(rule_lines)
        if earned <= 0:
            continue
        account.lifetime_earned += earned
        entry = _new_entry(
            account,
            kind=LedgerEntry.Kind.EARN,
            now=now,
            amount=0 if pending else earned,
            pending_amount=earned if pending else 0,
            # No idempotency key: the order (unique per store) makes the earn idempotent.
            request_hash=request_hash,
            order=order,
            store=store,
            detail={
                "lines": [line.as_dict() for line in rule_lines],
                "order_amount": str(amount),
                "points_paid_amount": str(points_paid_amount),
                "eligible_amount": str(eligible),
                "available_at": available_at.isoformat(),
            },
        )
        lots.append(
            _new_lot(account, entry, amount=earned, pending=pending, available_at=available_at, earned_at=occurred_at)
        )
        result.entries[currency] = entry
    if result.entries or not separate:
        _write_credits(
            [accounts[c] for c in result.entries],
            list(result.entries.values()),
            lots,
            order=None if separate else order,
            lines=order_lines,
            config=config,
        )
    # An order recorded after its points' expiry date (a late import) earns them, and
    # they expire at once: the balance never shows points that cannot be spent.
    if any(lot.expires_at is not None and lot.expires_at <= now for lot in lots):
        _expire(list(accounts.values()), now)
    if not pending and settings.LOYALTY_SHORTFALL_SETTLE_FROM_EARNS:
        for currency, entry in result.entries.items():
            if accounts[currency].owed > 0:
                _debt_collect(accounts[currency], up_to=entry.amount, now=now)
    if Currency.GROWTH in result.entries:
        growth = accounts[Currency.GROWTH]
        tier_upgrade_if_qualified(
            member_id=member_id,
            growth=growth.balance + growth.pending,
            now=now,
            tiers=config.tiers,
            seen=member._state.fields_cache.get("tier_state", _UNSEEN),
        )
    return result
