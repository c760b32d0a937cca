"""Referrals: codes, who may join with one, and the reward once the first order is settled."""

import datetime as dt
import threading

import pytest
from django.db import connection
from django.utils import timezone

from core.errors import LoyaltyError
from engagement import referrals
from engagement.models import Referral
from engagement.referrals import (
    CODE_ALPHABET,
    referral_code_for,
    referral_on_join,
    referral_record,
    referral_summary,
    referrals_reward,
)
from loyalty.models import Account, Currency, LedgerEntry
from loyalty.selectors import ledger_violations
from loyalty.services import order_earn, order_refund
from loyalty.tests.factories import MemberFactory, StoreFactory
from members.models import Member
from members.services import member_set_status

NOW = dt.datetime(2026, 3, 1, 4, 0, tzinfo=dt.UTC)


def referral_entries(member) -> list[str]:
    return list(
        LedgerEntry.objects.filter(member=member, idempotency_key__startswith="referral:").values_list(
            "idempotency_key", flat=True
        )
    )


def points(member) -> int:
    account = Account.objects.filter(member=member, currency=Currency.POINTS).first()
    return account.balance if account else 0


@pytest.fixture
def store(db):
    return StoreFactory()


@pytest.fixture
def referrer(db):
    return MemberFactory(joined_at=NOW - dt.timedelta(days=300))


@pytest.fixture
def newcomer(db):
    return MemberFactory(joined_at=NOW)


def buy(member, store, *, number="A1", amount="100", at=NOW + dt.timedelta(hours=1)):
    return order_earn(member=member, store=store, number=number, amount=amount, occurred_at=at, now=at).order


# --- codes --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_code_is_made_once_short_and_unambiguous(referrer):
    code = referral_code_for(referrer)
    assert len(code) == 8 and set(code) <= set(CODE_ALPHABET)
    assert not set(code) & set("01OIL")
    referrer.refresh_from_db()
    assert referrer.referral_code == code
    assert referral_code_for(Member.objects.get(pk=referrer.pk)) == code


@pytest.mark.django_db
def test_a_colliding_code_is_retried(referrer, newcomer, monkeypatch):
    taken = referral_code_for(referrer)
    codes = iter([taken, "ZZZZ2222"])
    monkeypatch.setattr(referrals, "_new_code", lambda: next(codes))
    assert referral_code_for(newcomer) == "ZZZZ2222"


# --- recording ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_new_member_joins_with_a_code_typed_any_way(referrer, newcomer):
    code = referral_code_for(referrer)
    typed = f" {code[:4].lower()}-{code[4:]} "
    referral = referral_record(referee=newcomer, code=typed, now=NOW)
    assert (referral.referrer, referral.referee, referral.code) == (referrer, newcomer, code)
    assert referral.status == Referral.Status.PENDING


@pytest.mark.django_db
def test_an_unknown_code_is_refused(newcomer):
    with pytest.raises(LoyaltyError) as refused:
        referral_record(referee=newcomer, code="NOPE2345", now=NOW)
    assert refused.value.code == "referral_code_unknown"
    assert not Referral.objects.exists()


@pytest.mark.django_db
def test_a_member_cannot_refer_themselves(newcomer):
    code = referral_code_for(newcomer)
    with pytest.raises(LoyaltyError) as refused:
        referral_record(referee=newcomer, code=code, now=NOW)
    assert refused.value.code == "referral_self"
    assert not Referral.objects.exists()


@pytest.mark.django_db
def test_a_cycle_is_refused(db):
    first = MemberFactory(joined_at=NOW - dt.timedelta(minutes=30))
    second = MemberFactory(joined_at=NOW - dt.timedelta(minutes=10))
    referral_record(referee=second, code=referral_code_for(first), now=NOW)
    with pytest.raises(LoyaltyError) as refused:
        referral_record(referee=first, code=referral_code_for(second), now=NOW)
    assert refused.value.code == "referral_cycle"
    assert Referral.objects.count() == 1


@pytest.mark.django_db
def test_an_existing_member_cannot_join_with_a_code(referrer):
    old = MemberFactory(joined_at=NOW - dt.timedelta(days=2))
    with pytest.raises(LoyaltyError) as refused:
        referral_record(referee=old, code=referral_code_for(referrer), now=NOW)
    assert refused.value.code == "referral_not_new"


@pytest.mark.django_db
def test_a_new_member_with_an_order_is_not_new_any_more(referrer, newcomer, store):
    buy(newcomer, store, at=NOW + dt.timedelta(minutes=5))
    with pytest.raises(LoyaltyError) as refused:
        referral_record(referee=newcomer, code=referral_code_for(referrer), now=NOW + dt.timedelta(minutes=10))
    assert refused.value.code == "referral_not_new"


