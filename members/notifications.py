"""The notification outbox: write a notice, deliver it through a pluggable sender (issue 3).

Code that wants to tell members something calls :func:`notices_enqueue` (many notices, one
insert) or :func:`notify` (one) inside its own transaction; the rows commit or roll back
with the change that caused them. That one function owns the rules every notice follows:
the dedupe key (a notice already written is skipped), the member's language for the text,
no notice to an erased or closed member, and marketing consent for a marketing notice.
A one-time code, which must never be stored, goes out through :func:`notice_send_unsaved`.
The
``members.send_notifications`` task then calls :func:`notifications_send_pending`, which
hands unsent rows to the sender named by ``settings.LOYALTY_NOTIFICATION_SENDER``:
``outreach.sender.RoutingSender`` by default, which routes each row to SMS, WeChat,
email or in-app and keeps a delivery record per attempt (docs/channels.md); a sender
with a ``send_due`` method also gets to send its retries on each run.

Delivery is at most once per row: a row is claimed (``sent_at`` set by a conditional
update) before it is sent, so two workers never send the same row. A send that raises
releases the claim and the row is tried again on the next run; a worker killed between
claim and send loses that one notice rather than sending it twice.
"""

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from django.conf import settings
from django.db import connection
from django.utils import timezone, translation
from django.utils.module_loading import import_string

from .models import Member, Notification

logger = logging.getLogger(__name__)


class Sender(Protocol):
    def send(self, notification: Notification) -> None:
        """Deliver one notification; raise to have it tried again later."""


class LogSender:
    """The default sender: writes each notification to the log (development, first runs)."""

    def send(self, notification: Notification) -> None:
        if notification.kind == Notification.Kind.ONE_TIME_CODE and settings.PRODUCTION:
            # A one-time code never goes to a production log.
            raise RuntimeError("LogSender does not send one-time codes in production")
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


@dataclass(frozen=True)
class Notice:
    """One notice to put in the outbox.

    ``title`` and ``body`` are the texts as written in the code, translated when the notice
    is written: a ``gettext_lazy`` string (with ``%(name)s`` placeholders filled from
    ``params``), or plain text such as a journey's message (``params`` None: taken as is).
    """

    member_id: int
    kind: str
    title: str
    dedupe_key: str
    body: str = ""
    params: dict | None = None
    data: dict = field(default_factory=dict)


# Marketing needs consent on at least one of these channels (PIPL article 24).
CONSENT_CHANNELS = ("sms", "email", "wechat")


def has_marketing_consent(member: dict) -> bool:
    """Whether a member's values (``sms_consent_at`` ...), already read, allow marketing."""
    return any(member[f"{channel}_consent_at"] is not None for channel in CONSENT_CHANNELS)


def member_language(member_id: int) -> str:
    """The language a member's notices are written in. Members have no language of their
    own yet, so it is the site's (``LANGUAGE_CODE``); this is the place to change that."""
    return settings.LANGUAGE_CODE


def _text(text, params: dict | None) -> str:
    return str(text) if params is None else str(text) % params


INSERT_BATCH = 1000  # notices per INSERT: 7 parameters each, under every database's limit


def notices_enqueue(notices: Iterable[Notice], *, now: dt.datetime | None = None, marketing: bool = False) -> int:
    """Put ``notices`` in the outbox inside the caller's transaction; return how many were new.

    Skips, writing nothing for them: a notice whose ``dedupe_key`` is in the outbox
    already (a job run twice, two workers), a member erased or closed, and for a
    ``marketing`` notice a member without marketing consent on any channel. Texts are
    translated into each member's language (:func:`member_language`), titles and keys cut
    to 200 characters. One ``INSERT ... SELECT`` per :data:`INSERT_BATCH` notices: the
    member rules are its ``WHERE``, the dedupe key its ``ON CONFLICT DO NOTHING``.
    """
    now = now or timezone.now()
    data_field = Notification._meta.get_field("data")
    rows = []
    for notice in notices:
        with translation.override(member_language(notice.member_id)):
            title, body = _text(notice.title, notice.params), _text(notice.body, notice.params)
        # The channels' templates (SMS, WeChat) take the values, not the text; a marketing
        # notice is routed under the marketing rules (outreach.routing).
        data = dict(notice.data)
        if notice.params:
            data.setdefault(
                "params", {k: v if isinstance(v, int | float) else str(v) for k, v in notice.params.items()}
            )
        if marketing:
            data["marketing"] = True
        rows.append(
            [
                notice.member_id,
                notice.kind,
                title[:200],
                body,
                data_field.get_db_prep_save(data, connection),
                notice.dedupe_key[:200],
                now,
            ]
        )
    consent = ""
    if marketing:
        consent = " AND (" + " OR ".join(f"m.{channel}_consent_at IS NOT NULL" for channel in CONSENT_CHANNELS) + ")"
    new = 0
    for first in range(0, len(rows), INSERT_BATCH):
        batch = rows[first : first + INSERT_BATCH]
        # VALUES columns are column1..column7 on PostgreSQL and SQLite alike.
        sql = (
            "INSERT INTO members_notification (member_id, kind, title, body, data, dedupe_key, created_at) "
            "SELECT v.column1, v.column2, v.column3, v.column4, v.column5, v.column6, v.column7 "
            f"FROM (VALUES {', '.join(['(%s, %s, %s, %s, %s, %s, %s)'] * len(batch))}) AS v "
            "JOIN members_member m ON m.id = v.column1 "
            f"WHERE m.erased_at IS NULL AND m.status <> %s{consent} "
            "ON CONFLICT (dedupe_key) DO NOTHING RETURNING id"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [value for row in batch for value in row] + [Member.Status.CLOSED.value])
            new += len(cursor.fetchall())
    return new


def notify(
    *,
    member_id: int,
    kind: str,
    title: str,
    body: str = "",
    params: dict | None = None,
    data: dict | None = None,
    dedupe_key: str,
    now: dt.datetime | None = None,
) -> bool:
    """One notice through :func:`notices_enqueue`; False when nothing was written (the
    ``dedupe_key`` was used before, or the member is erased or closed)."""
    notice = Notice(
        member_id=member_id, kind=kind, title=title, body=body, params=params, data=data or {}, dedupe_key=dedupe_key
    )
    return notices_enqueue([notice], now=now) == 1


def notice_send_unsaved(*, kind: str, title: str, body: str, data: dict, now: dt.datetime | None = None) -> None:
    """Hand a message straight to the sender without writing it to the outbox: for what
    must never be stored (a one-time code) or has no member yet. Raises what the sender raises."""
    get_sender().send(
        Notification(kind=kind, title=title[:200], body=body, data=data, created_at=now or timezone.now())
    )


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
    # A sender that keeps its own retries (outreach's deliveries) sends those due now.
    send_due = getattr(sender, "send_due", None)
    if send_due is not None:
        counts["retried"] = send_due(now=now)["attempted"]
    return counts


def notification_mark_read(*, notification: Notification, now: dt.datetime | None = None) -> Notification:
    """Mark a notification read by its member. Only the first read counts: a second call
    keeps the first time and writes nothing."""
    Notification.objects.filter(pk=notification.pk, read_at__isnull=True).update(read_at=now or timezone.now())
    notification.refresh_from_db(fields=["read_at"])
    return notification
