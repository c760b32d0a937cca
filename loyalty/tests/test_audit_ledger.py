import datetime as dt

import pytest
from django.core.management import CommandError, call_command

from loyalty import services
from loyalty.models import Account, Lot

from .factories import MemberFactory, StoreFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_members():
    store = StoreFactory()
    members = MemberFactory.create_batch(2)
    for index, member in enumerate(members):
        services.order_earn(
            member=member,
            store=store,
            number=f"A{index}",
            amount="100",
            occurred_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        )
    return members


def test_audit_passes_on_a_consistent_ledger(two_members, capsys):
    call_command("audit_ledger")
    assert "4 accounts checked, all invariants hold" in capsys.readouterr().out


def test_audit_names_an_account_whose_balance_disagrees(two_members, capsys):
    account = Account.objects.get(member=two_members[1], currency="points")
    Account.objects.filter(pk=account.pk).update(balance=101)
    with pytest.raises(CommandError, match="1 of 4 accounts fail"):
        call_command("audit_ledger")
    err = capsys.readouterr().err
    assert f"account {account.pk} (member {two_members[1].pk}, points)" in err
    assert "balance 101 != sum of entries 100" in err


def test_audit_finds_a_lot_that_disagrees_with_its_allocations(two_members, capsys):
    lot = Lot.objects.get(member=two_members[0], currency="growth")
    Lot.objects.filter(pk=lot.pk).update(remaining=90)
    with pytest.raises(CommandError):
        call_command("audit_ledger")
    err = capsys.readouterr().err
    assert f"lot {lot.pk}: remaining 90 != amount 100 - allocated 0" in err
    assert "balance 100 != sum of available lots 90" in err
