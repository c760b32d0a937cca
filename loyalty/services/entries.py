"""Every change to the points ledger. One function per business action, transaction inside.

Locking: every writer locks the member's account rows first (``SELECT ... FOR UPDATE``
in id order), then the lots it will touch, so the balance it decides on cannot change
under it. Entries are appended, never updated. Spending and expiry consume lots first in,
first out by ``expires_at`` then ``id`` and record which lots they took as allocations.

Before an account changes, it is *settled*: lots whose return window has ended are
released and lots past their expiry are expired, so a member never spends expired points
and sees released ones even when the scheduled job has not run yet. The jobs
(``lots_release_matured``, ``lots_expire_due``) run the same code over chunks of accounts.

A refund that cannot take back what its order earned (the member spent it) leaves a
shortfall, and the shortfall is a debt (``Account.owed``): points that come back to the
member (a reversed spend, the points-paid part of a refunded order) pay it first, and so
do new earns and awards as they become available while ``LOYALTY_SHORTFALL_SETTLE_FROM_EARNS``
is on. Each payment is a ``settle`` entry linked to the refund it pays (``_debt_collect``).
"""

import datetime as dt
import hashlib
import json
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import F, Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from core.bulk import insert_rows
from core.errors import LoyaltyError
from members.models import Member, Store

from ..models import Account, Allocation, BenefitGrant, Currency, LedgerEntry, Lot, Order, OrderLine, Refund
from ..policies import expiry_policy, pending_until
from ..tiers import tier_review_after_refund, tier_upgrade_if_qualified

CURRENCIES: tuple[str, ...] = (Currency.POINTS, Currency.GROWTH)
# A till's clock may run a little ahead of ours; further than this is a mistake.
CLOCK_SKEW = dt.timedelta(minutes=5)
CENT = Decimal("0.01")


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


@dataclass
class RefundResult:
    refund: Refund
    # What the refund took back (``refund`` or ``cancel`` entries), by currency.
    entries: dict[str, LedgerEntry] = field(default_factory=dict)
    replayed: bool = False
    # The ``reverse`` entry giving back points that paid part of the order, if any.
    returned: LedgerEntry | None = None


# --- helpers --------------------------------------------------------------------------