@pytest.mark.django_db
def test_a_second_code_is_refused(referrer, newcomer):
    other = MemberFactory(joined_at=NOW - dt.timedelta(days=10))
    referral_record(referee=newcomer, code=referral_code_for(referrer), now=NOW)
    with pytest.raises(LoyaltyError) as refused:
        referral_record(referee=newcomer, code=referral_code_for(other), now=NOW)
    assert refused.value.code == "referral_exists"
    assert Referral.objects.get().referrer == referrer


@pytest.mark.django_db
def test_the_sign_in_wrapper_never_raises_and_says_why(referrer, newcomer):
    assert referral_on_join(member=newcomer, code="", created=True, now=NOW) is None
    unknown = referral_on_join(member=newcomer, code="NOPE2345", created=True, now=NOW)
    assert (unknown.status, unknown.reason) == ("not_recorded", "referral_code_unknown")
    existing = referral_on_join(member=newcomer, code=referral_code_for(referrer), created=False, now=NOW)
    assert (existing.status, existing.reason) == ("not_recorded", "referral_not_new")
    assert not Referral.objects.exists()
    recorded = referral_on_join(member=newcomer, code=referral_code_for(referrer), created=True, now=NOW)
    assert recorded.status == "recorded"
    assert Referral.objects.filter(referee=newcomer).exists()


@pytest.mark.django_db
def test_summary_counts_the_referrers_friends(referrer, django_assert_max_num_queries):
    code = referral_code_for(referrer)
    for minutes in (1, 2):
        referral_record(referee=MemberFactory(joined_at=NOW + dt.timedelta(minutes=minutes)), code=code, now=NOW)
    Referral.objects.filter(pk=Referral.objects.first().pk).update(status=Referral.Status.REWARDED)
    with django_assert_max_num_queries(1):
        summary = referral_summary(referrer)
    assert (summary.code, summary.joined, summary.rewarded, summary.pending) == (code, 2, 1, 1)


# --- the reward ---------------------------------------------------------------------------


@pytest.fixture
def referral(referrer, newcomer):
    return referral_record(referee=newcomer, code=referral_code_for(referrer), now=NOW)


@pytest.mark.django_db
def test_both_get_points_once_after_the_first_order_is_released(referral, referrer, newcomer, store, settings):
    settings.LOYALTY_PENDING_DAYS = 7
    order = buy(newcomer, store)
    assert referrals_reward(now=NOW + dt.timedelta(days=3)) == {"rewarded": 0, "rejected": 0, "waiting": 0}
    assert referral_entries(referrer) == []

    result = referrals_reward(now=NOW + dt.timedelta(days=8))
    assert result == {"rewarded": 1, "rejected": 0, "waiting": 0}
    referral.refresh_from_db()
    assert (referral.status, referral.order) == (Referral.Status.REWARDED, order)
    assert referral_entries(referrer) == [f"referral:{referral.pk}:referrer"]
    assert referral_entries(newcomer) == [f"referral:{referral.pk}:referee"]
    assert points(referrer) == 200
    assert points(newcomer) == 200 + 100  # the bonus and the released order points

    # A rerun, a day later, rewards nobody again.
    assert referrals_reward(now=NOW + dt.timedelta(days=9)) == {"rewarded": 0, "rejected": 0, "waiting": 0}
    assert points(referrer) == 200
    assert ledger_violations() == []


@pytest.mark.django_db
def test_a_refunded_first_order_earns_nothing(referral, referrer, newcomer, store):
    order = buy(newcomer, store)
    order_refund(order=order, amount="100", number="R1", now=NOW + dt.timedelta(days=1))
    assert referrals_reward(now=NOW + dt.timedelta(days=2)) == {"rewarded": 0, "rejected": 1, "waiting": 0}
    referral.refresh_from_db()
    assert (referral.status, referral.reason, referral.order) == (
        Referral.Status.REJECTED,
        "first order refunded",
        order,
    )
    # A later order does not revive it.
    buy(newcomer, store, number="A2", at=NOW + dt.timedelta(days=3))
    assert referrals_reward(now=NOW + dt.timedelta(days=30))["rewarded"] == 0
    assert referral_entries(referrer) == [] and referral_entries(newcomer) == []


@pytest.mark.django_db
def test_a_partly_refunded_first_order_still_counts(referral, referrer, newcomer, store):
    order = buy(newcomer, store)
    order_refund(order=order, amount="30", number="R1", now=NOW + dt.timedelta(days=1))
    assert referrals_reward(now=NOW + dt.timedelta(days=8))["rewarded"] == 1
    assert points(referrer) == 200


