"""Deliveries: start, attempt, retry, fall back, record reports (docs/channels.md).

Each attempt is claimed with a conditional update (queued -> sending) so two workers never
send the same delivery; the provider is called outside any transaction. The outcome:

- sent: the provider's message id kept; ``delivered`` later if the provider reports it;
- a temporary error: queued again after 1, 5, 25 ... minutes (``OUTREACH_RETRY_BASE_SECONDS``
  times 5 to the attempt), failed after ``OUTREACH_MAX_ATTEMPTS``, then the next step;
- a bad recipient: failed, no retry, and the other providers of the same channel are
  skipped (the number is bad for all of them); the next channel is tried;
- give up (template, credit, signature): failed, the next step is tried.
"""

import datetime as dt
import logging

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from members.models import Member, Notification

from . import routing
from .models import Channel, Delivery, WechatSubscription
from .providers.aliyun import AliyunSms
from .providers.base import BadRecipient, DeliveryError, GiveUp, Message, TemporaryError
from .providers.email import EmailSender
from .providers.log import LogSms
from .providers.tencent import TencentSms
from .providers.wechat import WechatSubscribe

logger = logging.getLogger(__name__)

SMS_PROVIDERS = {"aliyun": AliyunSms, "tencent": TencentSms, "log": LogSms}
Status = Delivery.Status
STUCK = dt.timedelta(minutes=10)  # a delivery still sending after this was interrupted


def _day_start(now: dt.datetime) -> dt.datetime:
    return timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)


def sent_today(member_id: int, now: dt.datetime) -> int:
    """Messages (SMS, WeChat, email) a member got or has coming today; codes do not count."""
    return (
        Delivery.objects.filter(member_id=member_id, created_at__gte=_day_start(now))
        .exclude(channel=Channel.INAPP)
        .exclude(kind=Notification.Kind.ONE_TIME_CODE)
        .exclude(status=Status.FAILED)
        .count()
    )


def deliveries_start(notification: Notification, *, now: dt.datetime | None = None) -> Delivery | None:
    """Route an outbox row and start its first delivery; None when no channel reaches the member.

    A marketing notice (``data["marketing"]``) to a member who had ``OUTREACH_DAILY_CAP``
    messages today stays in-app only; in the quiet hours it waits for their end.
    """
    # The outbox task claimed the row at its ``now`` (``sent_at``): the same clock here.
    now = now or notification.sent_at or timezone.now()
    member = Member.objects.get(pk=notification.member_id)
    marketing = bool((notification.data or {}).get("marketing"))
    steps = routing.steps_for(member, notification.kind, marketing=marketing)
    reason = ""
    if marketing and sent_today(member.pk, now) >= settings.OUTREACH_DAILY_CAP:
        steps, reason = [s for s in steps if s[0] == Channel.INAPP], "daily_cap"
    if not steps:
        return None
    due = routing.quiet_until(now) if marketing and steps[0][0] != Channel.INAPP else None
    channel, provider, recipient = steps[0]
    delivery = Delivery.objects.create(
        notification=notification,
        member=member,
        kind=notification.kind,
        marketing=marketing,
        channel=channel,
        provider=provider,
        recipient=recipient,
        reason=reason,
        fallback=steps[1:],
        created_at=now,
        next_attempt_at=due or now,
    )
    if due is None:
        delivery_attempt(delivery.pk, now=now)
        delivery.refresh_from_db()
    return delivery


def _message(delivery: Delivery, notification: Notification) -> Message:
    return Message(
        kind=delivery.kind,
        recipient=delivery.recipient,
        title=notification.title,
        body=notification.body,
        params=routing.message_params(notification),
        created_at=notification.created_at,
    )


