"""Merging two member records of one person, and undoing a merge (docs/merge.md).

Two phones, or a mini-program openid bound to an old record: staff pick the record to
keep and the one to merge into it, with a reason. One transaction: the ledger moves the
merged record's lots through ``merge`` entries (``loyalty.services.merge``) and its
orders; each app moves its own rows (``rewards.merge``, ``engagement.merge``,
``programme.merge``); the merged record stays as a pointer (``Member.merged_into``,
closed, so it cannot sign in or earn), and the lookups by its number or phone follow it.
A ``MemberMerge`` row keeps what moved, and an audit row (``StaffAction``) on each member
says who did it and why. Inside ``LOYALTY_MERGE_UNDO_DAYS`` an undo puts back exactly
what moved, unless the moved points were spent since.

The permission is ``members.merge_members`` (``members.scoping.require_staff``), checked
here, so the admin and the API cannot disagree; a store manager reaches only members of
their own stores, both of them.
"""

import datetime as dt
from dataclasses import dataclass, field

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from core.cleaners import clean_reason
from core.errors import LoyaltyError
from engagement import merge as engagement_merge
from loyalty.models import Account, Currency, Order
from loyalty.services import accounts_lock_pair, accounts_merge, accounts_merge_undo, merge_spent_since
from members.models import Member, MemberMerge, StaffAction
from members.scoping import require_staff
from members.services import staff_action_record
from programme import merge as programme_merge
from rewards import merge as rewards_merge

PERMISSION = "members.merge_members"
REFUSAL = ("permission_denied", _("You are not allowed to merge member records."))

# Each app's own rows, in the order they move (and move back in reverse).
APPS = (("rewards", rewards_merge), ("engagement", engagement_merge), ("programme", programme_merge))
IDENTITY = ("wechat_openid", "wechat_unionid")


def undo_window() -> dt.timedelta:
    return dt.timedelta(days=settings.LOYALTY_MERGE_UNDO_DAYS)


def undo_deadline(merge: MemberMerge) -> dt.datetime:
    """Until when ``merge`` can be undone."""
    return merge.created_at + undo_window()


def _label(member: Member) -> str:
    return member.member_number


def _require_mergeable(member: Member) -> None:
    if member.merged_into_id is not None:
        raise LoyaltyError(
            "member_already_merged",
            _("Member %(number)s was already merged into another record.") % {"number": _label(member)},
        )
    if member.erased_at is not None or member.status != Member.Status.ACTIVE:
        state = _("erased") if member.erased_at is not None else Member.Status(member.status).label
        raise LoyaltyError(
            "member_not_mergeable",
            _("Member %(number)s is %(state)s; only active records can be merged.")
            % {"number": _label(member), "state": state},
        )


def _check_pair(keep: Member, merged: Member) -> None:
    if keep.pk == merged.pk:
        raise LoyaltyError("merge_same_member", _("Pick two different member records to merge."))
    _require_mergeable(keep)
    _require_mergeable(merged)


def _lock_members(keep_id: int, merged_id: int) -> tuple[Member, Member]:
    """Both members' accounts, then both member rows, each pair in id order (an earn locks
    the accounts first too, so a merge and an earn cannot deadlock)."""
    accounts_lock_pair(keep_id, merged_id)
    rows = {m.pk: m for m in Member.objects.select_for_update().filter(pk__in=[keep_id, merged_id]).order_by("pk")}
    return rows[keep_id], rows[merged_id]