@pytest.mark.django_db
def test_a_frozen_member_waits_until_active_again(referral, referrer, newcomer, store):
    buy(newcomer, store)
    member_set_status(member=referrer, status=Member.Status.FROZEN)
    assert referrals_reward(now=NOW + dt.timedelta(days=8)) == {"rewarded": 0, "rejected": 0, "waiting": 1}
    assert referral_entries(newcomer) == []
    member_set_status(member=referrer, status=Member.Status.ACTIVE)
    assert referrals_reward(now=NOW + dt.timedelta(days=9))["rewarded"] == 1
    assert points(referrer) == 200


@pytest.mark.django_db
def test_a_new_member_without_an_order_keeps_waiting(referral):
    assert referrals_reward(now=NOW + dt.timedelta(days=60))["rewarded"] == 0
    referral.refresh_from_db()
    assert referral.status == Referral.Status.PENDING


@pytest.mark.django_db
def test_the_celery_task_runs_the_job(referral, newcomer, store, settings):
    from engagement.tasks import reward_referrals

    buy(newcomer, store, at=timezone.now() - dt.timedelta(days=settings.LOYALTY_PENDING_DAYS + 1))
    assert reward_referrals.name == "engagement.reward_referrals"
    assert reward_referrals.apply().get() == {"rewarded": 1, "rejected": 0, "waiting": 0}


@pytest.mark.django_db(transaction=True)
def test_two_reward_runs_at_once_award_each_member_once():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL and its row locks")
    store = StoreFactory()
    referrer = MemberFactory(joined_at=NOW - dt.timedelta(days=300))
    code = referral_code_for(referrer)
    newcomers = [MemberFactory(joined_at=NOW + dt.timedelta(minutes=i)) for i in range(5)]
    for i, newcomer in enumerate(newcomers):
        referral_record(referee=newcomer, code=code, now=NOW + dt.timedelta(minutes=i))
        buy(newcomer, store, number=f"A{i}")
    later = NOW + dt.timedelta(days=8)
    barrier = threading.Barrier(2)
    outcomes: list[object] = [None, None]

    def worker(index: int) -> None:
        try:
            connection.ensure_connection()
            barrier.wait(timeout=30)
            outcomes[index] = referrals_reward(now=later)
        except Exception as error:  # noqa: BLE001 - checked below
            outcomes[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads), "a run did not finish: deadlock?"
    assert all(isinstance(o, dict) for o in outcomes), outcomes
    assert sum(o["rewarded"] for o in outcomes) == 5
    assert len(referral_entries(referrer)) == 5
    assert all(len(referral_entries(n)) == 1 for n in newcomers)
    assert points(referrer) == 5 * 200
    assert Referral.objects.filter(status=Referral.Status.REWARDED).count() == 5
    assert ledger_violations() == []


# --- admin ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_admin_lists_are_read_only_and_scoped_to_the_staff_users_stores(client, django_user_model, store):
    from django.contrib.auth.models import Permission

    from engagement.checkin import member_check_in
    from members.models import StaffProfile

    other_store = StoreFactory()
    ours = MemberFactory(home_store=store, joined_at=NOW - dt.timedelta(days=5))
    theirs = MemberFactory(home_store=other_store, joined_at=NOW - dt.timedelta(days=5))
    ours_friend = MemberFactory(home_store=None, joined_at=NOW)
    theirs_friend = MemberFactory(home_store=None, joined_at=NOW + dt.timedelta(minutes=1))
    referral_record(referee=ours_friend, code=referral_code_for(ours), now=NOW)
    referral_record(referee=theirs_friend, code=referral_code_for(theirs), now=NOW)
    member_check_in(member=ours, now=NOW)
    member_check_in(member=theirs, now=NOW)

    clerk = django_user_model.objects.create_user("clerk", password="pw-not-used-1234", is_staff=True)
    clerk.user_permissions.add(*Permission.objects.filter(codename__in=["view_referral", "view_checkin"]))
    StaffProfile.objects.create(user=clerk).stores.set([store])
    client.force_login(clerk)

    referrals_page = client.get("/admin/engagement/referral/").content.decode()
    assert ours.referral_code in referrals_page and theirs.referral_code not in referrals_page
    check_ins_page = client.get("/admin/engagement/checkin/")
    assert check_ins_page.status_code == 200
    assert list(check_ins_page.context["cl"].queryset.values_list("member", flat=True)) == [ours.pk]
    referral = Referral.objects.get(referee=ours_friend)
    assert client.post(f"/admin/engagement/referral/{referral.pk}/change/", {"status": "rewarded"}).status_code == 403
    assert client.get("/admin/engagement/referral/add/").status_code == 403
    referral.refresh_from_db()
    assert referral.status == Referral.Status.PENDING
