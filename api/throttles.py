"""Rate limits: sign-in and one-time codes per client address, redemptions per member."""

from rest_framework.throttling import SimpleRateThrottle


class SignInThrottle(SimpleRateThrottle):
    scope = "sign_in"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class OtpSendThrottle(SignInThrottle):
    scope = "otp_send"


class RedeemThrottle(SimpleRateThrottle):
    scope = "redeem"

    def get_cache_key(self, request, view):
        member_id = getattr(request.auth, "member_id", None)
        if member_id is None:
            return None
        return self.cache_format % {"scope": self.scope, "ident": member_id}
