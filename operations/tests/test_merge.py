"""Member merge (docs/merge.md): the ledger through entries, the rows that move, undo, refusals."""

import datetime as dt
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.utils import timezone

from core.errors import LoyaltyError
from engagement.models import CheckIn
from loyalty import services
from loyalty.models import Account, Currency, LedgerEntry, Lot, Order
from loyalty.selectors import ledger_violations
from loyalty.tests.factories import MemberFactory, StoreFactory
from members.models import Member, MemberMerge, StaffAction, StaffProfile
from members.scoping import BRAND_ADMIN, STORE_MANAGER
from operations.merge import member_merge, member_merge_undo, merge_preview
from rewards.models import Coupon

pytestmark = pytest.mark.django_db


@pytest.fixture
def roles(db):
    call_command("setup_roles", stdout=open("/dev/null", "w"))  # noqa: SIM115


@pytest.fixture
def brand(django_user_model, roles):
    user = django_user_model.objects.create_user("brand-merge", password="pw-merge-123", is_staff=True)
    user.groups.add(Group.objects.get(name=BRAND_ADMIN))
    return user


@pytest.fixture
def store():
    return StoreFactory(code="mg1")


def balances(member) -> dict[str, tuple[int, int]]:
    found = {a.currency: (a.balance, a.pending) for a in Account.objects.filter(member=member)}
    return {currency: found.get(currency, (0, 0)) for currency in Currency.values}


def total(member_ids, currency=Currency.POINTS) -> int:
    return sum(a.balance + a.pending for a in Account.objects.filter(member_id__in=member_ids, currency=currency))


def earn(member, store, number, amount, *, now=None, occurred_at=None):
    return services.order_earn(
        member=member, store=store, number=number, amount=Decimal(amount), occurred_at=occurred_at, now=now
    )


def award(member, amount, key, *, now=None):
    return services.points_award(
        member=member, currency=Currency.POINTS, amount=amount, reason="gift", idempotency_key=key, now=now
    )


def test_merge_moves_lots_with_their_expiry_and_pending_and_keeps_invariants(brand, store):
    keep, merged = MemberFactory(home_store=store), MemberFactory(home_store=store)
    now = timezone.now()
    award(keep, 100, "k1", now=now - dt.timedelta(days=30))
    award(merged, 250, "m1", now=now - dt.timedelta(days=60))
    earn(merged, store, "A-1", "80.00", now=now)  # pending: inside the return window
    merged_lots = {
        (lot.remaining, lot.expires_at, lot.pending, lot.available_at)
        for lot in Lot.objects.filter(member=merged, remaining__gt=0)
    }
    before = {c: total([keep.pk, merged.pk], c) for c in Currency.values}

    merge = member_merge(keep=keep, merged=merged, reason="same person, two phones", actor=brand, now=now)

    assert ledger_violations() == []
    assert {c: total([keep.pk, merged.pk], c) for c in Currency.values} == before
    assert Account.objects.get(member=merged, currency="points").balance == 0
    assert Account.objects.get(member=merged, currency="points").pending == 0
    points = Account.objects.get(member=keep, currency="points")
    assert (points.balance, points.pending) == (350, 80)
    new_lots = {
        (lot.remaining, lot.expires_at, lot.pending, lot.available_at)
        for lot in Lot.objects.filter(member=keep, entry__kind=LedgerEntry.Kind.MERGE)
    }
    assert merged_lots and merged_lots == new_lots  # the same remainders, expiries, pending flags and dates
    merged.refresh_from_db()
    assert merged.merged_into_id == keep.pk and merged.status == Member.Status.CLOSED
    assert Order.objects.get(number="A-1").member_id == keep.pk
    assert merge.moved["ledger"]["orders"] == [Order.objects.get(number="A-1").pk]
    assert StaffAction.objects.filter(action=StaffAction.Action.MERGE).count() == 2


def test_merge_again_is_a_replay_and_writes_nothing(brand, store):
    keep, merged = MemberFactory(home_store=store), MemberFactory(home_store=store)
    award(merged, 40, "m1")
    first = member_merge(keep=keep, merged=merged, reason="dup", actor=brand)
    entries = LedgerEntry.objects.count()
    second = member_merge(keep=keep, merged=Member.objects.get(pk=merged.pk), reason="dup", actor=brand)
    assert second.pk == first.pk and second.replayed
    assert LedgerEntry.objects.count() == entries


