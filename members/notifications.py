"""The notification outbox: write a notice, deliver it through a pluggable sender (issue 3).

Code that wants to tell a member something calls :func:`notify` inside its own
transaction; the row commits or rolls back with the change that caused it. The
``members.send_notifications`` task then calls :func:`notifications_send_pending`, which
hands unsent rows to the sender named by ``settings.LOYALTY_NOTIFICATION_SENDER``.

Delivery is at most once per row: a row is claimed (``sent_at`` set by a conditional
update) before it is sent, so two workers never send the same row. A send that raises
releases the claim and the row is tried again on the next run; a worker killed between
claim and send loses that one notice rather than sending it twice.
"""

import datetime as dt
import logging
from typing import Protocol

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from .models import Notification

logger = logging.getLogger(__name__)


class Sender(Protocol):
    def send(self, notification: Notification) -> None:
        """Deliver one notification; raise to have it tried again later."""


class LogSender:
    """The default sender: writes each notification to the log (development, first runs)."""

    def send(self, notification: Notification) -> None:
        logger.info(
            "notification %s to member %s (%s): %s | %s",
            notification.pk,
            notification.member_id,
            notification.kind,
            notification.title,
            notification.body,
        )


def get_sender() -> Sender:
    """An instance of the class named by ``settings.LOYALTY_NOTIFICATION_SENDER``."""
    return import_string(settings.LOYALTY_NOTIFICATION_SENDER)()


def notify(
    *,
    member_id: int,
    kind: str,
    title: str,
    body: str = "",
    data: dict | None = None,
    dedupe_key: str,
    now: dt.datetime | None = None,
) -> bool:
    """Put a notice for a member in the outbox; return False when ``dedupe_key`` was used before.

    Call it inside the transaction that caused the notice. A second call with the same
    ``dedupe_key`` (a job run twice, two workers) writes nothing.
    """
    now = now or timezone.now()
    try:
        # A savepoint, so a duplicate does not spoil the caller's transaction.
        with transaction.atomic():
            Notification.objects.create(
                member_id=member_id,
                kind=kind,
                title=title[:200],
                body=body,
                data=data or {},
                dedupe_key=dedupe_key,
                created_at=now,
            )
    except IntegrityError:
        if Notification.objects.filter(dedupe_key=dedupe_key).exists():
            return False
        raise
    return True


def notifications_send_pending(*, limit: int = 500, now: dt.datetime | None = None) -> dict[str, int]:
    """Send up to ``limit`` unsent notifications, oldest first; returns counts.

    Safe with several workers at once: each row is claimed with
    ``UPDATE ... SET sent_at = now WHERE id = x AND sent_at IS NULL`` and only the worker
    whose update changed the row sends it. Sending happens outside any transaction, so a
    slow gateway never holds a database lock.
    """
    now = now or timezone.now()
    sender = get_sender()
    counts = {"sent": 0, "failed": 0, "taken_by_others": 0}
    candidates = list(
        Notification.objects.filter(sent_at__isnull=True)
        .order_by("created_at", "id")
        .values_list("pk", flat=True)[:limit]
    )
    for pk in candidates:
        if Notification.objects.filter(pk=pk, sent_at__isnull=True).update(sent_at=now) != 1:
            counts["taken_by_others"] += 1
            continue
        notification = Notification.objects.get(pk=pk)
        try:
            sender.send(notification)
        except Exception:
            # Give the row back so the next run tries again.
            Notification.objects.filter(pk=pk, sent_at=now).update(sent_at=None)
            logger.exception("sending notification %s failed; it will be tried again", pk)
            counts["failed"] += 1
        else:
            counts["sent"] += 1
    return counts


def notification_mark_read(*, notification: Notification, now: dt.datetime | None = None) -> Notification:
    """Mark a notification read by its member. Only the first read counts: a second call
    keeps the first time and writes nothing."""
    Notification.objects.filter(pk=notification.pk, read_at__isnull=True).update(read_at=now or timezone.now())
    notification.refresh_from_db(fields=["read_at"])
    return notification
