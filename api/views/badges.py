"""Badges and contribution value (docs/programme.md): the member's own and the staff's.

The refusal codes' statuses are registered in ``api.views.programme``."""

from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import LoyaltyError
from programme import badges, contribution, transfers
from programme.models import Badge, MemberBadge

from .. import programme_serializers as s
from ..permissions import IsStaffCaller
from .common import errors, example
from .me import MemberView

BADGE_EXAMPLE = {
    "code": "ten-orders",
    "name": "Regular",
    "description": "Ten orders",
    "condition": "orders",
    "held": False,
    "awarded_at": None,
    "value": "7.00",
    "target": "10.00",
    "percent": 70,
}
MEMBER_BADGE_EXAMPLE = {
    "member_number": "8123456782",
    "badge": "ten-orders",
    "source": "staff",
    "awarded_at": "2026-11-20T15:04:00+08:00",
    "revoked_at": None,
    "revoke_reason": "",
}


class MyBadgesView(MemberView):
    @extend_schema(
        operation_id="me_badges",
        tags=["badges"],
        summary="My badges and the progress toward the others",
        responses={200: s.BadgeProgressOut(many=True), **errors(401, 403)},
        examples=[example("badges", [BADGE_EXAMPLE])],
    )
    def get(self, request):
        return Response(s.BadgeProgressOut(badges.badges_progress(self.member), many=True).data)


def _badge(code: str) -> Badge:
    badge = Badge.objects.filter(code=code).first()
    if badge is None:
        raise LoyaltyError("badge_not_found", _("No badge has the code “%(code)s”.") % {"code": code})
    return badge


class StaffBadgeAwardView(APIView):
    permission_classes = [IsStaffCaller]

    @extend_schema(
        operation_id="programme_badge_award",
        tags=["badges"],
        summary="Award a badge (staff), with a reason",
        description="Needs programme.award_badge and the member in the caller's stores. 409 badge_held.",
        request=s.BadgeAwardIn,
        responses={201: s.MemberBadgeOut, **errors(400, 401, 403, 404, 409)},
        examples=[
            example("award", {"member": "13800138000", "badge": "ten-orders", "reason": "lost receipts"}, request=True)
        ],
    )
    def post(self, request):
        data = s.BadgeAwardIn(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        held = badges.badge_award(
            member=transfers.receiver_find(values["member"]),
            badge=_badge(values["badge"]),
            actor=request.user,
            reason=values["reason"],
        )
        return Response(s.MemberBadgeOut(held).data, status=status.HTTP_201_CREATED)


class StaffBadgeRevokeView(APIView):
    permission_classes = [IsStaffCaller]

    @extend_schema(
        operation_id="programme_badge_revoke",
        tags=["badges"],
        summary="Revoke a badge (staff), with a reason",
        description="Takes back what is left of its points and voids its unused coupon.",
        request=s.BadgeAwardIn,
        responses={200: s.MemberBadgeOut, **errors(400, 401, 403, 404, 409)},
        examples=[example("revoke", MEMBER_BADGE_EXAMPLE)],
    )
    def post(self, request):
        data = s.BadgeAwardIn(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        member = transfers.receiver_find(values["member"])
        held = MemberBadge.objects.filter(member=member, badge=_badge(values["badge"])).first()
        if held is None:
            raise LoyaltyError("badge_not_found", _("This member does not hold this badge."))
        revoked = badges.badge_revoke(held=held, actor=request.user, reason=values["reason"])
        return Response(s.MemberBadgeOut(revoked).data)


STANDING_EXAMPLE = {
    "track": "粉丝",
    "is_owner": False,
    "value": 35,
    "level": {"code": "friend", "name": "Friend", "threshold": 20, "benefits": "Event invitations"},
    "next_level": {"code": "insider", "name": "Insider", "threshold": 100, "benefits": "Test drives"},
    "to_next": 65,
}


class MyContributionView(MemberView):
    @extend_schema(
        operation_id="me_contribution",
        tags=["dual membership"],
        summary="My track (owner or fan), contribution value and level",
        responses={200: s.StandingOut, **errors(401, 403)},
        examples=[example("fan", STANDING_EXAMPLE)],
    )
    def get(self, request):
        return Response(s.StandingOut(contribution.standing(self.member)).data)


class StaffContributionView(APIView):
    permission_classes = [IsStaffCaller]

    @extend_schema(
        operation_id="programme_contribution_record",
        tags=["dual membership"],
        summary="Record an event attended or a community action (staff)",
        description=(
            "Needs programme.record_contribution and the member in the caller's stores. The key names the action: "
            "sent again it answers 200 with the first record; with another kind or amount it is 422."
        ),
        request=s.ContributionIn,
        responses={201: s.ContributionOut, 200: s.ContributionOut, **errors(400, 401, 403, 404, 422)},
        examples=[
            example(
                "event",
                {
                    "member": "13800138000",
                    "kind": "event",
                    "amount": 30,
                    "key": "event:2026-owners-day",
                    "reason": "Owners' day",
                },
                request=True,
            )
        ],
    )
    def post(self, request):
        data = s.ContributionIn(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        record = contribution.contribution_record(
            member=transfers.receiver_find(values["member"]),
            kind=values["kind"],
            amount=values["amount"],
            key=values["key"],
            reason=values["reason"],
            actor=request.user,
        )
        replayed = getattr(record, "replayed", False)
        return Response(
            s.ContributionOut(record).data, status=status.HTTP_200_OK if replayed else status.HTTP_201_CREATED
        )
