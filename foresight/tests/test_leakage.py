import datetime as dt

import pytest
from django.urls import reverse

from core.errors import LoyaltyError
from engagement.models import CheckIn, Referral
from foresight import leakage, selectors
from foresight.models import LeakageCase
from loyalty.models import Currency, Refund
from loyalty.services import lots_release_matured, order_earn, order_refund, points_adjust, points_spend

from .conftest import NOW, transfer

pytestmark = pytest.mark.django_db
Kind = LeakageCase.Kind


def _scan(**kwargs):
    return leakage.leakage_detect(now=NOW, **kwargs)


def _late_refund_with_shortfall(member, store):
    """100 points earned 30 days ago, all spent, the order refunded 28 days after it."""
    bought = NOW - dt.timedelta(days=30)
    result = order_earn(member=member, store=store, number="A-1002", amount="100", occurred_at=bought, now=bought)
    lots_release_matured(now=bought + dt.timedelta(days=8))
    points_spend(member=member, amount=100, idempotency_key="spend-1", reason="mall", now=bought + dt.timedelta(days=9))
    order_refund(order=result.order, amount="100", number="R-1", now=NOW - dt.timedelta(days=2))
    return Refund.objects.get(number="R-1")


def test_open_shortfall_and_late_refund_become_cases_once(world):
    member = world["member"]()
    refund = _late_refund_with_shortfall(member, world["store_a"])
    assert refund.points_shortfall == 100

    report = _scan()
    assert report[Kind.REFUND_SHORTFALL] == {"new": 1, "seen_again": 0}
    assert report[Kind.LATE_REFUND] == {"new": 1, "seen_again": 0}
    case = LeakageCase.objects.get(kind=Kind.REFUND_SHORTFALL)
    assert (case.member, case.store, case.points) == (member, world["store_a"], 100)
    assert case.detail["order"] == "A-1002"
    late = LeakageCase.objects.get(kind=Kind.LATE_REFUND)
    assert late.detail["days_after_order"] == 28

    again = _scan()
    assert again[Kind.REFUND_SHORTFALL] == {"new": 0, "seen_again": 1}
    assert LeakageCase.objects.count() == 2


def test_a_settled_shortfall_clears_its_case(world):
    member = world["member"]()
    refund = _late_refund_with_shortfall(member, world["store_a"])
    _scan()
    Refund.objects.filter(pk=refund.pk).update(points_settled=100)
    assert _scan()["cleared"] == {"cases": 1}
    case = LeakageCase.objects.get(kind=Kind.REFUND_SHORTFALL)
    assert (case.status, case.outcome) == (LeakageCase.Status.RESOLVED, LeakageCase.Outcome.CLEARED)


def test_resolved_case_stays_resolved_when_seen_again(world):
    member = world["member"]()
    _late_refund_with_shortfall(member, world["store_a"])
    _scan()
    case = LeakageCase.objects.get(kind=Kind.REFUND_SHORTFALL)
    leakage.case_resolve(case=case, actor=world["manager_a"], outcome="confirmed", reason="Called the member")
    _scan()
    case.refresh_from_db()
    assert case.status == LeakageCase.Status.RESOLVED
    assert (case.resolved_by, case.resolution) == (world["manager_a"], "Called the member")


def test_resolve_refuses_no_reason_other_store_and_twice(world):
    member = world["member"]()
    _late_refund_with_shortfall(member, world["store_a"])
    _scan()
    case = LeakageCase.objects.get(kind=Kind.REFUND_SHORTFALL)
    with pytest.raises(LoyaltyError) as no_reason:
        leakage.case_resolve(case=case, actor=world["manager_a"], outcome="confirmed", reason=" ")
    assert no_reason.value.code == "reason_required"
    with pytest.raises(LoyaltyError) as other_store:
        leakage.case_resolve(case=case, actor=world["manager_b"], outcome="confirmed", reason="x")
    assert other_store.value.code == "out_of_scope"
    with pytest.raises(LoyaltyError) as bad_outcome:
        leakage.case_resolve(case=case, actor=world["brand"], outcome="cleared", reason="x")
    assert bad_outcome.value.code == "invalid_outcome"
    leakage.case_resolve(case=case, actor=world["brand"], outcome="dismissed", reason="Known customer")
    with pytest.raises(LoyaltyError) as twice:
        leakage.case_resolve(case=case, actor=world["brand"], outcome="dismissed", reason="again")
    assert twice.value.code == "case_resolved"


def test_checkin_points_collected_from_accounts_without_purchases(world):
    collector = world["member"]()
    givers = [world["member"]() for _ in range(3)]
    buyer = world["member"]()
    order_earn(member=buyer, store=world["store_a"], number="B-1", amount="10", now=NOW - dt.timedelta(days=40))
    for n, giver in enumerate([*givers, buyer]):
        CheckIn.objects.create(member=giver, day=(NOW - dt.timedelta(days=5)).date(), streak=1, points=5)
        transfer(giver, collector, 30 + n, NOW - dt.timedelta(days=3))
    _scan(kinds=[Kind.CHECKIN_FARM])
    case = LeakageCase.objects.get(kind=Kind.CHECKIN_FARM)
    # The buyer's transfer is not farming: three givers, 30 + 31 + 32 points.
    assert (case.member, case.points, case.detail["givers"]) == (collector, 93, 3)
    assert case.key == f"checkin_farm:{collector.pk}:2026-11"


