"""Points transfers between members: both sides' entries, lots keep their dates, every refusal."""

import datetime as dt

import pytest
from django.utils import timezone

from core.errors import LoyaltyError
from loyalty import services as ledger
from loyalty.models import Account, LedgerEntry, Lot, MemberTier, Tier
from loyalty.selectors import ledger_violations
from loyalty.tests.factories import MemberFactory
from members.models import Member
from programme.models import Transfer
from programme.transfers import transfer_accept, transfer_cancel, transfer_create, transfer_decline, transfer_reverse

pytestmark = pytest.mark.django_db


def _balance(member) -> int:
    return Account.objects.filter(member=member, currency="points").values_list("balance", flat=True).first() or 0


def _give_points(member, amount, key="seed", now=None):
    return ledger.points_award(
        member=member, currency="points", amount=amount, reason="seed", idempotency_key=key, now=now
    )


@pytest.fixture
def pair(db):
    giver, receiver = MemberFactory(), MemberFactory()
    _give_points(giver, 1000)
    return giver, receiver


@pytest.fixture
def reverser(django_user_model):
    from django.contrib.auth.models import Group, Permission

    from members.scoping import BRAND_ADMIN

    user = django_user_model.objects.create_user("reverser", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="reverse_transfer"))
    user.groups.add(Group.objects.get_or_create(name=BRAND_ADMIN)[0])
    return user


def test_transfer_by_phone_moves_lots_with_their_dates(pair):
    giver, receiver = pair
    early = timezone.now() - dt.timedelta(days=100)
    _give_points(giver, 50, key="older", now=early)  # expires earlier: given first
    transfer = transfer_create(giver=giver, to=receiver.phone, points=300, message="生日快乐")
    assert transfer.status == Transfer.Status.COMPLETED
    assert (_balance(giver), _balance(receiver)) == (750, 300)
    dates = sorted(Lot.objects.filter(member=receiver).values_list("amount", "expires_at"), key=lambda r: r[1])
    giver_dates = sorted(set(Lot.objects.filter(member=giver).values_list("expires_at", flat=True)))
    assert [d for _a, d in dates] == giver_dates and [a for a, _d in dates] == [50, 250]
    assert transfer.out_entry.detail["transfer_to"] == receiver.pk
    assert LedgerEntry.objects.get(pk=transfer.in_entry_id).detail["transfer_out"] == transfer.out_entry_id
    assert ledger_violations() == []


def test_transfer_by_member_number_with_a_new_expiry_when_set(pair, settings):
    settings.PROGRAMME_TRANSFER_KEEP_EXPIRY = False
    giver, receiver = pair
    transfer_create(giver=giver, to=receiver.member_number, points=10)
    assert _balance(receiver) == 10


@pytest.mark.parametrize(
    ("to", "points", "code"),
    [
        ("+8613000000000", 10, "receiver_not_found"),
        ("hello", 10, "invalid_receiver"),
        ("", 10, "invalid_receiver"),
        (None, 10, "invalid_receiver"),
        ("receiver", 0, "invalid_amount"),
        ("receiver", -5, "invalid_amount"),
        ("receiver", "10", "invalid_amount"),
        ("receiver", 5000, "insufficient_balance"),
        ("giver", 10, "transfer_to_self"),
    ],
)
def test_transfer_refusals_change_nothing(pair, to, points, code, settings):
    settings.PROGRAMME_TRANSFER_GIVE_PER_DAY = 0
    settings.PROGRAMME_TRANSFER_GIVE_PER_MONTH = 0
    settings.PROGRAMME_TRANSFER_RECEIVE_PER_DAY = 0
    settings.PROGRAMME_TRANSFER_RECEIVE_PER_MONTH = 0
    giver, receiver = pair
    to = {"receiver": receiver.phone, "giver": giver.phone}.get(to, to)
    with pytest.raises(LoyaltyError) as refused:
        transfer_create(giver=giver, to=to, points=points)
    assert refused.value.code == code
    assert (_balance(giver), _balance(receiver), Transfer.objects.count()) == (1000, 0, 0)


def test_frozen_members_neither_give_nor_receive(pair):
    giver, receiver = pair
    Member.objects.filter(pk=receiver.pk).update(status=Member.Status.FROZEN)
    with pytest.raises(LoyaltyError, match="receiver_inactive"):
        transfer_create(giver=giver, to=receiver.phone, points=10)
    Member.objects.filter(pk=receiver.pk).update(status=Member.Status.ACTIVE)
    Member.objects.filter(pk=giver.pk).update(status=Member.Status.FROZEN)
    giver.refresh_from_db()
    with pytest.raises(LoyaltyError, match="member_inactive"):
        transfer_create(giver=giver, to=receiver.phone, points=10)
    assert _balance(giver) == 1000 and not Transfer.objects.exists()


