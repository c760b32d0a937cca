"""A broadcast end to end through the admin: scheduled to a segment, with consent, the contact
cap, quiet hours and a holdout; sent once by the hourly run; its page and report after."""

import datetime as dt
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from engagement.models import Broadcast, Journey, JourneyRun
from loyalty.tests.factories import MemberFactory
from members.models import Member, Notification, Segment, Tag
from operations import journeys
from operations.journey_report import journey_report
from rewards.models import Coupon

pytestmark = pytest.mark.django_db

DAY = dt.timedelta(days=1)


@pytest.fixture(autouse=True)
def only_our_journeys():
    Journey.objects.update(is_active=False)


def local(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time(hour, minute)))


def test_an_operator_schedules_a_broadcast_and_the_hourly_run_sends_it_once(admin_client, settings):
    settings.MARKETING_CONTACT_CAP = "1/7"
    today = timezone.localdate() + 2 * DAY
    vip = Tag.objects.create(name="vip")
    segment = Segment.objects.create(name="vips", rules={"tags_any": ["vip"]})
    consenting = [MemberFactory(wechat_consent_at=timezone.now() - 100 * DAY) for _ in range(40)]
    silent = MemberFactory()  # no consent: skipped
    capped = MemberFactory(wechat_consent_at=timezone.now() - 100 * DAY)
    outsider = MemberFactory(wechat_consent_at=timezone.now() - 100 * DAY)  # not in the segment
    for member in [*consenting, silent, capped]:
        member.tags.add(vip)
    other = Journey.objects.create(name="earlier", trigger=Journey.Trigger.JOINED, is_active=False)
    JourneyRun.objects.create(
        journey=other, member=capped, event_key="joined", status="done", reason="x",
        created_at=local(today, 8), contacted_at=local(today, 8),
    )  # fmt: skip

    data = {
        "name": "Weekend sale",
        "is_active": "on",
        "audience": segment.pk,
        # Scheduled for 22:00, inside the quiet hours (21:00-09:00): it goes out at 09:30.
        "send_at_0": today.isoformat(),
        "send_at_1": "22:00:00",
        "holdout_percent": 25,
        "is_marketing": "on",
        "quiet_start": "21:00",
        "quiet_end": "09:00",
        "steps-TOTAL_FORMS": "1",
        "steps-INITIAL_FORMS": "0",
        "steps-0-position": "1",
        "steps-0-kind": "action",
        "steps-0-action": "issue_coupon",
        "steps-0-coupon_title": "5 yuan off",
        "steps-0-coupon_kind": "amount_off",
        "steps-0-coupon_value": "5",
        "steps-0-coupon_valid_days": "7",
        "steps-0-message_title": "Sale this weekend",
        "steps-0-message_body": "{coupon}: {code}",
    }
    response = admin_client.post(reverse("admin:engagement_broadcast_add"), data)
    assert response.status_code == 302, response.content.decode()[:3000]
    sale = Broadcast.objects.get(name="Weekend sale")
    assert (sale.trigger, sale.audience, sale.holdout_percent) == ("broadcast", segment, 25)
    assert timezone.localtime(sale.send_at) == local(today, 22)

    assert journeys.journeys_run(now=local(today, 20, 30))["Weekend sale"]["done"] == 0  # not yet
    assert journeys.journeys_run(now=local(today, 22, 30))["Weekend sale"]["quiet"] is True
    assert not JourneyRun.objects.filter(journey=sale).exists()
    result = journeys.journeys_run(now=local(today + DAY, 9, 30))["Weekend sale"]

    runs = {run.member_id: run for run in JourneyRun.objects.filter(journey=sale)}
    assert outsider.pk not in runs
    assert runs[silent.pk].status == "skipped" and "PIPL" in runs[silent.pk].reason
    assert runs[capped.pk].status == "skipped" and runs[capped.pk].detail["skip"] == "contact_cap"
    held = [m for m in consenting if runs[m.pk].status == "held_out"]
    treated = [m for m in consenting if runs[m.pk].status == "done"]
    assert len(held) + len(treated) == 40 and 0 < len(held) < 20
    assert (result["done"], result["held_out"], result["skipped"]) == (len(treated), len(held), 2)
    assert {c.member_id for c in Coupon.objects.filter(source=Coupon.Source.JOURNEY)} == {m.pk for m in treated}
    assert Notification.objects.filter(title="Sale this weekend").count() == len(treated)
    assert all(runs[m.pk].contacted_at is not None for m in treated)
    assert all(runs[m.pk].contacted_at is None for m in held)
    sale.refresh_from_db()
    assert sale.is_active is False  # sent once

    # The next run sends nothing, even switched on again: one event per member.
    Broadcast.objects.filter(pk=sale.pk).update(is_active=True)
    again = journeys.journeys_run(now=local(today + DAY, 10, 30))["Weekend sale"]
    assert (again["done"], again["held_out"], again["skipped"]) == (0, 0, 0)

    # Its page: the form, the cap, the report; its list shows the counts.
    page = admin_client.get(reverse("admin:engagement_broadcast_change", args=[sale.pk]), HTTP_ACCEPT_LANGUAGE="en")
    html = page.content.decode()
    assert page.status_code == 200
    assert "At most 1 marketing contacts per member within 7 days" in html
    assert "Skipped by it in the last 30 days: 1 member." in html
    assert 'id="journey-report"' in html and 'id="journey-flow-texts"' in html
    listing = admin_client.get(reverse("admin:engagement_broadcast_changelist")).content.decode()
    assert "Weekend sale" in listing

    # A month on, the report compares the treated with the held out, with the coupons' cost.
    report = journey_report(sale, now=local(today + 32 * DAY, 12))
    first = report["windows"][0]
    assert (first["days"], first["treated"], first["control"]) == (30, len(treated), len(held))
    assert Decimal(str(first["cost"]["coupons"])) == Decimal(5 * len(treated))


def test_a_broadcast_to_everybody_now_without_a_step_is_refused_and_nothing_saved(admin_client):
    data = {
        "name": "Empty",
        "is_active": "on",
        "holdout_percent": 0,
        "steps-TOTAL_FORMS": "0",
        "steps-INITIAL_FORMS": "0",
    }
    response = admin_client.post(reverse("admin:engagement_broadcast_add"), data, HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 200
    assert (
        "A journey needs at least one step." in response.content.decode() or "at least 1" in response.content.decode()
    )
    assert not Broadcast.objects.filter(name="Empty").exists()
    assert Member.objects.count() == 0
