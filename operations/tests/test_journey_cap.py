"""The marketing contact cap across journeys and broadcasts (MARKETING_CONTACT_CAP, docs/journeys.md)."""

import contextlib
import datetime as dt
import threading

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from engagement.models import Broadcast, Journey, JourneyRun, JourneyStep
from loyalty.tests.factories import MemberFactory
from members.models import Member
from operations import journeys

pytestmark = pytest.mark.django_db

NOW = timezone.make_aware(dt.datetime(2026, 6, 15, 11, 0))  # outside the default quiet hours
DAY = dt.timedelta(days=1)


@pytest.fixture(autouse=True)
def only_our_journeys():
    Journey.objects.update(is_active=False)


def member(**fields) -> Member:
    return MemberFactory(joined_at=NOW - DAY, wechat_consent_at=NOW - 400 * DAY, **fields)


def journey(name: str, *, marketing: bool = True, trigger=Journey.Trigger.JOINED, **fields) -> Journey:
    j = Journey.objects.create(name=name, trigger=trigger, is_marketing=marketing, **fields)
    JourneyStep.objects.create(journey=j, position=1, action=Journey.Action.NOTIFY, message_title=f"{name} {{name}}")
    return j


def contacted(m: Member) -> list[JourneyRun]:
    return list(JourneyRun.objects.filter(member=m, contacted_at__isnull=False).order_by("id"))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("4/7", (4, 7)), (" 2/30 ", (2, 30)), ("off", None), ("", None)],
)
def test_the_setting_reads_n_per_d_days(settings, raw, expected):
    settings.MARKETING_CONTACT_CAP = raw
    assert journeys.contact_cap() == expected


@pytest.mark.parametrize("raw", ["4", "0/7", "4/0", "a/b", "-1/7"])
def test_a_malformed_cap_fails_the_marketing_journey_and_contacts_nobody(settings, raw):
    settings.MARKETING_CONTACT_CAP = raw
    m = member()
    j = journey("promo")
    journey("service", marketing=False)

    results = journeys.journeys_run(now=NOW)

    assert "MARKETING_CONTACT_CAP" in results["promo"]["error"]
    assert not JourneyRun.objects.filter(journey=j).exists()
    # A service message is not marketing: the cap does not apply to it.
    assert results["service"]["done"] == 1 and JourneyRun.objects.get(member=m).journey.name == "service"


def test_the_cap_counts_marketing_contacts_of_every_journey_and_broadcast(settings):
    settings.MARKETING_CONTACT_CAP = "2/7"
    capped, other = member(), member()
    # One contact of capped's three days ago, from a broadcast: counts.
    earlier = Broadcast.objects.create(name="earlier", trigger=Journey.Trigger.BROADCAST, is_active=False)
    JourneyRun.objects.create(
        journey=earlier, member=capped, event_key="broadcast", status="done", reason="x",
        created_at=NOW - 3 * DAY, contacted_at=NOW - 3 * DAY,
    )  # fmt: skip
    # And one eight days ago: outside the 7 days, does not count.
    JourneyRun.objects.create(
        journey=earlier, member=other, event_key="old", status="done", reason="x",
        created_at=NOW - 8 * DAY, contacted_at=NOW - 8 * DAY,
    )  # fmt: skip
    first, second, third = journey("a"), journey("b"), journey("c")
    service = journey("service", marketing=False)

    journeys.journeys_run(now=NOW)

    # capped: 1 earlier + journey a = 2, then b and c are skipped by the cap.
    assert [r.journey for r in contacted(capped)] == [earlier, first]
    skipped = JourneyRun.objects.filter(member=capped, journey__in=[second, third])
    assert {r.status for r in skipped} == {"skipped"} and skipped.count() == 2
    for run in skipped:
        assert run.detail["skip"] == "contact_cap" and run.contacted_at is None
        assert "marketing contact cap: already 2 marketing contacts within 7 days" in run.reason
    # other: the old contact does not count, so a and b reach them, c does not.
    assert [r.journey for r in contacted(other)] == [earlier, first, second]
    assert JourneyRun.objects.get(member=other, journey=third).detail["skip"] == "contact_cap"
    # The service journey reaches both and is no contact.
    service_runs = JourneyRun.objects.filter(journey=service)
    assert {r.status for r in service_runs} == {"done"} and service_runs.count() == 2
    assert all(r.contacted_at is None for r in service_runs)


def test_held_out_members_are_not_contacted(settings):
    settings.MARKETING_CONTACT_CAP = "1/7"
    members = [member() for _ in range(40)]
    control = journey("control", holdout_percent=50)
    after = journey("after")

    journeys.journeys_run(now=NOW)

    held = {r.member_id for r in JourneyRun.objects.filter(journey=control, status="held_out")}
    assert 0 < len(held) < 40
    for m in members:
        # Held out of the first journey: not contacted, so the second reaches them.
        expected = "done" if m.pk in held else "skipped"
        assert JourneyRun.objects.get(journey=after, member=m).status == expected
        assert len(contacted(m)) == 1


