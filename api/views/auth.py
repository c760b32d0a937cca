"""Sign-in for members (SMS one-time code, mini-program code) and staff; refresh; sign-out."""

from django.utils import timezone
from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import LoyaltyError
from engagement.referrals import referral_on_join
from members.miniprogram import get_adapter
from members.otp import OTP_RESEND_SECONDS, OTP_TTL, otp_send, otp_verify
from members.services import member_bind_miniprogram, member_for_miniprogram
from operations.actions import member_for_phone_sign_in, member_sign_in_or_join

from .. import serializers as s
from ..permissions import IsMember
from ..services import staff_token_create, tokens_issue, tokens_refresh, tokens_revoke
from ..throttles import OtpSendThrottle, SignInThrottle, StaffUsernameThrottle
from .common import errors, example

TOKENS_EXAMPLE = {
    "access": "at_4q0Vh…",
    "refresh": "rt_Qm1c9…",
    "token_type": "Bearer",
    "access_expires_at": "2026-11-23T10:30:00+08:00",
    "refresh_expires_at": "2026-12-23T10:00:00+08:00",
    "member_number": "8123456782",
}

REFERRAL_EXAMPLE = {
    "status": "recorded",
    "reason": "",
    "message": "Referral code accepted: you and your friend each get 200 points when your first order is past "
    "its return window.",
}


def _tokens(member) -> Response:
    return Response(s.TokensOut(tokens_issue(member=member)).data)


def _signed_in(phone: str, referral_code: str | None) -> tuple:
    """The member signing in with ``phone`` and what became of the referral code sent."""
    now = timezone.now()
    member, created = member_sign_in_or_join(phone=phone, now=now)
    outcome = referral_on_join(member=member, code=referral_code, created=created, now=now)
    return member, outcome


def _sign_in_answer(member, outcome) -> Response:
    body = dict(s.TokensOut(tokens_issue(member=member)).data)
    if outcome is not None:
        body["referral"] = s.ReferralOutcomeOut(outcome).data
    return Response(body)


class PublicView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]


class OtpSendView(PublicView):
    throttle_classes = [OtpSendThrottle]

    @extend_schema(
        operation_id="auth_otp_send",
        tags=["auth"],
        summary="Send an SMS sign-in code",
        description="Six digits, valid 5 minutes. At most one per minute and ten per day per phone.",
        request=s.OtpSendIn,
        responses={202: s.OtpSentOut, **errors(400, 429, 503)},
        examples=[
            example("phone", {"phone": "138 0013 8000"}, request=True),
            example("sent", {"sent": True, "expires_in": 300, "resend_after": 60}, status=202),
        ],
    )
    def post(self, request):
        data = s.OtpSendIn(data=request.data)
        data.is_valid(raise_exception=True)
        otp_send(phone=data.validated_data["phone"])
        body = {"sent": True, "expires_in": int(OTP_TTL.total_seconds()), "resend_after": OTP_RESEND_SECONDS}
        return Response(s.OtpSentOut(body).data, status=status.HTTP_202_ACCEPTED)


class OtpSignInView(PublicView):
    throttle_classes = [SignInThrottle]

    @extend_schema(
        operation_id="auth_otp_sign_in",
        tags=["auth"],
        summary="Sign in with the SMS code",
        description=(
            "A phone number new to the programme registers a new member. A new member may send a friend's "
            "referral_code; referral in the answer says whether it was recorded (it never blocks the sign-in)."
        ),
        request=s.OtpSignInIn,
        responses={200: s.SignInOut, **errors(400, 403, 429)},
        examples=[
            example("code", {"phone": "13800138000", "code": "482913"}, request=True),
            example(
                "with a referral code",
                {"phone": "13800138000", "code": "482913", "referral_code": "K7M2QX9P"},
                request=True,
            ),
            example("tokens", TOKENS_EXAMPLE),
            example("tokens and referral", {**TOKENS_EXAMPLE, "referral": REFERRAL_EXAMPLE}),
        ],
    )
    def post(self, request):
        data = s.OtpSignInIn(data=request.data)
        data.is_valid(raise_exception=True)
        phone = otp_verify(phone=data.validated_data["phone"], code=data.validated_data["code"])
        return _sign_in_answer(*_signed_in(phone, data.validated_data.get("referral_code")))


