"""The ledger's side of a member merge (docs/merge.md): accounts combined through entries.

No balance is edited. For each currency, the merged record's account gives up every lot
it still holds (available and pending) in one ``merge`` entry (negative, allocations per
lot, like a spend), and the kept member's account gets one ``merge`` entry and a new lot
per lot given up, with the same remainder, expiry date, pending flag and release date, so
nothing expires earlier or later and pending points are still pending. The new lot's
entry keeps where the points came from (``detail``: the merge, the lot it came from, the
earn's own lot and order), which a later refund of that order follows
(``refunds._live_lot``). The audit's invariants hold on both accounts after every step.

An undo moves back what is left of those lots the same way, refused once any of them was
spent, refunded or given away since (an expiry is no spending: what expired stays expired).

Both members' accounts are locked in member-id order (every currency), so a merge and an
earn, spend or transfer of either member serialise, and two merges cannot deadlock. Each
entry's idempotency key names the merge (``merge:<id>:...``): running a merge or its undo
again writes nothing.
"""

import datetime as dt
from collections.abc import Sequence

from django.db import transaction
from django.db.models import F, Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from core.errors import LoyaltyError
from members.models import MemberMerge

from ..models import Account, Allocation, LedgerEntry, Lot, Order
from ..tiers import tier_upgrade_if_qualified
from .entries import CURRENCIES, _fingerprint, _lock_members_accounts, _new_entry, _save_entry
from .settling import _settle

MERGE = LedgerEntry.Kind.MERGE


def accounts_lock_pair(first_id: int, second_id: int) -> dict[int, dict[str, Account]]:
    """Both members' accounts (every currency), locked as :func:`_lock_members_accounts` does."""
    return _lock_members_accounts((first_id, second_id))


def _require_no_debt(accounts: Sequence[Account]) -> None:
    for account in accounts:
        if account.owed > 0:
            raise LoyaltyError(
                "refund_shortfall_open",
                _(
                    "Member %(member)s still owes %(owed)s %(currency)s from a refund; records cannot be merged "
                    "or separated until that is settled."
                )
                % {"member": account.member_id, "owed": account.owed, "currency": account.get_currency_display()},
            )


def _move_lots(
    source: Account,
    target: Account,
    lots: Sequence[Lot],
    *,
    merge: MemberMerge,
    key: str,
    now: dt.datetime,
    reason: str,
) -> dict:
    """Empty ``lots`` (open lots of ``source``, locked, with their entries) into new lots of
    ``target``: one ``merge`` entry on ``source`` (``merge:<id>:<key>-out``) and one entry
    and lot per lot on ``target`` (``...-in:<lot id>``). Both accounts locked and settled."""
    lots = [lot for lot in lots if lot.remaining > 0]
    if not lots:
        return {"out": None, "in": [], "points": 0, "pending": 0}
    available = sum(lot.remaining for lot in lots if not lot.pending)
    pending = sum(lot.remaining for lot in lots if lot.pending)
    prefix = f"merge:{merge.pk}:{key}"
    common = {"operator": merge.undone_by if key == "undo" else merge.actor, "reason": reason[:200]}
    out = _save_entry(
        source,
        _new_entry(
            source,
            kind=MERGE,
            now=now,
            amount=-available,
            pending_amount=-pending,
            idempotency_key=f"{prefix}-out",
            request_hash=_fingerprint({"kind": "merge_out", "merge": merge.pk, "step": key}),
            detail={"merge": merge.pk, "step": key, "to_member": target.member_id, "lots": len(lots)},
            **common,
        ),
    )
    Allocation.objects.bulk_create(Allocation(entry=out, lot=lot, amount=lot.remaining) for lot in lots)
    Lot.objects.filter(pk__in=[lot.pk for lot in lots]).update(remaining=0)

    entries, new_lots = [], []
    for lot in lots:
        origin = lot.entry.detail.get("origin_lot", lot.pk) if lot.entry.kind == MERGE else lot.pk
        order_id = lot.entry.detail.get("order") if lot.entry.kind == MERGE else lot.entry.order_id
        entry = _new_entry(
            target,
            kind=MERGE,
            now=now,
            amount=0 if lot.pending else lot.remaining,
            pending_amount=lot.remaining if lot.pending else 0,
            idempotency_key=f"{prefix}-in:{lot.pk}",
            request_hash=_fingerprint({"kind": "merge_in", "merge": merge.pk, "step": key, "lot": lot.pk}),
            store_id=lot.entry.store_id,
            detail={
                "merge": merge.pk,
                "step": key,
                "from_member": source.member_id,
                "from_lot": lot.pk,
                "origin_lot": origin,
                "order": order_id,
            },
            **common,
        )
        entries.append(entry)
        new_lots.append(
            Lot(
                account=target,
                member_id=target.member_id,
                currency=target.currency,
                amount=lot.remaining,
                remaining=lot.remaining,
                pending=lot.pending,
                available_at=lot.available_at,
                expires_at=lot.expires_at,
                created_at=now,
            )
        )
    LedgerEntry.objects.bulk_create(entries)  # ids in insertion order: the last one is the account's latest
    for entry, lot in zip(entries, new_lots, strict=True):
        lot.entry = entry
    Lot.objects.bulk_create(new_lots)
    target.save(update_fields=["balance", "pending", "updated_at"])
    return {"out": out.pk, "in": [entry.pk for entry in entries], "points": available, "pending": pending}


def _open_lots_with_entries(account: Account) -> list[Lot]:
    return list(
        Lot.objects.select_for_update(of=("self",))
        .select_related("entry")
        .filter(account=account, remaining__gt=0)
        .order_by(F("expires_at").asc(nulls_last=True), "id")
    )


