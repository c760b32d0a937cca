"""Journeys (operations.journeys): triggers fire once per event, caps, consent, quiet hours, actions."""

import datetime as dt
import io
import re
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from engagement.models import Journey, JourneyRun, JourneyStep, JourneyStepRun
from loyalty import services as ledger
from loyalty.models import Account, Currency, LedgerEntry, Lot, Order, Tier, TierChange
from loyalty.tests.factories import MemberFactory, StoreFactory
from members.models import Member, Notification, Segment, StaffProfile, StageChange, Tag
from operations import journeys
from operations.admin_journeys import JourneyForm, JourneyStepForm
from rewards.models import Coupon

pytestmark = pytest.mark.django_db

# A Monday, 11:00 in Shanghai: outside the default quiet hours (21:00-09:00).
NOW = timezone.make_aware(dt.datetime(2026, 6, 15, 11, 0))
DAY = dt.timedelta(days=1)


@pytest.fixture(autouse=True)
def only_our_journeys():
    # The shipped defaults (migration 0002) stay out of the way unless a test asks for them.
    Journey.objects.update(is_active=False)


def consenting(**fields) -> Member:
    return MemberFactory(joined_at=NOW - 400 * DAY, wechat_consent_at=NOW - 400 * DAY, **fields)


STEP_FIELDS = (
    "action", "points", "coupon_title", "coupon_kind", "coupon_value", "coupon_valid_days", "tag", "message_title",
    "message_body",
)  # fmt: skip


def journey(**fields) -> Journey:
    """A journey of one action step (what every journey was before steps)."""
    defaults = {
        "name": f"journey {Journey.objects.count() + 1}",
        "trigger": Journey.Trigger.JOINED,
        "action": Journey.Action.NOTIFY,
        "message_title": "Hello {name}",
        "message_body": "Body",
        "is_marketing": False,
    }
    fields = {**defaults, **fields}
    step = {name: fields.pop(name) for name in STEP_FIELDS if name in fields}
    j = Journey.objects.create(**fields)
    JourneyStep.objects.create(journey=j, position=1, kind=JourneyStep.Kind.ACTION, **step)
    return j


def order(member: Member, at: dt.datetime, *, number: str | None = None, status=Order.Status.COMPLETED) -> Order:
    store = member.home_store or StoreFactory()
    return Order.objects.create(
        member=member,
        store=store,
        number=number or f"N{Order.objects.count() + 1:05d}",
        amount=Decimal("100.00"),
        occurred_at=at,
        status=status,
        request_hash="",
    )


def runs(j: Journey) -> list[JourneyRun]:
    return list(JourneyRun.objects.filter(journey=j).order_by("member_id", "id"))


def fired_for(j: Journey) -> set[int]:
    return {run.member_id for run in runs(j)}


# --- each trigger fires on its events, and only on them ---------------------------------


def test_joined_fires_for_members_who_joined_in_the_look_back_window():
    recent = MemberFactory(joined_at=NOW - 2 * DAY)
    old = MemberFactory(joined_at=NOW - 10 * DAY)
    future = MemberFactory(joined_at=NOW + DAY)
    j = journey(trigger=Journey.Trigger.JOINED)

    journeys.journey_run(j, now=NOW)

    assert fired_for(j) == {recent.pk}
    (run,) = runs(j)
    assert run.event_key == "joined"
    assert run.status == JourneyRun.Status.DONE
    assert run.reason.startswith("Joined on 2026-06-13")
    assert old.pk not in fired_for(j) and future.pk not in fired_for(j)


def test_first_order_fires_on_the_first_order_only():
    first = consenting()
    first_order = order(first, NOW - 3 * 3600 * dt.timedelta(seconds=1))
    repeat = consenting()
    order(repeat, NOW - 100 * DAY)
    order(repeat, NOW - 3600 * dt.timedelta(seconds=1))
    refunded_then_new = consenting()
    order(refunded_then_new, NOW - 50 * DAY, status=Order.Status.REFUNDED)
    new_after_refund = order(refunded_then_new, NOW - 3600 * dt.timedelta(seconds=1))
    j = journey(trigger=Journey.Trigger.FIRST_ORDER)

    journeys.journey_run(j, now=NOW)

    assert fired_for(j) == {first.pk, refunded_then_new.pk}
    keys = {run.member_id: run.event_key for run in runs(j)}
    assert keys[first.pk] == f"order:{first_order.pk}"
    assert keys[refunded_then_new.pk] == f"order:{new_after_refund.pk}"


