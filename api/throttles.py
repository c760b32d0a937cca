"""Rate limits: sign-in and one-time codes per client address, redemptions per member.

The client address is ``core.client_ip``'s, never DRF's own guess: DRF reads
X-Forwarded-For from anyone, so a new header on each request was a new bucket.
"""

import hashlib

from rest_framework.throttling import SimpleRateThrottle

from core.client_ip import client_rate_key


class ClientAddressThrottle(SimpleRateThrottle):
    """Counts requests per client address (an IPv6 client per /64)."""

    def get_ident(self, request):
        return client_rate_key(request)

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class SignInThrottle(ClientAddressThrottle):
    scope = "sign_in"


class OtpSendThrottle(ClientAddressThrottle):
    scope = "otp_send"


class StaffUsernameThrottle(SimpleRateThrottle):
    """Password tries per staff username, from any address, so many addresses cannot share the guessing."""

    scope = "staff_username"

    def get_cache_key(self, request, view):
        username = request.data.get("username") if hasattr(request.data, "get") else None
        if not isinstance(username, str) or not username.strip():
            return None  # the view refuses it (400) without checking a password
        return self.cache_format % {"scope": self.scope, "ident": self.cache_ident(username)}

    @staticmethod
    def cache_ident(username: str) -> str:
        # Hashed: a cache key holds no user input (length, spaces, characters memcached refuses).
        return hashlib.sha256(username.strip().encode()).hexdigest()[:32]


class RedeemThrottle(ClientAddressThrottle):
    """Per member (the token's), whatever address they come from."""

    scope = "redeem"

    def get_cache_key(self, request, view):
        member_id = getattr(request.auth, "member_id", None)
        if member_id is None:
            return None
        return self.cache_format % {"scope": self.scope, "ident": member_id}
