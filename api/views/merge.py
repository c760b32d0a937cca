"""Member merge for staff (docs/merge.md): merge two records of one person, undo a merge.

The service (``operations.merge``) checks the permission (``members.merge_members``) and
that both members are in the caller's stores; the refusal codes' statuses are in
``api.errors``.
"""

from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import LoyaltyError
from members.models import Member, MemberMerge
from members.services import is_valid_member_number
from operations.merge import member_merge, member_merge_undo, undo_deadline

from .. import merge_serializers as s
from ..permissions import IsStaffCaller
from .common import clean_member_number, errors, example, idempotency_key_parameter, idempotent

MERGE_EXAMPLE = {
    "id": 7,
    "keep": {"member_number": "8123456782", "name": "王芳"},
    "merged": {"member_number": "8123456790", "name": "王芳"},
    "reason": "Same person: old phone number, mini-program bound to the old record",
    "actor": "manager.li",
    "created_at": "2026-11-20T15:04:00+08:00",
    "undo_until": "2026-11-27T15:04:00+08:00",
    "undone_at": None,
    "undo_reason": "",
    "points": {"available": 1200, "pending": 80},
    "growth": {"available": 1200, "pending": 80},
    "moved": {"orders": 5, "coupons": 2, "redemptions": 1, "check_ins": 12, "badges": 1},
    "replayed": False,
}

REFUSALS = (
    "Refused: a number that is no member's (404 member_not_found); the same member twice (400 merge_same_member); "
    "a record merged already (409 member_already_merged); a frozen, closed or erased member (409 "
    "member_not_mergeable); an open refund shortfall on either side (409 refund_shortfall_open); without "
    "members.merge_members (403 permission_denied) or for a member outside the caller's stores (403 out_of_scope)."
)


def _member(raw: str, field: str) -> Member:
    """The record with this number as it is: a merged record is not followed to the one it
    went into (merging it again is refused as such)."""
    number = clean_member_number(raw)
    member = Member.objects.filter(member_number=number).first() if is_valid_member_number(number) else None
    if member is None:
        raise LoyaltyError(
            "member_not_found",
            _("No member has the number “%(number)s”.") % {"number": raw},
            fields={field: _("No member has this number.")},
        )
    return member


def merge_out(merge: MemberMerge) -> dict:
    ledger = merge.moved.get("ledger", {})
    moved = {"orders": len(ledger.get("orders", []))}
    for app in ("rewards", "engagement", "programme"):
        moved |= {name: len(ids) for name, ids in merge.moved.get(app, {}).items()}
    return {
        "id": merge.pk,
        "keep": {"member_number": merge.keep.member_number, "name": merge.keep.name},
        "merged": {"member_number": merge.merged.member_number, "name": merge.merged.name},
        "reason": merge.reason,
        "actor": merge.actor.get_username() if merge.actor else None,
        "created_at": merge.created_at,
        "undo_until": undo_deadline(merge),
        "undone_at": merge.undone_at,
        "undo_reason": merge.undo_reason,
        **{
            currency: {
                "available": (ledger.get(currency) or {}).get("points", 0),
                "pending": (ledger.get(currency) or {}).get("pending", 0),
            }
            for currency in ("points", "growth")
        },
        "moved": moved,
        "replayed": bool(getattr(merge, "replayed", False)),
    }


class MergeView(APIView):
    permission_classes = [IsStaffCaller]

    @extend_schema(
        operation_id="staff_member_merge",
        tags=["members"],
        summary="Merge two member records of one person (staff)",
        description=(
            "Combines the accounts through ledger entries (kind merge: every lot moves with its expiry date, "
            "pending points stay pending), moves orders, coupons, redemptions, check-ins, referrals, journey "
            "runs, badges, contribution and paid membership, and keeps the merged record as a closed pointer: "
            "lookups by its number or phone answer with the kept member. Merging the same pair again answers "
            "200 with the first merge and replayed true. " + REFUSALS
        ),
        parameters=[idempotency_key_parameter(required=False)],
        request=s.MergeIn,
        responses={201: s.MergeOut, 200: s.MergeOut, **errors(400, 401, 403, 404, 409, 422)},
        examples=[
            example(
                "merge",
                {"keep": "8123456782", "merged": "8123456790", "reason": "Same person, two phones"},
                request=True,
            ),
            example("merged", MERGE_EXAMPLE, status=201),
        ],
    )
    def post(self, request):
        data = s.MergeIn(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data

        def run():
            keep, merged = _member(values["keep"], "keep"), _member(values["merged"], "merged")
            merge = member_merge(keep=keep, merged=merged, reason=values["reason"], actor=request.user)
            replayed = getattr(merge, "replayed", False)
            return Response(merge_out(merge), status=status.HTTP_200_OK if replayed else status.HTTP_201_CREATED)

        return idempotent(request, scope="staff_member_merge", run=run)


class MergeUndoView(APIView):
    permission_classes = [IsStaffCaller]

    @extend_schema(
        operation_id="staff_member_merge_undo",
        tags=["members"],
        summary="Undo a member merge (staff), with a reason",
        description=(
            "Within LOYALTY_MERGE_UNDO_DAYS of the merge: moves back what is left of the moved points (merge "
            "entries again) and every row the merge moved, and reactivates the merged record. Undoing an undone "
            "merge answers with it (replayed true). Refused: no such merge (404 merge_not_found), after the window "
            "(409 merge_undo_expired), once moved points were spent, refunded or given away (409 "
            "merge_points_spent), the kept member merged or closed since (409), an open refund shortfall (409), "
            "without the permission or outside the caller's stores (403)."
        ),
        request=s.MergeUndoIn,
        responses={200: s.MergeOut, **errors(400, 401, 403, 404, 409)},
        examples=[
            example("undo", {"reason": "Two people sharing a phone after all"}, request=True),
            example("undone", {**MERGE_EXAMPLE, "undone_at": "2026-11-21T10:00:00+08:00"}),
        ],
    )
    def post(self, request, pk: int):
        data = s.MergeUndoIn(data=request.data)
        data.is_valid(raise_exception=True)
        merge = MemberMerge.objects.select_related("keep", "merged", "actor").filter(pk=pk).first()
        if merge is None:
            raise LoyaltyError("merge_not_found", _("No such merge."))
        undone = member_merge_undo(merge=merge, reason=data.validated_data["reason"], actor=request.user)
        return Response(merge_out(undone))