def test_first_order_with_days_waits_and_needs_no_second_order():
    nudged = consenting()
    nudged_order = order(nudged, NOW - 30 * DAY - dt.timedelta(hours=2))
    came_back = consenting()
    order(came_back, NOW - 30 * DAY - dt.timedelta(hours=2))
    order(came_back, NOW - 5 * DAY)
    too_soon = consenting()
    order(too_soon, NOW - 10 * DAY)
    j = journey(trigger=Journey.Trigger.FIRST_ORDER, trigger_days=30)

    journeys.journey_run(j, now=NOW)

    assert fired_for(j) == {nudged.pk}
    (run,) = runs(j)
    assert run.event_key == f"order:{nudged_order.pk}"
    assert "no order in the 30 days since" in run.reason


def test_tier_changed_fires_on_changes_not_on_the_first_tier():
    bronze = Tier.objects.create(code="t-bronze", name="Bronze", rank=10, qualify_threshold=0, retain_threshold=0)
    gold = Tier.objects.create(code="t-gold", name="Gold", rank=11, qualify_threshold=10, retain_threshold=5)
    upgraded, newcomer, long_ago = consenting(), consenting(), consenting()
    change = TierChange.objects.create(
        member=upgraded, from_tier=bronze, to_tier=gold, reason=TierChange.Reason.UPGRADE, created_at=NOW - DAY
    )
    TierChange.objects.create(member=newcomer, to_tier=bronze, reason=TierChange.Reason.JOINED, created_at=NOW - DAY)
    TierChange.objects.create(
        member=long_ago, from_tier=bronze, to_tier=gold, reason=TierChange.Reason.UPGRADE, created_at=NOW - 30 * DAY
    )
    j = journey(trigger=Journey.Trigger.TIER_CHANGED)

    journeys.journey_run(j, now=NOW)

    (run,) = runs(j)
    assert run.member_id == upgraded.pk
    assert run.event_key == f"tier:{change.pk}"
    assert "from Bronze to Gold" in run.reason


def test_birthday_fires_on_the_birthday_once_a_year():
    today = consenting(birthday=dt.date(1990, 6, 15))
    yesterday = consenting(birthday=dt.date(1985, 6, 14))
    next_month = consenting(birthday=dt.date(1990, 7, 15))
    j = journey(trigger=Journey.Trigger.BIRTHDAY)

    journeys.journey_run(j, now=NOW)

    assert fired_for(j) == {today.pk, yesterday.pk}
    assert {run.event_key for run in runs(j)} == {"birthday:2026"}
    assert next_month.pk not in fired_for(j)


def test_dormant_fires_when_the_member_entered_the_dormant_stage():
    dormant = consenting()
    Member.objects.filter(pk=dormant.pk).update(last_order_at=NOW - 91 * DAY)
    change = StageChange.objects.create(
        member=dormant, from_stage="growing", to_stage="dormant", changed_at=NOW - dt.timedelta(hours=6)
    )
    churned = consenting()
    StageChange.objects.create(member=churned, from_stage="dormant", to_stage="churned", changed_at=NOW - DAY)
    earlier = consenting()
    StageChange.objects.create(member=earlier, from_stage="growing", to_stage="dormant", changed_at=NOW - 20 * DAY)
    # The first refresh gives every member a first stage; "" -> dormant is not an entry.
    first_stage = consenting()
    StageChange.objects.create(member=first_stage, from_stage="", to_stage="dormant", changed_at=NOW - DAY)
    j = journey(trigger=Journey.Trigger.DORMANT)

    journeys.journey_run(j, now=NOW)

    (run,) = runs(j)
    assert run.member_id == dormant.pk
    assert run.event_key == f"stage:{change.pk}"
    assert run.reason.startswith("Entered the dormant stage on 2026-06-15 (no order for 91 days)")


def _lot_expiring(member: Member, points: int, expires_at: dt.datetime, key: str) -> Lot:
    entry = ledger.points_award(
        member=member, currency=Currency.POINTS, amount=points, reason="test", idempotency_key=key, now=NOW - 300 * DAY
    )
    Lot.objects.filter(entry=entry).update(expires_at=expires_at)
    return Lot.objects.get(entry=entry)


