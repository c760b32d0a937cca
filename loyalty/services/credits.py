"""Credits outside orders: staff adjustments, awards (signup bonus, birthday gifts, check-ins,
referrals), benefit grants, and opening balances for imported members.

``_credit`` and its bulk twin ``accounts_open_with_balance`` sit side by side: they write
the same rows (an entry, an account balance, a lot available at once), one for a locked
account, the other in three statements for many new accounts; ``points_award_bulk`` is
``points_adjust``'s twin for a staff award to many members (the bulk award's chunks).
"""

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _lazy

from core.bulk import insert_rows
from core.cleaners import clean_key, clean_points, clean_reason
from core.db import is_postgresql
from core.errors import LoyaltyError
from members.models import Member, Store
from members.scoping import require_staff

from ..models import Account, BenefitGrant, Currency, LedgerEntry, Lot
from ..policies import expiry_policy
from ..tiers import tier_upgrade_if_qualified
from .entries import (
    CURRENCIES,
    _consume,
    _fingerprint,
    _lock_accounts,
    _new_entry,
    _open_lot,
    _open_lots,
    _replayed_entry,
    _require_active,
    _save_entry,
)
from .settling import _debt_collect, _settle

# --- staff adjustments ----------------------------------------------------------------

ADJUST_PERMISSION = "loyalty.adjust_points"
ADJUST_REFUSAL = (
    "operator_required",
    _lazy("Only a staff user with the “adjust points” permission can adjust points."),
)


@transaction.atomic
def points_adjust(
    *,
    member: Member,
    currency: str,
    amount: int,
    reason: str,
    actor: AbstractBaseUser,
    idempotency_key: str | None = None,
    now: dt.datetime | None = None,
) -> LedgerEntry:
    """A staff correction: add (a new lot, available at once) or remove points or growth.

    Refuses: an unknown currency, no reason (``reason_required``) or one over 200
    characters (``reason_too_long``), an actor who is not an active staff user with the
    "adjust points" permission (``operator_required``), removing more than the available
    balance. Works on frozen members too: corrections are what staff do there. The
    staff's store scope and adjustment limit are the staff action's to check
    (``operations.actions.member_points_adjust``, which every screen calls).
    """
    now = now or timezone.now()
    if currency not in CURRENCIES:
        raise LoyaltyError("invalid_currency", _("Unknown currency “%(currency)s”.") % {"currency": currency})
    amount = clean_points(amount, allow_negative=True)
    reason = clean_reason(reason, missing=_("Say why you are adjusting: a reason is required."))
    require_staff(actor, ADJUST_PERMISSION, refusal=ADJUST_REFUSAL)
    idempotency_key = clean_key(idempotency_key, required=False) or f"adjust:{uuid.uuid4()}"
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
    fields = {"idempotency_key": idempotency_key, "request_hash": request_hash, "operator": actor, "reason": reason}
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
    amount = clean_points(amount)
    reason = clean_reason(reason)
    idempotency_key = clean_key(idempotency_key, required=True)
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


# --- staff awards to many members at once (bulk awards) ----------------------------------


@dataclass(frozen=True)
class BulkAward:
    """One member's outcome in :func:`points_award_bulk`: the entry written (or found, when
    ``replayed``) and the balance after it, or the refusal ``error``."""

    entry_id: int | None = None
    balance_after: int | None = None
    replayed: bool = False
    error: LoyaltyError | None = None