def test_a_broadcast_honours_the_cap_and_the_cap_is_off_when_set_off(settings):
    settings.MARKETING_CONTACT_CAP = "1/7"
    m = member()
    journey("welcome")
    broadcast = Broadcast.objects.create(name="sale", trigger=Journey.Trigger.BROADCAST)
    JourneyStep.objects.create(journey=broadcast, position=1, action="notify", message_title="Sale")

    journeys.journeys_run(now=NOW)

    assert JourneyRun.objects.get(journey=broadcast, member=m).detail["skip"] == "contact_cap"

    settings.MARKETING_CONTACT_CAP = "off"
    again = Broadcast.objects.create(name="sale 2", trigger=Journey.Trigger.BROADCAST)
    JourneyStep.objects.create(journey=again, position=1, action="notify", message_title="Sale 2")
    journeys.journeys_run(now=NOW + DAY)
    assert JourneyRun.objects.get(journey=again, member=m).status == "done"


def test_the_cap_costs_two_statements_per_chunk(settings, django_assert_max_num_queries):
    settings.MARKETING_CONTACT_CAP = "4/7"
    for _ in range(30):
        member()
    journey("promo")
    settings.MARKETING_CONTACT_CAP = "off"
    with django_assert_max_num_queries(1000) as off:
        journeys.journey_run(Journey.objects.get(name="promo"), now=NOW)
    JourneyRun.objects.all().delete()
    settings.MARKETING_CONTACT_CAP = "4/7"
    with django_assert_max_num_queries(1000) as on:
        journeys.journey_run(Journey.objects.get(name="promo"), now=NOW)
    # The bucket locks (PostgreSQL) and the count: not one per member.
    extra = 2 if connection.vendor == "postgresql" else 1
    assert len(on.captured_queries) == len(off.captured_queries) + extra


def test_the_journey_and_broadcast_pages_show_the_cap(admin_client, settings):
    settings.MARKETING_CONTACT_CAP = "3/14"
    settings.LANGUAGE_CODE = "en"
    j = journey("promo")
    broadcast = Broadcast.objects.create(name="sale", trigger=Journey.Trigger.BROADCAST)
    JourneyStep.objects.create(journey=broadcast, position=1, action="notify", message_title="Sale")
    m = member()
    JourneyRun.objects.create(
        journey=j, member=m, event_key="x", status="skipped", reason="x", detail={"skip": "contact_cap"}
    )
    for url in (
        reverse("admin:engagement_journey_change", args=[j.pk]),
        reverse("admin:engagement_broadcast_change", args=[broadcast.pk]),
        reverse("admin:engagement_broadcast_add"),
    ):
        page = admin_client.get(url, HTTP_ACCEPT_LANGUAGE="en").content.decode()
        assert "At most 3 marketing contacts per member within 14 days" in page, url
    page = admin_client.get(reverse("admin:engagement_journey_change", args=[j.pk])).content.decode()
    assert "Skipped by it in the last 30 days: 1 member." in page


# --- two runs at once on PostgreSQL ------------------------------------------------------


def _race(monkeypatch, *, lock: bool) -> tuple[list[Member], list[Journey]]:
    """Run two marketing journeys in two threads at once over the same members, each made to
    pause right after counting the members' contacts until the other has counted too (or,
    when the other cannot get that far, for a second)."""
    if connection.vendor != "postgresql":
        pytest.skip("two writers at once need PostgreSQL; SQLite runs one write at a time")
    members = [member() for _ in range(25)]
    first, second = journey("first"), journey("second")
    counted = threading.Barrier(2)
    original = journeys._contacts_recent

    def count_then_wait(*args, **kwargs):
        result = original(*args, **kwargs)
        # When the other run waits for our bucket locks, the barrier breaks: go on and commit.
        with contextlib.suppress(threading.BrokenBarrierError):
            counted.wait(timeout=1.5)
        return result

    monkeypatch.setattr(journeys, "_contacts_recent", count_then_wait)
    if not lock:
        monkeypatch.setattr(journeys, "_lock_contact_buckets", lambda ids: None)
    errors = []

    def run(j):
        try:
            journeys.journey_run(Journey.objects.get(pk=j.pk), now=NOW)
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(j,)) for j in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors and not any(t.is_alive() for t in threads)
    return members, [first, second]


@pytest.mark.django_db(transaction=True)
def test_two_journeys_at_once_cannot_both_exceed_the_cap(monkeypatch, settings):
    settings.MARKETING_CONTACT_CAP = "1/7"
    members, pair = _race(monkeypatch, lock=True)

    for m in members:
        assert len(contacted(m)) == 1, m.pk
        statuses = sorted(JourneyRun.objects.filter(member=m).values_list("status", flat=True))
        assert statuses == ["done", "skipped"]
    # One journey won every member: the other waited for the locks, then found them capped.
    winners = {r.journey_id for m in members for r in contacted(m)}
    assert len(winners) == 1


@pytest.mark.django_db(transaction=True)
def test_without_the_bucket_locks_the_same_race_breaks_the_cap(monkeypatch, settings):
    """The race above is real: with the locks taken away, both runs count 0 and both send."""
    settings.MARKETING_CONTACT_CAP = "1/7"
    members, pair = _race(monkeypatch, lock=False)

    assert all(len(contacted(m)) == 2 for m in members)
