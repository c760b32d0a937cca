"""Staff scoping: which stores a staff user works for (docs/roles.md).

- Superusers and members of the "Brand admin" group see every store (``None``).
- A staff user with a ``StaffProfile`` or in a store role ("Store manager", "Clerk") sees
  the stores on their profile only; with no profile or no stores they see nothing that is
  scoped by store.
- A staff user with neither a profile nor a role (permissions granted one by one, as
  before roles existed) is not scoped. Give them a profile to scope them.
"""

from django.db.models import QuerySet

from .models import StaffProfile, Store

BRAND_ADMIN = "Brand admin"
STORE_MANAGER = "Store manager"
CLERK = "Clerk"
SCOPED_ROLES = (STORE_MANAGER, CLERK)

_CACHE = "_staff_scope"


def _scope(user) -> tuple[bool, bool]:
    """(sees everything, scoped by store), read once per user object (that is, per request)."""
    cached = getattr(user, _CACHE, None)
    if cached is not None:
        return cached
    if not (user.is_authenticated and user.is_active):
        cached = (False, True)
    elif user.is_superuser:
        cached = (True, False)
    else:
        roles = set(user.groups.values_list("name", flat=True))
        if BRAND_ADMIN in roles:
            cached = (True, False)
        else:
            has_profile = StaffProfile.objects.filter(user=user).exists()
            cached = (False, has_profile or bool(roles & set(SCOPED_ROLES)))
    setattr(user, _CACHE, cached)
    return cached


def sees_everything(user) -> bool:
    """A superuser or a member of the "Brand admin" group: not scoped, no adjustment limit."""
    return _scope(user)[0]


def staff_stores(user) -> QuerySet[Store] | None:
    """The stores ``user`` may see in the admin, or None for all of them.

    The queryset is lazy: used in ``__in`` it becomes a subquery, not an extra query.
    """
    everything, scoped = _scope(user)
    if everything or not scoped:
        return None
    if not user.is_authenticated:
        return Store.objects.none()
    return Store.objects.filter(staff_profiles__user=user)


def adjust_limit(user) -> int | None:
    """The largest absolute adjustment ``user`` may make at once; None means no limit.

    Superusers and brand admins have none; other staff have their profile's limit (empty:
    none), and a staff user without a profile has none either (their permission decides).
    """
    if sees_everything(user):
        return None
    return StaffProfile.objects.filter(user=user).values_list("adjust_limit", flat=True).first()
