"""The signed-in member's daily check-in and referral code (docs/engagement.md)."""

from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from engagement.checkin import check_in_status, member_check_in
from engagement.referrals import referral_share_text, referral_summary

from .common import errors, example, idempotency_key_parameter, idempotent
from .me import MemberView


class DayMarkOut(serializers.Serializer):
    day = serializers.DateField()
    checked_in = serializers.BooleanField()
    points = serializers.IntegerField()


class CheckInStatusOut(serializers.Serializer):
    today = serializers.DateField(help_text="Today in the programme's time zone.")
    checked_in_today = serializers.BooleanField()
    streak = serializers.IntegerField(help_text="Days in a row so far (0: no streak).")
    points_today = serializers.IntegerField(help_text="Points today's check-in earned (0 before checking in).")
    next_day = serializers.DateField(help_text="When the next check-in can be made: today or tomorrow.")
    next_streak = serializers.IntegerField(help_text="Day of the streak the next check-in will be.")
    next_points = serializers.IntegerField(help_text="Points the next check-in earns.")
    week = DayMarkOut(many=True, help_text="The last 7 days, oldest first.")


class CheckInOut(serializers.Serializer):
    day = serializers.DateField()
    streak = serializers.IntegerField(help_text="Day of the streak this check-in is.")
    points = serializers.IntegerField(help_text="Points awarded (a ledger entry with reason “Daily check-in”).")
    status = CheckInStatusOut()


class ReferralOut(serializers.Serializer):
    code = serializers.CharField(help_text="The member's referral code, created on first request and kept.")
    share_link = serializers.CharField(help_text="The sign-in page with the code filled in.")
    share_text = serializers.CharField(help_text="A message to share, in the request's language.")
    points = serializers.IntegerField(help_text="Points each side gets once the friend's first order is settled.")
    joined = serializers.IntegerField(help_text="Friends who joined with the code.")
    rewarded = serializers.IntegerField(help_text="Of them, rewarded (first order past its return window).")
    pending = serializers.IntegerField(help_text="Of them, waiting for their first order to settle.")


STATUS_EXAMPLE = {
    "today": "2026-11-30",
    "checked_in_today": False,
    "streak": 2,
    "points_today": 0,
    "next_day": "2026-11-30",
    "next_streak": 3,
    "next_points": 10,
    "week": [
        {"day": "2026-11-24", "checked_in": False, "points": 0},
        {"day": "2026-11-25", "checked_in": False, "points": 0},
        {"day": "2026-11-26", "checked_in": False, "points": 0},
        {"day": "2026-11-27", "checked_in": False, "points": 0},
        {"day": "2026-11-28", "checked_in": True, "points": 5},
        {"day": "2026-11-29", "checked_in": True, "points": 5},
        {"day": "2026-11-30", "checked_in": False, "points": 0},
    ],
}


def _status_body(status_) -> dict:
    return CheckInStatusOut(status_).data


class CheckInView(MemberView):
    @extend_schema(
        operation_id="me_check_in_status",
        tags=["me"],
        summary="My daily check-in",
        description="Checked in today or not, the streak, what the next check-in earns, the last 7 days.",
        responses={200: CheckInStatusOut, **errors(401, 403)},
        examples=[example("status", STATUS_EXAMPLE)],
    )
    def get(self, request):
        return Response(_status_body(check_in_status(self.member)))

    @extend_schema(
        operation_id="me_check_in",
        tags=["me"],
        summary="Check in for today",
        description=(
            "Once per member per day (the programme's time zone); points by the day of the streak "
            "(LOYALTY_CHECKIN_POINTS). A second check-in the same day is 409 already_checked_in and "
            "changes nothing, unless it is a retry with the first one's Idempotency-Key: that gets the "
            "first answer again. A frozen member gets 403 member_inactive."
        ),
        parameters=[idempotency_key_parameter(required=False)],
        request=None,
        responses={201: CheckInOut, **errors(400, 401, 403, 409, 422, 503)},
        examples=[
            example(
                "checked in",
                {
                    "day": "2026-11-30",
                    "streak": 3,
                    "points": 10,
                    "status": {**STATUS_EXAMPLE, "checked_in_today": True, "streak": 3, "points_today": 10},
                },
                status=201,
            )
        ],
    )
    def post(self, request):
        return idempotent(request, scope="check_in", run=self._check_in)

    def _check_in(self) -> Response:
        check_in = member_check_in(member=self.member)
        body = {
            "day": check_in.day,
            "streak": check_in.streak,
            "points": check_in.points,
            "status": check_in_status(self.member),
        }
        return Response(CheckInOut(body).data, status=status.HTTP_201_CREATED)


class ReferralView(MemberView):
    @extend_schema(
        operation_id="me_referral",
        tags=["me"],
        summary="My referral code",
        description=(
            "The code friends join with, a link and text to share, and how many friends joined and were "
            "rewarded. Both sides get the points once the friend's first order is past its return window "
            "and not refunded."
        ),
        responses={200: ReferralOut, **errors(401, 403)},
        examples=[
            example(
                "referral",
                {
                    "code": "K7M2QX9P",
                    "share_link": "https://example.com/me/sign-in/?ref=K7M2QX9P",
                    "share_text": "Join with my code K7M2QX9P: …",
                    "points": 200,
                    "joined": 3,
                    "rewarded": 1,
                    "pending": 2,
                },
            )
        ],
    )
    def get(self, request):
        summary = referral_summary(self.member)
        link = request.build_absolute_uri(reverse("center:sign_in")) + f"?ref={summary.code}"
        body = {**vars(summary), "share_link": link, "share_text": referral_share_text(summary.code, link)}
        return Response(ReferralOut(body).data)