def test_points_expiring_fires_for_points_expiring_within_the_days():
    soon = consenting()
    _lot_expiring(soon, 50, NOW + 5 * DAY, "a")
    _lot_expiring(soon, 30, NOW + 6 * DAY, "b")
    later = consenting()
    _lot_expiring(later, 80, NOW + 20 * DAY, "c")
    j = journey(
        trigger=Journey.Trigger.POINTS_EXPIRING,
        trigger_days=7,
        message_title="Expiring",
        message_body="{points} points expire on {date}.",
    )

    journeys.journey_run(j, now=NOW)

    (run,) = runs(j)
    assert run.member_id == soon.pk
    assert run.event_key == "expiry:2026-06-20"
    assert run.reason.startswith("80 points expire within 7 days, the first on 2026-06-20")
    notice = Notification.objects.get(member=soon)
    assert notice.kind == Notification.Kind.EXPIRY_WARNING
    assert notice.body == "80 points expire on 2026-06-20."


def test_no_order_fires_n_days_after_the_last_order():
    quiet = consenting()
    order(quiet, NOW - 60 * DAY - dt.timedelta(hours=2))
    returned = consenting()
    order(returned, NOW - 60 * DAY - dt.timedelta(hours=2))
    order(returned, NOW - DAY)
    long_gone = consenting()
    order(long_gone, NOW - 100 * DAY)
    j = journey(trigger=Journey.Trigger.NO_ORDER, trigger_days=60)

    journeys.journey_run(j, now=NOW)

    (run,) = runs(j)
    assert run.member_id == quiet.pk
    assert run.event_key == "no_order:2026-04-16"
    assert run.reason.startswith("No order for 60 days (last order on 2026-04-16)")


# --- once per event, caps, consent, status, quiet hours, audience ------------------------


def test_running_twice_acts_once():
    member = MemberFactory(joined_at=NOW - DAY)
    j = journey(action=Journey.Action.AWARD_POINTS, points=100, message_title="", message_body="")

    first = journeys.journey_run(j, now=NOW)
    second = journeys.journey_run(j, now=NOW + dt.timedelta(hours=1))

    assert first["done"] == 1 and second["done"] == 0
    assert JourneyRun.objects.filter(journey=j, member=member).count() == 1
    assert LedgerEntry.objects.filter(member=member, kind=LedgerEntry.Kind.EARN).count() == 1
    assert Account.objects.get(member=member, currency=Currency.POINTS).balance == 100


def test_an_existing_run_row_stops_the_action_even_if_the_candidate_check_is_bypassed(monkeypatch):
    member = MemberFactory(joined_at=NOW - DAY)
    j = journey(action=Journey.Action.AWARD_POINTS, points=100, message_title="", message_body="")
    JourneyRun.objects.create(journey=j, member=member, event_key="joined", status="done", reason="earlier run")
    # A second worker that read the candidates before the first committed: the insert is the guard.
    monkeypatch.setattr(JourneyRun.objects, "filter", lambda *a, **k: JourneyRun.objects.none())

    journeys.journey_run(j, now=NOW)

    assert LedgerEntry.objects.filter(member=member).count() == 0


def test_the_frequency_cap_skips_with_a_reason():
    bronze = Tier.objects.create(code="c-bronze", name="Bronze", rank=20, qualify_threshold=0, retain_threshold=0)
    gold = Tier.objects.create(code="c-gold", name="Gold", rank=21, qualify_threshold=10, retain_threshold=5)
    member = consenting()
    for hours in (30, 20):
        TierChange.objects.create(
            member=member,
            from_tier=bronze,
            to_tier=gold,
            reason=TierChange.Reason.UPGRADE,
            created_at=NOW - dt.timedelta(hours=hours),
        )
    j = journey(trigger=Journey.Trigger.TIER_CHANGED, cap_count=1, cap_days=30)

    result = journeys.journey_run(j, now=NOW)

    assert result["done"] == 1 and result["skipped"] == 1
    done, skipped = runs(j)
    assert done.status == JourneyRun.Status.DONE
    assert skipped.status == JourneyRun.Status.SKIPPED
    assert "frequency cap: already 1 times within 30 days" in skipped.reason
    assert Notification.objects.filter(member=member).count() == 1


def test_the_cap_counts_runs_inside_its_days_only():
    member = consenting()
    j = journey(trigger=Journey.Trigger.BIRTHDAY, cap_count=1, cap_days=30)
    JourneyRun.objects.create(
        journey=j, member=member, event_key="old", status="done", reason="x", created_at=NOW - 40 * DAY
    )
    Member.objects.filter(pk=member.pk).update(birthday=dt.date(1990, 6, 15))

    journeys.journey_run(j, now=NOW)

    assert JourneyRun.objects.get(journey=j, event_key="birthday:2026").status == JourneyRun.Status.DONE


