"""Reads of the messaging and webhook tables for the console's landing page: what went out
today and what failed. Each one query over an indexed column."""

import datetime as dt
from dataclasses import dataclass

from django.db.models import Count, Q
from django.utils import timezone

from outreach.models import Delivery
from webhooks.models import WebhookDelivery

WEBHOOK_FAILURES_SINCE = dt.timedelta(days=7)


@dataclass(frozen=True)
class DeliveriesToday:
    sent: int  # sent or delivered
    failed: int
    waiting: int  # queued or sending


def start_of_today(now: dt.datetime) -> dt.datetime:
    local = timezone.localtime(now)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def deliveries_today(*, now: dt.datetime) -> DeliveriesToday:
    """Messages to members created today (local time), by outcome; one query."""
    done = [Delivery.Status.SENT, Delivery.Status.DELIVERED]
    waiting = [Delivery.Status.QUEUED, Delivery.Status.SENDING]
    counts = Delivery.objects.filter(created_at__gte=start_of_today(now)).aggregate(
        sent=Count("id", filter=Q(status__in=done)),
        failed=Count("id", filter=Q(status=Delivery.Status.FAILED)),
        waiting=Count("id", filter=Q(status__in=waiting)),
    )
    return DeliveriesToday(**counts)


def webhook_failures(*, now: dt.datetime) -> int:
    """Webhook deliveries that failed for good in the last 7 days."""
    return WebhookDelivery.objects.filter(
        status=WebhookDelivery.Status.FAILED, created_at__gte=now - WEBHOOK_FAILURES_SINCE
    ).count()
