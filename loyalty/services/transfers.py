"""Points that move between members, and points taken back outside orders.

- ``points_transfer_out`` / ``points_transfer_in`` / ``points_transfer``: one member gives
  points to another (赠送积分). Out of the giver's available lots first to expire (a
  ``transfer`` entry, negative), into new lots of the receiver (one ``transfer`` entry,
  positive, and lot per expiry date of the lots given, keeping their dates, or one with a
  new date by the expiry policy). Giving back a transfer not received is a ``reverse``
  entry of its out entry: the giver gets exactly the lots back.
- ``points_transfer_reverse``: staff undo a received transfer.
- ``points_take_back``: a benefit whose purchase was refunded (a paid plan's welcome points).

A transfer locks both members' points accounts in member-id order, then lots. The
business rules of a transfer (limits, minimum tier, confirmation, ping-pong) are the
caller's (``programme.transfers``); here are the ledger's own: both members active, no
transfer to oneself, no open refund shortfall on the giver's account, enough points.
"""

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from core.cleaners import clean_key, clean_points, clean_reason
from core.errors import LoyaltyError
from members.models import Member

from ..models import Account, Allocation, Currency, LedgerEntry, Lot
from ..policies import expiry_policy
from .entries import (
    _consume,
    _fingerprint,
    _lock_accounts,
    _lock_members_accounts,
    _new_entry,
    _open_lots,
    _replayed_entry,
    _require_active,
    _save_entry,
)
from .settling import _debt_collect, _settle
from .spending import _give_back

POINTS = Currency.POINTS
# Transfers recorded before the ``transfer`` kind existed have a ``spend`` out entry.
OUT_KINDS = (LedgerEntry.Kind.TRANSFER, LedgerEntry.Kind.SPEND)


def _lock_pair(first_id: int, second_id: int) -> dict[int, Account]:
    """Both members' points accounts, locked in member-id order (so two transfers between
    the same members, either way, cannot deadlock)."""
    locked = _lock_members_accounts((first_id, second_id), (POINTS,))
    return {member_id: accounts[POINTS] for member_id, accounts in locked.items()}


@transaction.atomic
def points_transfer_out(
    *,
    giver: Member,
    receiver: Member,
    amount: int,
    reason: str,
    idempotency_key: str,
    now: dt.datetime | None = None,
) -> LedgerEntry:
    """Take ``amount`` points out of the giver's account for a transfer to ``receiver``:
    one ``transfer`` entry (negative, ``detail.transfer_to``) consuming the lots first to expire.

    Refuses: an amount that is not a positive whole number, no reason or key, giving to
    oneself (``transfer_to_self``), a giver or receiver who is not active
    (``member_inactive``), an open refund shortfall on the giver's account
    (``refund_shortfall_open``), more than the available balance (``insufficient_balance``).
    A replay of the key returns the first entry.
    """
    now = now or timezone.now()
    amount = clean_points(amount)
    reason = clean_reason(reason)
    idempotency_key = clean_key(idempotency_key, required=True)
    if giver.pk == receiver.pk:
        raise LoyaltyError("transfer_to_self", _("You cannot give points to yourself."))
    request_hash = _fingerprint({"kind": "transfer_out", "amount": amount, "to": receiver.pk})
    accounts = _lock_pair(giver.pk, receiver.pk)
    account = accounts[giver.pk]
    replay = _replayed_entry(account, idempotency_key, request_hash)
    if replay is not None:
        return replay
    _require_active(giver.pk)
    _require_active(receiver.pk)
    _settle([account], now)
    if account.owed > 0:
        raise LoyaltyError(
            "refund_shortfall_open",
            _("%(owed)s points are still owed from a refund; points cannot be given away until that is settled.")
            % {"owed": account.owed},
        )
    if account.balance < amount:
        raise LoyaltyError(
            "insufficient_balance",
            _("Cannot give %(amount)s: only %(balance)s available.")
            % {"amount": f"{amount:,}", "balance": f"{account.balance:,}"},
            balance=account.balance,
        )
    account.lifetime_spent += amount
    entry = _save_entry(
        account,
        _new_entry(
            account,
            kind=LedgerEntry.Kind.TRANSFER,
            now=now,
            amount=-amount,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
            reason=reason,
            detail={"transfer_to": receiver.pk},
        ),
    )
    _consume(entry, _open_lots(account), amount)
    return entry