@pytest.mark.parametrize(
    ("setting", "limit", "side"),
    [
        ("PROGRAMME_TRANSFER_GIVE_PER_DAY", 100, "giver"),
        ("PROGRAMME_TRANSFER_GIVE_PER_MONTH", 100, "giver"),
        ("PROGRAMME_TRANSFER_RECEIVE_PER_DAY", 100, "receiver"),
        ("PROGRAMME_TRANSFER_RECEIVE_PER_MONTH", 100, "receiver"),
    ],
)
def test_limits_per_day_and_month_for_giver_and_receiver(pair, settings, setting, limit, side):
    setattr(settings, setting, limit)
    giver, receiver = pair
    transfer_create(giver=giver, to=receiver.phone, points=80)
    other = MemberFactory()
    if side == "giver":
        with pytest.raises(LoyaltyError, match="transfer_limit_reached"):
            transfer_create(giver=giver, to=other.phone, points=30)
    else:
        _give_points(other, 100, key="other")
        with pytest.raises(LoyaltyError, match="transfer_limit_reached"):
            transfer_create(giver=other, to=receiver.phone, points=30)
    assert Transfer.objects.count() == 1


def test_minimum_tier_to_give(pair, settings):
    giver, receiver = pair
    Tier.objects.create(code="regular", name="Regular", rank=0)
    gold = Tier.objects.create(code="gold", name="Gold", rank=2)
    settings.PROGRAMME_TRANSFER_MIN_TIER = "gold"
    with pytest.raises(LoyaltyError, match="tier_too_low"):
        transfer_create(giver=giver, to=receiver.phone, points=10)
    MemberTier.objects.create(member=giver, tier=gold, started_at=timezone.now(), review_at=timezone.now())
    assert transfer_create(giver=giver, to=receiver.phone, points=10).status == "completed"


def test_no_ping_pong_within_the_window(pair):
    giver, receiver = pair
    transfer_create(giver=giver, to=receiver.phone, points=100)
    with pytest.raises(LoyaltyError, match="transfer_ping_pong"):
        transfer_create(giver=receiver, to=giver.phone, points=50)
    later = timezone.now() + dt.timedelta(hours=73)
    assert transfer_create(giver=receiver, to=giver.phone, points=50, now=later).status == "completed"


def test_no_transfer_out_of_an_account_with_an_open_refund_shortfall(pair):
    giver, receiver = pair
    Account.objects.filter(member=giver, currency="points").update(owed=10)
    with pytest.raises(LoyaltyError, match="refund_shortfall_open"):
        transfer_create(giver=giver, to=receiver.phone, points=10)
    assert not Transfer.objects.exists()


def test_confirmation_accept_decline_cancel(pair, settings):
    settings.PROGRAMME_TRANSFER_CONFIRM = True
    giver, receiver = pair
    first = transfer_create(giver=giver, to=receiver.phone, points=100)
    assert first.status == "pending" and (_balance(giver), _balance(receiver)) == (900, 0)
    with pytest.raises(LoyaltyError, match="transfer_not_found"):
        transfer_accept(transfer=first, member=giver)
    transfer_accept(transfer=first, member=receiver)
    assert _balance(receiver) == 100
    with pytest.raises(LoyaltyError, match="transfer_not_pending"):
        transfer_decline(transfer=first, member=receiver)
    second = transfer_create(giver=giver, to=receiver.phone, points=200)
    transfer_decline(transfer=second, member=receiver)
    third = transfer_create(giver=giver, to=receiver.phone, points=50)
    with pytest.raises(LoyaltyError, match="transfer_not_found"):
        transfer_cancel(transfer=third, member=receiver)
    transfer_cancel(transfer=third, member=giver)
    assert (_balance(giver), _balance(receiver)) == (900, 100)
    assert ledger_violations() == []


def test_staff_reverse_with_a_reason(pair, reverser, staff_user):
    giver, receiver = pair
    transfer = transfer_create(giver=giver, to=receiver.phone, points=300)
    for actor, reason, code in [(staff_user, "x", "permission_denied"), (reverser, "", "reason_required")]:
        with pytest.raises(LoyaltyError) as refused:
            transfer_reverse(transfer=transfer, actor=actor, reason=reason)
        assert refused.value.code == code
    transfer_reverse(transfer=transfer, actor=reverser, reason="fraud report")
    assert (_balance(giver), _balance(receiver)) == (1000, 0)
    transfer.refresh_from_db()
    assert transfer.status == "reversed" and transfer.reversed_by == reverser
    with pytest.raises(LoyaltyError, match="transfer_not_received"):
        transfer_reverse(transfer=transfer, actor=reverser, reason="again")
    assert ledger_violations() == []


def test_reverse_refused_when_the_receiver_spent_the_points(pair, reverser):
    giver, receiver = pair
    transfer = transfer_create(giver=giver, to=receiver.phone, points=300)
    ledger.points_spend(member=receiver, amount=200, reason="reward", idempotency_key="spent")
    with pytest.raises(LoyaltyError, match="insufficient_balance"):
        transfer_reverse(transfer=transfer, actor=reverser, reason="fraud")
    assert (_balance(giver), _balance(receiver)) == (700, 100)


def test_unanswered_transfers_go_back_to_the_giver(pair, settings):
    from programme.jobs import memberships_housekeeping

    settings.PROGRAMME_TRANSFER_CONFIRM = True
    giver, receiver = pair
    transfer_create(giver=giver, to=receiver.phone, points=100)
    assert memberships_housekeeping(now=timezone.now() + dt.timedelta(days=6))["transfers_returned"] == 0
    assert memberships_housekeeping(now=timezone.now() + dt.timedelta(days=8))["transfers_returned"] == 1
    assert Transfer.objects.get().status == "declined" and _balance(giver) == 1000
    assert memberships_housekeeping(now=timezone.now() + dt.timedelta(days=9))["transfers_returned"] == 0
