"""Which channels a notice goes out on, in which order, and when (docs/channels.md).

``members.notifications`` hands every message to the sender named by
``LOYALTY_NOTIFICATION_SENDER``; :class:`RoutingSender` is that sender. For each message it
reads the route of its kind (channels in fallback order), keeps the channels the member
can be reached on and agreed to (a marketing notice needs the channel's marketing
consent; a WeChat message of any kind needs a subscription the member accepted), expands
``sms`` into the configured providers, and starts a delivery on the first
(``outreach.services``). A marketing notice waits out the quiet hours and is held to
in-app once the member had ``OUTREACH_DAILY_CAP`` messages today.
"""

import datetime as dt
import re

from django.conf import settings
from django.utils import timezone

from members.models import Member, Notification

from .models import Channel, WechatSubscription

Kind = Notification.Kind

DEFAULT_ROUTES: dict[str, list[str]] = {
    Kind.ONE_TIME_CODE: ["sms"],
    Kind.EXPIRY_WARNING: ["wechat", "sms", "email", "inapp"],
    Kind.TIER_UP: ["wechat", "email", "inapp"],
    Kind.TIER_DOWN: ["wechat", "email", "inapp"],
    Kind.BIRTHDAY_GIFT: ["wechat", "sms", "email", "inapp"],
    Kind.MONTHLY_BENEFIT: ["wechat", "email", "inapp"],
    Kind.OTHER: ["wechat", "sms", "email", "inapp"],
}
# Provider template codes and the names of their parameters, in the template's order.
# The codes below are placeholders: each brand's approved templates go in OUTREACH_SMS_TEMPLATES.
DEFAULT_SMS_TEMPLATES: dict[str, dict] = {
    Kind.ONE_TIME_CODE: {"aliyun": "SMS_000000001", "tencent": "100001", "params": ["code"]},
    Kind.EXPIRY_WARNING: {"aliyun": "SMS_000000002", "tencent": "100002", "params": ["points", "date"]},
    Kind.BIRTHDAY_GIFT: {"aliyun": "SMS_000000003", "tencent": "100003", "params": []},
}
DEFAULT_WECHAT_TEMPLATES: dict[str, dict] = {}

CHANNELS = [c.value for c in Channel]


def route(kind: str) -> list[str]:
    """The channels of a notice kind, in fallback order."""
    channels = settings.OUTREACH_ROUTES.get(kind) or DEFAULT_ROUTES.get(kind) or DEFAULT_ROUTES[Kind.OTHER]
    return [c for c in channels if c in CHANNELS]


def sms_template(kind: str) -> dict | None:
    return settings.OUTREACH_SMS_TEMPLATES.get(kind) or DEFAULT_SMS_TEMPLATES.get(kind)


def wechat_template(kind: str) -> dict | None:
    return settings.OUTREACH_WECHAT_TEMPLATES.get(kind) or DEFAULT_WECHAT_TEMPLATES.get(kind)


def sms_providers(kind: str) -> list[str]:
    """The configured SMS providers that have a template for ``kind`` (``log`` needs none)."""
    template = sms_template(kind) or {}
    return [p for p in settings.OUTREACH_SMS_PROVIDERS if p == "log" or template.get(p)]


def steps_for(member: Member, kind: str, *, marketing: bool) -> list[list[str]]:
    """``[[channel, provider, recipient], ...]`` the member can be reached on, in order.

    Refuses (leaves out) a channel without an address, a marketing notice on a channel the
    member gave no marketing consent for, and WeChat without an accepted subscription to
    the kind's template.
    """
    steps = []
    for channel in route(kind):
        if channel == Channel.SMS:
            if member.phone and (not marketing or member.sms_consent_at):
                steps += [[channel, provider, member.phone] for provider in sms_providers(kind)]
        elif channel == Channel.EMAIL:
            if member.email and (not marketing or member.email_consent_at):
                steps.append([channel, "email", member.email])
        elif channel == Channel.WECHAT:
            template = wechat_template(kind)
            if (
                template
                and member.wechat_openid
                and (not marketing or member.wechat_consent_at)
                and WechatSubscription.objects.filter(
                    member=member, template_id=template["template_id"], remaining__gt=0
                ).exists()
            ):
                steps.append([channel, "wechat", member.wechat_openid])
        elif channel == Channel.INAPP:
            steps.append([channel, "", ""])
    return steps


def _window() -> tuple[dt.time, dt.time] | None:
    match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", settings.OUTREACH_QUIET_HOURS or "")
    if not match:
        return None
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    return dt.time(h1, m1), dt.time(h2, m2)


def quiet_until(now: dt.datetime) -> dt.datetime | None:
    """The end of the quiet hours when ``now`` falls in them, else None (local time)."""
    window = _window()
    if window is None or window[0] == window[1]:
        return None
    start, end = window
    local = timezone.localtime(now)
    t = local.time()
    inside = (start <= t < end) if start < end else (t >= start or t < end)
    if not inside:
        return None
    until = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
    if until <= local:
        until += dt.timedelta(days=1)
    return until


CODE = re.compile(r"\b(\d{4,8})\b")


def message_params(notification: Notification) -> dict:
    """Template parameters: the notice's ``params`` (kept in ``data`` by ``notices_enqueue``);
    for a one-time code, the code read from the text (it is never stored)."""
    params = dict((notification.data or {}).get("params") or {})
    if notification.kind == Kind.ONE_TIME_CODE and "code" not in params:
        found = CODE.search(notification.body)
        if found:
            params["code"] = found.group(1)
    return params