def test_undo_restores_balances_orders_and_status(brand, store):
    keep, merged = MemberFactory(home_store=store), MemberFactory(home_store=store)
    now = timezone.now()
    award(keep, 10, "k1", now=now)
    award(merged, 300, "m1", now=now)
    earn(merged, store, "B-1", "50.00", now=now)
    CheckIn.objects.create(member=merged, day=now.date(), streak=1, points=0)
    Coupon.objects.create(
        member=merged, title="gift", kind="gift", source="staff", expires_at=now + dt.timedelta(days=3)
    )
    before = {m.pk: balances(m) for m in (keep, merged)}
    merge = member_merge(keep=keep, merged=merged, reason="dup", actor=brand, now=now)
    assert CheckIn.objects.get().member_id == keep.pk
    assert Coupon.objects.get().member_id == keep.pk

    undone = member_merge_undo(merge=merge, reason="different people after all", actor=brand)

    assert undone.undone_at is not None
    assert ledger_violations() == []
    assert {m.pk: balances(m) for m in (keep, merged)} == before
    merged.refresh_from_db()
    assert merged.merged_into_id is None and merged.status == Member.Status.ACTIVE
    assert Order.objects.get(number="B-1").member_id == merged.pk
    assert CheckIn.objects.get().member_id == merged.pk
    assert Coupon.objects.get().member_id == merged.pk
    assert member_merge_undo(merge=undone, reason="again", actor=brand).replayed


def test_undo_refused_after_the_moved_points_were_spent(brand, store):
    keep, merged = MemberFactory(home_store=store), MemberFactory(home_store=store)
    award(merged, 300, "m1")
    merge = member_merge(keep=keep, merged=merged, reason="dup", actor=brand)
    services.points_spend(member=keep, amount=120, idempotency_key="s1", reason="reward")
    with pytest.raises(LoyaltyError) as refused:
        member_merge_undo(merge=merge, reason="oops", actor=brand)
    assert refused.value.code == "merge_points_spent"
    assert MemberMerge.objects.get().undone_at is None
    assert ledger_violations() == []


def test_undo_refused_after_the_window(brand, store, settings):
    settings.LOYALTY_MERGE_UNDO_DAYS = 7
    keep, merged = MemberFactory(home_store=store), MemberFactory(home_store=store)
    merge = member_merge(keep=keep, merged=merged, reason="dup", actor=brand)
    with pytest.raises(LoyaltyError) as refused:
        member_merge_undo(merge=merge, reason="late", actor=brand, now=timezone.now() + dt.timedelta(days=8))
    assert refused.value.code == "merge_undo_expired"


@pytest.mark.parametrize("state", ["frozen", "closed", "erased"])
def test_merge_refuses_an_inactive_or_erased_record(brand, store, state):
    keep, merged = MemberFactory(home_store=store), MemberFactory(home_store=store)
    if state == "erased":
        Member.objects.filter(pk=merged.pk).update(erased_at=timezone.now())
    else:
        Member.objects.filter(pk=merged.pk).update(status=state)
    merged.refresh_from_db()
    with pytest.raises(LoyaltyError) as refused:
        member_merge(keep=keep, merged=merged, reason="dup", actor=brand)
    assert refused.value.code == "member_not_mergeable"
    assert not MemberMerge.objects.exists()


def test_merge_refuses_the_same_member_an_already_merged_one_and_no_reason(brand, store):
    a, b, c = (MemberFactory(home_store=store) for _ in range(3))
    with pytest.raises(LoyaltyError) as refused:
        member_merge(keep=a, merged=a, reason="x", actor=brand)
    assert refused.value.code == "merge_same_member"
    with pytest.raises(LoyaltyError) as refused:
        member_merge(keep=a, merged=b, reason="  ", actor=brand)
    assert refused.value.code == "reason_required" or refused.value.code.startswith("reason")
    member_merge(keep=a, merged=b, reason="dup", actor=brand)
    with pytest.raises(LoyaltyError) as refused:
        member_merge(keep=c, merged=Member.objects.get(pk=b.pk), reason="dup", actor=brand)
    assert refused.value.code == "member_already_merged"
    with pytest.raises(LoyaltyError) as refused:
        member_merge(keep=Member.objects.get(pk=b.pk), merged=c, reason="dup", actor=brand)
    assert refused.value.code == "member_already_merged"


def test_merge_refuses_an_open_refund_shortfall(brand, store):
    keep, merged = MemberFactory(home_store=store), MemberFactory(home_store=store)
    now = timezone.now()
    earn(merged, store, "C-1", "100.00", now=now - dt.timedelta(days=30))
    services.lots_release_matured(now=now)
    spendable = Account.objects.get(member=merged, currency="points").balance
    services.points_spend(member=merged, amount=spendable, idempotency_key="s", reason="all")
    services.order_refund(order=Order.objects.get(number="C-1"), amount="100.00", number="R1")
    assert Account.objects.get(member=merged, currency="points").owed > 0
    with pytest.raises(LoyaltyError) as refused:
        member_merge(keep=keep, merged=merged, reason="dup", actor=brand)
    assert refused.value.code == "refund_shortfall_open"
    assert not MemberMerge.objects.exists()
    assert merge_preview(keep=keep, merged=merged).refusal


def test_store_manager_reaches_only_members_of_their_stores(django_user_model, roles, store):
    other = StoreFactory(code="mg2")
    manager = django_user_model.objects.create_user("mgr", password="pw-merge-123", is_staff=True)
    manager.groups.add(Group.objects.get(name=STORE_MANAGER))
    StaffProfile.objects.create(user=manager).stores.set([store])
    keep, merged = MemberFactory(home_store=store), MemberFactory(home_store=other)
    with pytest.raises(LoyaltyError) as refused:
        member_merge(keep=keep, merged=merged, reason="dup", actor=manager)
    assert refused.value.code == "out_of_scope"
    clerk = django_user_model.objects.create_user("clerk-m", password="pw-merge-123", is_staff=True)
    with pytest.raises(LoyaltyError) as refused:
        member_merge(keep=keep, merged=MemberFactory(home_store=store), reason="dup", actor=clerk)
    assert refused.value.code == "permission_denied"
    ok = member_merge(keep=keep, merged=MemberFactory(home_store=store), reason="dup", actor=manager)
    assert ok.pk