def test_marketing_skips_members_without_consent_and_service_messages_still_go():
    opted_out = MemberFactory(joined_at=NOW - 400 * DAY)  # no consent on any channel
    opted_in = consenting()
    for member in (opted_out, opted_in):
        StageChange.objects.create(member=member, from_stage="growing", to_stage="dormant", changed_at=NOW - DAY)
        _lot_expiring(member, 40, NOW + 3 * DAY, f"m{member.pk}")
    win_back = journey(
        trigger=Journey.Trigger.DORMANT,
        action=Journey.Action.ISSUE_COUPON,
        coupon_title="30 off",
        coupon_kind="amount_off",
        coupon_value=Decimal("30"),
        coupon_valid_days=30,
        is_marketing=True,
    )
    reminder = journey(trigger=Journey.Trigger.POINTS_EXPIRING, trigger_days=7, is_marketing=False)

    journeys.journeys_run(now=NOW)

    skipped = JourneyRun.objects.get(journey=win_back, member=opted_out)
    assert skipped.status == JourneyRun.Status.SKIPPED
    assert "no marketing consent on any channel" in skipped.reason
    assert "PIPL article 24" in skipped.reason
    assert not Coupon.objects.filter(member=opted_out).exists()
    assert not Notification.objects.filter(member=opted_out, data__journey=win_back.pk).exists()
    assert Coupon.objects.filter(member=opted_in, source=Coupon.Source.JOURNEY).count() == 1
    # The expiry reminder is a service message: it reaches both.
    assert JourneyRun.objects.filter(journey=reminder, status=JourneyRun.Status.DONE).count() == 2
    assert Notification.objects.filter(member=opted_out, data__journey=reminder.pk).count() == 1


def test_frozen_closed_and_erased_members_are_skipped_with_a_reason():
    frozen = MemberFactory(joined_at=NOW - DAY, status=Member.Status.FROZEN)
    closed = MemberFactory(joined_at=NOW - DAY, status=Member.Status.CLOSED)
    erased = MemberFactory(joined_at=NOW - DAY, erased_at=NOW - 3600 * dt.timedelta(seconds=1))
    j = journey(action=Journey.Action.AWARD_POINTS, points=10, message_title="", message_body="")

    result = journeys.journey_run(j, now=NOW)

    assert result == {**result, "done": 0, "skipped": 3}
    reasons = {run.member_id: run.reason for run in runs(j)}
    assert "the member is frozen" in reasons[frozen.pk]
    assert "the member is closed" in reasons[closed.pk]
    assert "the member's data was erased" in reasons[erased.pk]
    assert not LedgerEntry.objects.filter(member__in=[frozen, closed, erased]).exists()


def test_quiet_hours_record_nothing_and_a_later_run_acts():
    member = MemberFactory(joined_at=timezone.make_aware(dt.datetime(2026, 6, 15, 22, 0)))
    j = journey(quiet_start=dt.time(21, 0), quiet_end=dt.time(9, 0))
    night = timezone.make_aware(dt.datetime(2026, 6, 15, 23, 30))
    early = timezone.make_aware(dt.datetime(2026, 6, 16, 8, 30))
    morning = timezone.make_aware(dt.datetime(2026, 6, 16, 9, 30))

    assert journeys.journey_run(j, now=night)["quiet"] is True
    assert journeys.journey_run(j, now=early)["quiet"] is True
    assert not JourneyRun.objects.filter(journey=j).exists()
    assert not Notification.objects.filter(member=member).exists()

    assert journeys.journey_run(j, now=morning)["done"] == 1
    assert Notification.objects.filter(member=member).count() == 1


def test_quiet_hours_within_a_day():
    j = journey(quiet_start=dt.time(12, 0), quiet_end=dt.time(14, 0))
    assert journeys.in_quiet_hours(j, timezone.make_aware(dt.datetime(2026, 6, 15, 13, 0)))
    assert not journeys.in_quiet_hours(j, timezone.make_aware(dt.datetime(2026, 6, 15, 14, 0)))
    assert not journeys.in_quiet_hours(j, timezone.make_aware(dt.datetime(2026, 6, 15, 11, 59)))


