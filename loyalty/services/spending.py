"""Spending points and giving them back (a cancelled redemption, a refunded checkout).

A spend takes available lots first in, first out; a reversal gives back exactly the lots
a spend took, each with its own expiry (``_give_back``, shared with refunds' partial
returns in ``orders``).
"""

import datetime as dt
from collections import defaultdict

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from core.cleaners import clean_key, clean_points, clean_reason
from core.errors import LoyaltyError
from members.models import Member, Store

from ..models import Account, Allocation, Currency, LedgerEntry, Lot
from .entries import (
    _fingerprint,
    _lock_accounts,
    _lock_reading,
    _new_entry,
    _open_lots,
    _replayed_entry,
    _require_status_active,
    _save_entry,
    _take,
    _write_debit,
)
from .settling import _debt_collect, _expire, _settle

# --- spending -------------------------------------------------------------------------


def points_spend(
    *,
    member: Member,
    amount: int,
    idempotency_key: str,
    reason: str,
    store: Store | None = None,
    detail: dict | None = None,
    now: dt.datetime | None = None,
    savepoint: bool = True,
) -> LedgerEntry:
    """Spend available points, oldest-expiring first.

    Refuses: more than the available balance (pending points cannot be spent), a frozen
    or closed member, and an idempotency key already used for a different spend. A
    replay with the same key and content returns the first entry and writes nothing.
    ``savepoint=False`` (inside a caller's transaction that any refusal rolls back
    whole, as ``rewards.services.reward_redeem``) saves the savepoint's two statements.

    Three statements on the common path (nothing due; five with the transaction's ends):
    the account lock (which also reads the member's status, whether a lot is due and an
    entry under the key), the open lots, and the entry, account, lots and allocations in
    one (``entries._write_debit``).
    """
    now = now or timezone.now()
    amount = clean_points(amount)
    idempotency_key = clean_key(idempotency_key, required=True)
    reason = clean_reason(reason, required=False)
    request_hash = _fingerprint({"kind": "spend", "amount": amount, "store": store.pk if store else None})

    try:
        return _spend(
            member=member,
            amount=amount,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
            reason=reason,
            store=store,
            detail=detail,
            now=now,
            savepoint=savepoint,
        )
    except IntegrityError:
        if not savepoint and transaction.get_connection().in_atomic_block:
            raise  # the caller's transaction is broken: the caller starts again (reward_redeem does)
        # Another request with the same key committed while this one waited for the lock:
        # the lock's statement could not see it, its insert did.
        account = Account.objects.get(member_id=member.pk, currency=Currency.POINTS)
        replay = _replayed_entry(account, idempotency_key, request_hash)
        if replay is None:
            raise
        return replay


def _spend(
    *,
    member: Member,
    amount: int,
    idempotency_key: str,
    request_hash: str,
    reason: str,
    store: Store | None,
    detail: dict | None,
    now: dt.datetime,
    savepoint: bool,
) -> LedgerEntry:
    with transaction.atomic(savepoint=savepoint):
        account = _lock_reading(member.pk, (Currency.POINTS,), now, idempotency_key=idempotency_key)[Currency.POINTS]
        if account.replay_id is not None:
            return _replayed_entry(account, idempotency_key, request_hash)
        _require_status_active(account.member)
        if account.release_due or account.expiry_due:
            _settle([account], now)
        if account.balance < amount:
            message = _("Not enough points: %(balance)s available, %(amount)s needed.") % {
                "balance": f"{account.balance:,}",
                "amount": f"{amount:,}",
            }
            if account.pending:
                message += " " + _("%(pending)s more are pending until their orders' return windows end.") % {
                    "pending": f"{account.pending:,}"
                }
            raise LoyaltyError("insufficient_balance", message, balance=account.balance, pending=account.pending)
        account.lifetime_spent += amount
        entry = _new_entry(
            account,
            kind=LedgerEntry.Kind.SPEND,
            now=now,
            amount=-amount,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
            store=store,
            reason=reason,
            detail=detail or {},
        )
        _taken, touched, allocations = _take(entry, _open_lots(account), amount)
        _write_debit(account, entry, touched, allocations)
        return entry


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
    reason = clean_reason(reason, required=False)
    client_key = clean_key(idempotency_key, required=False)

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
