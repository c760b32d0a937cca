"""The history page shows one row per business event: an order's points and growth
together, its later release folded in as "available from <date>"."""

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from center.history import history_page
from center.tests.data import award, earn, spend
from loyalty.models import LedgerEntry
from loyalty.services import lots_expire_due, lots_release_matured

pytestmark = pytest.mark.django_db

URL = reverse("center:history")


def test_an_order_is_one_row_with_points_and_growth(member, store, tiers):
    earn(member, store, "SHJA-1", "128.00")
    assert LedgerEntry.objects.filter(member=member, order__number="SHJA-1").count() == 2
    events = history_page(member).object_list
    assert len(events) == 1
    event = events[0]
    assert event.has_points and event.has_growth
    assert event.points + event.points_pending == 128
    assert event.growth + event.growth_pending == 128
    assert event.still_pending and event.available_at is not None


def test_the_release_is_folded_into_the_order(member, store, tiers):
    ordered = timezone.now() - dt.timedelta(days=40)
    earn(member, store, "SHJA-2", "100.00", at=ordered)
    lots_release_matured(now=timezone.now())
    assert LedgerEntry.objects.filter(member=member, kind="release").exists()
    events = history_page(member).object_list
    assert [event.kind for event in events] == ["earn"]
    assert not events[0].still_pending
    assert events[0].available_at <= timezone.now()
    # Asked for, the releases (points and growth) are rows of their own.
    assert {event.kind for event in history_page(member, kind="release").object_list} == {"release"}


def test_the_page_shows_one_row_per_event_with_the_breakdown(member_client, member, store, tiers):
    earn(member, store, "SHJA-3", "88.00", at=timezone.now() - dt.timedelta(days=1))
    award(member, 500)
    spend(member, 200, key="voucher-1")
    page = member_client.get(URL).content.decode()
    assert page.count('class="entry entry--') == 3
    assert "Order SHJA-3" in page
    assert "+88 points" in page and "+88 growth" in page
    assert "Pending: available from" in page
    assert "<details" in page and "How this was earned" in page


def test_kind_filter_labels_are_capitalised(member_client):
    page = member_client.get(URL).content.decode()
    for label in ("Earned", "Spent", "Taken back for a refund", "Expired", "Adjusted by staff"):
        assert f">{label}</option>" in page


def test_an_empty_filter_links_back_to_everything(member_client):
    page = member_client.get(URL, {"kind": "expire"}).content.decode()
    assert "Nothing of this kind yet." in page and f'href="{URL}"' in page


def test_a_bad_filter_is_a_form_error_not_a_500(member_client):
    response = member_client.get(URL, {"kind": "nonsense", "page": "x"})
    assert response.status_code == 200


def test_a_staff_award_of_points_and_growth_is_one_row(member, tiers):
    # One action writes both currencies under one idempotency key (unique per account).
    award(member, 300, key="staff-award:1")
    award(member, 120, currency="growth", key="staff-award:1")
    award(member, 50, key="staff-award:2")
    events = history_page(member).object_list
    assert len(events) == 2
    both = next(event for event in events if event.has_growth)
    assert (both.points, both.growth) == (300, 120)
    assert next(event for event in events if not event.has_growth).points == 50


def test_one_nights_expiry_of_points_and_growth_is_one_row(member, tiers):
    long_ago = timezone.now() - dt.timedelta(days=1200)
    award(member, 200, at=long_ago, key="old:p")
    award(member, 90, at=long_ago, currency="growth", key="old:g")
    expired = lots_expire_due(now=timezone.now())
    assert expired >= 2
    assert LedgerEntry.objects.filter(member=member, kind="expire").count() == 2
    rows = [event for event in history_page(member).object_list if event.kind == "expire"]
    assert len(rows) == 1
    assert (rows[0].points, rows[0].growth) == (-200, -90)
