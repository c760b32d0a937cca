"""A member merge's engagement rows (docs/merge.md): check-ins, referrals, journey runs.

Called by ``operations.merge`` inside its transaction.
"""

from django.db.models import Q

from core.reassign import rows_reassign, rows_restore, rows_to_reassign

from .models import CheckIn, JourneyPosition, JourneyRun, JourneyStepRun, Referral


def member_rows_merge(*, keep_id: int, merged_id: int) -> dict[str, list[int]]:
    """Move the merged member's check-ins, referrals made, the referral that brought them
    (when the kept member has none), and journey runs with their positions and steps.

    Stay with the merged record: a check-in on a day the kept member also checked in, a
    journey run for an event the kept member's run of the same journey already has, and a
    referral between the two (it would become a referral of oneself). Returns the ids
    moved, by kind."""
    moved = {
        "check_ins": rows_reassign(CheckIn, "member", keep_id=keep_id, merged_id=merged_id, clash=("day",)),
        "referrals_made": rows_reassign(
            Referral, "referrer", keep_id=keep_id, merged_id=merged_id, exclude=Q(referee_id=keep_id)
        ),
        "referral": [],
        "journey_runs": rows_reassign(
            JourneyRun, "member", keep_id=keep_id, merged_id=merged_id, clash=("journey", "event_key")
        ),
    }
    if not Referral.objects.filter(referee_id=keep_id).exists():
        moved["referral"] = rows_reassign(
            Referral, "referee", keep_id=keep_id, merged_id=merged_id, exclude=Q(referrer_id=keep_id)
        )
    runs = moved["journey_runs"]
    if runs:
        JourneyPosition.objects.filter(run_id__in=runs).update(member_id=keep_id)
        JourneyStepRun.objects.filter(run_id__in=runs).update(member_id=keep_id)
    return moved


def member_rows_counts(*, keep_id: int, merged_id: int) -> dict[str, int]:
    """How many rows of each kind :func:`member_rows_merge` would move now."""
    referral = 0
    if not Referral.objects.filter(referee_id=keep_id).exists():
        referral = Referral.objects.filter(referee_id=merged_id).exclude(referrer_id=keep_id).count()
    return {
        "check_ins": rows_to_reassign(CheckIn, "member", keep_id=keep_id, merged_id=merged_id, clash=("day",)).count(),
        "referrals_made": rows_to_reassign(
            Referral, "referrer", keep_id=keep_id, merged_id=merged_id, exclude=Q(referee_id=keep_id)
        ).count(),
        "referral": referral,
        "journey_runs": rows_to_reassign(
            JourneyRun, "member", keep_id=keep_id, merged_id=merged_id, clash=("journey", "event_key")
        ).count(),
    }


def member_rows_unmerge(*, moved: dict, keep_id: int, merged_id: int) -> None:
    """Put back the rows :func:`member_rows_merge` moved (``moved`` is what it returned)."""
    rows_restore(CheckIn, "member", moved.get("check_ins", []), keep_id=keep_id, merged_id=merged_id)
    rows_restore(Referral, "referrer", moved.get("referrals_made", []), keep_id=keep_id, merged_id=merged_id)
    rows_restore(Referral, "referee", moved.get("referral", []), keep_id=keep_id, merged_id=merged_id)
    runs = moved.get("journey_runs", [])
    rows_restore(JourneyRun, "member", runs, keep_id=keep_id, merged_id=merged_id)
    if runs:
        JourneyPosition.objects.filter(run_id__in=runs).update(member_id=merged_id)
        JourneyStepRun.objects.filter(run_id__in=runs).update(member_id=merged_id)
