"""Reads of deliveries shared by the admin and the dashboard."""

import datetime as dt

from django.db.models import Count

from .models import Delivery


def delivery_counts(*, since: dt.datetime) -> dict[str, dict[str, int]]:
    """Deliveries created since ``since``, by channel and status: ``{"sms": {"sent": 3, ...}}``.
    One query (the delivery_created index)."""
    counts: dict[str, dict[str, int]] = {}
    rows = Delivery.objects.filter(created_at__gte=since).values_list("channel", "status").annotate(n=Count("id"))
    for channel, status, n in rows.order_by():
        counts.setdefault(channel, {})[status] = n
    return counts
