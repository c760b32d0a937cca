"""A member merge's programme rows (docs/merge.md): paid membership, badges, contribution.

Called by ``operations.merge`` inside its transaction. Points transfers stay where they
are: their entries are the merged record's ledger history.
"""

from core.reassign import rows_reassign, rows_restore, rows_to_reassign

from .models import Contribution, MemberBadge, Membership, PartnerEarn, PartnerVoucher, PlanGrant, PlanOrder

# (name in MemberMerge.moved, model, member field, fields that clash with the kept member's rows)
ROWS = (
    ("plan_orders", PlanOrder, "member", ("renews_from",)),
    ("plan_grants", PlanGrant, "member", ("kind", "period", "seq")),
    ("badges", MemberBadge, "member", ("badge",)),
    ("contributions", Contribution, "member", ("key",)),
    ("partner_earns", PartnerEarn, "member", ()),
    ("partner_vouchers", PartnerVoucher, "member", ("idempotency_key",)),
)


def member_rows_merge(*, keep_id: int, merged_id: int) -> dict[str, list[int]]:
    """Move the merged member's paid membership (when the kept member has none), plan
    orders and grants, badges, contribution and partner history to the kept member.

    A badge the kept member holds too, or a contribution under the same key, stays with
    the merged record (the database allows one each). Returns the ids moved, by kind."""
    moved = {
        name: rows_reassign(model, field, keep_id=keep_id, merged_id=merged_id, clash=clash)
        for name, model, field, clash in ROWS
    }
    moved["membership"] = []
    if not Membership.objects.filter(member_id=keep_id).exists():
        moved["membership"] = rows_reassign(Membership, "member", keep_id=keep_id, merged_id=merged_id)
    return moved


def member_rows_counts(*, keep_id: int, merged_id: int) -> dict[str, int]:
    """How many rows of each kind :func:`member_rows_merge` would move now."""
    counts = {
        name: rows_to_reassign(model, field, keep_id=keep_id, merged_id=merged_id, clash=clash).count()
        for name, model, field, clash in ROWS
    }
    counts["membership"] = int(
        not Membership.objects.filter(member_id=keep_id).exists()
        and Membership.objects.filter(member_id=merged_id).exists()
    )
    return counts


def member_rows_unmerge(*, moved: dict, keep_id: int, merged_id: int) -> None:
    """Put back the rows :func:`member_rows_merge` moved (``moved`` is what it returned)."""
    rows_restore(Membership, "member", moved.get("membership", []), keep_id=keep_id, merged_id=merged_id)
    for name, model, field, _clash in ROWS:
        rows_restore(model, field, moved.get(name, []), keep_id=keep_id, merged_id=merged_id)