def test_the_audience_limits_who_the_journey_reaches():
    vip = Tag.objects.create(name="VIP")
    inside = MemberFactory(joined_at=NOW - DAY)
    inside.tags.add(vip)
    outside = MemberFactory(joined_at=NOW - DAY)
    segment = Segment.objects.create(name="VIPs", rules={"tags_any": ["VIP"]})
    j = journey(audience=segment)

    journeys.journey_run(j, now=NOW)

    assert fired_for(j) == {inside.pk}
    assert not Notification.objects.filter(member=outside).exists()


# --- what each action does ----------------------------------------------------------------


def test_award_points_writes_a_ledger_entry_keyed_by_the_event():
    member = MemberFactory(joined_at=NOW - DAY)
    j = journey(
        name="Welcome",
        action=Journey.Action.AWARD_POINTS,
        points=100,
        message_title="Welcome!",
        message_body="{points} points for you, {name}.",
    )

    journeys.journey_run(j, now=NOW)

    entry = LedgerEntry.objects.get(member=member)
    assert (entry.amount, entry.reason, entry.idempotency_key) == (100, "Welcome", f"journey:{j.pk}:joined")
    run = JourneyRun.objects.get(journey=j)
    assert run.detail["entry"] == entry.pk
    assert run.reason.endswith("100 points awarded, member notified")
    notice = Notification.objects.get(member=member)
    assert notice.body == f"100 points for you, {member.name}."


def test_issue_coupon_gives_a_journey_coupon_and_names_it_in_the_reason():
    member = consenting()
    StageChange.objects.create(member=member, from_stage="growing", to_stage="dormant", changed_at=NOW - DAY)
    j = journey(
        trigger=Journey.Trigger.DORMANT,
        action=Journey.Action.ISSUE_COUPON,
        coupon_title="30 yuan off",
        coupon_kind="amount_off",
        coupon_value=Decimal("30"),
        coupon_valid_days=30,
        is_marketing=True,
        message_title="We miss you",
        message_body="{coupon}: code {code}, until {date}.",
    )

    journeys.journey_run(j, now=NOW)

    coupon = Coupon.objects.get(member=member)
    assert (coupon.source, coupon.kind, coupon.value, coupon.title) == (
        "journey",
        "amount_off",
        Decimal("30"),
        "30 yuan off",
    )
    assert timezone.localtime(coupon.expires_at) == timezone.make_aware(dt.datetime(2026, 7, 16))
    run = JourneyRun.objects.get(journey=j)
    assert f"coupon {coupon.code} issued" in run.reason
    assert run.detail["coupon"] == coupon.pk
    assert Notification.objects.get(member=member).body == f"30 yuan off: code {coupon.code}, until 2026-07-15."


def test_notify_writes_one_outbox_row_with_a_dedupe_key():
    member = MemberFactory(joined_at=NOW - DAY)
    j = journey()

    journeys.journey_run(j, now=NOW)
    journeys.journey_run(j, now=NOW + DAY)

    notice = Notification.objects.get(member=member)
    assert notice.dedupe_key == f"journey:{j.pk}:{member.pk}:joined"
    assert notice.title == f"Hello {member.name}"
    assert notice.kind == Notification.Kind.OTHER


def test_add_tag_tags_the_member():
    tag = Tag.objects.create(name="new-joiner")
    member = MemberFactory(joined_at=NOW - DAY)
    j = journey(action=Journey.Action.ADD_TAG, tag=tag, message_title="", message_body="")

    journeys.journey_run(j, now=NOW)

    assert list(member.tags.all()) == [tag]
    assert JourneyRun.objects.get(journey=j).reason.endswith("tag “new-joiner” added")
    assert not Notification.objects.filter(member=member).exists()


def test_a_refused_action_is_recorded_as_skipped(monkeypatch):
    member = MemberFactory(joined_at=NOW - DAY)
    j = journey(action=Journey.Action.AWARD_POINTS, points=10, message_title="", message_body="")
    # The member is frozen between the decision and the award: the ledger refuses.
    real = journeys._act

    def freeze_first(journey_, step_, member_, *args, **kwargs):
        Member.objects.filter(pk=member_.pk).update(status=Member.Status.FROZEN)
        return real(journey_, step_, member_, *args, **kwargs)

    monkeypatch.setattr(journeys, "_act", freeze_first)

    result = journeys.journey_run(j, now=NOW)

    assert (result["done"], result["skipped"]) == (0, 1)
    run = JourneyRun.objects.get(journey=j, member=member)
    assert run.status == JourneyRun.Status.SKIPPED
    assert "not done" in run.reason and run.detail["error"] == "member_inactive"
    step_run = JourneyStepRun.objects.get(run=run)
    assert step_run.status == JourneyStepRun.Status.SKIPPED and step_run.detail["error"] == "member_inactive"


