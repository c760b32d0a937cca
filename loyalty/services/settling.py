"""Settling accounts: releasing pending points, expiring old ones, paying refund debts.

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
from collections import defaultdict
from collections.abc import Sequence

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from ..models import Account, Allocation, LedgerEntry, Lot, Refund
from .entries import _consume, _new_entry, _open_lots, _save_entry

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
    refund and its order) with allocations, taking first what is left of the refunded
    order's own lot (the points the refund could not take, come back by a reversal),
    then the other lots first in, first out like a spend. Taking another order's points
    while the refunded order's own points stay to expire would charge the member twice:
    once by the expiry, and again when that other order is refunded and claims its
    points back. The refund's ``<currency>_settled`` and ``account.owed`` go down by the
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
    order_of_lot = dict(Lot.objects.filter(pk__in=[lot.pk for lot in lots]).values_list("pk", "entry__order_id"))
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
        _consume(entry, sorted(lots, key=lambda lot: order_of_lot[lot.pk] != refund.order_id), pay)
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


def lots_release_matured(
    *,
    now: dt.datetime | None = None,
    chunk_size: int = 1000,
    members: tuple[int, int] | None = None,
    owing_only: bool = False,
) -> int:
    """Release every pending lot whose return window has ended; returns entries written.

    Released points pay the member's open refund shortfalls (``settle`` entries) while
    ``LOYALTY_SHORTFALL_SETTLE_FROM_EARNS`` is on. ``members`` (lo, hi) limits the run to
    member ids ``lo <= id < hi``; ``owing_only`` to accounts with an open debt (the
    set-based release in ``loyalty.jobs`` leaves those to this path).

    Safe to run twice, concurrently, or again after being stopped halfway.
    """
    now = now or timezone.now()
    due = {"pending": True, "available_at__lte": now}
    if members is not None:
        due |= {"member_id__gte": members[0], "member_id__lt": members[1]}
    if owing_only:
        due["account__owed__gt"] = 0
    return _run_in_chunks(due, _release_and_collect, now=now, chunk_size=chunk_size)


def lots_expire_due(*, now: dt.datetime | None = None, chunk_size: int = 1000) -> int:
    """Expire what remains of every lot past its expiry; returns entries written.

    Safe to run twice, concurrently, or again after being stopped halfway.
    """
    now = now or timezone.now()
    due = {"pending": False, "remaining__gt": 0, "expires_at__lte": now}
    return _run_in_chunks(due, _expire, now=now, chunk_size=chunk_size)