def _send(delivery: Delivery, message: Message) -> str:
    """Hand ``message`` to the delivery's provider; the provider's message id."""
    if delivery.channel == Channel.SMS:
        template = routing.sms_template(delivery.kind) or {}
        names = template.get("params") or list(message.params)
        message.params = {name: message.params.get(name, "") for name in names}
        return SMS_PROVIDERS[delivery.provider]().send(message, template=template.get(delivery.provider, ""))
    if delivery.channel == Channel.WECHAT:
        template = routing.wechat_template(delivery.kind)
        if not template:
            raise GiveUp("no_template")
        msgid = WechatSubscribe().send(message, template=template)
        # One accepted subscription is good for one message.
        WechatSubscription.objects.filter(
            member_id=delivery.member_id, template_id=template["template_id"], remaining__gt=0
        ).update(remaining=F("remaining") - 1)
        return msgid
    if delivery.channel == Channel.EMAIL:
        return EmailSender().send(message)
    return ""  # in-app: the outbox row is what the member pages show


def _backoff(attempts: int) -> dt.timedelta:
    return dt.timedelta(seconds=min(settings.OUTREACH_RETRY_BASE_SECONDS * 5 ** (attempts - 1), 6 * 3600))


def delivery_attempt(
    delivery_id: int, *, now: dt.datetime | None = None, message: Message | None = None, retry: bool = True
) -> Delivery | None:
    """Try a queued delivery once; None when another worker has it. See the module doc."""
    now = now or timezone.now()
    claimed = Delivery.objects.filter(pk=delivery_id, status=Status.QUEUED).update(
        status=Status.SENDING, attempts=F("attempts") + 1, next_attempt_at=now
    )
    if claimed != 1:
        return None
    delivery = Delivery.objects.select_related("notification").get(pk=delivery_id)
    if message is None:
        message = _message(delivery, delivery.notification)
    try:
        message_id = _send(delivery, message)
    except DeliveryError as error:
        temporary = isinstance(error, TemporaryError)
        delivery.error_code, delivery.reason = error.code[:100], (error.message or error.code)[:300]
        if temporary and retry and delivery.attempts < settings.OUTREACH_MAX_ATTEMPTS:
            delivery.status, delivery.next_attempt_at = Status.QUEUED, now + _backoff(delivery.attempts)
            delivery.save(update_fields=["status", "next_attempt_at", "error_code", "reason"])
            return delivery
        delivery.status, delivery.finished_at = Status.FAILED, now
        delivery.save(update_fields=["status", "finished_at", "error_code", "reason"])
        bad = isinstance(error, BadRecipient)
        return _fall_back(delivery, now=now, bad_recipient=bad, message=message, retry=retry) or delivery
    except Exception as error:  # a bug or an unexpected answer: record it, do not loop on it
        logger.exception("delivery %s failed unexpectedly", delivery_id)
        delivery.status, delivery.finished_at = Status.FAILED, now
        delivery.error_code, delivery.reason = "error", str(error)[:300]
        delivery.save(update_fields=["status", "finished_at", "error_code", "reason"])
        return _fall_back(delivery, now=now, bad_recipient=False, message=message, retry=retry) or delivery
    delivery.provider_message_id = message_id[:100]
    delivery.sent_at = now
    delivery.status = Status.DELIVERED if delivery.channel == Channel.INAPP else Status.SENT
    if delivery.channel == Channel.INAPP:
        delivery.finished_at = now
    delivery.save(update_fields=["provider_message_id", "sent_at", "status", "finished_at"])
    return delivery


def _fall_back(delivery: Delivery, *, now, bad_recipient: bool, message: Message, retry: bool) -> Delivery | None:
    steps = list(delivery.fallback)
    if bad_recipient:  # the same number is bad on every SMS provider
        steps = [s for s in steps if s[0] != delivery.channel]
    if not steps:
        return None
    channel, provider, recipient = steps[0]
    following = Delivery.objects.create(
        notification_id=delivery.notification_id,
        member_id=delivery.member_id,
        kind=delivery.kind,
        marketing=delivery.marketing,
        channel=channel,
        provider=provider,
        recipient=recipient,
        fallback=steps[1:],
        created_at=now,
        next_attempt_at=now,
    )
    # An outbox row's message is built afresh for the new channel; an unsaved one (a code)
    # exists only in ``message``.
    if delivery.notification_id:
        message = None
    else:
        message.recipient = recipient
    return delivery_attempt(following.pk, now=now, message=message, retry=retry)


