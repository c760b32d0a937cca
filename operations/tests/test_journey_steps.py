"""Journeys of several steps (wait, branch, A/B), holdouts and their report, broadcasts, rule-based tags."""

import datetime as dt
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from engagement.models import AutoTag, Journey, JourneyPosition, JourneyRun, JourneyStep, JourneyStepRun
from loyalty.models import Account, Currency, LedgerEntry, Order
from loyalty.tests.factories import MemberFactory, StoreFactory
from members.models import Member, Notification, Segment, Tag
from operations import journeys
from operations.journey_report import Moments, journey_report, welch
from operations.segments import auto_tags_refresh
from rewards.models import Coupon

pytestmark = pytest.mark.django_db

NOW = timezone.make_aware(dt.datetime(2026, 6, 15, 11, 0))  # outside the default quiet hours
DAY = dt.timedelta(days=1)
HOUR = dt.timedelta(hours=1)


@pytest.fixture(autouse=True)
def only_our_journeys():
    Journey.objects.update(is_active=False)


def order(member: Member, at: dt.datetime, amount: str = "100.00") -> Order:
    return Order.objects.create(
        member=member,
        store=member.home_store or StoreFactory(),
        number=f"S{Order.objects.count() + 1:05d}",
        amount=Decimal(amount),
        occurred_at=at,
        status=Order.Status.COMPLETED,
        request_hash="",
    )


def steps(j: Journey, *rows: dict) -> None:
    for row in rows:
        JourneyStep.objects.create(journey=j, **row)


def nudge_journey(**fields) -> Journey:
    """Hello; wait up to 3 days for an order; bought? 50 points; then a goodbye message to all."""
    j = Journey.objects.create(name="nudge", trigger=Journey.Trigger.JOINED, is_marketing=False, **fields)
    steps(
        j,
        {"position": 1, "action": "notify", "message_title": "Hello"},
        {"position": 2, "kind": "wait", "wait_days": 3, "wait_until": "order"},
        {"position": 3, "kind": "branch", "condition": "bought", "else_step": 5},
        {"position": 4, "action": "award_points", "points": 50},
        {"position": 5, "action": "notify", "message_title": "Bye"},
    )
    return j


def points(member: Member) -> int:
    account = Account.objects.filter(member=member, currency=Currency.POINTS).first()
    return account.balance if account else 0


# --- steps ----------------------------------------------------------------------------------


def test_a_journey_waits_for_an_order_then_branches_and_each_step_acts_once():
    buyer = MemberFactory(joined_at=NOW - HOUR)
    idle = MemberFactory(joined_at=NOW - HOUR)
    j = nudge_journey()

    first = journeys.journey_run(j, now=NOW)
    assert (first["done"], first["steps"]) == (2, 2)  # both entered, both greeted
    position = JourneyPosition.objects.get(member=buyer)
    assert (position.step, position.waiting, position.due_at) == (2, True, NOW + 3 * DAY)
    assert "Hello" in Notification.objects.get(member=buyer).title

    assert journeys.journey_run(j, now=NOW + DAY)["steps"] == 0  # nobody due
    order(buyer, NOW + DAY + HOUR)
    second = journeys.journey_run(j, now=NOW + 2 * DAY)
    assert second["steps"] == 4  # the wait ended by the order, the branch, the points, the goodbye
    assert points(buyer) == 50
    assert JourneyPosition.objects.get(member=buyer).state == JourneyPosition.State.FINISHED
    wait_run = JourneyStepRun.objects.get(member=buyer, position=2)
    assert wait_run.detail == {"early": True} and "ended by an order, after 2 of 3 days" in wait_run.reason
    assert JourneyPosition.objects.get(member=idle).waiting is True

    journeys.journey_run(j, now=NOW + 3 * DAY + HOUR)  # the idle member's wait is over
    assert points(idle) == 0
    assert list(JourneyStepRun.objects.filter(member=idle).order_by("position").values_list("position", flat=True)) == [
        1,
        2,
        3,
        5,
    ]
    branch = JourneyStepRun.objects.get(member=idle, position=3)
    assert branch.detail == {"met": False} and "going on at step 5" in branch.reason
    assert Notification.objects.filter(member=idle, title="Bye").count() == 1

    journeys.journey_run(j, now=NOW + 5 * DAY)  # again: nothing acts twice
    assert JourneyStepRun.objects.filter(journey=j).count() == 5 + 4
    assert LedgerEntry.objects.filter(member=buyer).count() == 1