def test_journeys_run_skips_inactive_journeys():
    MemberFactory(joined_at=NOW - DAY)
    j = journey(is_active=False)

    journeys.journeys_run(now=NOW)

    assert not JourneyRun.objects.filter(journey=j).exists()
    assert journeys.journey_run(j, now=NOW)["inactive"] is True


def test_the_task_runs_the_journeys():
    from operations.tasks import run_journeys

    MemberFactory(joined_at=timezone.now() - dt.timedelta(hours=1))
    j = journey()

    result = run_journeys.apply().get()

    assert result[j.name]["done"] == 1


# --- the shipped defaults ------------------------------------------------------------------


def test_the_default_journeys_exist_after_migrate_as_one_step_journeys():
    steps = {(s.journey.trigger, s.action): s for s in JourneyStep.objects.select_related("journey")}
    welcome = steps[("joined", "issue_coupon")]
    nudge = steps[("first_order", "issue_coupon")]
    win_back = steps[("dormant", "issue_coupon")]
    reminder = steps[("points_expiring", "notify")]
    assert (welcome.coupon_value, welcome.journey.is_marketing) == (10, False)
    assert (nudge.journey.trigger_days, nudge.coupon_kind, nudge.journey.is_marketing) == (30, "amount_off", True)
    assert (win_back.coupon_kind, win_back.journey.is_marketing, win_back.coupon_valid_days) == ("amount_off", True, 30)
    assert (reminder.journey.trigger_days, reminder.journey.is_marketing) == (7, False)
    for step in (welcome, nudge, win_back, reminder):
        assert (step.position, step.kind, step.variant) == (1, "action", "")
        assert JourneyStep.objects.filter(journey=step.journey).count() == 1
        form = JourneyForm(instance=step.journey, data=_form_data(step.journey))
        assert form.is_valid(), form.errors
        step_form = JourneyStepForm(instance=step, data=_form_data(step, JourneyStepForm))
        assert step_form.is_valid(), step_form.errors


# --- admin ---------------------------------------------------------------------------------


def _form_data(j, form=JourneyForm) -> dict:
    data = {}
    for name in form._meta.fields:
        value = getattr(j, f"{name}_id", None) if name in ("audience", "tag", "segment") else getattr(j, name)
        if value is None:
            value = ""
        if isinstance(value, bool) and not value:
            continue
        data[name] = value
    return data


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"trigger": "no_order", "trigger_days": ""}, "trigger_days"),
        ({"trigger": "points_expiring", "trigger_days": ""}, "trigger_days"),
        ({"quiet_start": "21:00", "quiet_end": ""}, "quiet_end"),
    ],
)  # fmt: skip
def test_the_journey_form_asks_for_what_the_trigger_needs(changes, field):
    base = journey()
    data = {**_form_data(base), "name": "another", **changes}
    form = JourneyForm(data=data)
    assert not form.is_valid()
    assert field in form.errors


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"action": "award_points", "points": ""}, "points"),
        ({"action": "issue_coupon", "coupon_title": ""}, "coupon_title"),
        ({"action": "issue_coupon", "coupon_kind": "amount_off", "coupon_value": ""}, "coupon_value"),
        ({"action": "issue_coupon", "coupon_kind": "discount_percent", "coupon_value": "120"}, "coupon_value"),
        ({"action": "add_tag", "tag": ""}, "tag"),
        ({"action": "notify", "message_title": "", "message_body": ""}, "message_title"),
        ({"action": ""}, "action"),
        ({"kind": "wait", "wait_days": ""}, "wait_days"),
        ({"kind": "wait", "wait_days": "3", "variant": "A"}, "variant"),
        ({"kind": "branch", "condition": ""}, "condition"),
        ({"kind": "branch", "condition": "in_segment", "segment": ""}, "segment"),
        ({"kind": "branch", "condition": "consent", "channel": ""}, "channel"),
        ({"kind": "branch", "condition": "bought", "position": "3", "else_step": "2"}, "else_step"),
    ],
)  # fmt: skip
def test_the_step_form_asks_for_what_each_kind_of_step_needs(changes, field):
    base = {
        "position": "1", "kind": "action", "action": "issue_coupon", "coupon_title": "t", "coupon_kind": "gift",
        "coupon_valid_days": "10", "points": "5", "message_title": "Hi",
    }  # fmt: skip
    form = JourneyStepForm(data={**base, **changes})
    assert not form.is_valid()
    assert field in form.errors