def deliver_now(notification: Notification, *, now: dt.datetime | None = None) -> Delivery:
    """Send an unsaved message (a one-time code) by SMS at once, provider after provider.

    No retry later (a code is useless in five minutes): a temporary error moves on to the
    next provider straight away. Raises :class:`DeliveryError` when none took it. The
    delivery rows keep the phone and the outcome, never the text.
    """
    now = now or timezone.now()
    phone = (notification.data or {}).get("phone", "")
    member_id = Member.objects.filter(phone=phone).values_list("pk", flat=True).first()
    providers = routing.sms_providers(notification.kind)
    if not phone or not providers:
        raise GiveUp("no_route", "no SMS provider for this message")
    message = Message(
        kind=notification.kind,
        recipient=phone,
        title=notification.title,
        body=notification.body,
        params=routing.message_params(notification),
        created_at=now,
    )
    steps = [[Channel.SMS.value, provider, phone] for provider in providers]
    first = Delivery.objects.create(
        member_id=member_id,
        kind=notification.kind,
        channel=Channel.SMS,
        provider=steps[0][1],
        recipient=phone,
        fallback=steps[1:],
        created_at=now,
        next_attempt_at=now,
    )
    last = delivery_attempt(first.pk, now=now, message=message, retry=False) or first
    if last.status != Status.SENT:
        raise GiveUp(last.error_code or "not_sent", last.reason)
    return last


def deliveries_send_due(*, now: dt.datetime | None = None, limit: int = 500) -> dict[str, int]:
    """Attempt the queued deliveries whose time has come (retries, the end of quiet hours)."""
    now = now or timezone.now()
    # A worker killed between claim and answer: the message may or may not have gone.
    # At most once, like the outbox: it is failed, not sent again.
    Delivery.objects.filter(status=Status.SENDING, next_attempt_at__lt=now - STUCK).update(
        status=Status.FAILED,
        error_code="interrupted",
        reason="the sender stopped before the provider answered",
        finished_at=now,
    )
    due = list(
        Delivery.objects.filter(status=Status.QUEUED, next_attempt_at__lte=now)
        .order_by("next_attempt_at", "id")
        .values_list("pk", flat=True)[:limit]
    )
    counts = {"attempted": 0, "sent": 0}
    for pk in due:
        delivery = delivery_attempt(pk, now=now)
        if delivery is not None:
            counts["attempted"] += 1
            counts["sent"] += delivery.status in (Status.SENT, Status.DELIVERED)
    return counts


def delivery_report(*, provider: str, message_id: str, delivered: bool, reason: str = "", at=None) -> int:
    """Record a provider's delivery report for a sent message; how many rows it changed.

    Only a ``sent`` delivery moves (to delivered or failed): a report that comes twice, or
    for a message id we never sent, changes nothing.
    """
    if not message_id:
        return 0
    at = at or timezone.now()
    fields = {"status": Status.DELIVERED if delivered else Status.FAILED, "finished_at": at}
    if not delivered:
        fields.update(error_code="not_delivered", reason=reason[:300])
    return Delivery.objects.filter(provider=provider, provider_message_id=message_id, status=Status.SENT).update(
        **fields
    )


@transaction.atomic
def wechat_subscriptions_record(*, member: Member, results: dict[str, str], now: dt.datetime | None = None) -> int:
    """Record what the member answered in ``wx.requestSubscribeMessage``: ``{template_id:
    "accept" | "reject" | "ban" | ...}``. Each accept allows one more message on that
    template; a reject or ban allows none. Returns how many accepts were recorded."""
    now = now or timezone.now()
    accepted = 0
    for template_id, answer in results.items():
        template_id = str(template_id)[:64]
        row, _ = WechatSubscription.objects.select_for_update().get_or_create(member=member, template_id=template_id)
        if answer == "accept":
            row.remaining, row.granted_at = row.remaining + 1, now
            accepted += 1
        else:
            row.remaining, row.refused_at = 0, now
        row.save(update_fields=["remaining", "granted_at", "refused_at"])
    return accepted