def test_a_crash_in_the_middle_rolls_the_batch_back_and_the_next_run_resumes(monkeypatch):
    member = MemberFactory(joined_at=NOW - HOUR)
    j = nudge_journey()
    journeys.journey_run(j, now=NOW)
    order(member, NOW + HOUR)
    real = journeys._act
    calls = {"n": 0}

    def crash_on_points(journey_, step, *args, **kwargs):
        if step.action == "award_points" and calls["n"] == 0:
            calls["n"] += 1
            raise RuntimeError("worker killed")
        return real(journey_, step, *args, **kwargs)

    monkeypatch.setattr(journeys, "_act", crash_on_points)
    with pytest.raises(RuntimeError):
        journeys.journey_run(j, now=NOW + 2 * DAY)
    position = JourneyPosition.objects.get(member=member)
    assert (position.step, position.waiting) == (2, True)  # nothing of the batch committed
    assert not JourneyStepRun.objects.filter(member=member, position__gt=1).exists()

    journeys.journey_run(j, now=NOW + 2 * DAY + HOUR)
    assert points(member) == 50
    assert JourneyPosition.objects.get(member=member).state == JourneyPosition.State.FINISHED


def test_branch_on_segment_and_on_consent():
    vip = Tag.objects.create(name="vip")
    inside = MemberFactory(joined_at=NOW - HOUR, wechat_consent_at=NOW - 100 * DAY)
    inside.tags.add(vip)
    outside = MemberFactory(joined_at=NOW - HOUR)
    segment = Segment.objects.create(name="vips", rules={"tags_any": ["vip"]})
    j = Journey.objects.create(name="branches", trigger=Journey.Trigger.JOINED, is_marketing=False)
    steps(
        j,
        {"position": 1, "kind": "branch", "condition": "in_segment", "segment": segment},
        {"position": 2, "kind": "branch", "condition": "consent", "channel": "wechat"},
        {"position": 3, "action": "award_points", "points": 7},
    )
    journeys.journey_run(j, now=NOW)
    assert (points(inside), points(outside)) == (7, 0)
    assert JourneyPosition.objects.get(member=outside).state == JourneyPosition.State.FINISHED


def test_branch_on_a_used_coupon():
    member = MemberFactory(joined_at=NOW - HOUR)
    other = MemberFactory(joined_at=NOW - HOUR)
    j = Journey.objects.create(name="coupon used", trigger=Journey.Trigger.JOINED, is_marketing=False)
    steps(
        j,
        {"position": 1, "action": "issue_coupon", "coupon_title": "5 off", "coupon_kind": "amount_off",
         "coupon_value": Decimal("5"), "coupon_valid_days": 10},
        {"position": 2, "kind": "wait", "wait_days": 2},
        {"position": 3, "kind": "branch", "condition": "coupon_used"},
        {"position": 4, "action": "award_points", "points": 9},
    )  # fmt: skip
    journeys.journey_run(j, now=NOW)
    Coupon.objects.filter(member=member).update(status=Coupon.Status.USED, used_at=NOW + DAY)
    journeys.journey_run(j, now=NOW + 2 * DAY + HOUR)
    assert (points(member), points(other)) == (9, 0)
    assert JourneyStepRun.objects.get(member=member, position=1).coupon_value == Decimal("5.00")


