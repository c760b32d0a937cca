"""Points that move for reasons other than orders: taking back a benefit whose purchase was
refunded (a paid plan's welcome points).

Built on ``entries`` and ``settling`` like the other modules; locking as everywhere: the
account row first, then its lots.
"""

import datetime as dt
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from core.cleaners import clean_key, clean_points, clean_reason
from members.models import Member

from ..models import Currency, LedgerEntry
from .entries import _consume, _fingerprint, _lock_accounts, _new_entry, _open_lots, _replayed_entry, _save_entry
from .settling import _settle


@dataclass(frozen=True)
class TakeBack:
    """What :func:`points_take_back` did: the entry (None when nothing was left to take),
    the points taken and those the member had already spent."""

    entry: LedgerEntry | None
    taken: int
    not_recovered: int


@transaction.atomic
def points_take_back(
    *,
    member: Member,
    amount: int,
    reason: str,
    idempotency_key: str,
    reverses: LedgerEntry | None = None,
    now: dt.datetime | None = None,
) -> TakeBack:
    """Take back up to ``amount`` points a member was given outside an order, as a refund
    takes back an order's points: what the balance holds, from the lot of ``reverses``
    first, then first to expire; what was spent already is not recovered (reported, not
    a debt: refund debts belong to order refunds). One ``refund`` entry linked to the
    entry it takes back; its key makes a retry a replay. Works on frozen members too.

    Refuses: an amount that is not a positive whole number, no reason, no key, the key
    used for a different take-back.
    """
    now = now or timezone.now()
    amount = clean_points(amount)
    reason = clean_reason(reason)
    idempotency_key = clean_key(idempotency_key, required=True)
    request_hash = _fingerprint({"kind": "take_back", "amount": amount, "reverses": reverses.pk if reverses else None})
    account = _lock_accounts(member.pk, (Currency.POINTS,))[Currency.POINTS]
    replay = _replayed_entry(account, idempotency_key, request_hash)
    if replay is not None:
        return TakeBack(replay, -replay.amount, amount + replay.amount)
    _settle([account], now)
    taken = min(amount, account.balance)
    if taken == 0:
        return TakeBack(None, 0, amount)
    entry = _save_entry(
        account,
        _new_entry(
            account,
            kind=LedgerEntry.Kind.REFUND,
            now=now,
            amount=-taken,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
            reverses=reverses,
            reason=reason,
            detail={"taken": taken, "not_recovered": amount - taken},
        ),
    )
    lot = getattr(reverses, "lot", None) if reverses is not None else None
    _consume(entry, _open_lots(account, first=lot), taken)
    return TakeBack(entry, taken, amount - taken)
