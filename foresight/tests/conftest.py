import datetime as dt

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.utils import timezone

from loyalty.models import Account, Currency, LedgerEntry
from loyalty.tests.factories import MemberFactory, StoreFactory
from members.models import StaffProfile
from members.scoping import BRAND_ADMIN, STORE_MANAGER
from programme.models import Transfer

NOW = timezone.make_aware(dt.datetime(2026, 11, 20, 12, 0))


def entry(member, *, kind=LedgerEntry.Kind.ADJUST, amount=-1, currency=Currency.POINTS, **fields) -> LedgerEntry:
    """A bare ledger entry, for rows (transfers) that need one: the scans read no balance."""
    account, _ = Account.objects.get_or_create(member=member, currency=currency)
    return LedgerEntry.objects.create(
        account=account, member=member, currency=currency, kind=kind, amount=amount, balance_after=0, **fields
    )


def transfer(giver, receiver, points, at, status=Transfer.Status.COMPLETED) -> Transfer:
    return Transfer.objects.create(
        giver=giver, receiver=receiver, points=points, status=status, out_entry=entry(giver), created_at=at
    )


@pytest.fixture
def world(django_user_model):
    call_command("setup_roles", stdout=open("/dev/null", "w"))  # noqa: SIM115
    store_a, store_b = StoreFactory(code="fa"), StoreFactory(code="fb")

    def staff(username, role, stores=(), limit=None):
        user = django_user_model.objects.create_user(username, password="pw-foresight-1", is_staff=True)
        user.groups.add(Group.objects.get(name=role))
        if role != BRAND_ADMIN:
            profile = StaffProfile.objects.create(user=user, adjust_limit=limit)
            profile.stores.set(stores)
        return user

    return {
        "store_a": store_a,
        "store_b": store_b,
        "brand": staff("brand", BRAND_ADMIN),
        "manager_a": staff("manager_a", STORE_MANAGER, [store_a], limit=100),
        "manager_b": staff("manager_b", STORE_MANAGER, [store_b], limit=100),
        "member": lambda store=store_a, **kw: MemberFactory(home_store=store, **kw),
    }