def _in_key(out_entry: LedgerEntry) -> str:
    return f"transfer-in:{out_entry.pk}:"


@transaction.atomic
def points_transfer_in(
    *,
    out_entry: LedgerEntry,
    receiver: Member,
    reason: str,
    keep_expiry: bool = True,
    now: dt.datetime | None = None,
) -> list[LedgerEntry]:
    """Credit the receiver with what ``out_entry`` took from the giver: one ``transfer`` entry
    and lot per expiry date of the lots given (``keep_expiry``), or one lot expiring by
    the policy from now. Open refund shortfalls of the receiver are paid first while
    ``LOYALTY_SHORTFALL_SETTLE_FROM_EARNS`` is on, as with any credit. Once per out entry:
    a second call returns the first entries.

    Refuses: an entry that is not a transfer's out entry to this receiver
    (``not_a_transfer``), a receiver who is not active (``member_inactive``), an out
    entry given back already (``transfer_returned``).
    """
    now = now or timezone.now()
    reason = clean_reason(reason)
    if out_entry.kind not in OUT_KINDS or (out_entry.detail or {}).get("transfer_to") != receiver.pk:
        raise LoyaltyError("not_a_transfer", _("This entry is not a transfer to this member."))
    account = _lock_pair(out_entry.member_id, receiver.pk)[receiver.pk]
    done = list(
        LedgerEntry.objects.filter(account=account, idempotency_key__startswith=_in_key(out_entry)).order_by("id")
    )
    if done:
        for entry in done:
            entry.replayed = True
        return done
    if LedgerEntry.objects.filter(reverses=out_entry, kind=LedgerEntry.Kind.REVERSE).exists():
        raise LoyaltyError("transfer_returned", _("These points went back to the giver already."))
    _require_active(receiver.pk)
    _settle([account], now)
    by_expiry: dict[dt.datetime | None, int] = defaultdict(int)
    for expires_at, taken in Allocation.objects.filter(entry=out_entry).values_list("lot__expires_at", "amount"):
        by_expiry[expires_at if keep_expiry else expiry_policy(POINTS).expires_at(now)] += taken
    entries = []
    dates = sorted(by_expiry.items(), key=lambda kv: (kv[0] is None, kv[0] or now))
    for index, (expires_at, amount) in enumerate(dates):
        entry = _save_entry(
            account,
            _new_entry(
                account,
                kind=LedgerEntry.Kind.TRANSFER,
                now=now,
                amount=amount,
                idempotency_key=f"{_in_key(out_entry)}{index}",
                request_hash=_fingerprint({"kind": "transfer_in", "out": out_entry.pk, "index": index}),
                reason=reason,
                detail={"transfer_from": out_entry.member_id, "transfer_out": out_entry.pk},
            ),
        )
        Lot.objects.create(
            account=account,
            member_id=account.member_id,
            currency=POINTS,
            entry=entry,
            amount=amount,
            remaining=amount,
            pending=False,
            available_at=now,
            expires_at=expires_at,
            created_at=now,
        )
        entries.append(entry)
    total = sum(entry.amount for entry in entries)
    if account.owed > 0 and settings.LOYALTY_SHORTFALL_SETTLE_FROM_EARNS:
        _debt_collect(account, up_to=total, now=now)
    return entries


@transaction.atomic
def points_transfer(
    *,
    giver: Member,
    receiver: Member,
    amount: int,
    reason_out: str,
    reason_in: str,
    idempotency_key: str,
    keep_expiry: bool = True,
    now: dt.datetime | None = None,
) -> tuple[LedgerEntry, list[LedgerEntry]]:
    """Give points at once: :func:`points_transfer_out` then :func:`points_transfer_in`."""
    out_entry = points_transfer_out(
        giver=giver, receiver=receiver, amount=amount, reason=reason_out, idempotency_key=idempotency_key, now=now
    )
    return out_entry, points_transfer_in(
        out_entry=out_entry, receiver=receiver, reason=reason_in, keep_expiry=keep_expiry, now=now
    )