def member_merge(*, keep: Member, merged: Member, reason: str, actor, now: dt.datetime | None = None) -> MemberMerge:
    """Merge ``merged`` into ``keep`` (see the module's docstring); returns the ``MemberMerge``.

    Refuses: no reason; an actor without ``members.merge_members`` or either member
    outside their stores (``permission_denied``, ``out_of_scope``); the same member twice
    (``merge_same_member``); a record merged already (``member_already_merged``); a frozen,
    closed or erased member (``member_not_mergeable``); an open refund shortfall on either
    side (``refund_shortfall_open``). Merging the same pair again returns the first merge
    (``replayed``) and writes nothing.
    """
    now = now or timezone.now()
    reason = clean_reason(reason, missing=_("Say why these records are merged: a reason is required."))
    require_staff(actor, PERMISSION, members=[keep, merged], refusal=REFUSAL)
    if keep.pk == merged.pk:
        raise LoyaltyError("merge_same_member", _("Pick two different member records to merge."))
    try:
        with transaction.atomic():
            keep, merged = _lock_members(keep.pk, merged.pk)
            live = MemberMerge.objects.filter(merged=merged, keep=keep, undone_at__isnull=True).first()
            if live is not None:
                live.replayed = True
                return live
            _check_pair(keep, merged)
            merge = MemberMerge.objects.create(keep=keep, merged=merged, reason=reason, actor=actor, created_at=now)
            moved = {"status": merged.status, "ledger": accounts_merge(merge=merge, now=now)}
            for name, module in APPS:
                moved[name] = module.member_rows_merge(keep_id=keep.pk, merged_id=merged.pk)
            moved["identity"] = _identity_move(keep, merged)
            Member.objects.filter(pk=merged.pk).update(status=Member.Status.CLOSED, merged_into=keep)
            merge.moved = moved
            merge.save(update_fields=["moved"])
            detail = {"merge": merge.pk, "keep": keep.member_number, "merged": merged.member_number}
            for member in (keep, merged):
                staff_action_record(
                    actor=actor, action=StaffAction.Action.MERGE, member=member, reason=reason, detail=detail
                )
    except IntegrityError:
        # Another merge of the same record committed first (one live merge per record).
        raise LoyaltyError(
            "member_already_merged",
            _("Member %(number)s was already merged into another record.") % {"number": _label(merged)},
        ) from None
    merge.replayed = False
    return merge


def _identity_move(keep: Member, merged: Member) -> dict:
    """The mini-program identity goes with the person: the merged record's openid and
    unionid move to the kept member when it has none of its own (they are unique)."""
    moved = {name: getattr(merged, name) for name in IDENTITY if getattr(merged, name) and not getattr(keep, name)}
    if moved:
        Member.objects.filter(pk=merged.pk).update(**dict.fromkeys(moved))
        Member.objects.filter(pk=keep.pk).update(**moved)
    return moved


def member_merge_undo(*, merge: MemberMerge, reason: str, actor, now: dt.datetime | None = None) -> MemberMerge:
    """Undo ``merge``: put back its lots (``merge`` entries again), orders, rows and the
    mini-program identity, and reactivate the merged record as it was.

    Refuses: no reason; the permission and store scope as :func:`member_merge`; after
    ``LOYALTY_MERGE_UNDO_DAYS`` (``merge_undo_expired``); when the kept member was merged
    into another record since, or is frozen, closed or erased (``member_already_merged``,
    ``member_not_mergeable``); when points the merge moved were spent since
    (``merge_points_spent``); an open refund shortfall (``refund_shortfall_open``). An
    undo of an undone merge returns it (``replayed``) and writes nothing.
    """
    now = now or timezone.now()
    reason = clean_reason(reason, missing=_("Say why the merge is undone: a reason is required."))
    require_staff(actor, PERMISSION, members=[merge.keep_id, merge.merged_id], refusal=REFUSAL)
    with transaction.atomic():
        keep, merged = _lock_members(merge.keep_id, merge.merged_id)
        merge = MemberMerge.objects.select_for_update().get(pk=merge.pk)
        if merge.undone_at is not None:
            merge.replayed = True
            return merge
        if now > undo_deadline(merge):
            raise LoyaltyError(
                "merge_undo_expired",
                _("A merge can be undone for %(days)s days; this one was made on %(date)s.")
                % {"days": settings.LOYALTY_MERGE_UNDO_DAYS, "date": timezone.localdate(merge.created_at)},
            )
        _require_mergeable(keep)
        merge.undone_at, merge.undone_by, merge.undo_reason = now, actor, reason
        moved = dict(merge.moved)
        moved["undo"] = accounts_merge_undo(merge=merge, now=now)
        for name, module in reversed(APPS):
            module.member_rows_unmerge(moved=moved.get(name, {}), keep_id=keep.pk, merged_id=merged.pk)
        identity = moved.get("identity", {})
        if identity:
            Member.objects.filter(pk=keep.pk).update(**dict.fromkeys(identity))
            Member.objects.filter(pk=merged.pk).update(**identity)
        Member.objects.filter(pk=merged.pk).update(status=moved.get("status", Member.Status.ACTIVE), merged_into=None)
        merge.moved = moved
        merge.save(update_fields=["undone_at", "undone_by", "undo_reason", "moved"])
        detail = {"merge": merge.pk, "keep": keep.member_number, "merged": merged.member_number}
        for member in (keep, merged):
            staff_action_record(
                actor=actor, action=StaffAction.Action.MERGE_UNDO, member=member, reason=reason, detail=detail
            )
    merge.replayed = False
    return merge