def test_ab_variants_split_members_evenly_and_fixed_per_member():
    members = [MemberFactory(joined_at=NOW - HOUR) for _k in range(40)]
    j = Journey.objects.create(name="ab", trigger=Journey.Trigger.JOINED, is_marketing=False)
    steps(
        j,
        {"position": 1, "variant": "A", "action": "award_points", "points": 10},
        {"position": 1, "variant": "B", "action": "award_points", "points": 20},
    )
    journeys.journey_run(j, now=NOW)
    got = {m.pk: points(m) for m in members}
    for member in members:
        expected = journeys.variant_for(j.pk, member.pk, 1, ["A", "B"])
        assert got[member.pk] == {"A": 10, "B": 20}[expected]
        assert JourneyStepRun.objects.get(member=member).variant == expected
    counts = sorted(list(got.values()).count(v) for v in (10, 20))
    assert counts[0] >= 10  # a split, not all in one


# --- holdouts ----------------------------------------------------------------------------


def test_a_holdout_keeps_a_fixed_share_out_and_records_it():
    members = [MemberFactory(joined_at=NOW - HOUR) for _k in range(60)]
    j = Journey.objects.create(name="holdout", trigger=Journey.Trigger.JOINED, is_marketing=False, holdout_percent=30)
    steps(j, {"position": 1, "action": "award_points", "points": 5})

    result = journeys.journey_run(j, now=NOW)

    held = {r.member_id for r in JourneyRun.objects.filter(journey=j, status=JourneyRun.Status.HELD_OUT)}
    assert held == {m.pk for m in members if journeys.held_out(j, m.pk)}
    assert 8 <= len(held) <= 30 and result["held_out"] == len(held)
    assert result["done"] == 60 - len(held)
    for member in members:
        assert points(member) == (0 if member.pk in held else 5)
    assert not JourneyPosition.objects.filter(member_id__in=held).exists()
    assert "held out" in JourneyRun.objects.filter(status=JourneyRun.Status.HELD_OUT).first().reason


# --- the report -------------------------------------------------------------------------


def test_welch_matches_the_hand_computed_interval():
    # Treated 10, 20, 30: mean 20, variance 100. Control 5, 15: mean 10, variance 50.
    # Standard error sqrt(100/3 + 50/2) = 7.63763; 1.959964 x 7.63763 = 14.96948.
    result = welch(Moments(3, 60, 1400), Moments(2, 20, 250))
    assert result.difference == pytest.approx(10)
    assert result.low == pytest.approx(-4.96948, abs=1e-4)
    assert result.high == pytest.approx(24.96948, abs=1e-4)
    assert not result.significant
    # Proportions: 80 of 100 vs 50 of 100; se = sqrt(.8*.2/99*100/100 ...) with sample variances.
    yes = welch(Moments(100, 80, 80), Moments(100, 50, 50))
    # s1^2 = (80 - 100*0.64)/99 = 0.161616; s2^2 = (50 - 25)/99 = 0.252525; se = sqrt(0.00414141) = 0.0643538
    assert yes.difference == pytest.approx(0.3)
    assert yes.low == pytest.approx(0.3 - 1.959964 * 0.0643538, abs=1e-6)
    assert yes.significant
    assert welch(Moments(1, 5, 25), Moments(0, 0, 0)).difference is None


