"""Staff can read the programme's settings and why an order earned what it did."""

import datetime as dt

import pytest
from django.urls import reverse

from loyalty import services
from loyalty.models import EarnRule, LedgerEntry

from .factories import MemberFactory, StoreFactory

pytestmark = pytest.mark.django_db


def test_programme_settings_page_shows_the_rules_in_words(admin_client, settings):
    settings.LOYALTY_POINTS_EXPIRY = "calendar:1"
    settings.LOYALTY_PENDING_DAYS = 14
    page = admin_client.get(reverse("loyalty_programme_settings")).content.decode()
    assert "expire at the end of the 1. calendar year after the year they were earned in" in page
    assert "14 days pending" in page
    assert "LOYALTY_GROWTH_EXPIRY" in page
    assert reverse("loyalty_programme_settings") in admin_client.get(reverse("admin:index")).content.decode()


def test_programme_settings_page_is_for_staff_only(client, django_user_model):
    user = django_user_model.objects.create_user("shopper", password="not-a-real-password-42")
    client.force_login(user)
    response = client.get(reverse("loyalty_programme_settings"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_entry_page_shows_why_an_order_earned_what_it_did(admin_client):
    EarnRule.objects.create(
        name="Weekend double",
        kind=EarnRule.Kind.MULTIPLIER,
        value=2,
        weekdays="67",
        valid_from=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    )
    member, store = MemberFactory(), StoreFactory()
    saturday = dt.datetime(2026, 5, 2, 4, 0, tzinfo=dt.UTC)  # 12:00 in Shanghai
    result = services.order_earn(member=member, store=store, number="A1", amount="50", occurred_at=saturday)
    entry = result.entries["points"]
    assert entry.amount == 100
    page = admin_client.get(reverse("admin:loyalty_ledgerentry_change", args=[entry.pk])).content.decode()
    assert "Why it earned this" in page
    assert "Weekend double" in page
    assert LedgerEntry.objects.count() == 2  # looking wrote nothing
