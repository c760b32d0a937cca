"""Moving rows from one member to another and back, for a member merge (docs/merge.md).

Each app's ``merge`` module names its own rows; these two helpers do the moving, set-based
(one read of the ids, one UPDATE), so a merge costs a few statements per kind of row
whatever the history's length.
"""

from django.db.models import Exists, Model, OuterRef, Q, QuerySet


def rows_reassign(
    model: type[Model],
    field: str,
    *,
    keep_id: int,
    merged_id: int,
    clash: tuple[str, ...] = (),
    exclude: Q | None = None,
) -> list[int]:
    """Point ``field`` of ``model``'s rows of the merged member at the kept one; return their ids.

    ``clash``: the other fields of a unique constraint with ``field`` (the kept member's
    check-in of the same day, badge of the same kind): rows that would break it stay
    where they are. ``exclude``: rows that must not move (a referral of the kept member
    by the merged one would become a referral of oneself).
    """
    rows = rows_to_reassign(model, field, keep_id=keep_id, merged_id=merged_id, clash=clash, exclude=exclude)
    ids = sorted(rows.values_list("pk", flat=True))
    if ids:
        model._default_manager.filter(pk__in=ids).update(**{f"{field}_id": keep_id})
    return ids


def rows_to_reassign(
    model: type[Model],
    field: str,
    *,
    keep_id: int,
    merged_id: int,
    clash: tuple[str, ...] = (),
    exclude: Q | None = None,
) -> QuerySet:
    """The rows :func:`rows_reassign` would move (for a preview's counts)."""
    rows = model._default_manager.filter(**{f"{field}_id": merged_id})
    if clash:
        same = model._default_manager.filter(**{f"{field}_id": keep_id}, **{name: OuterRef(name) for name in clash})
        rows = rows.exclude(Exists(same))
    if exclude is not None:
        rows = rows.exclude(exclude)
    return rows


def rows_restore(model: type[Model], field: str, ids: list[int], *, keep_id: int, merged_id: int) -> int:
    """Point ``field`` of the rows ``ids`` back at the merged member (those still at the kept one)."""
    if not ids:
        return 0
    return model._default_manager.filter(pk__in=ids, **{f"{field}_id": keep_id}).update(**{f"{field}_id": merged_id})