@transaction.atomic
def points_award_bulk(
    awards: Sequence[tuple[int, str, int]],
    *,
    reason: str,
    actor: AbstractBaseUser,
    now: dt.datetime | None = None,
) -> dict[int, BulkAward]:
    """A positive staff adjustment of points for many members, each with its own key:
    ``awards`` lists (member id, idempotency key, points), each member once. Returns each
    member's :class:`BulkAward`.

    For each member it writes exactly the rows ``points_adjust(currency="points", ...)``
    writes (loyalty/tests/test_award_bulk.py compares both): the ADJUST entry with the
    operator, reason, key and fingerprint, a lot available at once under the points
    expiry policy, the balance and lifetime earned; an entry already written under the
    key is returned as ``replayed`` (a different award under it: ``idempotency_key_reused``).
    Unlike ``points_adjust`` it refuses, member by member, those not active (frozen,
    closed or erased: ``member_inactive``) and a points figure that is not a positive
    whole number (``invalid_amount``). Refuses the whole call: no reason, an actor without
    the "adjust points" permission (``operator_required``). The staff's store scope and
    adjustment limit are the caller's to check, once for the total.

    On PostgreSQL the common case goes set-based, a few statements for all of them: lock
    the points accounts (id order; missing ones opened), read the replays, then insert
    the entries, insert the lots, update the accounts. A member with an open refund debt
    (``owed``) or lots due to be released or expired goes through ``points_adjust`` in a
    savepoint of its own, so settling and the debt rules stay in one place; so does every
    member on other databases.
    """
    now = now or timezone.now()
    reason = clean_reason(reason, missing=_("Say why you are adjusting: a reason is required."))
    require_staff(actor, ADJUST_PERMISSION, refusal=ADJUST_REFUSAL)
    currency, kind = Currency.POINTS, LedgerEntry.Kind.ADJUST
    results: dict[int, BulkAward] = {}
    wanted: dict[int, tuple[str, int]] = {}
    for member_id, key, points in awards:
        if member_id in wanted or member_id in results:
            raise ValueError(f"member {member_id} is listed twice")
        try:
            wanted[member_id] = (clean_key(key, required=True), clean_points(points))
        except LoyaltyError as error:
            results[member_id] = BulkAward(error=error)
    if not wanted:
        return results
    if not is_postgresql():
        return results | _award_one_by_one(list(wanted), wanted, reason=reason, actor=actor, now=now)

    def lock(member_ids) -> list[tuple]:
        lots = Lot.objects.filter(account_id=OuterRef("pk"))
        return list(
            Account.objects.select_for_update(of=("self",))
            .filter(member_id__in=member_ids, currency=currency)
            .annotate(
                release_due=Exists(lots.filter(pending=True, available_at__lte=now)),
                expiry_due=Exists(lots.filter(pending=False, remaining__gt=0, expires_at__lte=now)),
            )
            .order_by("id")
            .values_list(
                "id",
                "member_id",
                "balance",
                "pending",
                "lifetime_earned",
                "owed",
                "member__status",
                "member__erased_at",
                "release_due",
                "expiry_due",
            )
        )

    rows = lock(list(wanted))
    missing = set(wanted) - {row[1] for row in rows}
    if missing:  # opened for active members only: a refused member is left as it was
        found = Member.objects.filter(pk__in=missing).values_list("pk", "status", "erased_at")
        statuses = {pk: Member.Status.CLOSED if erased_at else status for pk, status, erased_at in found}
        opening = sorted(pk for pk, status in statuses.items() if status == Member.Status.ACTIVE)
        Account.objects.bulk_create(
            [Account(member_id=member_id, currency=currency, updated_at=now) for member_id in opening],
            ignore_conflicts=True,
        )
        rows += lock(opening)
        for member_id in missing - set(opening):
            status = statuses.get(member_id)
            results[member_id] = BulkAward(
                error=_inactive(status)
                if status
                else LoyaltyError("member_not_found", _("No member with this member number."))
            )
    fingerprints = {
        points: _fingerprint({"kind": kind, "currency": currency, "amount": points, "reason": reason})
        for points in {points for _key, points in wanted.values()}
    }
    keyed = {
        (account_id, key): (entry_id, request_hash, balance_after)
        for account_id, key, entry_id, request_hash, balance_after in LedgerEntry.objects.filter(
            account_id__in=[row[0] for row in rows], idempotency_key__in={key for key, _p in wanted.values()}
        ).values_list("account_id", "idempotency_key", "id", "request_hash", "balance_after")
    }
    clean, one_by_one = [], []
    for account_id, member_id, balance, pending, earned, owed, status, erased_at, release_due, expiry_due in rows:
        key, points = wanted[member_id]
        replay = keyed.get((account_id, key))
        if replay is not None:
            entry_id, request_hash, balance_after = replay
            results[member_id] = (
                BulkAward(entry_id=entry_id, balance_after=balance_after, replayed=True)
                if request_hash == fingerprints[points]
                else BulkAward(
                    error=LoyaltyError(
                        "idempotency_key_reused",
                        _(
                            "This idempotency key was already used for a different request. "
                            "Send a new key for a new request."
                        ),
                    )
                )
            )
        elif status != Member.Status.ACTIVE or erased_at is not None:
            results[member_id] = BulkAward(error=_inactive(status))
        elif owed > 0 or release_due or expiry_due:
            one_by_one.append(member_id)
        else:
            clean.append((account_id, member_id, balance + points, earned + points, key, points, pending))
    if clean:
        entries = insert_rows(
            LedgerEntry,
            [
                {
                    "account_id": account_id,
                    "member_id": member_id,
                    "amount": points,
                    "balance_after": balance,
                    "pending_after": pending,
                    "idempotency_key": key,
                    "request_hash": fingerprints[points],
                }
                for account_id, member_id, balance, _earned, key, points, pending in clean
            ],
            same={
                "currency": currency,
                "kind": kind,
                "operator_id": actor.pk,
                "reason": reason,
                "detail": {},
                "created_at": now,
            },
            returning=("id", "account_id", "member_id", "amount", "balance_after"),
        )
        insert_rows(
            Lot,
            [
                {"account_id": account_id, "member_id": member_id, "entry_id": entry_id, "amount": amount}
                | {"remaining": amount}
                for entry_id, account_id, member_id, amount, _balance in entries
            ],
            same={
                "currency": currency,
                "pending": False,
                "available_at": now,
                "expires_at": expiry_policy(currency).expires_at(now),
                "created_at": now,
            },
        )
        _accounts_credit(clean, now)
        for entry_id, _account_id, member_id, _amount, balance_after in entries:
            results[member_id] = BulkAward(entry_id=entry_id, balance_after=balance_after)
    if one_by_one:
        results |= _award_one_by_one(one_by_one, wanted, reason=reason, actor=actor, now=now)
    return results