class MiniProgramSignInView(PublicView):
    throttle_classes = [SignInThrottle]

    @extend_schema(
        operation_id="auth_miniprogram_sign_in",
        tags=["auth"],
        summary="Sign in from the mini-program",
        description=(
            "Exchanges the wx.login() code through the configured adapter. A known user gets tokens. "
            "A new user binds a phone in the same call: phone_code (getPhoneNumber button), or phone + "
            "otp_code (an SMS code from /auth/otp/); without either the answer is 400 phone_required. "
            "A new member may send a friend's referral_code (see referral in the answer). "
            "The platform's session key is never stored or returned."
        ),
        request=s.MiniProgramSignInIn,
        responses={200: s.SignInOut, **errors(400, 403, 409, 429, 503)},
        examples=[
            example("known user", {"code": "demo"}, request=True),
            example("new user with phone button", {"code": "newbie", "phone_code": "13800138000"}, request=True),
            example("tokens", TOKENS_EXAMPLE),
        ],
    )
    def post(self, request):
        data = s.MiniProgramSignInIn(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        adapter = get_adapter()
        session = adapter.code_to_session(values["code"])
        member = member_for_miniprogram(openid=session.openid)
        if member is not None:
            return _tokens(member_for_phone_sign_in(phone=member.phone))
        if values.get("phone_code"):
            phone = adapter.phone_from_code(values["phone_code"])
        elif values.get("phone") and values.get("otp_code"):
            phone = otp_verify(phone=values["phone"], code=values["otp_code"])
        else:
            raise LoyaltyError(
                "phone_required",
                _("This mini-program user is new: bind a phone number with phone_code, or phone and otp_code."),
            )
        now = timezone.now()
        member, created = member_sign_in_or_join(phone=phone, now=now)
        member = member_bind_miniprogram(member=member, openid=session.openid, unionid=session.unionid)
        # After the binding: a refused binding (409) leaves no referral behind.
        outcome = referral_on_join(member=member, code=values.get("referral_code"), created=created, now=now)
        return _sign_in_answer(member, outcome)


class RefreshView(PublicView):
    throttle_classes = [SignInThrottle]

    @extend_schema(
        operation_id="auth_refresh",
        tags=["auth"],
        summary="Swap a refresh token for new tokens",
        description="The refresh token is used up; sending it again ends the whole sign-in.",
        request=s.RefreshIn,
        responses={200: s.TokensOut, **errors(400, 401, 429)},
        examples=[example("refresh", {"refresh": "rt_Qm1c9…"}, request=True), example("tokens", TOKENS_EXAMPLE)],
    )
    def post(self, request):
        data = s.RefreshIn(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(s.TokensOut(tokens_refresh(refresh_token=data.validated_data["refresh"])).data)


class SignOutView(APIView):
    permission_classes = [IsMember]

    @extend_schema(
        operation_id="auth_sign_out",
        tags=["auth"],
        summary="Sign out",
        description="Revokes this access token and its refresh token.",
        request=None,
        responses={204: None, **errors(401, 403)},
    )
    def post(self, request):
        tokens_revoke(token=request.auth)
        return Response(status=status.HTTP_204_NO_CONTENT)


class StaffTokenView(PublicView):
    # Per address and per username: the admin's lockout (core.lockout) cannot see these
    # password checks, so this endpoint must not be the way around it.
    throttle_classes = [SignInThrottle, StaffUsernameThrottle]

    @extend_schema(
        operation_id="auth_staff_token",
        tags=["auth"],
        summary="A bearer token for a staff user",
        description="For tills and scripts run by a staff user; the POS actions then need the user's permissions.",
        request=s.StaffTokenIn,
        responses={201: s.StaffTokenOut, **errors(400, 401, 429)},
        examples=[
            example("login", {"username": "admin", "password": "…"}, request=True),
            example("token", {"token": "st_b81L…", "expires_at": "2026-11-30T10:00:00+08:00"}, status=201),
        ],
    )
    def post(self, request):
        data = s.StaffTokenIn(data=request.data)
        data.is_valid(raise_exception=True)
        token, raw = staff_token_create(**data.validated_data)
        return Response(s.StaffTokenOut({"token": raw, "expires_at": token.expires_at}).data, status=201)