def _fingerprint(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _money(value: Decimal | int | str, *, field_name: str) -> Decimal:
    try:
        amount = Decimal(str(value))
        exact = amount.is_finite() and abs(amount) < 10**10 and amount == amount.quantize(CENT)
    except (InvalidOperation, ValueError):
        exact = False
    if not exact:
        raise LoyaltyError(
            "invalid_amount",
            _("%(field)s must be an amount in yuan with at most two decimals, not “%(value)s”.")
            % {"field": field_name, "value": value},
        )
    return amount.quantize(CENT)


def _points(value: int, *, allow_negative: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value == 0 or (value < 0 and not allow_negative):
        raise LoyaltyError(
            "invalid_amount",
            _("The number of points must be a whole number other than zero, not “%(value)s”.") % {"value": value},
        )
    if abs(value) > 10**12:
        raise LoyaltyError(
            "invalid_amount", _("%(value)s points is more than any account can hold.") % {"value": value}
        )
    return value


def _text(value, *, field_name: str, max_length: int, required: bool = True) -> str:
    """Strip a client's text field, refusing what is not text, empty (when required) or too long."""
    text = value.strip() if isinstance(value, str) else None if value is not None else ""
    if text is None or (required and not text) or len(text) > max_length:
        raise LoyaltyError(
            "invalid_text",
            _("%(field)s must be text of 1 to %(max)s characters.") % {"field": field_name, "max": max_length},
        )
    return text


def _moment(value, *, field_name: str) -> dt.datetime:
    if not isinstance(value, dt.datetime) or timezone.is_naive(value):
        raise LoyaltyError(
            "invalid_time", _("%(field)s must be a date and time with its time zone.") % {"field": field_name}
        )
    return value


def _key(value: str | None, *, required: bool) -> str | None:
    if value is None or value == "":
        if required:
            raise LoyaltyError("idempotency_key_required", _("An idempotency key is required for this change."))
        return None
    if not isinstance(value, str) or len(value) > 128:
        raise LoyaltyError("invalid_idempotency_key", _("The idempotency key must be text of at most 128 characters."))
    return value


def _lock_accounts(member_id: int, currencies: Sequence[str] = CURRENCIES) -> dict[str, Account]:
    """Lock the member's accounts in id order, opening any that do not exist yet."""

    def fetch() -> dict[str, Account]:
        rows = Account.objects.select_for_update().filter(member_id=member_id, currency__in=currencies).order_by("id")
        return {account.currency: account for account in rows}

    accounts = fetch()
    if len(accounts) < len(currencies):
        for currency in currencies:
            if currency not in accounts:
                Account.objects.get_or_create(member_id=member_id, currency=currency)
        accounts = fetch()
    return accounts


def _require_active(member_id: int) -> None:
    status = Member.objects.values_list("status", flat=True).get(pk=member_id)
    if status != Member.Status.ACTIVE:
        raise LoyaltyError(
            "member_inactive",
            _("This member is %(status)s and cannot earn or spend points. Reactivate the member first.")
            % {"status": Member.Status(status).label},
        )


def _new_entry(
    account: Account, *, kind: str, now: dt.datetime, amount: int = 0, pending_amount: int = 0, **fields
) -> LedgerEntry:
    """Apply a change to the locked account in memory and return its (unsaved) entry."""
    account.balance += amount
    account.pending += pending_amount
    account.updated_at = now
    return LedgerEntry(
        account=account,
        member_id=account.member_id,
        currency=account.currency,
        kind=kind,
        amount=amount,
        pending_amount=pending_amount,
        balance_after=account.balance,
        pending_after=account.pending,
        created_at=now,
        **fields,
    )


def _save_entry(account: Account, entry: LedgerEntry) -> LedgerEntry:
    entry.save()
    account.save(update_fields=["balance", "pending", "lifetime_earned", "lifetime_spent", "owed", "updated_at"])
    return entry


def _open_lots(account: Account, *, first: Lot | None = None) -> list[Lot]:
    """The account's available lots in spending order, locked; ``first`` goes to the front."""
    lots = list(
        Lot.objects.select_for_update()
        .filter(account=account, pending=False, remaining__gt=0)
        .order_by(F("expires_at").asc(nulls_last=True), "id")
    )
    if first is not None:
        lots.sort(key=lambda lot: lot.pk != first.pk)
    return lots


def _consume(entry: LedgerEntry, lots: Iterable[Lot], amount: int) -> int:
    """Take up to ``amount`` from ``lots`` in order for the saved ``entry``; return what was taken."""
    taken, allocations, touched = 0, [], []
    for lot in lots:
        if taken == amount:
            break
        take = min(lot.remaining, amount - taken)
        if take <= 0:
            continue
        lot.remaining -= take
        taken += take
        touched.append(lot)
        allocations.append(Allocation(entry=entry, lot=lot, amount=take))
    Lot.objects.bulk_update(touched, ["remaining"])
    Allocation.objects.bulk_create(allocations)
    return taken


def _open_lot(account: Account, entry: LedgerEntry, *, amount: int, pending: bool, available_at, earned_at) -> Lot:
    return Lot.objects.create(
        account=account,
        member_id=account.member_id,
        currency=account.currency,
        entry=entry,
        amount=amount,
        remaining=amount,
        pending=pending,
        available_at=available_at,
        expires_at=expiry_policy(account.currency).expires_at(earned_at),
        created_at=entry.created_at,
    )


# --- settling: release and expiry, for one account or a chunk of them ------------------


def _release(accounts: Sequence[Account], now: dt.datetime) -> list[LedgerEntry]:
    """Make pending lots whose return window has ended available. Accounts must be locked."""
    by_id = {account.pk: account for account in accounts}
    lots = list(
        Lot.objects.select_for_update()
        .filter(account_id__in=by_id, pending=True, available_at__lte=now)
        .order_by("id")
        .only("id", "account_id", "remaining")
    )
    if not lots:
        return []
    totals: dict[int, int] = defaultdict(int)
    lot_ids: dict[int, list[int]] = defaultdict(list)
    for lot in lots:
        totals[lot.account_id] += lot.remaining
        lot_ids[lot.account_id].append(lot.pk)
    Lot.objects.filter(pk__in=[lot.pk for lot in lots]).update(pending=False)
    entries = [
        _new_entry(
            by_id[account_id],
            kind=LedgerEntry.Kind.RELEASE,
            now=now,
            amount=total,
            pending_amount=-total,
            detail={"lots": lot_ids[account_id]},
        )
        for account_id, total in totals.items()
        if total > 0
    ]
    LedgerEntry.objects.bulk_create(entries)
    Account.objects.bulk_update([by_id[e.account_id] for e in entries], ["balance", "pending", "updated_at"])
    return entries


def _expire(accounts: Sequence[Account], now: dt.datetime) -> list[LedgerEntry]:
    """Expire what is left of available lots past their expiry. Accounts must be locked."""
    by_id = {account.pk: account for account in accounts}
    lots = list(
        Lot.objects.select_for_update()
        .filter(account_id__in=by_id, pending=False, remaining__gt=0, expires_at__lte=now)
        .order_by("account_id", "expires_at", "id")
        .only("id", "account_id", "remaining", "expires_at")
    )
    if not lots:
        return []
    by_account: dict[int, list[Lot]] = defaultdict(list)
    for lot in lots:
        by_account[lot.account_id].append(lot)
    entries = {
        account_id: _new_entry(
            by_id[account_id],
            kind=LedgerEntry.Kind.EXPIRE,
            now=now,
            amount=-sum(lot.remaining for lot in account_lots),
        )
        for account_id, account_lots in by_account.items()
    }
    LedgerEntry.objects.bulk_create(entries.values())
    Allocation.objects.bulk_create(
        Allocation(entry=entries[lot.account_id], lot=lot, amount=lot.remaining) for lot in lots
    )
    Lot.objects.filter(pk__in=[lot.pk for lot in lots]).update(remaining=0)
    Account.objects.bulk_update([by_id[account_id] for account_id in entries], ["balance", "pending", "updated_at"])
    return list(entries.values())


def _settle(accounts: Sequence[Account], now: dt.datetime) -> None:
    released = _release(accounts, now)
    _expire(accounts, now)
    _collect_from_released(accounts, released, now)


def _release_and_collect(accounts: Sequence[Account], now: dt.datetime) -> list[LedgerEntry]:
    """The release job's step: release, then let what was released pay open debts."""
    released = _release(accounts, now)
    debtors = {e.account_id for e in released if e.account.owed > 0}
    if not debtors or not settings.LOYALTY_SHORTFALL_SETTLE_FROM_EARNS:
        return released
    # Points past their expiry must not pay a debt: they expire first, as ``_settle`` does.
    in_debt = [account for account in accounts if account.pk in debtors]
    return released + _expire(in_debt, now) + _collect_from_released(in_debt, released, now)


def _collect_from_released(
    accounts: Sequence[Account], released: Sequence[LedgerEntry], now: dt.datetime
) -> list[LedgerEntry]:
    if not settings.LOYALTY_SHORTFALL_SETTLE_FROM_EARNS:
        return []
    by_id = {account.pk: account for account in accounts}
    written = []
    for entry in released:
        account = by_id.get(entry.account_id)
        if account is not None and account.owed > 0:
            written += _debt_collect(account, up_to=entry.amount, now=now)
    return written


def _debt_collect(account: Account, *, up_to: int, now: dt.datetime) -> list[LedgerEntry]:
    """Pay the locked account's open refund shortfalls with up to ``up_to`` of its balance.

    Oldest refund first. One ``settle`` entry per refund paid (``-n``, linked to the
    refund and its order) taking lots first in, first out like a spend, with
    allocations; the refund's ``<currency>_settled`` and ``account.owed`` go down by the
    same amount. Never takes more than the balance holds.
    """
    amount = min(account.owed, up_to, account.balance)
    if amount <= 0:
        return []
    currency = account.currency
    shortfall, settled = f"{currency}_shortfall", f"{currency}_settled"
    refunds = (
        Refund.objects.filter(order__member_id=account.member_id, **{f"{shortfall}__gt": F(settled)})
        .select_related("order")
        .order_by("created_at", "id")
    )
    lots = _open_lots(account)
    written = []
    for refund in refunds:
        if amount <= 0:
            break
        pay = min(refund.owed(currency), amount)
        amount -= pay
        account.owed -= pay
        entry = _save_entry(
            account,
            _new_entry(
                account,
                kind=LedgerEntry.Kind.SETTLE,
                now=now,
                amount=-pay,
                order=refund.order,
                refund=refund,
                store_id=refund.order.store_id,
                reason=(
                    _("Settles what refund %(refund)s of order %(order)s could not take back")
                    % {"refund": refund.number, "order": refund.order.number}
                )[:200],
                detail={"owed_before": refund.owed(currency), "settled": pay},
            ),
        )
        _consume(entry, lots, pay)
        Refund.objects.filter(pk=refund.pk).update(**{settled: F(settled) + pay})
        written.append(entry)
    return written


def _run_in_chunks(lot_filter: dict, step, *, now: dt.datetime, chunk_size: int) -> int:
    """Run ``step`` over every account with lots matching ``lot_filter``, a chunk per transaction.

    Each chunk locks its accounts and re-reads the lots under the lock, so a rerun, a
    concurrent run or a run killed halfway neither repeats nor loses work.
    """
    written, after = 0, 0
    while True:
        account_ids = list(
            Lot.objects.filter(account_id__gt=after, **lot_filter)
            .order_by("account_id")
            .values_list("account_id", flat=True)
            .distinct()[:chunk_size]
        )
        if not account_ids:
            return written
        with transaction.atomic():
            accounts = list(Account.objects.select_for_update().filter(pk__in=account_ids).order_by("id"))
            written += len(step(accounts, now))
        after = account_ids[-1]


def lots_release_matured(*, now: dt.datetime | None = None, chunk_size: int = 1000) -> int:
    """Release every pending lot whose return window has ended; returns entries written.

    Released points pay the member's open refund shortfalls (``settle`` entries) while
    ``LOYALTY_SHORTFALL_SETTLE_FROM_EARNS`` is on.

    Safe to run twice, concurrently, or again after being stopped halfway.
    """
    now = now or timezone.now()
    due = {"pending": True, "available_at__lte": now}
    return _run_in_chunks(due, _release_and_collect, now=now, chunk_size=chunk_size)


def lots_expire_due(*, now: dt.datetime | None = None, chunk_size: int = 1000) -> int:
    """Expire what remains of every lot past its expiry; returns entries written.

    Safe to run twice, concurrently, or again after being stopped halfway.
    """
    now = now or timezone.now()
    due = {"pending": False, "remaining__gt": 0, "expires_at__lte": now}
    return _run_in_chunks(due, _expire, now=now, chunk_size=chunk_size)


# --- earning --------------------------------------------------------------------------


def _order_line(line: OrderLineInput) -> OrderLineInput:
    quantity = line.quantity
    if isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= 100_000:
        raise LoyaltyError("invalid_line", _("Every order line needs a quantity from 1 to 100000."))
    amount = _money(line.amount, field_name=_("Line amount"))
    if amount < 0:
        raise LoyaltyError("invalid_line", _("An order line's amount must not be negative."))
    return OrderLineInput(
        sku=_text(line.sku, field_name=_("SKU"), max_length=64),
        amount=amount,
        category=_text(line.category, field_name=_("Category"), max_length=64, required=False),
        name=_text(line.name, field_name=_("Product name"), max_length=200, required=False),
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


@transaction.atomic
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
) -> EarnResult:
    """Record an order and earn points and growth for the part paid with money.

    The earn is pending until the order's return window ends. Replaying the same order
    (same store and number, same content) returns the first result and writes nothing.
    Refuses: a frozen or closed member; the order number already used at this store for
    a different order; a bad amount; lines that do not add up; an order in the future.
    What it earns comes from the earning rules (``loyalty.rules.evaluate``); the entries'
    ``detail["lines"]`` keep the breakdown. Growth earned may move the member up a tier.
    """
    from .. import rules  # the rule engine builds on these services

    now = now or timezone.now()
    number = _text(number, field_name=_("Order number"), max_length=64)
    amount = _money(amount, field_name=_("Order amount"))
    points_paid_amount = _money(points_paid_amount, field_name=_("Amount paid with points"))
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
        occurred_at = _moment(occurred_at, field_name=_("Order time"))
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
    request_hash = _fingerprint(payload)
    occurred_at = occurred_at or now

    accounts = _lock_accounts(member.pk)
    existing = Order.objects.filter(store=store, number=number).first()
    if existing is not None:
        return _order_result(existing, request_hash)
    _require_active(member.pk)
    _settle(list(accounts.values()), now)
    earnable = amount - points_paid_amount
    # Before the order exists, so "first purchase" and the daily caps see only earlier orders.
    breakdown = rules.evaluate(
        member=member, store=store, occurred_at=occurred_at, lines=lines, earnable_amount=earnable, now=now
    )
    try:
        with transaction.atomic():
            order = Order.objects.create(
                member=member,
                store=store,
                number=number,
                amount=amount,
                points_paid_amount=points_paid_amount,
                occurred_at=occurred_at,
                created_at=now,
                request_hash=request_hash,
            )
    except IntegrityError:
        # Another member's transaction recorded the same store + number first.
        return _order_result(Order.objects.get(store=store, number=number), request_hash)
    OrderLine.objects.bulk_create(
        OrderLine(
            order=order,
            sku=line.sku,
            name=line.name,
            category=line.category,
            quantity=line.quantity,
            amount=line.amount,
        )
        for line in lines
    )

    available_at = pending_until(occurred_at)
    pending = available_at > now
    eligible = rules.eligible_amount(lines, earnable)
    result = EarnResult(order=order)
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
        _save_entry(account, entry)
        _open_lot(account, entry, amount=earned, pending=pending, available_at=available_at, earned_at=occurred_at)
        result.entries[currency] = entry
    # An order recorded after its points' expiry date (a late import) earns them, and
    # they expire at once: the balance never shows points that cannot be spent.
    _expire(list(accounts.values()), now)
    if not pending and settings.LOYALTY_SHORTFALL_SETTLE_FROM_EARNS:
        for currency, entry in result.entries.items():
            if accounts[currency].owed > 0:
                _debt_collect(accounts[currency], up_to=entry.amount, now=now)
    if Currency.GROWTH in result.entries:
        growth = accounts[Currency.GROWTH]
        tier_upgrade_if_qualified(member_id=member.pk, growth=growth.balance + growth.pending, now=now)
    return result


# --- spending -------------------------------------------------------------------------


@transaction.atomic
def points_spend(
    *,
    member: Member,
    amount: int,
    idempotency_key: str,
    reason: str,
    store: Store | None = None,
    detail: dict | None = None,
    now: dt.datetime | None = None,
) -> LedgerEntry:
    """Spend available points, oldest-expiring first.

    Refuses: more than the available balance (pending points cannot be spent), a frozen
    or closed member, and an idempotency key already used for a different spend. A
    replay with the same key and content returns the first entry and writes nothing.
    """
    now = now or timezone.now()
    amount = _points(amount)
    idempotency_key = _key(idempotency_key, required=True)
    reason = (reason or "").strip()[:200]
    request_hash = _fingerprint({"kind": "spend", "amount": amount, "store": store.pk if store else None})

    account = _lock_accounts(member.pk, (Currency.POINTS,))[Currency.POINTS]
    replay = _replayed_entry(account, idempotency_key, request_hash)
    if replay is not None:
        return replay
    _require_active(member.pk)
    _settle([account], now)
    if account.balance < amount:
        message = _("Not enough points: %(balance)s available, %(amount)s needed.") % {
            "balance": account.balance,
            "amount": amount,
        }
        if account.pending:
            message += " " + _("%(pending)s more are pending until their orders' return windows end.") % {
                "pending": account.pending
            }
        raise LoyaltyError("insufficient_balance", message, balance=account.balance, pending=account.pending)
    account.lifetime_spent += amount
    entry = _save_entry(
        account,
        _new_entry(
            account,
            kind=LedgerEntry.Kind.SPEND,
            now=now,
            amount=-amount,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
            store=store,
            reason=reason,
            detail=detail or {},
        ),
    )
    _consume(entry, _open_lots(account), amount)
    return entry


def _replayed_entry(account: Account, idempotency_key: str | None, request_hash: str) -> LedgerEntry | None:
    if idempotency_key is None:
        return None
    entry = LedgerEntry.objects.filter(account=account, idempotency_key=idempotency_key).first()
    if entry is None:
        return None
    entry.replayed = True
    if entry.request_hash != request_hash:
        raise LoyaltyError(
            "idempotency_key_reused",
            _("This idempotency key was already used for a different request. Send a new key for a new request."),
        )
    return entry


# --- refunds --------------------------------------------------------------------------


def _proportional(earned: int, part: Decimal, whole: Decimal) -> int:
    """Points owed back for ``part`` of ``whole``, rounded down, so refunds add up to the earn."""
    if whole <= 0:
        return 0
    return int(earned * part // whole)


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
    number = _text(number, field_name=_("Refund number"), max_length=64)
    reason = _text(reason, field_name=_("Reason"), max_length=200, required=False)
    amount = _money(amount, field_name=_("Refund amount"))
    request_hash = _fingerprint({"amount": str(amount)})

    accounts = _lock_accounts(order.member_id)
    order = Order.objects.select_for_update().get(pk=order.pk)
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
        entry = _take_back(account, lot, refund, owed_after=owed_after, now=now)
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
    spend = LedgerEntry.objects.filter(
        account=account, kind=LedgerEntry.Kind.SPEND, idempotency_key=f"checkout:{order.store_id}:{order.number}"
    ).first()
    if spend is None:  # paid with points outside our checkout: nothing of ours to give back
        return None
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
    return _give_back(
        account,
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


def _take_back(account: Account, lot: Lot, refund: Refund, *, owed_after: int, now: dt.datetime) -> LedgerEntry | None:
    """Charge the member what this order owes back in ``account``'s currency after ``refund``.

    ``owed_after`` is what all refunds of the order owe so far. Points of the order that
    expired are gone already and count against it first; what earlier refunds cancelled,
    took or recorded as shortfall counts too. Inside the return window the pending lot
    is cancelled; after it, points are taken from the balance, the order's lot first.
    """
    common = {
        "order": refund.order,
        "refund": refund,
        "store": refund.order.store,
        "reverses": lot.entry,
        "reason": refund.reason,
    }
    expired = Allocation.objects.filter(lot=lot, entry__kind=LedgerEntry.Kind.EXPIRE).aggregate(t=Sum("amount"))["t"]
    charged = LedgerEntry.objects.filter(
        order=refund.order, currency=account.currency, kind__in=[LedgerEntry.Kind.REFUND, LedgerEntry.Kind.CANCEL]
    ).aggregate(t=Sum(F("amount") + F("pending_amount")))["t"]
    shortfalls = Refund.objects.filter(order=refund.order).aggregate(t=Sum(f"{account.currency}_shortfall"))["t"]
    owed = max(0, owed_after - (expired or 0)) - (-(charged or 0) + (shortfalls or 0))
    if owed <= 0:
        return None
    if lot.pending:
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


# --- staff adjustments ----------------------------------------------------------------


@transaction.atomic
def points_adjust(
    *,
    member: Member,
    currency: str,
    amount: int,
    reason: str,
    operator: AbstractBaseUser,
    idempotency_key: str | None = None,
    now: dt.datetime | None = None,
) -> LedgerEntry:
    """A staff correction: add (a new lot, available at once) or remove points or growth.

    Refuses: no reason, no staff operator, an unknown currency, removing more than the
    available balance. Works on frozen members too: corrections are what staff do there.
    """
    now = now or timezone.now()
    if currency not in CURRENCIES:
        raise LoyaltyError("invalid_currency", _("Unknown currency “%(currency)s”.") % {"currency": currency})
    amount = _points(amount, allow_negative=True)
    reason = (reason or "").strip()
    if not reason:
        raise LoyaltyError("reason_required", _("Say why you are adjusting: a reason is required."))
    if len(reason) > 200:
        raise LoyaltyError("reason_too_long", _("Keep the reason to 200 characters."))
    if (
        operator is None
        or not getattr(operator, "is_staff", False)
        or not operator.is_active
        or not operator.has_perm("loyalty.adjust_points")
    ):
        raise LoyaltyError(
            "operator_required", _("Only a staff user with the “adjust points” permission can adjust points.")
        )
    idempotency_key = _key(idempotency_key, required=False) or f"adjust:{uuid.uuid4()}"
    request_hash = _fingerprint({"kind": "adjust", "currency": currency, "amount": amount, "reason": reason})

    account = _lock_accounts(member.pk, (currency,))[currency]
    replay = _replayed_entry(account, idempotency_key, request_hash)
    if replay is not None:
        return replay
    _settle([account], now)
    if amount < 0 and account.balance < -amount:
        raise LoyaltyError(
            "insufficient_balance",
            _("Cannot remove %(amount)s: only %(balance)s available.")
            % {"amount": -amount, "balance": account.balance},
            balance=account.balance,
        )
    fields = {"idempotency_key": idempotency_key, "request_hash": request_hash, "operator": operator, "reason": reason}
    if amount > 0:
        return _credit(account, kind=LedgerEntry.Kind.ADJUST, amount=amount, now=now, **fields)
    entry = _save_entry(account, _new_entry(account, kind=LedgerEntry.Kind.ADJUST, now=now, amount=amount, **fields))
    _consume(entry, _open_lots(account), -amount)
    return entry


def _credit(account: Account, *, kind: str, amount: int, now: dt.datetime, **fields) -> LedgerEntry:
    """Add ``amount`` to the locked, settled account as a new lot available at once.

    Shared by positive adjustments and awards; growth may move the member up a tier.
    While ``LOYALTY_SHORTFALL_SETTLE_FROM_EARNS`` is on, the new points pay open refund
    shortfalls first (a staff goodwill credit too: it is an award like any other).
    """
    account.lifetime_earned += amount
    entry = _save_entry(account, _new_entry(account, kind=kind, now=now, amount=amount, **fields))
    _open_lot(account, entry, amount=amount, pending=False, available_at=now, earned_at=now)
    if account.owed > 0 and settings.LOYALTY_SHORTFALL_SETTLE_FROM_EARNS:
        _debt_collect(account, up_to=amount, now=now)
    if account.currency == Currency.GROWTH:
        tier_upgrade_if_qualified(member_id=account.member_id, growth=account.balance + account.pending, now=now)
    return entry


# --- awards outside orders: signup bonus, birthday gifts ---------------------------------


AWARD_KINDS = (LedgerEntry.Kind.EARN, LedgerEntry.Kind.ADJUST)


@transaction.atomic
def points_award(
    *,
    member: Member,
    currency: str,
    amount: int,
    reason: str,
    idempotency_key: str,
    kind: str = LedgerEntry.Kind.EARN,
    detail: dict | None = None,
    store: Store | None = None,
    now: dt.datetime | None = None,
) -> LedgerEntry:
    """Give a member points or growth that no order earned: a signup bonus, a birthday gift.

    Opens a new lot, available at once, expiring by the currency's policy counted from
    ``now``; growth may move the member up a tier. The idempotency key (e.g.
    ``signup:<rule id>``, ``birthday:<benefit id>:<year>``) makes it happen once per
    account: a replay returns the first entry and writes nothing.
    Refuses: an unknown currency or kind, an amount that is not a positive whole number,
    no reason, no idempotency key, the key already used for a different award, and a
    frozen or closed member.
    """
    now = now or timezone.now()
    if currency not in CURRENCIES:
        raise LoyaltyError("invalid_currency", _("Unknown currency “%(currency)s”.") % {"currency": currency})
    if kind not in AWARD_KINDS:
        raise LoyaltyError("invalid_kind", _("An award is an earn or an adjustment, not “%(kind)s”.") % {"kind": kind})
    amount = _points(amount)
    reason = _text(reason, field_name=_("Reason"), max_length=200)
    idempotency_key = _key(idempotency_key, required=True)
    request_hash = _fingerprint({"kind": kind, "currency": currency, "amount": amount})

    account = _lock_accounts(member.pk, (currency,))[currency]
    replay = _replayed_entry(account, idempotency_key, request_hash)
    if replay is not None:
        return replay
    _require_active(member.pk)
    _settle([account], now)
    return _credit(
        account,
        kind=kind,
        amount=amount,
        now=now,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        store=store,
        reason=reason,
        detail=detail or {},
    )


def benefit_grants_record(pairs: Iterable[tuple[int, int]], *, period: str, now: dt.datetime) -> None:
    """Record that each (member id, benefit id) pair got its benefit for ``period``.

    For jobs that issue something other than points (coupons): at most one grant per
    member, benefit and period, so a pair already recorded is left as it is.
    """
    BenefitGrant.objects.bulk_create(
        [BenefitGrant(member_id=m, benefit_id=b, period=period, created_at=now) for m, b in pairs],
        ignore_conflicts=True,
    )


# --- reversing a spend (a cancelled redemption, a refunded checkout) ----------------------


@transaction.atomic
def points_spend_reverse(
    *,
    entry: LedgerEntry,
    reason: str,
    idempotency_key: str | None = None,
    now: dt.datetime | None = None,
) -> LedgerEntry:
    """Give back what a spend took: exactly the lots it consumed, each with its own expiry.

    Writes one ``reverse`` entry (``+amount``, ``reverses=entry``) with an allocation per
    restored lot, and lowers ``lifetime_spent``. A restored lot whose expiry has already
    passed expires again in the same transaction (an ``expire`` entry follows), so the
    balance never shows points that cannot be spent. A spend is reversed at most once:
    reversing it again returns the first reversal and writes nothing (the entry's key,
    ``reverse:<spend id>``, is unique per account, so the database enforces it too).
    When refunds of the order a checkout spend paid for already gave part of it back
    (``order_refund``), the reversal gives back only the rest: a spend never gets back
    more than it took in total.
    Works on frozen and closed members, like refunds.
    Refuses: an entry that is not a spend (``not_a_spend``); ``idempotency_key``, when
    given, already used for another reversal (``idempotency_key_reused``); a spend that
    refunds already gave back in full (``already_given_back``).
    """
    now = now or timezone.now()
    if entry.kind != LedgerEntry.Kind.SPEND:
        raise LoyaltyError(
            "not_a_spend",
            _("Only a spend can be reversed; this entry is “%(kind)s”.") % {"kind": LedgerEntry.Kind(entry.kind).label},
        )
    reason = _text(reason, field_name=_("Reason"), max_length=200, required=False)
    client_key = _key(idempotency_key, required=False)

    account = _lock_accounts(entry.member_id, (entry.currency,))[entry.currency]
    # A full reversal's key is ``reverse:<spend id>``; refunds' partial returns have their own.
    existing = LedgerEntry.objects.filter(account=account, idempotency_key=f"reverse:{entry.pk}").first()
    if existing is not None:
        existing.replayed = True
        return existing
    if (
        client_key is not None
        and LedgerEntry.objects.filter(
            account=account, kind=LedgerEntry.Kind.REVERSE, detail__idempotency_key=client_key
        ).exists()
    ):
        raise LoyaltyError(
            "idempotency_key_reused",
            _("This idempotency key was already used for a different request. Send a new key for a new request."),
        )
    _settle([account], now)
    reversal = _give_back(
        account,
        entry,
        up_to=None,
        now=now,
        idempotency_key=f"reverse:{entry.pk}",
        request_hash=_fingerprint({"kind": "reverse", "entry": entry.pk}),
        store=entry.store,
        reason=reason,
        detail={"idempotency_key": client_key} if client_key else {},
    )
    if reversal is None:
        raise LoyaltyError(
            "already_given_back",
            _("These points were already given back in full by refunds of the order they paid for."),
        )
    return reversal


def _give_back(
    account: Account, spend: LedgerEntry, *, up_to: int | None, now: dt.datetime, **fields
) -> LedgerEntry | None:
    """Give back to the lots ``spend`` consumed up to ``up_to`` points (None: all it has left).

    Shared by full reversals and refunds' partial returns. ``account`` must be locked and
    settled: every writer of a ``reverse`` entry holds the account row lock, so what each
    lot has left to get back (what the spend took from it minus what earlier ``reverse``
    entries of the spend gave it) cannot change underneath, and a spend is never given
    back more than it took in total. Lots get points back latest-expiring first (lots
    that never expire first, then by ``expires_at`` and ``id`` descending): the member
    gets the points with the most life left, and lots already past their expiry, which
    expire again at once, come last. Writes one ``reverse`` entry (``reverses=spend``,
    ``+n``) with an allocation per restored lot, and lowers ``lifetime_spent``; returns
    None when nothing is left to give back.
    """
    left: dict[int, int] = defaultdict(int)
    for lot_id, amount in Allocation.objects.filter(entry=spend).values_list("lot_id", "amount"):
        left[lot_id] += amount
    given = Allocation.objects.filter(entry__reverses=spend, entry__kind=LedgerEntry.Kind.REVERSE)
    for lot_id, amount in given.values_list("lot_id", "amount"):
        left[lot_id] -= amount
    lots = list(Lot.objects.select_for_update().filter(pk__in=[k for k, v in left.items() if v > 0]).order_by("id"))
    lots.sort(key=lambda lot: (lot.expires_at is not None, -(lot.expires_at or now).timestamp(), -lot.pk))
    wanted = sum(left[lot.pk] for lot in lots) if up_to is None else up_to
    restored: list[tuple[Lot, int]] = []
    total = 0
    for lot in lots:
        if total >= wanted:
            break
        give = min(left[lot.pk], wanted - total)
        lot.remaining += give
        total += give
        restored.append((lot, give))
    if total <= 0:
        return None
    account.lifetime_spent -= total
    reversal = _save_entry(
        account, _new_entry(account, kind=LedgerEntry.Kind.REVERSE, now=now, amount=total, reverses=spend, **fields)
    )
    # The reversal's allocations record what went back into each lot; the audit counts
    # them as given back (``lot.remaining == amount - consumed + given back``).
    Lot.objects.bulk_update([lot for lot, _give in restored], ["remaining"])
    Allocation.objects.bulk_create(Allocation(entry=reversal, lot=lot, amount=give) for lot, give in restored)
    # Points that come back pay open refund shortfalls first, whatever the setting: they
    # are the points the shortfall could not take. Before the re-expiry below, so that
    # points given back past their expiry pay the debt rather than vanish beside it.
    if account.owed > 0:
        _debt_collect(account, up_to=total, now=now)
    # Lots whose expiry passed since the spend expire again now, as the nightly job would have.
    _expire([account], now)
    return reversal


def accounts_open_with_balance(
    awards: Sequence[tuple[int, str, int]], *, reason: str, detail: dict, now: dt.datetime
) -> int:
    """Open the points accounts of members created in the caller's transaction, each with
    an opening balance: ``awards`` lists (member id, idempotency key, points). Returns the
    points given.

    The rows :func:`points_award` writes for an ADJUST award on a new account
    (``_credit``): the account with its balance and lifetime earned, the entry with the
    key and the award's request fingerprint (so a later award under the key is a replay),
    a lot available at once under the points expiry policy. Three statements for all of
    them instead of about twelve per member (the background member import, 1000 members
    a chunk). Only for members without an account: there is nothing to lock, settle or
    replay, which the caller guarantees by having created the members itself.
    """
    if not awards:
        return 0
    kind = LedgerEntry.Kind.ADJUST
    accounts = {
        member_id: pk
        for pk, member_id in insert_rows(
            Account,
            [
                {"member_id": member_id, "balance": points, "lifetime_earned": points}
                for member_id, _k, points in awards
            ],
            same={"currency": Currency.POINTS, "updated_at": now},
            returning=("id", "member_id"),
        )
    }
    fingerprints = {
        points: _fingerprint({"kind": kind, "currency": Currency.POINTS, "amount": points})
        for points in {points for _m, _k, points in awards}
    }
    entries = insert_rows(
        LedgerEntry,
        [
            {
                "account_id": accounts[member_id],
                "member_id": member_id,
                "amount": points,
                "balance_after": points,
                "idempotency_key": key,
                "request_hash": fingerprints[points],
            }
            for member_id, key, points in awards
        ],
        same={"currency": Currency.POINTS, "kind": kind, "reason": reason, "detail": detail, "created_at": now},
        returning=("id", "account_id", "member_id", "amount"),
    )
    insert_rows(
        Lot,
        [
            {
                "account_id": account_id,
                "member_id": member_id,
                "entry_id": entry_id,
                "amount": amount,
                "remaining": amount,
            }
            for entry_id, account_id, member_id, amount in entries
        ],
        same={
            "currency": Currency.POINTS,
            "pending": False,
            "available_at": now,
            "expires_at": expiry_policy(Currency.POINTS).expires_at(now),
            "created_at": now,
        },
    )
    return sum(points for _m, _k, points in awards)
