"""Who may call what: members their own /me/ endpoints, staff and store keys the POS actions."""

from django.utils.translation import gettext as _
from rest_framework.permissions import BasePermission

from core.errors import LoyaltyError
from members.models import Store
from members.scoping import is_staff_with, staff_stores

from .models import ApiToken, StoreApiKey

# Django permission a staff user needs for each POS action.
STAFF_PERMISSIONS = {
    StoreApiKey.Action.LOOKUP: "api.pos_lookup",
    StoreApiKey.Action.EARN: "api.pos_earn",
    StoreApiKey.Action.REFUND: "api.pos_refund",
    StoreApiKey.Action.ADJUST: "loyalty.adjust_points",
    StoreApiKey.Action.VERIFY_COUPON: "api.pos_verify_coupon",
    StoreApiKey.Action.CHECKOUT: "api.pos_checkout",
}


class IsMember(BasePermission):
    """A member's access token."""

    def has_permission(self, request, view):
        auth = request.auth
        return isinstance(auth, ApiToken) and auth.kind == ApiToken.Kind.ACCESS


def is_staff_caller(request) -> bool:
    auth = request.auth
    if isinstance(auth, ApiToken):
        return auth.kind == ApiToken.Kind.STAFF
    # A staff user's admin session (SessionAuthentication leaves request.auth None).
    return auth is None and request.user.is_authenticated and request.user.is_staff


class IsStaffCaller(BasePermission):
    """A staff token, or a staff user's admin session; the service checks the permission."""

    def has_permission(self, request, view):
        return is_staff_caller(request)


class PosAction(BasePermission):
    """A store key listing the view's ``pos_action``, or staff with the matching Django permission."""

    def has_permission(self, request, view):
        action = view.pos_action
        if isinstance(request.auth, StoreApiKey):
            return request.auth.allows(action)
        return is_staff_caller(request) and is_staff_with(request.user, STAFF_PERMISSIONS[action])


def require_store_scope(request, store: Store) -> Store:
    """Refuse (403 ``store_forbidden``) a POS write at a store outside the caller's scope.

    A store key acts for its own store only (``store_for`` refuses any other); a staff
    caller (token or admin session) for the stores ``members.scoping.staff_stores`` gives
    them: every store for a superuser or brand admin, else the stores on their profile.
    """
    if isinstance(request.auth, StoreApiKey):
        return store
    user = request.user
    scope = staff_stores(user)
    if scope is not None and not scope.filter(pk=store.pk).exists():
        raise LoyaltyError(
            "store_forbidden",
            _("%(user)s does not work at store %(store)s, so cannot act for it here.")
            % {"user": user.get_username(), "store": store.code},
        )
    return store
