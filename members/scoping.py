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

from django.db.models import QuerySet

from .models import StaffProfile, Store

BRAND_ADMIN = "Brand admin"
STORE_MANAGER = "Store manager"
CLERK = "Clerk"
SCOPED_ROLES = (STORE_MANAGER, CLERK)

_CACHE = "_staff_scope"


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


def member_in_scope(user, member) -> bool:
    """Whether ``user`` may see and act on ``member`` (their home store is one of the user's)."""
    stores = staff_stores(user)
    if stores is None:
        return True
    return member.home_store_id is not None and stores.filter(pk=member.home_store_id).exists()


def adjust_limit(user) -> int | None:
    """The largest absolute adjustment ``user`` may make at once; None means no limit.

    Superusers and brand admins have none; other staff have their profile's limit (empty:
    none). Staff without a profile reach no member in the admin, so their limit does not
    matter there; through the POS API only their permission decides.
    """
    if sees_everything(user):
        return None
    return StaffProfile.objects.filter(user=user).values_list("adjust_limit", flat=True).first()
