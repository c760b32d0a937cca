"""A member merge's rewards rows (docs/merge.md): coupons and redemptions go to the kept member.

Called by ``operations.merge`` inside its transaction; the ledger side (the points the
redemptions spent stay on the merged record's account, as history) is
``loyalty.services.merge``.
"""

from core.reassign import rows_reassign, rows_restore, rows_to_reassign

from .models import Coupon, Redemption

# (name in MemberMerge.moved, model, member field, fields that clash with the kept member's rows)
ROWS = (
    ("coupons", Coupon, "member", ("benefit", "period")),
    ("redemptions", Redemption, "member", ("idempotency_key",)),
)


def member_rows_merge(*, keep_id: int, merged_id: int) -> dict[str, list[int]]:
    """Move the merged member's coupons (used or not) and redemptions to the kept member.

    A benefit coupon of a period the kept member also got (two birthday coupons of one
    year) stays with the merged record, so the database's once-per-period rule holds.
    Returns the ids moved, by kind."""
    return {
        name: rows_reassign(model, field, keep_id=keep_id, merged_id=merged_id, clash=clash)
        for name, model, field, clash in ROWS
    }


def member_rows_counts(*, keep_id: int, merged_id: int) -> dict[str, int]:
    """How many rows of each kind :func:`member_rows_merge` would move now."""
    counts = {
        name: rows_to_reassign(model, field, keep_id=keep_id, merged_id=merged_id, clash=clash).count()
        for name, model, field, clash in ROWS
    }
    return counts


def member_rows_unmerge(*, moved: dict, keep_id: int, merged_id: int) -> None:
    """Put back the rows :func:`member_rows_merge` moved (``moved`` is what it returned)."""
    for name, model, field, _clash in ROWS:
        rows_restore(model, field, moved.get(name, []), keep_id=keep_id, merged_id=merged_id)
