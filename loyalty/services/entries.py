"""The ledger's ground floor: locking accounts, appending entries, opening and consuming lots.

Locking: every writer locks the member's account rows first (``SELECT ... FOR UPDATE``
in id order), then the lots it will touch, so the balance it decides on cannot change
under it. Entries are appended, never updated. Spending and expiry consume lots first in,
first out by ``expires_at`` then ``id`` and record which lots they took as allocations.

Every other module of ``loyalty.services`` builds on these; they change nothing by
themselves outside a caller's transaction.
"""

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Sequence

from django.db.models import F
from django.utils.translation import gettext as _

from core.errors import LoyaltyError
from members.models import Member

from ..models import Account, Allocation, Currency, LedgerEntry, Lot
from ..policies import expiry_policy

CURRENCIES: tuple[str, ...] = (Currency.POINTS, Currency.GROWTH)


def _fingerprint(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


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