def test_two_givers_are_not_a_farm(world):
    collector = world["member"]()
    for _ in range(2):
        giver = world["member"]()
        CheckIn.objects.create(member=giver, day=NOW.date(), streak=1, points=5)
        transfer(giver, collector, 30, NOW - dt.timedelta(days=3))
    assert _scan(kinds=[Kind.CHECKIN_FARM])[Kind.CHECKIN_FARM]["new"] == 0


def test_transfers_back_and_forth_within_a_week(world):
    a, b, c = world["member"](), world["member"](), world["member"]()
    transfer(a, b, 100, NOW - dt.timedelta(days=10))
    transfer(b, a, 90, NOW - dt.timedelta(days=6))
    # c -> a answered after 8 days: not a ping-pong.
    transfer(c, a, 50, NOW - dt.timedelta(days=20))
    transfer(a, c, 50, NOW - dt.timedelta(days=12))
    _scan(kinds=[Kind.TRANSFER_PINGPONG])
    case = LeakageCase.objects.get(kind=Kind.TRANSFER_PINGPONG)
    low, high = sorted([a.pk, b.pk])
    assert case.key == f"transfer_pingpong:{low}:{high}:2026-11"
    assert case.points == 190


def test_referral_ring_and_burst(world):
    referrer = world["member"]()
    referees = [world["member"]() for _ in range(5)]
    for n, referee in enumerate(referees):
        Referral.objects.create(
            referrer=referrer,
            referee=referee,
            code="ABC",
            status=Referral.Status.REWARDED,
            decided_at=NOW - dt.timedelta(days=n + 1),
        )
    transfer(referees[0], referrer, 150, NOW - dt.timedelta(days=1))
    _scan(kinds=[Kind.REFERRAL_RING, Kind.REFERRAL_BURST])
    burst = LeakageCase.objects.get(kind=Kind.REFERRAL_BURST)
    assert (burst.member, burst.detail["referrals"], burst.points) == (referrer, 5, 5 * 200)
    ring = LeakageCase.objects.get(kind=Kind.REFERRAL_RING)
    assert (ring.member, ring.points, ring.detail["referee_id"]) == (referrer, 150, referees[0].pk)


def test_accounts_sharing_an_email_and_rejoined_members(world):
    shared = [world["member"](email=email) for email in ("A@x.cn", "a@x.cn", "a@X.cn")]
    world["member"](email="b@x.cn")
    world["member"](email="b@x.cn")
    rejoined = world["member"](rejoined_after_erasure=True)
    world["member"](rejoined_after_erasure=True)  # rejoined, but no check-in or referral
    CheckIn.objects.create(member=rejoined, day=NOW.date(), streak=1, points=10)
    _scan(kinds=[Kind.SHARED_EMAIL, Kind.REJOIN])
    email = LeakageCase.objects.get(kind=Kind.SHARED_EMAIL)
    assert email.detail["member_ids"] == [m.pk for m in shared]
    assert email.member == shared[0]
    rejoin = LeakageCase.objects.get(kind=Kind.REJOIN)
    assert (rejoin.member, rejoin.points) == (rejoined, 10)


def test_adjustments_near_the_staff_limit_on_one_day(world):
    member = world["member"]()
    manager = world["manager_a"]  # limit 100: 90 and more is near it
    day = NOW - dt.timedelta(days=2)
    for amount in (95, 90, 50):
        points_adjust(member=member, currency=Currency.POINTS, amount=amount, reason="goodwill", actor=manager, now=day)
    # One near-limit adjustment on another day is not a pattern.
    points_adjust(member=member, currency=Currency.POINTS, amount=99, reason="x", actor=manager, now=NOW)
    _scan(kinds=[Kind.ADJUST_NEAR_LIMIT])
    case = LeakageCase.objects.get(kind=Kind.ADJUST_NEAR_LIMIT)
    assert (case.points, case.detail["adjustments"], case.detail["limit"]) == (185, 2, 100)
    assert case.detail["operator_id"] == manager.pk


def test_open_count_is_scoped_by_store(world):
    _late_refund_with_shortfall(world["member"](), world["store_a"])
    _scan()
    assert selectors.open_cases_count() == 2
    assert selectors.open_cases_count(world["brand"]) == 2
    assert selectors.open_cases_count(world["manager_a"]) == 2
    assert selectors.open_cases_count(world["manager_b"]) == 0


def test_the_queue_resolves_with_a_reason_in_the_admin(client, world):
    _late_refund_with_shortfall(world["member"](), world["store_a"])
    _scan()
    url = reverse("admin:foresight_leakagecase_changelist")
    client.force_login(world["manager_b"])
    assert "A-1002" not in client.get(url).content.decode()
    client.force_login(world["manager_a"])
    page = client.get(url)
    assert page.status_code == 200 and "refund shortfall still open" in page.content.decode()
    ids = list(LeakageCase.objects.values_list("pk", flat=True))
    client.post(url, {"action": "dismiss", "_selected_action": ids, "reason": "Store credit given"})
    assert set(LeakageCase.objects.values_list("status", "resolution")) == {("resolved", "Store credit given")}


def test_the_nightly_job_is_guarded_and_scheduled(world):
    from foresight import tasks
    from loyalty.management.commands.setup_periodic_tasks import SCHEDULES

    assert "foresight.leakage_scan" in {task for _n, task, *_r in SCHEDULES}
    assert isinstance(tasks.leakage_scan.run(), dict)
