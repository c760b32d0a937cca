"""Credits outside orders: staff adjustments, awards (signup bonus, birthday gifts, check-ins,
referrals), benefit grants, and opening balances for imported members.

``_credit`` and its bulk twin ``accounts_open_with_balance`` sit side by side: they write
the same rows (an entry, an account balance, a lot available at once), one for a locked
account, the other in three statements for many new accounts.
"""

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _lazy

from core.bulk import insert_rows
from core.cleaners import clean_key, clean_points, clean_reason
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