# --- the preview: what a merge would move, and the balances after --------------------------


@dataclass
class MergePreview:
    keep: Member
    merged: Member
    # per currency: (keep's balance, pending), (merged's), and after the merge
    balances: dict[str, dict[str, tuple[int, int]]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)  # rows that move, by kind
    identity: list[str] = field(default_factory=list)
    refusal: str = ""  # why the merge would be refused, empty when it would go through


def merge_preview(*, keep: Member, merged: Member, actor=None) -> MergePreview:
    """What merging ``merged`` into ``keep`` would do, without writing: the balances
    before and after per currency, how many rows of each kind move, and the refusal the
    merge would meet now, if any. A bounded number of queries whatever the histories."""
    preview = MergePreview(keep=keep, merged=merged)
    figures = {
        (member_id, currency): (balance, pending, owed)
        for member_id, currency, balance, pending, owed in Account.objects.filter(
            member_id__in=[keep.pk, merged.pk]
        ).values_list("member_id", "currency", "balance", "pending", "owed")
    }
    owing = False
    for currency in Currency.values:
        k = figures.get((keep.pk, currency), (0, 0, 0))
        m = figures.get((merged.pk, currency), (0, 0, 0))
        owing = owing or k[2] > 0 or m[2] > 0
        preview.balances[currency] = {
            "keep": k[:2],
            "merged": m[:2],
            "after": (k[0] + m[0], k[1] + m[1]) if keep.pk != merged.pk else k[:2],
        }
    preview.counts = {"orders": Order.objects.filter(member=merged).count()}
    for _name, module in APPS:
        preview.counts.update(module.member_rows_counts(keep_id=keep.pk, merged_id=merged.pk))
    preview.identity = [name for name in IDENTITY if getattr(merged, name) and not getattr(keep, name)]
    try:
        if actor is not None:
            require_staff(actor, PERMISSION, members=[keep, merged], refusal=REFUSAL)
        _check_pair(keep, merged)
        if owing:
            raise LoyaltyError(
                "refund_shortfall_open",
                _("A refund shortfall is still open on one of the records; settle it before merging."),
            )
    except LoyaltyError as error:
        preview.refusal = str(error.message)
    return preview


def merge_undo_refusal(merge: MemberMerge, *, now: dt.datetime | None = None) -> str:
    """Why ``merge`` cannot be undone now (empty when it can), for the admin's list."""
    now = now or timezone.now()
    if merge.undone_at is not None:
        return _("Undone already.")
    if now > undo_deadline(merge):
        return _("The undo window has passed.")
    if merge.keep.merged_into_id is not None or merge.keep.status != Member.Status.ACTIVE:
        return _("The kept member is no longer active.")
    if merge_spent_since(merge):
        return _("Moved points were spent since.")
    return ""
