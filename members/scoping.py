"""Staff scoping: which stores a staff user works for (docs/roles.md, docs/member-admin.md).

- Superusers and members of the "Brand admin" group see every store (``None``).
- Every other staff user sees the stores on their ``StaffProfile`` only: a store role
  ("Store manager", "Clerk"), a profile, both or neither. With no profile, or a profile
  without stores, they see nothing that is scoped by store (members, their ledger,
  orders, coupons, redemptions, staff actions), whatever permissions they hold.

Staff act only where their role allows: a permission says *what* someone may do, the
profile says *to whose members*. Before issue 6 a staff user with neither a role nor a
profile (permissions granted one by one) was not scoped; that silently gave them every
store. Now reaching every store takes a decision: the "Brand admin" group or superuser.
"""

from collections.abc import Iterable

from django.db.models import QuerySet
from django.utils.translation import gettext as _

from core.errors import LoyaltyError

from .models import Member, StaffProfile, Store

BRAND_ADMIN = "Brand admin"
STORE_MANAGER = "Store manager"
CLERK = "Clerk"
SCOPED_ROLES = (STORE_MANAGER, CLERK)

_CACHE = "_staff_scope"
# Set on a store API key's acting user for one request (``store_key_actor``).
_STORE_KEY = "_acts_for_store_key"


def sees_everything(user) -> bool:
    """A superuser or a member of the "Brand admin" group: not scoped, no adjustment limit.

    Read once per user object (that is, per request).
    """
    cached = getattr(user, _CACHE, None)
    if cached is not None:
        return cached
    if not (user.is_authenticated and user.is_active):
        cached = False
    elif user.is_superuser:
        cached = True
    else:
        cached = user.groups.filter(name=BRAND_ADMIN).exists()
    setattr(user, _CACHE, cached)
    return cached


def staff_stores(user) -> QuerySet[Store] | None:
    """The stores ``user`` may see in the admin, or None for all of them.

    The queryset is lazy: used in ``__in`` it becomes a subquery, not an extra query.
    An anonymous or inactive user, and staff without a profile, get no stores.
    """
    if sees_everything(user):
        return None
    if not user.is_authenticated:
        return Store.objects.none()
    return Store.objects.filter(staff_profiles__user=user)


def adjust_limit(user) -> int | None:
    """The largest absolute adjustment ``user`` may make at once; None means no limit.

    Superusers and brand admins have none; other staff have their profile's limit (empty:
    none). Staff without a profile reach no member in the admin, so their limit does not
    matter there; through the POS API only their permission decides.
    """
    if sees_everything(user):
        return None
    return StaffProfile.objects.filter(user=user).values_list("adjust_limit", flat=True).first()


def is_staff_with(actor, perm: str) -> bool:
    """Whether ``actor`` is an active staff user holding the Django permission ``perm``."""
    return bool(actor is not None and getattr(actor, "is_staff", False) and actor.is_active and actor.has_perm(perm))


def store_key_actor(user, store: Store):
    """``user`` as the acting user of ``store``'s API key, for one request; None without one.

    The key is the store's: it acts for its own store only (the API refuses any other,
    ``api.views.common.store_for``) and, like a member lookup, reaches members brand-wide,
    so :func:`require_staff` does not hold the user to their own profile's stores. Their
    permission and adjustment limit still apply.
    """
    if user is None or not user.is_authenticated:
        return None
    setattr(user, _STORE_KEY, store)
    return user


def require_staff(
    actor, perm: str, *, members: Iterable[Member | int] = (), amount: int | None = None, refusal=None
) -> None:
    """Refuse a staff action ``actor`` may not take; the one check every service makes.

    Refuses, in this order: an actor who is not an active staff user with the Django
    permission ``perm`` (``permission_denied``, or the caller's ``refusal``, a
    ``(code, message)`` pair); any of ``members`` (rows or ids) outside the actor's stores
    (``out_of_scope``; ``staff_stores``: brand admins and superusers reach every store,
    a store key's acting user every member, see :func:`store_key_actor`); an ``amount``
    larger either way than the actor's adjustment limit (``permission_denied``;
    :func:`adjust_limit`).
    """
    if not is_staff_with(actor, perm):
        code, message = refusal or ("permission_denied", _("You are not allowed to do this."))
        raise LoyaltyError(code, str(message))
    member_ids = {getattr(member, "pk", member) for member in members}
    if member_ids and getattr(actor, _STORE_KEY, None) is None:
        stores = staff_stores(actor)
        if stores is not None and Member.objects.filter(pk__in=member_ids, home_store__in=stores).count() != len(
            member_ids
        ):
            raise LoyaltyError("out_of_scope", _("You can act only on members of your stores."))
    if amount is not None:
        limit = adjust_limit(actor)
        if limit is not None and abs(amount) > limit:
            raise LoyaltyError(
                "permission_denied",
                _("%(user)s may adjust at most %(limit)s at once, not %(amount)s.")
                % {"user": actor.get_username(), "limit": limit, "amount": abs(amount)},
            )