def test_admin_lists_journeys_with_recent_counts_in_bounded_queries(admin_client, django_assert_max_num_queries):
    for k in range(5):
        j = journey(name=f"j{k}")
        member = MemberFactory()
        JourneyRun.objects.create(journey=j, member=member, event_key="a", status="done", reason="r")
        JourneyRun.objects.create(journey=j, member=member, event_key="b", status="skipped", reason="r")
    with django_assert_max_num_queries(12):
        response = admin_client.get(reverse("admin:engagement_journey_changelist"))
    assert response.status_code == 200
    assert "j4" in response.content.decode()


def test_admin_run_now_queues_the_selected_journey_and_the_task_runs_it(
    admin_client, monkeypatch, django_capture_on_commit_callbacks
):
    from operations import tasks

    member = MemberFactory(joined_at=timezone.now() - dt.timedelta(hours=1))
    j = journey()
    queued = []
    monkeypatch.setattr(tasks.run_journey, "delay", queued.append)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:engagement_journey_changelist"),
            {"action": "run_now", "_selected_action": [j.pk]},
            follow=True,
        )
    assert response.status_code == 200
    assert "1 journey queued" in response.content.decode()
    assert queued == [j.pk]
    assert not JourneyRun.objects.exists()  # nothing ran inside the request

    result = tasks.run_journey.apply(args=[j.pk]).get()
    assert result["done"] == 1
    assert JourneyRun.objects.filter(journey=j, member=member).exists()


def test_run_log_is_read_only_and_scoped_to_the_staff_users_stores(client, staff_user):
    from django.contrib.auth.models import Permission

    mine, theirs = StoreFactory(code="mine"), StoreFactory(code="theirs")
    profile = StaffProfile.objects.create(user=staff_user)
    profile.stores.add(mine)
    staff_user.user_permissions.add(Permission.objects.get(codename="view_journeyrun"))
    j = journey()
    ours = MemberFactory(home_store=mine, phone="+8613900000001")
    other = MemberFactory(home_store=theirs, phone="+8613900000002")
    JourneyRun.objects.create(journey=j, member=ours, event_key="joined", status="done", reason="ours-reason")
    JourneyRun.objects.create(journey=j, member=other, event_key="joined", status="done", reason="other-reason")
    client.force_login(staff_user)

    page = client.get(reverse("admin:engagement_journeyrun_changelist")).content.decode()
    found = client.get(reverse("admin:engagement_journeyrun_changelist"), {"q": "139 0000 0001"}).content.decode()

    assert "ours-reason" in page and "other-reason" not in page
    assert "ours-reason" in found
    run = JourneyRun.objects.get(member=other)
    assert client.get(reverse("admin:engagement_journeyrun_change", args=[run.pk])).status_code in (302, 404)
    assert client.post(reverse("admin:engagement_journeyrun_delete", args=[run.pk])).status_code == 403


# --- the demo -------------------------------------------------------------------------------


def test_demo_dormant_member_gets_the_win_back_coupon_from_the_nightly_run():
    from operations.lifecycle import members_refresh_profiles

    Journey.objects.update(is_active=True)
    out = io.StringIO()
    call_command("seed_demo", members=25, stdout=out)
    phone = re.search(r"dormant demo member .*: (\+\d+)", out.getvalue()).group(1)
    now = timezone.now()
    members_refresh_profiles(now=now)
    # The hourly run after the nightly refresh, outside the quiet hours (21:00-09:00).
    local = timezone.localtime(now)
    morning = local.replace(hour=10, minute=30, second=0, microsecond=0)
    if morning <= local:
        morning += DAY
    journeys.journeys_run(now=morning)

    win_back = Journey.objects.get(trigger=Journey.Trigger.DORMANT, steps__action=Journey.Action.ISSUE_COUPON)
    dormant = Member.objects.get(phone=phone)
    assert dormant.stage == Member.Stage.DORMANT
    coupon = Coupon.objects.get(member=dormant, source=Coupon.Source.JOURNEY, title=win_back.steps.get().coupon_title)
    run = JourneyRun.objects.get(journey=win_back, member=dormant)
    assert run.status == JourneyRun.Status.DONE
    assert run.reason.startswith("Entered the dormant stage on")
    assert f"coupon {coupon.code} issued" in run.reason
    # Dormant members without marketing consent were skipped, with the reason.
    for skipped in JourneyRun.objects.filter(journey=win_back, status=JourneyRun.Status.SKIPPED):
        assert "consent" in skipped.reason or "frozen" in skipped.reason or "cap" in skipped.reason


