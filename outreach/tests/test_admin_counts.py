"""The deliveries admin list shows the last 24 hours' counts per channel and status."""

import pytest
from django.urls import reverse

from loyalty.tests.factories import MemberFactory
from outreach.models import Channel, Delivery


@pytest.mark.django_db
def test_the_deliveries_list_shows_the_last_days_counts(admin_client):
    member = MemberFactory()
    for status in (Delivery.Status.SENT, Delivery.Status.SENT, Delivery.Status.FAILED):
        Delivery.objects.create(member=member, kind="expiry", channel=Channel.SMS, status=status)
    page = admin_client.get(reverse("admin:outreach_delivery_changelist"))
    assert page.status_code == 200
    text = page.content.decode()
    assert "Last 24 hours" in text
    assert "<td>sms</td><td>sent</td><td>2</td>" in text
    assert "<td>sms</td><td>failed</td><td>1</td>" in text