@transaction.atomic
def points_transfer_return(*, out_entry: LedgerEntry, reason: str, now: dt.datetime | None = None) -> LedgerEntry:
    """Give a transfer that was not received back to the giver (declined, cancelled):
    exactly the lots it took. Refuses one the receiver got already (``transfer_received``)."""
    receiver_id = (out_entry.detail or {}).get("transfer_to")
    if out_entry.kind not in OUT_KINDS or receiver_id is None:
        raise LoyaltyError("not_a_transfer", _("This entry is not a transfer."))
    accounts = _lock_pair(out_entry.member_id, receiver_id)
    if LedgerEntry.objects.filter(member_id=receiver_id, idempotency_key__startswith=_in_key(out_entry)).exists():
        raise LoyaltyError("transfer_received", _("The receiver has these points already."))
    return _give_back_out(accounts[out_entry.member_id], out_entry, reason=reason, now=now)


def _give_back_out(account: Account, out_entry: LedgerEntry, *, reason: str, now: dt.datetime) -> LedgerEntry:
    """The giver gets exactly the lots ``out_entry`` took (a ``reverse`` entry, once: its
    key is ``reverse:<out entry>``). ``account`` is the giver's, locked."""
    existing = LedgerEntry.objects.filter(account=account, idempotency_key=f"reverse:{out_entry.pk}").first()
    if existing is not None:
        existing.replayed = True
        return existing
    _settle([account], now)
    reversal = _give_back(
        account,
        out_entry,
        up_to=None,
        now=now,
        idempotency_key=f"reverse:{out_entry.pk}",
        request_hash=_fingerprint({"kind": "reverse", "entry": out_entry.pk}),
        reason=clean_reason(reason, required=False),
        detail={"transfer_to": out_entry.detail.get("transfer_to")},
    )
    if reversal is None:  # nothing left to give back; cannot happen for a transfer
        raise LoyaltyError("transfer_returned", _("These points went back to the giver already."))
    return reversal


@transaction.atomic
def points_transfer_reverse(
    *, out_entry: LedgerEntry, reason: str, actor, now: dt.datetime | None = None
) -> tuple[LedgerEntry, LedgerEntry]:
    """Undo a received transfer (staff): take the points back from the receiver (a
    ``refund`` entry, from the transfer's own lots first) and give the giver exactly the
    lots it took (a ``reverse`` entry). The staff check is the caller's.

    Refuses: no reason, a transfer not received (``transfer_not_received``), reversed
    already (``transfer_reversed``), a receiver who no longer has the points
    (``insufficient_balance``: correct it with an adjustment first).
    """
    now = now or timezone.now()
    reason = clean_reason(reason, missing=_("Say why the transfer is reversed: a reason is required."))
    receiver_id = (out_entry.detail or {}).get("transfer_to")
    if out_entry.kind not in OUT_KINDS or receiver_id is None:
        raise LoyaltyError("not_a_transfer", _("This entry is not a transfer."))
    accounts = _lock_pair(out_entry.member_id, receiver_id)
    account = accounts[receiver_id]
    received = list(LedgerEntry.objects.filter(account=account, idempotency_key__startswith=_in_key(out_entry)))
    if not received:
        raise LoyaltyError("transfer_not_received", _("The receiver did not get these points; nothing to reverse."))
    key = f"transfer-reverse:{out_entry.pk}"
    if LedgerEntry.objects.filter(account=account, idempotency_key=key).exists():
        raise LoyaltyError("transfer_reversed", _("This transfer was reversed already."))
    _settle([account], now)
    amount = sum(entry.amount for entry in received)
    if account.balance < amount:
        raise LoyaltyError(
            "insufficient_balance",
            _("The receiver has only %(balance)s of the %(amount)s points left; adjust by hand.")
            % {"balance": account.balance, "amount": amount},
            balance=account.balance,
        )
    taken = _save_entry(
        account,
        _new_entry(
            account,
            kind=LedgerEntry.Kind.REFUND,
            now=now,
            amount=-amount,
            idempotency_key=key,
            request_hash=_fingerprint({"kind": "transfer_reverse", "out": out_entry.pk}),
            reverses=received[0],
            operator=actor,
            reason=reason,
            detail={"transfer_out": out_entry.pk},
        ),
    )
    own = {entry.pk for entry in received}
    lots = sorted(_open_lots(account), key=lambda lot: lot.entry_id not in own)
    _consume(taken, lots, amount)
    given_back = _give_back_out(accounts[out_entry.member_id], out_entry, reason=reason, now=now)
    return taken, given_back


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