def test_the_report_compares_treated_and_held_out_members_after_entry():
    j = Journey.objects.create(name="report", trigger=Journey.Trigger.JOINED, holdout_percent=40)
    step = JourneyStep.objects.create(journey=j, position=1, action="issue_coupon", coupon_kind="amount_off")
    entered = NOW - 100 * DAY
    for k, spend in enumerate(["10", "20", "30"]):
        member = MemberFactory()
        run = JourneyRun.objects.create(
            journey=j, member=member, event_key="joined", status="done", reason="r", created_at=entered
        )
        JourneyStepRun.objects.create(
            run=run, step=step, journey=j, member=member, position=1, status="done", reason="r",
            coupon_value=Decimal("5"), points=100 * (k == 0),
        )  # fmt: skip
        order(member, entered + 10 * DAY, spend)
        order(member, entered - DAY, "999")  # before entering: not counted
    for spend in ["5", "15"]:
        member = MemberFactory()
        JourneyRun.objects.create(
            journey=j, member=member, event_key="joined", status="held_out", reason="r", created_at=entered
        )
        order(member, entered + 45 * DAY, spend)  # after 30 days: only the 60- and 90-day windows

    report = journey_report(j, now=NOW)

    thirty, sixty, _ninety = report["windows"]
    assert (thirty["treated"], thirty["control"]) == (3, 2)
    assert thirty["figures"]["spend"].control == 0
    assert thirty["figures"]["spend"].difference == pytest.approx(20)
    spend = sixty["figures"]["spend"]
    assert spend.difference == pytest.approx(10)
    assert (spend.low, spend.high) == (pytest.approx(-4.96948, abs=1e-4), pytest.approx(24.96948, abs=1e-4))
    assert sixty["figures"]["retained"].difference == pytest.approx(0)
    # Cost: 15 yuan of coupons and 100 points at 0.01 yuan.
    assert sixty["cost"] == {"points": 100, "coupons": Decimal("15.00"), "yuan": Decimal("16.00")}
    assert sixty["incremental_revenue"] == Decimal("30.00")
    assert sixty["roi"] == pytest.approx((30 - 16) / 16)


def test_the_report_compares_ab_variants(admin_client):
    j = Journey.objects.create(name="ab report", trigger=Journey.Trigger.JOINED)
    a = JourneyStep.objects.create(journey=j, position=1, variant="A", action="notify", message_title="a")
    b = JourneyStep.objects.create(journey=j, position=1, variant="B", action="notify", message_title="b")
    entered = NOW - 40 * DAY
    for step, spends in ((a, ["10", "20"]), (b, ["40", "50", "60"])):
        for spend in spends:
            member = MemberFactory()
            run = JourneyRun.objects.create(
                journey=j, member=member, event_key="joined", status="done", reason="r", created_at=entered
            )
            JourneyStepRun.objects.create(
                run=run,
                step=step,
                journey=j,
                member=member,
                position=1,
                variant=step.variant,
                status="done",
                reason="r",
            )
            order(member, entered + DAY, spend)

    (test,) = journey_report(j, now=NOW)["tests"]

    assert (test["step"], test["days"], test["base"], test["counts"]) == (1, 30, "A", {"A": 2, "B": 3})
    assert test["variants"][0]["figures"]["spend"].difference == pytest.approx(35)
    page = admin_client.get(reverse("admin:engagement_journey_change", args=[j.pk])).content.decode()
    assert "A/B variants" in page and "B vs A" in page


# --- broadcasts ----------------------------------------------------------------------------


def test_a_broadcast_sends_once_at_its_time_to_the_consenting_audience():
    vip = Tag.objects.create(name="vip")
    segment = Segment.objects.create(name="vips", rules={"tags_any": ["vip"]})
    consenting = MemberFactory(wechat_consent_at=NOW - 100 * DAY)
    silent = MemberFactory()
    outsider = MemberFactory(wechat_consent_at=NOW - 100 * DAY)
    for member in (consenting, silent):
        member.tags.add(vip)
    j = Journey.objects.create(
        name="sale", trigger=Journey.Trigger.BROADCAST, audience=segment, send_at=NOW + DAY, is_marketing=True
    )
    steps(j, {"position": 1, "action": "notify", "message_title": "Sale"})

    assert journeys.journey_run(j, now=NOW)["done"] == 0  # not yet
    result = journeys.journey_run(j, now=NOW + DAY + HOUR)

    assert (result["done"], result["skipped"]) == (1, 1)
    assert Notification.objects.filter(member=consenting, title="Sale").count() == 1
    assert not Notification.objects.filter(member__in=[silent, outsider]).exists()
    j.refresh_from_db()
    assert j.is_active is False  # sent: it switches itself off
    assert "Broadcast on 2026-06-16" in JourneyRun.objects.get(member=consenting).reason


