"""member.updated: one event per committed profile change, whichever path made it."""

import datetime as dt

import pytest
from django.db import transaction
from django.utils import timezone
from rest_framework.test import APIClient

from api.services import tokens_issue
from core.bulk import update_rows
from loyalty.services import order_earn
from loyalty.tests.factories import MemberFactory, StoreFactory
from members.models import Member
from members.services import member_set_consent, member_update_profile
from webhooks.collect import events_collect
from webhooks.models import Endpoint, Event
from webhooks.services import endpoint_deliver_due
from webhooks.tests.test_webhooks import receivers  # noqa: F401 - the fixture

pytestmark = pytest.mark.django_db


@pytest.fixture
def endpoint():
    return Endpoint.objects.create(
        name="crm", url="http://127.0.0.1:9/", created_at=timezone.now() - dt.timedelta(days=1)
    )


def updated_events(member=None):
    events = Event.objects.filter(type="member.updated").order_by("id")
    return list(events.filter(member=member) if member else events)


def test_a_profile_edit_is_one_member_updated_event_and_a_rolled_back_one_none(endpoint):
    member = MemberFactory(name="Wang")
    events_collect()
    assert updated_events() == []  # joining is member.created, not an update

    member_update_profile(member=member, name="Wang Fang", email="fang@example.com")
    with pytest.raises(RuntimeError), transaction.atomic():
        member_update_profile(member=member, name="Rolled Back")
        raise RuntimeError("the request failed")
    assert events_collect() == 1
    assert events_collect() == 0  # once each
    [event] = updated_events()
    assert event.member_id == member.pk
    assert event.payload["name"] == "Wang Fang" and event.payload["email"] == "fang@example.com"
    assert event.payload["member_number"] == member.member_number
    assert event.payload["marketing_consent"] == {"sms": False, "email": False, "wechat": False}


def test_an_edit_that_changes_nothing_and_ledger_counters_are_no_event(endpoint):
    store = StoreFactory()
    member = MemberFactory(name="Li", home_store=store)
    events_collect()
    member_update_profile(member=member, name="Li")  # the same value
    Member.objects.get(pk=member.pk).save()  # the admin's full save of an unchanged form
    order_earn(member=member, store=store, number="SO-9", amount="20.00")  # order_count, spend_total
    events_collect()
    assert updated_events() == []
    assert Member.objects.get(pk=member.pk).updated_at is None


def test_every_path_stamps_the_change_each_change_once(endpoint):
    a, b, c = MemberFactory(name="A"), MemberFactory(name="B"), MemberFactory(name="C")
    events_collect()
    # An import's one-statement update of many members: only the one that changed.
    a.name, b.name = "A2", "B"
    update_rows(Member, [a, b], ["name", "email"])
    # The admin's full save, and a consent given in the member center.
    c.refresh_from_db()
    c.email = "c@example.com"
    c.save()
    member_set_consent(member=c, channel="sms", granted=True, source="web")
    events_collect()
    assert [e.member_id for e in updated_events()] == [a.pk, c.pk]
    assert updated_events(c)[0].payload["marketing_consent"]["sms"] is True
    # A later change is a new event; the earlier one stays.
    member_update_profile(member=c, name="C2")
    events_collect()
    assert [e.payload["name"] for e in updated_events(c)] == ["C", "C2"]


def test_a_stale_full_save_does_not_move_the_stamp_back(endpoint):
    member = MemberFactory(name="Old")
    stale = Member.objects.get(pk=member.pk)
    member_update_profile(member=member, name="New")
    stamped = Member.objects.get(pk=member.pk).updated_at
    stale.name = "New"  # the same values as the row now, with the old updated_at
    stale.save()
    assert Member.objects.get(pk=member.pk).updated_at == stamped


def test_an_erased_member_is_member_erased_not_updated(endpoint):
    from operations.privacy import member_erase

    member = MemberFactory(name="Zhao")
    events_collect()
    member_erase(member=member)
    events_collect()
    assert Member.objects.get(pk=member.pk).erased_at is not None
    assert updated_events() == []
    assert Event.objects.filter(type="member.erased", member=member).count() == 1


def test_an_api_profile_edit_reaches_the_receiver_after_the_members_earlier_events(receivers):  # noqa: F811
    endpoint, receiver = receivers(events=["member.created", "member.updated"])
    member = MemberFactory(name="Sun")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens_issue(member=member).access}")
    assert client.patch("/api/v1/me/", {"name": "Sun Li"}, format="json").status_code == 200
    events_collect()
    assert endpoint_deliver_due(endpoint.pk)["delivered"] == 2
    assert [e["type"] for e in receiver.events] == ["member.created", "member.updated"]
    assert receiver.events[1]["data"]["name"] == "Sun Li"
