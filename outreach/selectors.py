"""Reads of deliveries shared by the admin and the dashboard."""

import datetime as dt
from collections.abc import Iterable

from django.db.models import Count

from .models import Delivery


def delivery_counts(*, since: dt.datetime, stores: Iterable[int] | None = None) -> dict[str, dict[str, int]]:
    """Deliveries created since ``since``, by channel and status: ``{"sms": {"sent": 3, ...}}``;
    with ``stores`` (ids), only to members of those home stores. One query."""
    counts: dict[str, dict[str, int]] = {}
    rows = Delivery.objects.filter(created_at__gte=since)
    if stores is not None:
        rows = rows.filter(member__home_store_id__in=list(stores))
    rows = rows.values_list("channel", "status").annotate(n=Count("id"))
    for channel, status, n in rows.order_by():
        counts.setdefault(channel, {})[status] = n
    return counts
