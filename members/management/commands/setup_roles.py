"""Create or update the staff roles as Django groups (idempotent; docs/roles.md).

Each run sets every role's permissions to exactly the set defined here, so a rerun puts
back what an operator removed and takes away what was added to a role by hand; groups
not listed here, and the users in each group, are left alone.
"""

from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand
from django.db import transaction

from members.scoping import BRAND_ADMIN, CLERK, STORE_MANAGER

# Every permission of these apps goes to the brand admin.
BRAND_ADMIN_APPS = ("members", "loyalty", "rewards", "api", "engagement", "django_celery_beat", "foresight")

ROLES = {
    STORE_MANAGER: (
        "members.view_member",
        "members.change_member",
        "loyalty.view_order",
        "loyalty.view_ledgerentry",
        "loyalty.view_lot",
        "loyalty.adjust_points",
        "rewards.view_coupon",
        # Their stores' staff actions and figures (the dashboard shows their stores only).
        "members.view_staffaction",
        "loyalty.view_dashboard",
        # The till screen in the admin: look up, record orders, verify coupons at their stores.
        "loyalty.use_till",
        # The same at a POS through the API with a staff token, limited to their stores.
        "api.pos_lookup",
        "api.pos_earn",
        "api.pos_refund",
        "api.pos_verify_coupon",
        # Their stores' leakage cases (docs/foresight.md).
        "foresight.view_leakagecase",
        "foresight.resolve_leakagecase",
        "foresight.add_simulationrun",
        "foresight.view_simulationrun",
        "foresight.add_forecastrun",
        "foresight.view_forecastrun",
        # Merging two records of one person, both in their stores (docs/merge.md).
        "members.merge_members",
        "members.view_membermerge",
    ),
    CLERK: (
        "members.view_member",
        "rewards.view_coupon",
        "loyalty.use_till",
        "api.pos_lookup",
        "api.pos_earn",
        "api.pos_verify_coupon",
    ),
}


def role_permissions(role: str) -> list[Permission]:
    """The permissions a role is defined to have; raises if one does not exist."""
    if role == BRAND_ADMIN:
        return list(Permission.objects.filter(content_type__app_label__in=BRAND_ADMIN_APPS))
    found = []
    for name in ROLES[role]:
        app_label, codename = name.split(".", 1)
        found.append(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return found


class Command(BaseCommand):
    help = "Create the staff roles (Brand admin, Store manager, Clerk) as groups with their permissions."

    @transaction.atomic
    def handle(self, *args, **options):
        for role in (BRAND_ADMIN, STORE_MANAGER, CLERK):
            wanted = set(role_permissions(role))
            group, created = Group.objects.get_or_create(name=role)
            current = set(group.permissions.all())
            added, removed = wanted - current, current - wanted
            if added:
                group.permissions.add(*added)
            if removed:
                group.permissions.remove(*removed)
            state = "created" if created else ("updated" if added or removed else "unchanged")
            self.stdout.write(
                f"{role}: {state}, {len(wanted)} permissions (+{len(added)} -{len(removed)})"
                + "".join(f"\n  - removed {perm.content_type.app_label}.{perm.codename}" for perm in removed)
            )