@transaction.atomic
def accounts_merge(*, merge: MemberMerge, now: dt.datetime | None = None) -> dict:
    """Move every open lot of ``merge.merged``'s accounts into ``merge.keep``'s, through
    ``merge`` entries (see the module's docstring), and move the merged record's orders
    to the kept member. May lift the kept member's tier (the growth moved counts at once).

    Returns what moved per currency (entry ids, available and pending points) and the
    order ids, for ``MemberMerge.moved``. Running it again for the same merge writes
    nothing and returns what the first run wrote.

    Refuses an open refund shortfall on either member's account (``refund_shortfall_open``):
    a debt is settled first, so the audit's value figure stays exact on both sides.
    """
    now = now or timezone.now()
    locked = accounts_lock_pair(merge.keep_id, merge.merged_id)
    source, target = locked[merge.merged_id], locked[merge.keep_id]
    done = LedgerEntry.objects.filter(idempotency_key__startswith=f"merge:{merge.pk}:merge-out").exists()
    if done:
        return merge.moved.get("ledger", {})
    every = [*source.values(), *target.values()]
    _settle(every, now)
    _require_no_debt(every)
    moved: dict = {}
    for currency in CURRENCIES:
        moved[currency] = _move_lots(
            source[currency],
            target[currency],
            _open_lots_with_entries(source[currency]),
            merge=merge,
            key="merge",
            now=now,
            reason=_("Merged from member %(number)s: %(reason)s")
            % {"number": merge.merged.member_number, "reason": merge.reason},
        )
    order_ids = list(Order.objects.filter(member_id=merge.merged_id).values_list("pk", flat=True))
    Order.objects.filter(pk__in=order_ids).update(member_id=merge.keep_id)
    moved["orders"] = order_ids
    growth = target["growth"]
    if moved["growth"]["points"] or moved["growth"]["pending"]:
        tier_upgrade_if_qualified(member_id=merge.keep_id, growth=growth.balance + growth.pending, now=now)
    return moved


def merge_spent_since(merge: MemberMerge) -> int:
    """How many points (both currencies) of the lots ``merge`` gave the kept member were
    taken since by anything but an expiry: spent, refunded, given away, merged on."""
    taken = (
        Allocation.objects.filter(
            lot__entry__idempotency_key__startswith=f"merge:{merge.pk}:merge-in:",
            lot__account__member_id=merge.keep_id,
        )
        .exclude(entry__kind=LedgerEntry.Kind.EXPIRE)
        .aggregate(total=Sum("amount"))["total"]
    )
    return taken or 0


@transaction.atomic
def accounts_merge_undo(*, merge: MemberMerge, now: dt.datetime | None = None) -> dict:
    """Move back what is left of the lots ``merge`` gave the kept member (``merge``
    entries again, keys ``merge:<id>:undo-...``) and the orders it moved.

    Refuses points of the merge spent, refunded, given away or merged on since
    (``merge_points_spent``: an expiry is fine, those points are gone either way) and an
    open refund shortfall on either side (``refund_shortfall_open``). Running it again
    writes nothing.
    """
    now = now or timezone.now()
    locked = accounts_lock_pair(merge.keep_id, merge.merged_id)
    source, target = locked[merge.keep_id], locked[merge.merged_id]
    if LedgerEntry.objects.filter(idempotency_key__startswith=f"merge:{merge.pk}:undo-out").exists():
        return merge.moved.get("undo", {})
    every = [*source.values(), *target.values()]
    _settle(every, now)
    spent = merge_spent_since(merge)
    if spent:
        raise LoyaltyError(
            "merge_points_spent",
            _(
                "%(spent)s of the points this merge moved were spent, refunded or given away since; "
                "the merge cannot be undone. Correct the accounts with adjustments instead."
            )
            % {"spent": f"{spent:,}"},
        )
    _require_no_debt(every)
    moved: dict = {}
    for currency in CURRENCIES:
        lots = [
            lot
            for lot in _open_lots_with_entries(source[currency])
            if (lot.entry.idempotency_key or "").startswith(f"merge:{merge.pk}:merge-in:")
        ]
        moved[currency] = _move_lots(
            source[currency],
            target[currency],
            lots,
            merge=merge,
            key="undo",
            now=now,
            reason=_("Merge with member %(number)s undone: %(reason)s")
            % {"number": merge.keep.member_number, "reason": merge.undo_reason or merge.reason},
        )
    order_ids = merge.moved.get("ledger", {}).get("orders", [])
    Order.objects.filter(pk__in=order_ids, member_id=merge.keep_id).update(member_id=merge.merged_id)
    moved["orders"] = order_ids
    return moved


def merged_points_forward(*, source: Account, target: Account, step: str, now: dt.datetime) -> dict:
    """Move what a merged record's account holds again (points given back to its lots after
    the merge: a refund of a moved order that was paid partly with points) to ``target``,
    the account of the member the order is with now, like the merge moved the rest
    (keys ``merge:<id>:<step>-...``). Both accounts locked and settled by the caller."""
    merge = MemberMerge.objects.filter(merged_id=source.member_id, undone_at__isnull=True).select_related("merged")
    merge = merge.first()
    if merge is None:
        return {}
    return _move_lots(
        source,
        target,
        _open_lots_with_entries(source),
        merge=merge,
        key=step,
        now=now,
        reason=_("Given back to merged member %(number)s, moved on") % {"number": merge.merged.member_number},
    )