def _steps_post(*steps: dict) -> dict:
    data = {"steps-TOTAL_FORMS": str(len(steps)), "steps-INITIAL_FORMS": "0", "steps-MIN_NUM_FORMS": "1"}
    for k, step in enumerate(steps):
        data.update({f"steps-{k}-{name}": value for name, value in step.items()})
    return data


def test_admin_journey_pages_render_and_a_valid_journey_saves(admin_client):
    win_back = Journey.objects.get(trigger=Journey.Trigger.DORMANT)
    page = admin_client.get(reverse("admin:engagement_journey_change", args=[win_back.pk]))
    assert page.status_code == 200
    assert "Effect: treated vs held out" in page.content.decode()
    assert admin_client.get(reverse("admin:engagement_journey_add")).status_code == 200
    tag = Tag.objects.create(name="upgraded")
    data = {
        "name": "Tag big spenders",
        "is_active": "on",
        "trigger": "tier_changed",
        "cap_count": 1,
        "cap_days": 365,
        "holdout_percent": 10,
        **_steps_post(
            {"position": 1, "kind": "action", "action": "add_tag", "tag": tag.pk},
            {"position": 2, "kind": "wait", "wait_days": 3, "wait_until": "order"},
            {"position": 3, "kind": "branch", "condition": "bought", "else_step": 5},
            {"position": 4, "variant": "A", "kind": "action", "action": "award_points", "points": 10},
            {"position": 4, "variant": "B", "kind": "action", "action": "award_points", "points": 20},
            {"position": 5, "kind": "action", "action": "notify", "message_title": "Thanks"},
        ),
    }
    response = admin_client.post(reverse("admin:engagement_journey_add"), data)
    assert response.status_code == 302, response.content.decode()[:3000]
    saved = Journey.objects.get(name="Tag big spenders")
    assert saved.holdout_percent == 10
    assert [(s.position, s.variant, s.kind) for s in saved.steps.all()] == [
        (1, "", "action"), (2, "", "wait"), (3, "", "branch"), (4, "A", "action"), (4, "B", "action"),
        (5, "", "action"),
    ]  # fmt: skip
    refused = admin_client.post(
        reverse("admin:engagement_journey_add"),
        {**data, "name": "x", "steps-0-tag": ""},
    )
    assert refused.status_code == 200
    assert "Required for the action" in refused.content.decode()
    assert not Journey.objects.filter(name="x").exists()


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([], "at least one step"),
        ([{"position": 1, "kind": "action", "action": "notify", "message_title": "a"},
          {"position": 3, "kind": "action", "action": "notify", "message_title": "b"}], "without gaps (now: 1, 3)"),
        ([{"position": 1, "kind": "action", "action": "notify", "message_title": "a"},
          {"position": 1, "kind": "action", "action": "notify", "message_title": "b"}], "give each copy a variant"),
        ([{"position": 1, "kind": "branch", "condition": "bought", "else_step": 4},
          {"position": 2, "kind": "action", "action": "notify", "message_title": "b"}], "step 4, which does not exist"),
    ],
)  # fmt: skip
def test_admin_refuses_a_step_list_that_is_not_a_journey(admin_client, steps, message):
    data = {
        "name": "bad",
        "is_active": "on",
        "trigger": "joined",
        "cap_count": 1,
        "cap_days": 365,
        "holdout_percent": 0,
    }
    data.update(_steps_post(*steps))
    if not steps:
        data["steps-TOTAL_FORMS"] = "0"
    response = admin_client.post(reverse("admin:engagement_journey_add"), data)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Journey.objects.filter(name="bad").exists()


def test_run_rows_are_inserted_in_batches(monkeypatch):
    monkeypatch.setattr(journeys, "INSERT_BATCH", 2)
    members = [MemberFactory(joined_at=NOW - DAY) for _k in range(5)]
    j = journey()

    assert journeys.journey_run(j, now=NOW)["done"] == 5

    assert fired_for(j) == {m.pk for m in members}
    assert Notification.objects.filter(member__in=members).count() == 5