def test_the_broadcast_admin_lists_and_saves_broadcasts_only(admin_client):
    data = {
        "name": "Double points weekend",
        "is_active": "on",
        "holdout_percent": 10,
        "is_marketing": "on",
        "cap_count": 1,
        "cap_days": 365,
        "steps-TOTAL_FORMS": "1",
        "steps-INITIAL_FORMS": "0",
        "steps-0-position": "1",
        "steps-0-kind": "action",
        "steps-0-action": "notify",
        "steps-0-message_title": "This weekend",
    }
    response = admin_client.post(reverse("admin:engagement_broadcast_add"), data)
    assert response.status_code == 302, response.content.decode()[:3000]
    saved = Journey.objects.get(name="Double points weekend")
    assert saved.trigger == Journey.Trigger.BROADCAST
    listed = admin_client.get(reverse("admin:engagement_broadcast_changelist")).content.decode()
    assert "Double points weekend" in listed
    journeys_page = admin_client.get(reverse("admin:engagement_journey_changelist")).content.decode()
    assert "Double points weekend" not in journeys_page


# --- rule-based tags -------------------------------------------------------------------------


def test_rule_based_tags_follow_their_segment():
    women = [MemberFactory(gender="female") for _k in range(3)]
    man = MemberFactory(gender="male")
    tag = Tag.objects.create(name="women")
    man.tags.add(tag)  # tagged before, no longer matches
    rule = AutoTag.objects.create(tag=tag, segment=Segment.objects.create(name="w", rules={"gender": ["female"]}))

    assert auto_tags_refresh(now=NOW) == {"women": {"added": 3, "removed": 1, "members": 3}}
    assert set(tag.members.values_list("id", flat=True)) == {m.pk for m in women}
    assert auto_tags_refresh(now=NOW) == {"women": {"added": 0, "removed": 0, "members": 3}}
    rule.refresh_from_db()
    assert (rule.member_count, rule.refreshed_at) == (3, NOW)
    # Usable where tags are: a segment on the tag.
    from operations.segments import segment_members

    assert segment_members({"tags_any": ["women"]}).count() == 3


# --- the demo --------------------------------------------------------------------------------


def test_the_demo_has_a_journey_with_a_holdout_and_a_report():
    import io

    from django.core.management import call_command

    call_command("seed_demo", members=60, stdout=io.StringIO())

    j = Journey.objects.get(name__startswith="Win-back test")
    treated = JourneyRun.objects.filter(journey=j, status=JourneyRun.Status.DONE)
    control = JourneyRun.objects.filter(journey=j, status=JourneyRun.Status.HELD_OUT)
    assert treated.exists() and control.exists()
    assert all(journeys.held_out(j, run.member_id) for run in control)
    assert not any(journeys.held_out(j, run.member_id) for run in treated)
    ninety = journey_report(j)["windows"][2]
    assert (ninety["treated"], ninety["control"]) == (treated.count(), control.count())
    assert ninety["cost"]["coupons"] == Decimal("20.00") * treated.count()
    assert ninety["figures"]["retained"].difference is not None


def test_the_journey_page_and_its_report_are_in_chinese(admin_client):
    j = Journey.objects.create(name="zh", trigger=Journey.Trigger.JOINED, holdout_percent=20)
    JourneyStep.objects.create(journey=j, position=1, action="notify", message_title="Hi")
    page = admin_client.get(
        reverse("admin:engagement_journey_change", args=[j.pk]), HTTP_ACCEPT_LANGUAGE="zh-hans"
    ).content.decode()
    assert "效果：触达组与对照组" in page and "对照组（进入会员的 20%）" in page
    assert "留出对照组（百分比）" in page