def _inactive(status: str) -> LoyaltyError:
    return LoyaltyError(
        "member_inactive",
        _("This member is %(status)s and cannot earn or spend points. Reactivate the member first.")
        % {"status": Member.Status(status).label},
    )


def _accounts_credit(clean: list[tuple], now: dt.datetime) -> None:
    """The new balances and lifetime figures of the locked accounts, one statement."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {connection.ops.quote_name(Account._meta.db_table)} AS t "
            "SET balance = v.balance, lifetime_earned = v.earned, updated_at = %s "
            "FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[]) AS v(id, balance, earned) WHERE t.id = v.id",
            [now, [row[0] for row in clean], [row[2] for row in clean], [row[3] for row in clean]],
        )


def _award_one_by_one(
    member_ids: list[int], wanted: dict[int, tuple[str, int]], *, reason: str, actor, now: dt.datetime
) -> dict[int, BulkAward]:
    """:func:`points_award_bulk` through ``points_adjust``, a savepoint per member."""
    results = {}
    for member in Member.objects.filter(pk__in=member_ids).order_by("pk"):
        key, points = wanted[member.pk]
        try:
            with transaction.atomic():
                if member.status != Member.Status.ACTIVE or member.erased_at is not None:
                    replay = LedgerEntry.objects.filter(
                        account__member=member, account__currency=Currency.POINTS, idempotency_key=key
                    ).first()
                    if replay is None:
                        raise _inactive(member.status)
                entry = points_adjust(
                    member=member,
                    currency=Currency.POINTS,
                    amount=points,
                    reason=reason,
                    actor=actor,
                    idempotency_key=key,
                    now=now,
                )
        except LoyaltyError as error:
            results[member.pk] = BulkAward(error=error)
            continue
        results[member.pk] = BulkAward(entry_id=entry.pk, balance_after=entry.balance_after, replayed=entry.replayed)
    return results