def test_refund_of_a_moved_order_takes_back_from_the_kept_member(brand, store):
    keep, merged = MemberFactory(home_store=store), MemberFactory(home_store=store)
    now = timezone.now()
    earn(merged, store, "D-1", "100.00", now=now)  # pending
    earn(merged, store, "D-2", "100.00", now=now - dt.timedelta(days=30))
    services.lots_release_matured(now=now)
    member_merge(keep=keep, merged=merged, reason="dup", actor=brand, now=now)
    before = Account.objects.get(member=keep, currency="points")
    services.order_refund(order=Order.objects.get(number="D-1"), amount="100.00", number="R1")
    services.order_refund(order=Order.objects.get(number="D-2"), amount="50.00", number="R2")
    after = Account.objects.get(member=keep, currency="points")
    assert after.pending < before.pending
    assert after.balance < before.balance
    assert after.owed == 0
    assert ledger_violations() == []


def test_merged_member_cannot_earn(brand, store):
    keep, merged = MemberFactory(home_store=store), MemberFactory(home_store=store)
    member_merge(keep=keep, merged=merged, reason="dup", actor=brand)
    with pytest.raises(LoyaltyError) as refused:
        earn(Member.objects.get(pk=merged.pk), store, "E-1", "10.00")
    assert refused.value.code in ("member_inactive", "member_closed")


def test_merge_moves_the_miniprogram_identity_when_the_kept_member_has_none(brand, store):
    keep = MemberFactory(home_store=store)
    merged = MemberFactory(home_store=store, wechat_openid="oOPEN1")
    merge = member_merge(keep=keep, merged=merged, reason="old record bound in the mini-program", actor=brand)
    assert Member.objects.get(pk=keep.pk).wechat_openid == "oOPEN1"
    assert Member.objects.get(pk=merged.pk).wechat_openid is None
    member_merge_undo(merge=merge, reason="undo", actor=brand)
    assert Member.objects.get(pk=merged.pk).wechat_openid == "oOPEN1"
    assert Member.objects.get(pk=keep.pk).wechat_openid is None


def test_preview_says_what_moves_and_the_balances_after(brand, store, django_assert_max_num_queries):
    keep, merged = MemberFactory(home_store=store), MemberFactory(home_store=store)
    award(keep, 10, "k")
    award(merged, 20, "m")
    earn(merged, store, "F-1", "30.00")
    with django_assert_max_num_queries(25):
        preview = merge_preview(keep=keep, merged=merged, actor=brand)
    assert preview.refusal == ""
    assert preview.balances["points"]["after"] == (30, 30)
    assert preview.counts["orders"] == 1


def test_refund_of_a_moved_order_paid_with_points_gives_them_back_to_the_kept_member(brand, store):
    from loyalty.checkout import order_checkout

    keep, merged = MemberFactory(home_store=store), MemberFactory(home_store=store)
    now = timezone.now()
    award(merged, 1000, "m1", now=now - dt.timedelta(days=1))
    order_checkout(member=merged, store=store, number="P-1", amount=Decimal("100.00"), points=500, now=now)
    merged_points = Account.objects.get(member=merged, currency="points").balance
    member_merge(keep=keep, merged=merged, reason="dup", actor=brand, now=now)
    kept_before = Account.objects.get(member=keep, currency="points")

    result = services.order_refund(order=Order.objects.get(number="P-1"), amount="100.00", number="R1", now=now)

    assert result.returned is not None and result.returned.amount == 500
    kept_after = Account.objects.get(member=keep, currency="points")
    assert kept_after.balance == kept_before.balance + 500  # the order's pending points were cancelled
    assert Account.objects.get(member=merged, currency="points").balance == 0
    assert merged_points == 500
    assert ledger_violations() == []


def test_undo_refused_once_the_kept_member_was_merged_on_and_lookups_follow_the_chain(brand, store):
    from api.views.common import member_by_number

    a, b, c = (MemberFactory(home_store=store) for _ in range(3))
    award(a, 50, "a1")
    first = member_merge(keep=b, merged=a, reason="dup", actor=brand)
    member_merge(keep=c, merged=Member.objects.get(pk=b.pk), reason="dup again", actor=brand)
    assert Account.objects.get(member=c, currency="points").balance == 50
    assert member_by_number(a.member_number).pk == c.pk
    assert member_by_number(a.member_number).merge_followed == a.member_number
    with pytest.raises(LoyaltyError) as refused:
        member_merge_undo(merge=first, reason="undo", actor=brand)
    assert refused.value.code == "member_already_merged"
    assert ledger_violations() == []
